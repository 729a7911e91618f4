import numpy as np
import pytest

from nava_dub.masks import active_frames, audio_keep_mask, video_keep_mask
from nava_dub.timeline import Span, Window


def _window(spans, start_frame=48, n_frames=145):
    return Window(0, start_frame, n_frames, tuple(spans), "")


def test_audio_mask_regenerates_only_the_spans():
    window = _window([Span(3.0, 4.0, "a"), Span(6.0, 7.0, "b")])   # window starts at 2.0 s
    keep = audio_keep_mask(window, "speech", margin_s=0.0)
    assert keep.shape == (152,)
    regenerated = np.flatnonzero(~keep)
    assert list(regenerated) == list(range(25, 50)) + list(range(100, 125))   # 25 tokens per second
    with_margin = audio_keep_mask(window, "speech", margin_s=0.2)
    assert (~with_margin).sum() == (~keep).sum() + 4 * 5
    assert not audio_keep_mask(window, "full", 0.1).any()


def test_audio_mask_clips_spans_to_the_window():
    window = _window([Span(1.0, 2.5, "starts before the window")])
    keep = audio_keep_mask(window, "speech", margin_s=0.0)
    assert list(np.flatnonzero(~keep)) == list(range(0, 13))


def test_active_frames_follow_the_spans():
    window = _window([Span(3.0, 4.0, "a")])                       # frames 24..47 of the window
    active = active_frames(window, margin_s=0.0)
    assert list(np.flatnonzero(active)) == list(range(24, 48))
    assert active_frames(window, margin_s=0.5).sum() == 24 + 24


def test_video_modes():
    assert video_keep_mask("keep", 3, 2, 4).all()
    full = video_keep_mask("full", 3, 2, 4)
    assert full[0].all() and not full[1:].any()
    regenerated = np.zeros((3, 2, 4), dtype=bool)
    regenerated[1:, 0, 1:3] = True
    face = video_keep_mask("face", 3, 2, 4, regenerated)
    assert (face == ~regenerated).all()
    with pytest.raises(ValueError, match="face mode"):
        video_keep_mask("face", 3, 2, 4)
