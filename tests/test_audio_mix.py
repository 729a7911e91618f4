"""Sound side: resampling, channel layouts, bit-exact splicing, BS.1770 loudness and the limiter."""

import numpy as np
import pytest

from nava_dub.audio_mix import (
    PEAK_CEILING,
    channel_layout,
    limit_peaks,
    loudness_lufs,
    match_loudness,
    resample,
    speech_regions,
    splice,
    to_layout,
)
from nava_dub.errors import MediaError
from nava_dub.timeline import Span


def _tone(freq_hz, amplitude, n_samples, sample_rate_hz, n_channels=1):
    t = np.arange(n_samples) / sample_rate_hz
    return np.tile(amplitude * np.sin(2 * np.pi * freq_hz * t), (n_channels, 1)).astype(np.float32)


def _noise(n_channels, n_samples, seed):
    return (0.3 * np.random.default_rng(seed).standard_normal((n_channels, n_samples))).astype(np.float32)


# --- resampling and layouts ----------------------------------------------------------------------

def test_resample_16k_to_48k_keeps_duration_and_pitch():
    tone = _tone(440, 0.5, 16_000 * 3, 16_000, n_channels=2)
    up = resample(tone, 16_000, 48_000)
    assert up.shape == (2, 48_000 * 3) and up.dtype == np.float32
    spectrum = np.abs(np.fft.rfft(up[0]))
    assert np.argmax(spectrum) / 3 == pytest.approx(440, abs=0.5)     # bin spacing 1/3 Hz
    assert np.abs(up[:, 1000:-1000]).max() == pytest.approx(0.5, abs=0.01)
    assert resample(up, 48_000, 16_000).shape == tone.shape
    assert resample(np.zeros((1, 44_100), np.float32), 44_100, 48_000).shape == (1, 48_000)


@pytest.mark.parametrize("name,n_channels,dialogue", [
    ("mono", 1, (0,)), ("stereo", 2, (0, 1)), ("5.1", 6, (2,)), ("5.1(side)", 6, (2,)), ("7.1", 8, (2,)),
    ("quad", 4, (0, 1)), ("2.1", 3, (0, 1)), ("", 2, (0, 1)), ("FL+FR+FC", 3, (2,)),
])
def test_channel_layouts(name, n_channels, dialogue):
    layout = channel_layout(name, n_channels)
    assert layout.n_channels == n_channels and layout.dialogue_channels == dialogue


def test_unknown_or_inconsistent_layouts_are_media_errors():
    with pytest.raises(MediaError, match="22.2"):
        channel_layout("22.2", 24)
    with pytest.raises(MediaError, match="6 channels"):
        channel_layout("5.1", 2)


def test_surround_only_changes_the_centre_channel():
    source = _noise(6, 4_800, seed=1)
    generated = _noise(2, 4_800, seed=2)
    layout = channel_layout("5.1")
    mapped = to_layout(generated, layout, source)
    assert np.allclose(mapped[2], generated.mean(axis=0))
    out = splice(source, mapped, [(1_000, 3_000)], 96, channels=layout.dialogue_channels)
    untouched = [0, 1, 3, 4, 5]
    assert np.array_equal(out[untouched], source[untouched])
    assert np.array_equal(out[2, 1_048:2_952], mapped[2, 1_048:2_952])


def test_mono_and_stereo_mapping():
    generated = _noise(2, 100, seed=3)
    assert np.allclose(to_layout(generated, channel_layout("mono"), np.zeros((1, 100), np.float32)),
                       generated.mean(axis=0, keepdims=True))
    assert np.array_equal(to_layout(generated, channel_layout("stereo"), np.zeros((2, 100), np.float32)),
                          generated)


# --- regions and splicing ------------------------------------------------------------------------

def test_speech_regions_add_margins_and_merge_touching_spans():
    spans = [Span(2.3, 3.0, "b"), Span(1.0, 2.0, "a"), Span(5.0, 6.0, "c"), Span(0.1, 0.3, "d")]
    assert speech_regions(spans, 16_000, 0.2) == [(0, 8_000), (12_800, 51_200), (76_800, 99_200)]
    assert speech_regions(spans, 16_000, 0.2, n_samples=90_000)[-1] == (76_800, 90_000)
    # gaps wider than two margins stay apart
    assert len(speech_regions(spans, 16_000, 0.1)) == 4


@pytest.mark.parametrize("crossfade_samples", [0, 1, 7, 480])
def test_splice_keeps_everything_outside_bit_exact(crossfade_samples):
    source, generated = _noise(2, 48_000, seed=4), _noise(2, 48_000, seed=5)
    regions = [(10_000, 20_000), (20_300, 21_000), (40_000, 48_000)]
    out = splice(source, generated, regions, crossfade_samples)
    lead, tail = crossfade_samples // 2, crossfade_samples - crossfade_samples // 2
    changed = np.zeros(48_000, bool)
    for a, b in regions:
        changed[max(a - lead, 0):b + tail] = True
    assert np.array_equal(out[:, ~changed], source[:, ~changed])
    assert np.array_equal(out[:, 10_000 + tail:20_000 - lead], generated[:, 10_000 + tail:20_000 - lead])
    assert np.array_equal(out[:, 40_000 + tail:], generated[:, 40_000 + tail:])


def test_crossfades_are_continuous_and_a_hard_cut_is_not():
    source = np.full((1, 10_000), 0.5, np.float32)
    generated = np.full((1, 10_000), -0.5, np.float32)
    faded = splice(source, generated, [(3_000, 7_000)], 480)
    cut = splice(source, generated, [(3_000, 7_000)], 0)
    assert np.abs(np.diff(cut[0])).max() == pytest.approx(1.0)
    assert np.abs(np.diff(faded[0])).max() < 4 / 480
    # the fade is centred on the edge: half way through it, at sample 3000, source and generated meet
    assert abs(faded[0, 2_999] + faded[0, 3_000]) < 1e-2 * 0.5 + 1e-6


def test_equal_power_gains_sum_to_unit_power():
    ones, zeros = np.ones((1, 2_000), np.float32), np.zeros((1, 2_000), np.float32)
    source_gain = splice(ones, zeros, [(1_000, 2_000)], 200)[0, 900:1_100]
    generated_gain = splice(zeros, ones, [(1_000, 2_000)], 200)[0, 900:1_100]
    assert np.allclose(source_gain**2 + generated_gain**2, 1.0, atol=1e-6)
    linear = splice(ones, zeros, [(1_000, 2_000)], 200, curve="linear")[0, 900:1_100]
    assert np.allclose(linear + splice(zeros, ones, [(1_000, 2_000)], 200, curve="linear")[0, 900:1_100], 1)


# --- loudness ------------------------------------------------------------------------------------

@pytest.mark.parametrize("sample_rate_hz", [48_000, 16_000])
def test_full_scale_997_hz_sine_reads_minus_3_01_lkfs(sample_rate_hz):
    # BS.1770-4 §2.1: a 0 dB FS 997 Hz sine in one front channel measures -3.01 LKFS
    assert loudness_lufs(_tone(997, 1.0, sample_rate_hz * 2, sample_rate_hz), sample_rate_hz) \
        == pytest.approx(-3.01, abs=0.05)


def test_k_weighting_lifts_highs_and_the_gate_ignores_silence():
    low = loudness_lufs(_tone(1_000, 0.1, 96_000, 48_000), 48_000)
    high = loudness_lufs(_tone(10_000, 0.1, 96_000, 48_000), 48_000)
    assert 3.0 < high - low < 4.5                    # the +4 dB head shelf
    # half silence would read 3 dB lower ungated; only the blocks straddling the edge still count
    with_silence = np.concatenate([_tone(1_000, 0.1, 96_000, 48_000), np.zeros((1, 96_000), np.float32)], 1)
    assert loudness_lufs(with_silence, 48_000) == pytest.approx(low, abs=0.5)
    assert loudness_lufs(np.zeros((2, 16_000), np.float32), 16_000) == -np.inf


def test_match_loudness_brings_a_quiet_tone_to_the_source_level():
    rate, n = 16_000, 16_000 * 4
    reference = _tone(300, 0.25, n, rate, n_channels=2)            # the source's dialogue
    generated = _tone(1_000, 10 ** (-30 / 20), n, rate, n_channels=2)
    region = (rate, 3 * rate)
    result = match_loudness(generated, reference, region, rate)
    assert result.gain_db > 10
    assert loudness_lufs(result.waveform[:, region[0]:region[1]], rate) == pytest.approx(
        loudness_lufs(reference[:, region[0]:region[1]], rate), abs=1.0)
    assert not result.limited and np.abs(result.waveform).max() <= PEAK_CEILING


def test_match_loudness_never_clips():
    rate, n = 16_000, 16_000 * 2
    reference = _tone(200, 0.9, n, rate, n_channels=2)
    generated = _tone(1_000, 0.05, n, rate, n_channels=2)
    generated[:, 10_000:10_020] = 0.8                                 # a click, 24 dB over the speech
    result = match_loudness(generated, reference, (0, n), rate)
    assert result.limited and np.abs(result.waveform).max() <= PEAK_CEILING
    # away from the click the tone keeps the matched level
    assert np.abs(result.waveform[0, :8_000]).max() == pytest.approx(0.05 * 10 ** (result.gain_db / 20), rel=1e-3)


def test_limiter_gain_is_smooth():
    rate = 16_000
    loud = _tone(440, 2.0, rate, rate)
    loud[:, : rate // 2] *= 0.1                                        # quiet first half, then 6 dB too hot
    limited, was_limited = limit_peaks(loud, rate)
    assert was_limited and np.abs(limited).max() <= PEAK_CEILING
    assert np.array_equal(limited[:, :7_000], loud[:, :7_000])        # far from the hot part: untouched
    # the gain ramps over ~20 ms before the hot part instead of jumping at its first sample
    around = slice(rate // 2 - 600, rate // 2 + 200)
    measurable = np.flatnonzero(np.abs(loud[0, around]) > 0.05)
    gain = limited[0, around][measurable] / loud[0, around][measurable]
    assert gain.max() == pytest.approx(1.0) and gain.min() == pytest.approx(PEAK_CEILING / 2, rel=1e-3)
    assert np.all(np.abs(np.diff(gain)) <= 0.01 * np.diff(measurable))
