"""Compositing: exact source outside the mask, generated content inside, frames mapped in time."""

from fractions import Fraction

import numpy as np
import pytest

from nava_dub.composite import (
    composite_frame,
    composite_full_frame,
    feathered_box_mask,
    generated_index_for,
    mask_footprint,
    source_frames_for_window,
)
from nava_dub.geometry import Box, CoverCrop

FPS = [Fraction(25), Fraction(30000, 1001), Fraction(30), Fraction(60), Fraction(24)]


def _noise_frame(width, height, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --- time ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fps", FPS)
@pytest.mark.parametrize("start_frame_24", [0, 137, 24 * 3600 - 145])   # the last case is an hour in
def test_each_source_frame_maps_once_within_half_a_frame(fps, start_frame_24):
    windows = [(start_frame_24, 145), (start_frame_24 + 145, 25), (start_frame_24 + 170, 241)]
    seen = []
    for start, n_frames in windows:
        frames = source_frames_for_window(start, n_frames, fps)
        for i in frames:
            k = generated_index_for(i, start, n_frames, fps)
            middle_src = (i + Fraction(1, 2)) / fps
            middle_gen = (start + k + Fraction(1, 2)) / 24
            assert abs(middle_src - middle_gen) <= Fraction(1, 48)
            assert start / Fraction(24) <= middle_src < (start + n_frames) / Fraction(24)
        seen.extend(frames)
    # contiguous windows: every source frame of their span appears exactly once
    assert seen == list(range(seen[0], seen[-1] + 1))
    total_s = Fraction(145 + 25 + 241, 24)
    assert abs(len(seen) - total_s * fps) <= 1
    # the frames just outside the span belong elsewhere
    for outside in (seen[0] - 1, seen[-1] + 1):
        with pytest.raises(ValueError):
            generated_index_for(outside, windows[0][0], 145 + 25 + 241, fps)


def test_an_hour_of_ntsc_does_not_drift():
    fps = Fraction(30000, 1001)
    start = 24 * 3600                       # one hour in NAVA frames
    first = source_frames_for_window(start, 145, fps)[0]
    # 3600 s at 29.97 fps is 107892.1 frames: the window starts at the frame showing at 3600 s
    assert first == 107892
    assert generated_index_for(first, start, 145, fps) == 0


def test_window_before_time_zero_is_clipped():
    assert source_frames_for_window(0, 1, Fraction(60)).start == 0


# --- space ---------------------------------------------------------------------------------------

CASES = [((1920, 1080), (1280, 704)), ((1080, 1920), (704, 1280)), ((1000, 1000), (960, 960)),
         ((640, 360), (1280, 704)), ((3840, 2160), (1280, 704))]


@pytest.mark.parametrize("src,dst", CASES)
def test_composite_changes_only_the_mask_footprint(src, dst):
    g = CoverCrop.for_sizes(*src, *dst)
    source = _noise_frame(*src)
    generated = np.zeros((dst[1], dst[0], 3), np.uint8)
    generated[...] = (0, 200, 50)
    face = Box(dst[0] * 0.4, dst[1] * 0.3, dst[0] * 0.6, dst[1] * 0.55)
    mask = feathered_box_mask(dst[0], dst[1], face, feather_px=12)

    out = composite_frame(source, generated, g, mask)

    x0, y0, x1, y1 = mask_footprint(mask, g)
    mapped = g.box_to_source(face)
    # the footprint is the face box mapped back, plus at most the interpolation margin
    slack = 1 + max(src[0] / dst[0], 1) * 1.5 + 1
    assert abs(x0 - mapped.x0) <= slack and abs(x1 - mapped.x1) <= slack
    assert abs(y0 - mapped.y0) <= slack and abs(y1 - mapped.y1) <= slack
    changed = (out != source).any(axis=-1)
    assert changed.any()
    assert not (changed[:y0].any() or changed[y1:].any() or changed[:, :x0].any() or changed[:, x1:].any())
    cx, cy = (int(v) for v in mapped.centre)
    assert tuple(out[cy, cx]) == (0, 200, 50)
    # the feather blends: half way through the ramp the picture is neither source nor generated
    assert not np.array_equal(out[y0:y1, x0:x1], source[y0:y1, x0:x1])


def test_mask_zero_pixels_are_the_source_even_inside_the_footprint():
    g = CoverCrop.for_sizes(1920, 1080, 1280, 704)
    source = _noise_frame(1920, 1080, seed=1)
    generated = _noise_frame(1280, 704, seed=2)
    mask = np.zeros((704, 1280), np.float32)
    mask[100:110, 200:210] = 1.0
    mask[400:420, 900:905] = 1.0            # two blobs: the footprint spans the empty middle
    out = composite_frame(source, generated, g, mask)
    alpha = g.warp_to_source(mask, mask_footprint(mask, g), border_value=0.0)
    x0, y0, x1, y1 = mask_footprint(mask, g)
    region_out, region_src = out[y0:y1, x0:x1], source[y0:y1, x0:x1]
    assert np.array_equal(region_out[alpha == 0], region_src[alpha == 0])
    assert (alpha == 0).mean() > 0.9


@pytest.mark.parametrize("src,dst", CASES + [((320, 320), (960, 960)), ((500, 300), (1280, 704))])
def test_footprint_holds_all_of_the_warped_mask(src, dst):
    g = CoverCrop.for_sizes(*src, *dst)
    mask = np.zeros((dst[1], dst[0]), np.float32)
    mask[dst[1] // 3: dst[1] // 2, dst[0] // 4: dst[0] // 2] = 1.0          # hard edges: the worst case
    x0, y0, x1, y1 = mask_footprint(mask, g)
    alpha = g.warp_to_source(mask, (0, 0, *src), border_value=0.0)     # the whole frame, for reference
    assert alpha[y0:y1, x0:x1].sum() == pytest.approx(alpha.sum(), rel=1e-6)
    assert alpha[y0, x0:x1].max() == 0 and alpha[y1 - 1, x0:x1].max() == 0   # not cut at its edge


def test_empty_mask_returns_the_source():
    g = CoverCrop.for_sizes(1920, 1080, 1280, 704)
    source = _noise_frame(1920, 1080)
    out = composite_frame(source, _noise_frame(1280, 704, 3), g, np.zeros((704, 1280), np.float32))
    assert np.array_equal(out, source) and out is not source


@pytest.mark.parametrize("src,dst", [((1920, 1080), (960, 960)), ((1080, 1920), (1280, 704))])
def test_full_frame_keeps_the_cropped_away_strips(src, dst):
    g = CoverCrop.for_sizes(*src, *dst)
    source = _noise_frame(*src)
    generated = np.full((dst[1], dst[0], 3), 77, np.uint8)
    out = composite_full_frame(source, generated, g)
    x0, y0, x1, y1 = g.crop_in_source.pixel_bounds(*src)
    inner = g.crop_in_source.grow(-1).pixel_bounds(*src)
    assert np.all(out[inner[1]:inner[3], inner[0]:inner[2]] == 77)
    assert np.array_equal(out[:, : max(x0 - 1, 0)], source[:, : max(x0 - 1, 0)])
    assert np.array_equal(out[:, x1 + 1:], source[:, x1 + 1:])
    assert np.array_equal(out[: max(y0 - 1, 0)], source[: max(y0 - 1, 0)])
    assert np.array_equal(out[y1 + 1:], source[y1 + 1:])
    assert (out != source).any(axis=-1).mean() > 0.25     # the crop really replaced something


def test_feathered_mask_is_zero_outside_its_box_and_one_deep_inside():
    mask = feathered_box_mask(200, 100, Box(50, 20, 150, 80), feather_px=10)
    assert mask.dtype == np.float32 and mask.shape == (100, 200)
    assert mask[:20].max() == 0 and mask[:, 150:].max() == 0
    assert np.all(mask[30:70, 60:140] == 1.0)
    assert 0 < mask[50, 52] < 1
    assert np.all(np.diff(mask[50, 50:60]) > 0)
