"""Speaker turns from the pyannote adapter (tiny offline pipeline with real segmentation weights),
and the pure assign_speakers."""

import os

import pytest

from nava_dub.diarize import Diarizer, Turn, assign_speakers, diarization_dir
from nava_dub.errors import WeightsError
from nava_dub.timeline import Span, Word
from tests.speech_models import session_dialogue, session_dialogue_analysis, session_diarizer

A, B = "SPEAKER_A", "SPEAKER_B"


def span_of(*words: tuple[float, float, str], start_s=None, end_s=None) -> Span:
    ws = tuple(Word(s, e, t) for s, e, t in words)
    return Span(ws[0].start_s if start_s is None else start_s, ws[-1].end_s if end_s is None else end_s,
                " ".join(w.text for w in ws), words=ws)


# --- assign_speakers: pure ------------------------------------------------------------------------

def test_without_turns_spans_come_back_unchanged():
    spans = [span_of((0.0, 0.5, "hi")), Span(1.0, 2.0, "no words")]
    assert assign_speakers(spans, []) == spans


def test_span_inside_one_turn_takes_its_speaker():
    span = span_of((1.0, 1.4, "good"), (1.5, 2.0, "morning"))
    [out] = assign_speakers([span], [Turn(0.0, 0.9, B), Turn(0.9, 3.0, A)])
    assert out.speaker == A and out.words == span.words and (out.start_s, out.end_s) == (1.0, 2.0)


def test_largest_total_overlap_wins_for_a_span_without_words():
    # A overlaps 0.4 + 0.4 = 0.8 s in two turns, B 0.6 s in one: totals count, not the longest turn
    [out] = assign_speakers([Span(0.0, 2.0, "x")], [Turn(0.0, 0.4, A), Turn(0.4, 1.0, B), Turn(1.6, 2.5, A)])
    assert out.speaker == A


def test_word_in_overlapping_turns_goes_to_the_larger_overlap():
    span = span_of((1.0, 2.0, "yes"))
    [out] = assign_speakers([span], [Turn(0.0, 1.3, A), Turn(1.2, 3.0, B)])
    assert out.speaker == B


def test_span_split_at_the_speaker_change_between_words():
    span = span_of((0.0, 0.5, "how"), (0.6, 1.0, "are"), (1.1, 1.5, "you?"), (2.2, 2.6, "fine"), (2.7, 3.0, "thanks"))
    turns = [Turn(0.0, 1.6, A), Turn(2.0, 3.2, B)]
    first, second = assign_speakers([span], turns)
    assert (first.speaker, second.speaker) == (A, B)
    assert first.text == "how are you?" and second.text == "fine thanks"
    assert first.words + second.words == span.words
    assert first.start_s == span.start_s and second.end_s == span.end_s
    assert first.end_s == second.start_s == 2.0          # B's turn starts inside the gap: cut there


def test_cut_falls_in_the_gap_even_when_the_turn_change_does_not():
    # diarization says B starts at 0.55, inside the word "are" (0.5-0.9): the cut goes between words
    span = span_of((0.0, 0.4, "so"), (0.5, 0.9, "are"), (1.3, 1.6, "we"))
    turns = [Turn(0.0, 0.95, A), Turn(0.95, 2.0, B)]
    first, second = assign_speakers([span], turns)
    assert [w.text for w in first.words] == ["so", "are"] and [w.text for w in second.words] == ["we"]
    assert 0.9 <= first.end_s == second.start_s <= 1.3


def test_speaker_returning_gives_three_spans():
    span = span_of((0.0, 0.5, "one"), (1.0, 1.5, "two"), (2.0, 2.5, "three"))
    turns = [Turn(0.0, 0.7, A), Turn(0.8, 1.7, B), Turn(1.8, 2.6, A)]
    assert [s.speaker for s in assign_speakers([span], turns)] == [A, B, A]


def test_word_outside_every_turn_takes_the_nearest_speaker():
    span = span_of((5.0, 5.5, "late"))
    [out] = assign_speakers([span], [Turn(0.0, 1.0, A), Turn(4.0, 4.8, B)])
    assert out.speaker == B


def test_words_without_spaces_are_joined_without_spaces():
    span = Span(0.0, 2.0, "你好吗", words=(Word(0.0, 0.5, "你"), Word(0.6, 1.0, "好"), Word(1.5, 2.0, "吗")))
    first, second = assign_speakers([span], [Turn(0.0, 1.2, A), Turn(1.2, 2.0, B)])
    assert (first.text, second.text) == ("你好", "吗")


# --- the adapter ------------------------------------------------------------------------------------

def test_missing_pipeline_folder_names_the_folder(tmp_path):
    with pytest.raises(WeightsError) as info:
        Diarizer(diarization_dir(tmp_path))
    assert str(diarization_dir(tmp_path)) in info.value.message and "weights/README.md" in info.value.hint


@pytest.mark.slow
def test_two_voices_get_two_speakers_at_the_utterances(tmp_path_factory):
    dialogue = session_dialogue(tmp_path_factory)
    _, turns = session_dialogue_analysis(tmp_path_factory)
    assert os.environ["PYANNOTE_METRICS_ENABLED"] == "false"
    assert len({t.speaker for t in turns}) == 2
    who = []
    for utt in dialogue.utterances:
        mine = [t for t in turns if min(t.end_s, utt.end_s) - max(t.start_s, utt.start_s) > 0]
        assert mine, f"no turn over {utt}"
        assert abs(mine[0].start_s - utt.start_s) < 0.3          # real segmentation finds the onsets
        assert abs(mine[-1].end_s - utt.end_s) < 0.6             # and the ends (it runs a little long)
        assert len({t.speaker for t in mine}) == 1
        who.append(mine[0].speaker)
    # utterances 1 and 3 are voice A, utterance 2 voice B
    assert who[0] == who[2] != who[1]


@pytest.mark.slow
def test_diarizer_finds_no_turns_in_silence(tmp_path_factory):
    import numpy as np

    from tests.speech_models import torch_threads

    with torch_threads(1):
        turns = session_diarizer(tmp_path_factory)(np.zeros(16000 * 3, dtype=np.float32))
    assert turns == []


@pytest.mark.slow
def test_assign_speakers_on_real_turns(tmp_path_factory):
    """The front end as the pipeline runs it: each transcribed span ends up with one voice."""
    spans, turns = session_dialogue_analysis(tmp_path_factory)
    dialogue = session_dialogue(tmp_path_factory)
    out = assign_speakers(spans, turns)
    assert len(out) == len(dialogue.utterances)
    assert out[0].speaker == out[2].speaker != out[1].speaker


def test_unloadable_pipeline_folder_is_a_weights_error(tmp_path):
    folder = diarization_dir(tmp_path)
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("pipeline:\n  name: no_such_package.Pipeline\n")
    with pytest.raises(WeightsError, match="could not be loaded"):
        Diarizer(folder)
