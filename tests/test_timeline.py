from fractions import Fraction

import pytest

from nava_dub import timeline as tl


@pytest.mark.parametrize("n_latent_frames, n_frames, seconds, n_audio_tokens", [
    (37, 145, Fraction(145, 24), 152),   # NAVA's default clip: 6.04 s
    (61, 241, Fraction(241, 24), 252),   # the recommended maximum: 10.04 s
    (7, 25, Fraction(25, 24), 27),
    (13, 49, Fraction(49, 24), 52),
])
def test_nava_numbers(n_latent_frames, n_frames, seconds, n_audio_tokens):
    assert tl.latent_frames_to_frames(n_latent_frames) == n_frames
    assert tl.frames_to_latent_frames(n_frames) == n_latent_frames
    assert tl.frames_to_seconds(n_frames) == seconds
    assert round(float(seconds), 2) == round(n_frames / 24, 2)
    assert tl.audio_tokens_for_frames(n_frames) == n_audio_tokens
    assert tl.audio_tokens_for_latent_frames(n_latent_frames) == n_audio_tokens


def test_max_frames_is_ten_seconds():
    assert tl.MAX_FRAMES == 241
    assert round(float(tl.frames_to_seconds(tl.MAX_FRAMES)), 2) == 10.04


def test_frames_must_be_4k_plus_1():
    with pytest.raises(ValueError, match="4k\\+1"):
        tl.frames_to_latent_frames(144)
    with pytest.raises(ValueError):
        tl.latent_frames_to_frames(0)


@pytest.mark.parametrize("n, up, down", [(1, 1, 1), (2, 5, 1), (5, 5, 5), (6, 9, 5), (144, 145, 141), (145, 145, 145)])
def test_snapping(n, up, down):
    assert tl.snap_frames_up(n) == up
    assert tl.snap_frames_down(n) == down
    assert (up - 1) % 4 == 0 and (down - 1) % 4 == 0


def test_ntsc_rates_are_exact():
    fps = Fraction(30000, 1001)
    # one hour of 29.97 fps is 107892.1 frames: floor, and the frame at 1001 s is exactly 30000
    assert tl.seconds_to_frames_floor(3600, fps) == 107892
    assert tl.seconds_to_frames_floor(1001, fps) == 30000
    assert tl.frames_to_seconds(30000, fps) == 1001
    assert tl.convert_frame_index(30000, fps, tl.NAVA_FPS) == 24024


def test_samples_round_trip():
    assert tl.seconds_to_samples(Fraction(145, 24), 16000) == 96667   # 96666.67 rounds to nearest
    assert tl.seconds_to_samples(2.5, 48000) == 120000
    assert tl.samples_to_seconds(120000, 48000) == Fraction(5, 2)
    assert tl.seconds_to_audio_tokens_floor(Fraction(145, 24)) == 151


def test_window_units():
    w = tl.Window(index=0, start_frame=48, n_frames=145, spans=(), prompt="")
    assert w.start_s == 2 and w.end_s == Fraction(48 + 145, 24)
    assert (w.n_latent_frames, w.n_audio_tokens) == (37, 152)
