"""pyannote.audio adapter: a 16 kHz mono waveform -> speaker turns; and the pure
`assign_speakers(spans, turns)` that gives every word and span its speaker.

The pipeline loads from the local folder weights/speech/diarization/ (config.yaml plus the model
folders it names, as in pyannote/speaker-diarization-community-1); nothing is downloaded and
pyannote's telemetry is switched off before pyannote is imported.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from nava_dub.speech_setup import (
    SAMPLE_RATE_HZ,
    go_offline,
    loading,
    quiet_library_logs,
    require_model_folder,
)
from nava_dub.timeline import Span, Word


@dataclass(frozen=True)
class Turn:
    """One stretch of speech by one speaker; turns of different speakers may overlap."""

    start_s: float
    end_s: float
    speaker: str


def diarization_dir(weights_dir: Path | str) -> Path:
    return Path(weights_dir) / "speech" / "diarization"


class Diarizer:
    """A loaded pyannote speaker-diarization pipeline; call it on a waveform."""

    def __init__(self, pipeline_dir: Path, device: str = "cpu") -> None:
        require_model_folder(pipeline_dir, ("config.yaml",), "diarization")
        go_offline()     # before pyannote's import: it reads the switches then
        quiet_library_logs()
        import torch
        from pyannote.audio import Pipeline
        from pyannote.audio.telemetry import set_telemetry_metrics

        set_telemetry_metrics(False)
        with loading(pipeline_dir, "diarization"):
            pipeline = Pipeline.from_pretrained(str(pipeline_dir))
            if pipeline is None:     # pyannote returns None instead of raising on some load failures
                raise ValueError("pyannote returned no pipeline")
        self.pipeline = pipeline.to(torch.device(device))

    def __call__(self, waveform: np.ndarray, n_speakers: int | None = None, min_speakers: int | None = None,
                 max_speakers: int | None = None) -> list[Turn]:
        if waveform.ndim != 1:
            raise ValueError(f"waveform must be mono [S], got shape {waveform.shape}")
        import torch

        audio = {"waveform": torch.from_numpy(np.ascontiguousarray(waveform, dtype=np.float32))[None],
                 "sample_rate": SAMPLE_RATE_HZ}
        output = self.pipeline(audio, num_speakers=n_speakers, min_speakers=min_speakers,
                               max_speakers=max_speakers)
        # pyannote 4 returns DiarizeOutput; keep the variant with overlaps (references need them).
        annotation: Any = getattr(output, "speaker_diarization", output)
        turns = [Turn(round(seg.start, 3), round(seg.end, 3), str(label))
                 for seg, _, label in annotation.itertracks(yield_label=True)]
        return sorted(turns, key=lambda t: (t.start_s, t.end_s, t.speaker))


def load_diarizer(weights_dir: Path | str, device: str = "cpu") -> Diarizer:
    return Diarizer(diarization_dir(weights_dir), device)


# --- pure: speakers onto spans ------------------------------------------------------------------

def assign_speakers(spans: list[Span], turns: list[Turn]) -> list[Span]:
    """Each word, and each span, gets the speaker whose turns overlap it most (the nearest turn's
    speaker if none overlaps). A span whose words belong to different speakers is split between
    the words where the speaker changes. Without turns the spans come back unchanged."""
    if not turns:
        return list(spans)
    out: list[Span] = []
    for span in spans:
        if not span.words:
            out.append(replace(span, speaker=_speaker_of(span.start_s, span.end_s, turns)))
            continue
        speakers = [_speaker_of(w.start_s, w.end_s, turns) for w in span.words]
        out += _split_at_changes(span, speakers, turns)
    return out


def _speaker_of(start_s: float, end_s: float, turns: list[Turn]) -> str:
    overlap_s: dict[str, float] = {}
    for turn in turns:
        shared_s = min(end_s, turn.end_s) - max(start_s, turn.start_s)
        if shared_s > 0:
            overlap_s[turn.speaker] = overlap_s.get(turn.speaker, 0.0) + shared_s
    if overlap_s:
        return max(sorted(overlap_s), key=lambda s: overlap_s[s])
    nearest = min(turns, key=lambda t: max(t.start_s - end_s, start_s - t.end_s))
    return nearest.speaker


def _split_at_changes(span: Span, speakers: list[str], turns: list[Turn]) -> list[Span]:
    joiner = " " if " " in span.text.strip() or len(span.words) == 1 else ""
    runs: list[list[int]] = [[0]]
    for i in range(1, len(span.words)):
        if speakers[i] == speakers[i - 1]:
            runs[-1].append(i)
        else:
            runs.append([i])
    if len(runs) == 1:
        return [replace(span, speaker=speakers[0])]
    cuts_s = [span.start_s]
    for run in runs[1:]:
        before, after = span.words[run[0] - 1], span.words[run[0]]
        cuts_s.append(_change_time(before, after, speakers[run[0]], turns))
    cuts_s.append(span.end_s)
    pieces = []
    for k, run in enumerate(runs):
        words = tuple(span.words[i] for i in run)
        pieces.append(Span(cuts_s[k], cuts_s[k + 1], joiner.join(w.text for w in words), speakers[run[0]], words))
    return pieces


def _change_time(before: Word, after: Word, new_speaker: str, turns: list[Turn]) -> float:
    """Where the new speaker's turn begins, kept within the gap between the two words
    (the middle of the gap when diarization puts the change elsewhere)."""
    starts_s = [t.start_s for t in turns if t.speaker == new_speaker and t.end_s > before.end_s]
    lo_s, hi_s = before.end_s, max(before.end_s, after.start_s)
    inside = [t_s for t_s in starts_s if lo_s <= t_s <= hi_s]
    return min(inside) if inside else (lo_s + hi_s) / 2
