"""Time on the dubbing timeline: the types that carry it and every unit conversion.

Units are in the names: `_s` seconds, `frames` video frames (at a named fps), `latent_frames`
(Wan2.2 VAE, 4x temporal), `samples` audio samples, `audio_tokens` NAVA audio latents (25/s).
NAVA itself runs at 24 fps: T latent frames decode to 4T-3 frames.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fractions import Fraction

NAVA_FPS = Fraction(24)
FRAMES_PER_LATENT_FRAME = 4
AUDIO_TOKENS_PER_S = 25
DEFAULT_LATENT_FRAMES = 37
MAX_LATENT_FRAMES = 61
MIN_LATENT_FRAMES = 2


# --- frames <-> latent frames (NAVA's 4k+1 rule) -------------------------------------------

def latent_frames_to_frames(n_latent_frames: int) -> int:
    """T latent frames decode to 4T-3 frames (the first latent frame holds one frame)."""
    if n_latent_frames < 1:
        raise ValueError(f"n_latent_frames must be >= 1, got {n_latent_frames}")
    return FRAMES_PER_LATENT_FRAME * (n_latent_frames - 1) + 1


def frames_to_latent_frames(n_frames: int) -> int:
    """Inverse of latent_frames_to_frames; n_frames must be 4k+1."""
    if n_frames < 1 or (n_frames - 1) % FRAMES_PER_LATENT_FRAME:
        raise ValueError(f"n_frames must be 4k+1, got {n_frames}")
    return (n_frames - 1) // FRAMES_PER_LATENT_FRAME + 1


def snap_frames_up(n_frames: int) -> int:
    """The smallest 4k+1 frame count >= n_frames."""
    k = max(0, math.ceil((n_frames - 1) / FRAMES_PER_LATENT_FRAME))
    return FRAMES_PER_LATENT_FRAME * k + 1


def snap_frames_down(n_frames: int) -> int:
    """The largest 4k+1 frame count <= n_frames (at least 1)."""
    k = max(0, (n_frames - 1) // FRAMES_PER_LATENT_FRAME)
    return FRAMES_PER_LATENT_FRAME * k + 1


MAX_FRAMES = latent_frames_to_frames(MAX_LATENT_FRAMES)   # 241 frames = 10.04 s


# --- seconds <-> frames <-> samples <-> audio tokens ---------------------------------------

def frames_to_seconds(n_frames: int, fps: Fraction = NAVA_FPS) -> Fraction:
    return Fraction(n_frames) / Fraction(fps)


def seconds_to_frames_floor(t_s: float | Fraction, fps: Fraction = NAVA_FPS) -> int:
    """Index of the frame showing at time t_s (frame i spans [i/fps, (i+1)/fps))."""
    return math.floor(Fraction(t_s) * Fraction(fps))


def seconds_to_frames_ceil(t_s: float | Fraction, fps: Fraction = NAVA_FPS) -> int:
    return math.ceil(Fraction(t_s) * Fraction(fps))


def seconds_to_samples(t_s: float | Fraction, sample_rate_hz: int) -> int:
    """Nearest sample index at sample_rate_hz (exact for Fractions, half rounds up)."""
    return math.floor(Fraction(t_s) * sample_rate_hz + Fraction(1, 2))


def samples_to_seconds(n_samples: int, sample_rate_hz: int) -> Fraction:
    return Fraction(n_samples, sample_rate_hz)


def audio_tokens_for_frames(n_frames: int, fps: Fraction = NAVA_FPS) -> int:
    """NAVA sizes the audio latent as ceil(duration * 25) for a clip of n_frames at 24 fps."""
    return math.ceil(frames_to_seconds(n_frames, fps) * AUDIO_TOKENS_PER_S)


def audio_tokens_for_latent_frames(n_latent_frames: int) -> int:
    return audio_tokens_for_frames(latent_frames_to_frames(n_latent_frames))


def seconds_to_audio_tokens_floor(t_s: float | Fraction) -> int:
    return math.floor(Fraction(t_s) * AUDIO_TOKENS_PER_S)


def convert_frame_index(frame: int, from_fps: Fraction, to_fps: Fraction) -> int:
    """The frame at to_fps that shows the instant frame `frame` at from_fps starts."""
    return math.floor(Fraction(frame) * Fraction(to_fps) / Fraction(from_fps))


# --- the data that flows ---------------------------------------------------------------------

@dataclass(frozen=True)
class Word:
    start_s: float
    end_s: float
    text: str


@dataclass(frozen=True)
class Span:
    """One continuous utterance by one speaker: NAVA's `<S>...<E>` unit."""

    start_s: float
    end_s: float
    text: str
    speaker: str | None = None
    words: tuple[Word, ...] = field(default_factory=tuple)

    @property
    def duration_s(self) -> float:
        return self.end_s - self.start_s


def speakers_of(spans: tuple[Span, ...] | list[Span]) -> tuple[str, ...]:
    """The named speakers of spans, sorted (a span without a name, None or "", names none)."""
    return tuple(sorted({s.speaker for s in spans if s.speaker}))


@dataclass(frozen=True)
class Window:
    """One NAVA generation: n_frames (4k+1) frames at 24 fps from start_frame, with its spans."""

    index: int
    start_frame: int
    n_frames: int
    spans: tuple[Span, ...]
    prompt: str

    @property
    def start_s(self) -> Fraction:
        return frames_to_seconds(self.start_frame)

    @property
    def end_s(self) -> Fraction:
        return frames_to_seconds(self.start_frame + self.n_frames)

    @property
    def n_latent_frames(self) -> int:
        return frames_to_latent_frames(self.n_frames)

    @property
    def n_audio_tokens(self) -> int:
        return audio_tokens_for_frames(self.n_frames)
