"""Box arithmetic, and CoverCrop: the cover scale, the centre crop and the way back, on NAVA's bucket sizes."""

import numpy as np
import pytest

from nava_dub.geometry import Box, CoverCrop

SOURCES = [(1920, 1080), (1080, 1920), (1000, 1000), (3840, 2160), (640, 360), (720, 1280)]
BUCKETS = [(704, 1280), (1280, 704), (960, 960)]


def test_box_helpers():
    """The box arithmetic face tracking relies on, in x, y, w, h terms as the detector gives boxes."""
    a, b = Box.from_xywh(0, 0, 10, 10), Box.from_xywh(5, 5, 10, 10)
    assert a.intersection(b) == Box.from_xywh(5, 5, 5, 5)
    assert a.iou(b) == pytest.approx(25 / 175)
    assert a.intersection(Box.from_xywh(10, 0, 5, 5)) is None and a.iou(Box.from_xywh(10, 0, 5, 5)) == 0.0
    assert a.grow(factor=2.0) == Box.from_xywh(-5, -5, 20, 20)
    assert a.grow(3) == Box.from_xywh(-3, -3, 16, 16)
    assert a.pad(left=1, bottom=4) == Box.from_xywh(-1, 0, 11, 14)
    assert a.rescale(2, 0.5, 3, -1) == Box.from_xywh(3, -1, 20, 5)
    assert Box.from_xywh(-4, 6, 10, 10).clip(8, 12) == Box.from_xywh(0, 6, 6, 6)
    assert Box.from_xywh(20, 20, 5, 5).clip(8, 8).is_empty
    assert a.centre == (5, 5) and a.area == 100


@pytest.mark.parametrize("src", SOURCES)
@pytest.mark.parametrize("dst", BUCKETS)
def test_cover_size_covers_the_bucket_and_crop_is_centred(src, dst):
    g = CoverCrop.for_sizes(*src, *dst)
    assert g.scaled_w >= g.dst_w and g.scaled_h >= g.dst_h
    # one side lands exactly on the bucket, the other keeps the aspect ratio within a pixel
    assert g.scaled_w == g.dst_w or g.scaled_h == g.dst_h
    assert abs(g.scaled_w / g.scaled_h - src[0] / src[1]) * g.scaled_h < 1.0
    assert abs((g.scaled_w - g.dst_w) - 2 * g.crop_x) <= 1
    assert abs((g.scaled_h - g.dst_h) - 2 * g.crop_y) <= 1


@pytest.mark.parametrize("src", SOURCES)
@pytest.mark.parametrize("dst", BUCKETS)
def test_points_and_boxes_round_trip(src, dst):
    g = CoverCrop.for_sizes(*src, *dst)
    rng = np.random.default_rng(0)
    for x, y in rng.uniform(0, 1, (20, 2)) * dst:
        sx, sy = g.point_to_source(x, y)
        assert 0 <= sx <= g.src_w and 0 <= sy <= g.src_h    # the bucket shows a part of the source
        assert np.allclose(g.point_to_target(sx, sy), (x, y), atol=1e-9)
    box = Box(100.5, 50.25, 300.0, 400.75)
    back = g.box_to_target(g.box_to_source(box))
    assert np.allclose([back.x0, back.y0, back.x1, back.y1], [box.x0, box.y0, box.x1, box.y1])
    crop = g.crop_in_source
    assert np.allclose([crop.width * g.scale_x, crop.height * g.scale_y], dst)
    assert crop.x0 >= 0 and crop.y0 >= 0 and crop.x1 <= g.src_w + 1e-9 and crop.y1 <= g.src_h + 1e-9


def _marker_frame(width, height, box, colour):
    frame = np.full((height, width, 3), 40, np.uint8)
    x0, y0, x1, y1 = (round(v) for v in (box.x0, box.y0, box.x1, box.y1))
    frame[y0:y1, x0:x1] = colour
    return frame


@pytest.mark.parametrize("src,dst", [((1920, 1080), (1280, 704)), ((1080, 1920), (704, 1280)),
                                     ((1000, 1000), (960, 960)), ((640, 360), (1280, 704)),
                                     ((1920, 1080), (960, 960))])
def test_to_target_puts_a_source_square_where_the_mapping_says(src, dst):
    g = CoverCrop.for_sizes(*src, *dst)
    centre_x, centre_y = g.crop_in_source.centre
    box = Box.from_xywh(centre_x + src[0] * 0.05, centre_y - src[1] * 0.1, src[0] * 0.08, src[0] * 0.08)
    target = g.to_target(_marker_frame(*src, box, (250, 10, 10)))
    assert target.shape == (dst[1], dst[0], 3)
    mapped = g.box_to_target(box)
    cx, cy = (int(v) for v in mapped.centre)
    assert tuple(target[cy, cx]) == pytest.approx((250, 10, 10), abs=3)
    red = np.argwhere(target[..., 0] > 145)
    assert np.allclose(red.min(0), [mapped.y0, mapped.x0], atol=1.5)
    assert np.allclose(red.max(0) + 1, [mapped.y1, mapped.x1], atol=1.5)


@pytest.mark.parametrize("src,dst", [((1920, 1080), (1280, 704)), ((640, 360), (1280, 704)),
                                     ((320, 320), (960, 960)), ((1080, 1920), (704, 1280))])
def test_warp_to_source_undoes_to_target_inside_the_crop(src, dst):
    g = CoverCrop.for_sizes(*src, *dst)
    # a smooth picture survives the round trip almost exactly, sharp or aliased ones would not
    yy, xx = np.mgrid[0:src[1], 0:src[0]].astype(np.float32)
    frame = np.stack([128 + 100 * np.sin(xx / 37.0), 128 + 100 * np.cos(yy / 23.0), np.full_like(xx, 90)],
                     axis=-1).astype(np.uint8)
    roi = g.crop_in_source.grow(-2).pixel_bounds(g.src_w, g.src_h)
    back = g.warp_to_source(g.to_target(frame), roi)
    x0, y0, x1, y1 = roi
    error = np.abs(back.astype(int) - frame[y0:y1, x0:x1].astype(int))
    assert back.shape == (y1 - y0, x1 - x0, 3)
    assert error.mean() < 0.3 and error.max() <= 2


def test_sizes_are_checked():
    g = CoverCrop.for_sizes(1920, 1080, 1280, 704)
    with pytest.raises(ValueError, match="1280x720"):
        g.to_target(np.zeros((720, 1280, 3), np.uint8))
    with pytest.raises(ValueError):
        CoverCrop.for_sizes(0, 1080, 1280, 704)
