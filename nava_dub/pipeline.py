"""The order of things: the only module that knows it. Entry points call these; nothing else does.

analyse(): probe → (transcript file | ASR + diarization) → spans with speakers.
plan_input(): analyse() → generation windows.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nava_dub import media
from nava_dub.errors import DubError
from nava_dub.options import PlanOptions
from nava_dub.plan import plan_windows, window_summary
from nava_dub.progress import ProgressFn, silent
from nava_dub.timeline import Span, Window
from nava_dub.transcribe import SAMPLE_RATE_HZ, SpeechOptions


@dataclass(frozen=True)
class Analysis:
    info: media.MediaInfo
    spans: tuple[Span, ...]
    speakers: tuple[str, ...]
    turns: tuple = ()           # diarization turns (empty when the transcript came from a file)


@dataclass(frozen=True)
class PlanResult:
    analysis: Analysis
    windows: tuple[Window, ...]


class SpeechStack:
    """The ASR and diarization models: loaded on first use, then kept for every later input."""

    def __init__(self, weights_dir: Path, options: SpeechOptions = SpeechOptions()) -> None:
        self.weights_dir, self.options = weights_dir, options
        self._models: tuple | None = None

    def models(self, progress: ProgressFn = silent) -> tuple:
        if self._models is None:
            from nava_dub.diarize import load_diarizer
            from nava_dub.transcribe import load_transcriber
            progress("load speech models", 0, 2)
            transcriber = load_transcriber(self.weights_dir, self.options)
            progress("load speech models", 1, 2)
            self._models = transcriber, load_diarizer(self.weights_dir, self.options.device)
            progress("load speech models", 2, 2)
        return self._models


def analyse(input_path: Path, *, transcript_path: Path | None, speech: SpeechStack,
            n_speakers: int | None = None, progress: ProgressFn = silent) -> Analysis:
    """The input's spans with speakers: from a transcript file, or recognised from its speech."""
    info = media.probe(input_path)
    media.require_audio(info)
    if transcript_path is not None:
        from nava_dub.transcript import read_transcript
        transcript = read_transcript(transcript_path, duration_s=info.duration_s)
        return Analysis(info, transcript.spans, transcript.speakers)
    from nava_dub.diarize import assign_speakers
    transcriber, diarizer = speech.models(progress)   # a missing model fails before minutes of decoding
    progress("decode audio", 0, 1)
    waveform = media.read_audio(info, SAMPLE_RATE_HZ, 1)[0]
    progress("decode audio", 1, 1)
    progress("transcribe", 0, 1)
    spans = transcriber(waveform)
    progress("transcribe", 1, 1)
    if not spans:
        raise DubError(f"no speech found in {input_path}",
                       "check that the audio has speech, or pass --transcript with the lines to speak")
    progress("find speakers", 0, 1)
    turns = diarizer(waveform, n_speakers=n_speakers)
    spans = assign_speakers(spans, turns)
    progress("find speakers", 1, 1)
    speakers = tuple(sorted({s.speaker for s in spans if s.speaker}))
    return Analysis(info, tuple(spans), speakers, tuple(turns))


def plan_input(input_path: Path, *, transcript_path: Path | None, speech: SpeechStack,
               plan_options: PlanOptions = PlanOptions(),
               n_speakers: int | None = None, progress: ProgressFn = silent) -> PlanResult:
    plan_options.validate()
    analysis = analyse(input_path, transcript_path=transcript_path, speech=speech,
                       n_speakers=n_speakers, progress=progress)
    windows = plan_windows(analysis.spans, analysis.info.duration_s, plan_options)
    return PlanResult(analysis, windows)


def plan_summary(result: PlanResult) -> dict:
    """The plan as JSON (documented in the README)."""
    info = result.analysis.info
    return {
        "input": str(info.path),
        "duration_s": round(info.duration_s, 4),
        "fps": str(info.video.fps) if info.video else None,
        "speakers": list(result.analysis.speakers),
        "spans": [{"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "speaker": s.speaker,
                   "text": s.text} for s in result.analysis.spans],
        "windows": [window_summary(w) for w in result.windows],
    }

