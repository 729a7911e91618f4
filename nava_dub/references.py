"""Reference voices: which recording gives each re-voiced speaker its timbre.

Without `--ref`, each speaker's reference is cut from the input itself: the cleanest single-speaker
speech (no other speaker's turn overlapping it, no clipping, loud enough), joined from the best
spans into 3 to 30 s (NAVA embeds only the first 30 s of a reference). The clip is written next to
the output so the user can hear what was used. `--ref FILE` sets one voice for every re-voiced
speaker, `--ref SPEAKER=FILE` one per speaker.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from nava_dub.errors import MediaError, UsageError
from nava_dub.timeline import Span, samples_to_seconds, seconds_to_samples


@dataclass(frozen=True)
class ReferenceRules:
    min_s: float = 3.0                  # less cannot carry a voice; below it we ask for --ref
    target_s: float = 15.0              # enough speech for a stable speaker embedding
    max_s: float = 30.0                 # NAVA truncates references to their first 30 s
    min_piece_s: float = 1.0            # shorter spans are mostly onsets and tails
    min_rms_dbfs: float = -40.0         # quieter speech is too close to the noise floor
    clip_level: float = 0.99            # |sample| at or above this counts as clipped
    max_clipped_fraction: float = 1e-3  # a handful of full-scale peaks is not audible clipping
    join_gap_s: float = 0.2             # silence between joined pieces


@dataclass(frozen=True)
class ReferenceClip:
    speaker: str
    pieces: tuple[tuple[float, float], ...]   # (start_s, end_s) in the input, in time order
    waveform: np.ndarray                      # [1, S] float32 mono: the pieces joined
    sample_rate_hz: int

    @property
    def duration_s(self) -> float:
        return self.waveform.shape[-1] / self.sample_rate_hz


class TurnLike(Protocol):
    """A diarization turn (nava_dub.diarize.Turn); references does not import the adapters."""

    start_s: float
    end_s: float
    speaker: str


# --- choosing the pieces (pure) -----------------------------------------------------------------

def select_references(spans: list[Span], turns: list[TurnLike], waveform: np.ndarray, sample_rate_hz: int,
                      speakers: list[str] | None = None,
                      rules: ReferenceRules = ReferenceRules()) -> dict[str, ReferenceClip]:
    """One ReferenceClip per speaker (all speakers of `spans` unless `speakers` is given).
    `waveform` is [S] or [C, S] at sample_rate_hz. Raises MediaError for a speaker without rules.min_s of clean speech."""
    mono = waveform if waveform.ndim == 1 else waveform.mean(axis=0)
    wanted = speakers if speakers is not None else sorted({s.speaker for s in spans if s.speaker is not None})
    clips = {}
    for speaker in wanted:
        mine = [s for s in spans if s.speaker == speaker]
        clean = [s for s in mine if is_clean(s, turns, mono, sample_rate_hz, rules)]
        pieces = choose_pieces(clean, rules)
        speech_s = sum(end_s - start_s for start_s, end_s in pieces)
        if speech_s < rules.min_s:
            raise MediaError(
                f"speaker {speaker} has only {speech_s:.1f} s of clean single-speaker speech "
                f"({len(clean)} of {len(mine)} spans usable); a reference needs at least {rules.min_s:g} s",
                f"give that voice a recording with --ref {speaker}=FILE")
        clips[speaker] = ReferenceClip(speaker, pieces, join_pieces(mono, sample_rate_hz, pieces, rules),
                                       sample_rate_hz)
    return clips


def is_clean(span: Span, turns: list[TurnLike], mono: np.ndarray, sample_rate_hz: int, rules: ReferenceRules) -> bool:
    """Long enough, no other speaker's turn overlapping, not clipped, loud enough."""
    if span.duration_s < rules.min_piece_s:
        return False
    if any(t.speaker != span.speaker and min(t.end_s, span.end_s) > max(t.start_s, span.start_s) for t in turns):
        return False
    piece = _cut(mono, sample_rate_hz, span.start_s, span.end_s)
    if piece.size == 0:
        return False
    clipped = np.count_nonzero(np.abs(piece) >= rules.clip_level) / piece.size
    return clipped <= rules.max_clipped_fraction and rms_dbfs(piece) >= rules.min_rms_dbfs


def choose_pieces(clean: list[Span], rules: ReferenceRules) -> tuple[tuple[float, float], ...]:
    """Longest clean spans first until target_s, the last one cut short to stay within max_s
    (gaps included); returned in time order."""
    budget_s = rules.max_s
    chosen: list[tuple[float, float]] = []
    speech_s = 0.0
    for span in sorted(clean, key=lambda s: (-s.duration_s, s.start_s)):
        if speech_s >= rules.target_s:
            break
        gap_s = rules.join_gap_s if chosen else 0.0
        length_s = min(span.duration_s, budget_s - gap_s)
        if length_s < rules.min_piece_s:
            break
        chosen.append((span.start_s, span.start_s + length_s))
        speech_s += length_s
        budget_s -= gap_s + length_s
    return tuple(sorted(chosen))


def join_pieces(mono: np.ndarray, sample_rate_hz: int, pieces: tuple[tuple[float, float], ...],
                rules: ReferenceRules) -> np.ndarray:
    """Pieces with short fades (no clicks at the cuts) and join_gap_s of silence between them: [1, S]."""
    gap = np.zeros(seconds_to_samples(rules.join_gap_s, sample_rate_hz), dtype=np.float32)
    parts: list[np.ndarray] = []
    for start_s, end_s in pieces:
        if parts:
            parts.append(gap)
        parts.append(_fade(_cut(mono, sample_rate_hz, start_s, end_s).astype(np.float32), sample_rate_hz))
    return np.concatenate(parts)[None, :]


def rms_dbfs(samples: np.ndarray) -> float:
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64))))
    return 20 * math.log10(rms) if rms > 0 else -math.inf


def _cut(mono: np.ndarray, sample_rate_hz: int, start_s: float, end_s: float) -> np.ndarray:
    return mono[seconds_to_samples(start_s, sample_rate_hz):seconds_to_samples(end_s, sample_rate_hz)]


def _fade(piece: np.ndarray, sample_rate_hz: int, fade_s: float = 0.01) -> np.ndarray:
    n = min(seconds_to_samples(fade_s, sample_rate_hz), piece.size // 2)
    if n == 0:
        return piece
    ramp = np.linspace(0.0, 1.0, n, dtype=np.float32)
    out = piece.copy()
    out[:n] *= ramp
    out[-n:] *= ramp[::-1]
    return out


# --- writing -------------------------------------------------------------------------------------

def reference_path(output_path: Path, speaker: str) -> Path:
    """Next to the output: clip.mp4 -> clip.ref-SPEAKER_00.wav."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", speaker)
    return output_path.with_name(f"{output_path.stem}.ref-{safe}.wav")


def write_reference(clip: ReferenceClip, path: Path) -> Path:
    from nava_dub.media import write_wav

    write_wav(path, clip.waveform, clip.sample_rate_hz)
    return path


# --- the user's --ref values ----------------------------------------------------------------------

@dataclass(frozen=True)
class RefChoice:
    """What --ref said: one file for every re-voiced speaker and/or one per named speaker."""

    default: Path | None = None
    per_speaker: tuple[tuple[str, Path], ...] = ()

    def for_speaker(self, speaker: str) -> Path | None:
        return dict(self.per_speaker).get(speaker, self.default)


def parse_refs(values: list[str]) -> RefChoice:
    """`--ref FILE` and `--ref SPEAKER=FILE` values; every file must exist (MediaError), a plain
    FILE or a speaker may be given once (UsageError). An existing file whose name holds '=' is a FILE."""
    default: Path | None = None
    per_speaker: dict[str, Path] = {}
    for value in values:
        speaker, path = _split_ref(value)
        if not path.is_file():
            what = "does not exist" if not path.exists() else "is not a file"
            raise MediaError(f"reference {path} {what}", "pass the path of a WAV/audio file with the voice to use")
        if speaker is None:
            if default is not None:
                raise UsageError(f"--ref FILE given twice ({default}, {path})",
                                 "give one file for all speakers, and SPEAKER=FILE for the others")
            default = path
        elif speaker in per_speaker:
            raise UsageError(f"--ref names speaker {speaker} twice", f"keep one --ref {speaker}=FILE")
        else:
            per_speaker[speaker] = path
    return RefChoice(default, tuple(sorted(per_speaker.items())))


def _split_ref(value: str) -> tuple[str | None, Path]:
    if "=" not in value or Path(value).is_file():
        return None, Path(value)
    speaker, _, file = value.partition("=")
    if not speaker or not file:
        raise UsageError(f"--ref value {value!r} is neither FILE nor SPEAKER=FILE", "write e.g. --ref SPEAKER_00=voice.wav")
    return speaker, Path(file)


def check_ref_speakers(choice: RefChoice, known_speakers: list[str]) -> None:
    """Every speaker a --ref names must be one the transcript has."""
    for speaker, _ in choice.per_speaker:
        if speaker not in known_speakers:
            found = ", ".join(sorted(known_speakers)) or "none"
            raise UsageError(f"--ref names speaker {speaker}, who is not in the transcript (speakers: {found})",
                             "use one of the speakers listed by `nava-dub plan`")


def check_reference_audio(path: Path, waveform: np.ndarray, sample_rate_hz: int,
                          rules: ReferenceRules = ReferenceRules()) -> None:
    """A user's reference must hold at least rules.min_s of audio that is not silence."""
    duration_s = float(samples_to_seconds(waveform.shape[-1], sample_rate_hz))
    if duration_s < rules.min_s:
        raise MediaError(f"reference {path} is {duration_s:.1f} s long; at least {rules.min_s:g} s is needed",
                         "use a longer recording of the voice")
    level = rms_dbfs(waveform if waveform.ndim == 1 else waveform.mean(axis=0))
    if level < rules.min_rms_dbfs:
        raise MediaError(f"reference {path} is silent or too quiet ({level:.0f} dBFS RMS)",
                         f"use a recording louder than {rules.min_rms_dbfs:g} dBFS")
