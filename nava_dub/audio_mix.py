"""Put NAVA's regenerated sound back into the source soundtrack: rate, channels, splice, loudness.

Waveforms are float32 [C, S] (channels, samples). Everything outside the spliced regions and their
crossfades is a bit-exact copy of the source, so a lossless source track stays identical there.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

import numpy as np
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import lfilter, resample_poly

from nava_dub.errors import MediaError
from nava_dub.timeline import Span, seconds_to_samples

PEAK_CEILING = 0.99          # NAVA's own clamp (nava_pipeline.md §3); the limiter keeps every sample under it
MAX_GAIN_DB = 40.0           # never lift a near-silent generation (e.g. tiny random weights) by more


# --- sample rate ---------------------------------------------------------------------------------

def resample(waveform: np.ndarray, from_hz: int, to_hz: int) -> np.ndarray:
    """[C, S] at from_hz -> [C, ceil(S * to_hz / from_hz)] at to_hz (polyphase, exact ratio)."""
    if from_hz == to_hz:
        return waveform.astype(np.float32, copy=True)
    ratio = Fraction(to_hz, from_hz)
    out = resample_poly(waveform, ratio.numerator, ratio.denominator, axis=-1)
    return out.astype(np.float32)


# --- channel layouts -----------------------------------------------------------------------------

# ffmpeg's standard layouts (`ffmpeg -layouts`), the channel order of its decoded audio.
_LAYOUTS = {
    "mono": "FC", "stereo": "FL+FR", "2.1": "FL+FR+LFE", "3.0": "FL+FR+FC", "3.0(back)": "FL+FR+BC",
    "4.0": "FL+FR+FC+BC", "quad": "FL+FR+BL+BR", "quad(side)": "FL+FR+SL+SR", "3.1": "FL+FR+FC+LFE",
    "5.0": "FL+FR+FC+BL+BR", "5.0(side)": "FL+FR+FC+SL+SR", "4.1": "FL+FR+FC+LFE+BC",
    "5.1": "FL+FR+FC+LFE+BL+BR", "5.1(side)": "FL+FR+FC+LFE+SL+SR", "6.0": "FL+FR+FC+BC+SL+SR",
    "6.1": "FL+FR+FC+LFE+BC+SL+SR", "7.0": "FL+FR+FC+BL+BR+SL+SR", "7.1": "FL+FR+FC+LFE+BL+BR+SL+SR",
    "7.1(wide)": "FL+FR+FC+LFE+BL+BR+FLC+FRC", "7.1(wide-side)": "FL+FR+FC+LFE+FLC+FRC+SL+SR",
    "downmix": "DL+DR",
}


@dataclass(frozen=True)
class ChannelLayout:
    """A source channel layout and the channels NAVA's dialogue goes to."""

    name: str
    channel_names: tuple[str, ...]
    dialogue_channels: tuple[int, ...]

    @property
    def n_channels(self) -> int:
        return len(self.channel_names)


def channel_layout(name: str, n_channels: int | None = None) -> ChannelLayout:
    """Parse an ffprobe channel_layout ("mono", "stereo", "5.1(side)", "FL+FR+FC", ...).

    An empty or unknown name with n_channels 1 or 2 is read as mono or stereo (ffprobe leaves
    channel_layout empty for some PCM files).
    """
    key = name.strip().lower()
    decomposition = _LAYOUTS.get(key) or (name.strip().upper() if "+" in name else None)
    if decomposition is None and n_channels in (1, 2):
        decomposition = _LAYOUTS["mono" if n_channels == 1 else "stereo"]
    if decomposition is None:
        raise MediaError(f"audio channel layout {name!r} ({n_channels} channels) is not one nava-dub knows",
                         "convert the audio to stereo or 5.1 first, e.g. with ffmpeg -ac 2")
    names = tuple(decomposition.split("+"))
    if n_channels is not None and n_channels != len(names):
        raise MediaError(f"audio layout {name!r} has {len(names)} channels but the stream has {n_channels}",
                         "re-encode the audio so its layout matches its channel count")
    return ChannelLayout(key or decomposition.lower(), names, _dialogue_channels(names))


def _dialogue_channels(names: tuple[str, ...]) -> tuple[int, ...]:
    if len(names) <= 2:
        return tuple(range(len(names)))
    if "FC" in names:                          # film convention: dialogue lives in the centre
        return (names.index("FC"),)
    fronts = [names.index(n) for n in ("FL", "FR") if n in names]
    return tuple(fronts) or (0,)


def to_layout(generated: np.ndarray, layout: ChannelLayout, source: np.ndarray) -> np.ndarray:
    """NAVA's stereo [2, S] in the source's layout [C, S]; non-dialogue channels are the source's.

    mono: the mean of left and right; stereo: as is; a layout with a centre: the mean in the
    centre channel only; other layouts (2.1, quad): left and right to the front pair.
    """
    if generated.shape[0] != 2 or source.shape != (layout.n_channels, generated.shape[1]):
        raise ValueError(f"expected stereo [2, S] and source [{layout.n_channels}, S], "
                         f"got {generated.shape} and {source.shape}")
    out = source.astype(np.float32, copy=True)
    if len(layout.dialogue_channels) == 2:
        out[list(layout.dialogue_channels)] = generated
    else:
        out[layout.dialogue_channels[0]] = generated.mean(axis=0)
    return out


# --- regions and splicing ------------------------------------------------------------------------

def speech_regions(spans: Iterable[Span], sample_rate_hz: int, margin_s: float,
                   n_samples: int | None = None) -> list[tuple[int, int]]:
    """Sample ranges [start, end) of the spans widened by margin_s, sorted, merged when they touch."""
    regions: list[tuple[int, int]] = []
    for span in sorted(spans, key=lambda s: s.start_s):
        start = max(0, seconds_to_samples(Fraction(span.start_s) - Fraction(margin_s), sample_rate_hz))
        end = seconds_to_samples(Fraction(span.end_s) + Fraction(margin_s), sample_rate_hz)
        if n_samples is not None:
            end = min(end, n_samples)
        if end <= start:
            continue
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(regions[-1][1], end))
        else:
            regions.append((start, end))
    return regions


def splice(source: np.ndarray, generated: np.ndarray, regions: Sequence[tuple[int, int]],
           crossfade_samples: int, channels: Sequence[int] | None = None,
           curve: Literal["equal_power", "linear"] = "equal_power") -> np.ndarray:
    """source [C, S] with `generated` [C, S] inside each region, crossfaded at the region edges.

    Each crossfade is crossfade_samples long and centred on its edge; inside a region (past its fade)
    the samples are generated's exactly, everywhere else source's exactly. Equal-power suits joining
    two different recordings (the usual case here); linear suits correlated ones. channels: the rows
    to touch (None = all).
    """
    if source.shape != generated.shape or source.ndim != 2:
        raise ValueError(f"source {source.shape} and generated {generated.shape} must both be [C, S]")
    out = source.copy()
    rows = list(range(source.shape[0]) if channels is None else channels)
    n_samples = source.shape[1]
    for lo, weight in _weights(regions, crossfade_samples, n_samples):
        hi = lo + weight.size
        src, gen = source[rows, lo:hi], generated[rows, lo:hi]
        if curve == "equal_power":
            mixed = src * np.cos(weight * np.pi / 2) + gen * np.sin(weight * np.pi / 2)
        else:
            mixed = src * (1.0 - weight) + gen * weight
        mixed = np.where(weight >= 1.0, gen, mixed.astype(source.dtype))
        out[rows, lo:hi] = mixed
    return out


def _weights(regions: Sequence[tuple[int, int]], crossfade_samples: int,
             n_samples: int) -> list[tuple[int, np.ndarray]]:
    """(first sample, weight of generated) for each group of regions whose fades meet; weights in (0, 1]."""
    lead = crossfade_samples // 2          # fade samples before each edge; the rest come after it
    spans = sorted((a - lead, b - lead + crossfade_samples, a, b) for a, b in regions if b > a)
    groups: list[list[tuple[int, int, int, int]]] = []
    for span in spans:
        if groups and span[0] < groups[-1][-1][1]:
            groups[-1].append(span)
        else:
            groups.append([span])
    out = []
    for group in groups:
        lo, hi = max(group[0][0], 0), min(max(s[1] for s in group), n_samples)
        if hi <= lo:
            continue
        n = np.arange(lo, hi, dtype=np.float64)
        weight = np.zeros(hi - lo)
        for _, _, a, b in group:
            weight = np.maximum(weight, _trapezoid(n, a, b, crossfade_samples, lead, n_samples))
        out.append((lo, weight))
    return out


def _trapezoid(n: np.ndarray, start: int, end: int, crossfade_samples: int, lead: int,
               n_samples: int) -> np.ndarray:
    """1 inside [start, end), ramps centred on each edge; no ramp at the ends of the signal."""
    if crossfade_samples == 0:
        return ((n >= start) & (n < end)).astype(np.float64)
    rise = (n - (start - lead) + 0.5) / crossfade_samples if start > 0 else np.inf
    fall = ((end - lead + crossfade_samples) - n - 0.5) / crossfade_samples if end < n_samples else np.inf
    return np.clip(np.minimum(rise, fall), 0.0, 1.0)


# --- loudness ------------------------------------------------------------------------------------

# ITU-R BS.1770-4 K-weighting, Tables 1 and 2: the published biquads, defined at 48 kHz.
_K_RATE_HZ = 48_000
_SHELF_B = (1.53512485958697, -2.69169618940638, 1.19839281085285)
_SHELF_A = (1.0, -1.69065929318241, 0.73248077421585)
_HIGHPASS_B = (1.0, -2.0, 1.0)
_HIGHPASS_A = (1.0, -1.99004745483398, 0.99007225036621)


def loudness_lufs(waveform: np.ndarray, sample_rate_hz: int) -> float:
    """Gated integrated loudness of [C, S] per ITU-R BS.1770-4, every channel weighted 1 (LKFS).

    The signal is resampled to 48 kHz to use the standard's own filter coefficients. 400 ms blocks
    with 75 % overlap, absolute gate -70 LKFS, relative gate -10 LU. A region shorter than one block
    is measured as one block. Returns -inf for silence.
    """
    x = resample(np.atleast_2d(waveform), sample_rate_hz, _K_RATE_HZ).astype(np.float64)
    x = lfilter(_HIGHPASS_B, _HIGHPASS_A, lfilter(_SHELF_B, _SHELF_A, x, axis=-1), axis=-1)
    block, step = int(0.4 * _K_RATE_HZ), int(0.1 * _K_RATE_HZ)
    power = x**2
    if power.shape[1] <= block:
        z = power.mean(axis=1, keepdims=True)                          # [C, 1]
    else:
        cumulative = np.concatenate([np.zeros((power.shape[0], 1)), np.cumsum(power, axis=1)], axis=1)
        starts = np.arange(0, power.shape[1] - block + 1, step)
        z = (cumulative[:, starts + block] - cumulative[:, starts]) / block   # [C, n_blocks]
    block_power = z.sum(axis=0)
    with np.errstate(divide="ignore"):
        block_lufs = -0.691 + 10 * np.log10(block_power)
    gated = block_power[block_lufs > -70.0]
    if gated.size == 0:
        return -math.inf
    relative_gate = -0.691 + 10 * math.log10(gated.mean()) - 10.0
    gated = block_power[block_lufs > relative_gate]
    return -0.691 + 10 * math.log10(gated.mean())


@dataclass(frozen=True)
class LoudnessMatch:
    waveform: np.ndarray          # [C, S] float32, gain applied and limited
    gain_db: float                # the loudness gain (before the limiter)
    source_lufs: float
    generated_lufs: float
    limited: bool                 # whether the limiter had to pull any sample down


def match_loudness(generated: np.ndarray, reference: np.ndarray, region: tuple[int, int],
                   sample_rate_hz: int, channels: Sequence[int] | None = None) -> LoudnessMatch:
    """Scale `generated` [C, S] so its loudness in `region` equals the reference's there.

    Loudness is BS.1770-4 gated K-weighted loudness (loudness_lufs) over `channels` (None = all) of
    both signals. One gain applies to the whole generated clip (NAVA normalises each clip's peak as
    a whole), capped at +-MAX_GAIN_DB; a look-ahead limiter then keeps every sample within
    PEAK_CEILING. If either side is silent in the region the gain is 0 dB.
    """
    rows = list(range(generated.shape[0]) if channels is None else channels)
    lo, hi = region
    source_lufs = loudness_lufs(reference[rows, lo:hi], sample_rate_hz)
    generated_lufs = loudness_lufs(generated[rows, lo:hi], sample_rate_hz)
    gain_db = 0.0
    if math.isfinite(source_lufs) and math.isfinite(generated_lufs):
        gain_db = float(np.clip(source_lufs - generated_lufs, -MAX_GAIN_DB, MAX_GAIN_DB))
    scaled = generated.astype(np.float64) * 10 ** (gain_db / 20)
    limited, was_limited = limit_peaks(scaled, sample_rate_hz)
    return LoudnessMatch(limited, gain_db, source_lufs, generated_lufs, was_limited)


def limit_peaks(waveform: np.ndarray, sample_rate_hz: int, ceiling: float = PEAK_CEILING,
                release_s: float = 0.01) -> tuple[np.ndarray, bool]:
    """A smooth look-ahead peak limiter: [C, S] -> (float32 [C, S] with |x| <= ceiling, limited?).

    The gain needed at each sample is min-filtered then averaged over the same width, so the gain
    applied is never above the need of any sample it touches and changes over ~2 * release_s.
    """
    peak = np.abs(waveform).max(axis=0)
    if peak.size == 0 or peak.max() <= ceiling:
        return waveform.astype(np.float32), False
    need = np.minimum(1.0, ceiling / np.maximum(peak, 1e-12))
    width = 2 * max(1, int(release_s * sample_rate_hz)) + 1
    gain = uniform_filter1d(minimum_filter1d(need, width, mode="nearest"), width, mode="nearest")
    out = np.clip(waveform * np.minimum(gain, need), -ceiling, ceiling)   # min(): float rounding guard
    return out.astype(np.float32), True
