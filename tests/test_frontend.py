"""From a generated video to a plan: real VAD turns, diarization and window rules on several clips."""

import pytest

from nava_dub.pipeline import plan_input
from tests.clips import make_talking_clip, spoken_lines
from tests.plan_rules import check_plan_rules
from tests.speech_models import torch_threads

LONG_LINE = ("en-us", "This is one single long utterance that goes on and on without any real pause "
                      "because the speaker wants to explain every little detail of the mountain trip "
                      "to everyone who listens in the room today")
THREE_LINES = (("en-us", "Good morning everyone, today we talk about the weather."),
               ("en-gb+f3", "That sounds wonderful, I love the mountains."),
               ("en-us", "Then let us begin with the northern valleys."))


@pytest.mark.parametrize("fps, lines, gaps_s", [
    ("30", THREE_LINES, 0.7),                 # two voices at 30 fps
    ("25", THREE_LINES, 0.7),
    ("30000/1001", THREE_LINES, 0.7),         # NTSC 29.97
    ("30", THREE_LINES[:2], [0.5, 4.0, 3.0]), # long silences
    ("24", (LONG_LINE,), 0.4),                # one utterance over 10 s
], ids=["30fps", "25fps", "29.97fps", "long-silences", "long-utterance"])
def test_plan_from_generated_clip(tmp_path, speech_stack, fps, lines, gaps_s):
    clip = make_talking_clip(tmp_path, fps=fps, size=(160, 120), lines=lines, gaps_s=gaps_s)
    with torch_threads(1):
        result = plan_input(clip, transcript_path=None, speech=speech_stack,
                            n_speakers=2 if len(lines) > 1 else None)
    spans = list(result.analysis.spans)
    check_plan_rules(result.windows, spans, result.analysis.info.duration_s)
    truth = spoken_lines(clip)
    for line in truth:   # every voiced line is found (real VAD) and lies inside a window
        assert any(s.start_s < line.end_s and line.start_s < s.end_s for s in spans), line
        covering = [w for w in result.windows if float(w.start_s) <= line.start_s + 0.35
                    and line.end_s - 0.7 <= float(w.end_s)]
        assert covering or len(result.windows) > 1, line
    if gaps_s == [0.5, 4.0, 3.0]:
        assert len(result.windows) == 2            # no window bridges the 4 s of silence
        assert result.windows[1].start_s > truth[0].end_s + 2.0
    if lines == (LONG_LINE,):
        assert truth[0].end_s - truth[0].start_s > 10.0
        assert len(result.windows) >= 2            # cut between words, never inside one
