"""Put regenerated 24 fps bucket frames back into the source video at its own frame rate and size.

Time: a source frame belongs to the window that shows the middle of its display interval, and takes
the generated frame showing at that instant. Measured from frame middles, that frame is never more
than half a 24 fps frame away, and consecutive windows share no source frame. All of it is exact
Fraction arithmetic, so an hour of 29.97 fps lands where it should. (timeline.convert_frame_index
maps frame starts instead; the middle rule is what keeps the error within half a frame.)

Space: only the footprint of the mask is warped back to source pixels; every source pixel where the
warped mask is 0 is returned unchanged.
"""

from __future__ import annotations

import math
from fractions import Fraction

import cv2
import numpy as np

from nava_dub.geometry import Box, CoverCrop
from nava_dub.timeline import NAVA_FPS

_HALF = Fraction(1, 2)


# --- time ----------------------------------------------------------------------------------------

def source_frames_for_window(window_start_frame_24: int, n_frames_24: int, src_fps: Fraction) -> range:
    """Source frame indices whose display middle, (i + 1/2) / src_fps, lies inside the window.

    The window is [start, start + n) in 24 fps frames, i.e. [start / 24, (start + n) / 24) seconds.
    """
    ratio = Fraction(src_fps) / NAVA_FPS
    first = math.ceil(window_start_frame_24 * ratio - _HALF)
    stop = math.ceil((window_start_frame_24 + n_frames_24) * ratio - _HALF)
    return range(max(first, 0), max(stop, 0))


def generated_index_for(src_frame: int, window_start_frame_24: int, n_frames_24: int,
                        src_fps: Fraction) -> int:
    """Index, within the window, of the 24 fps generated frame showing at the middle of src_frame."""
    index_24 = math.floor((src_frame + _HALF) * NAVA_FPS / Fraction(src_fps))
    index = index_24 - window_start_frame_24
    if not 0 <= index < n_frames_24:
        raise ValueError(f"source frame {src_frame} at {src_fps} fps is outside the window of "
                         f"{n_frames_24} frames from 24 fps frame {window_start_frame_24}")
    return index


# --- masks ---------------------------------------------------------------------------------------

def feathered_box_mask(width_px: int, height_px: int, box: Box, feather_px: float) -> np.ndarray:
    """float32 [height_px, width_px]: 1 deep inside `box`, ramping linearly to 0 at its edges.

    The ramp lies inside the box, so the mask is 0 everywhere outside it.
    """
    return np.outer(_ramp(height_px, box.y0, box.y1, feather_px),
                    _ramp(width_px, box.x0, box.x1, feather_px)).astype(np.float32)


def _ramp(n_px: int, lo: float, hi: float, feather_px: float) -> np.ndarray:
    centres = np.arange(n_px, dtype=np.float64) + 0.5
    distance_inside = np.minimum(centres - lo, hi - centres)
    return np.clip(distance_inside / max(feather_px, 1e-6), 0.0, 1.0)


def mask_footprint(mask: np.ndarray, geometry: CoverCrop) -> tuple[int, int, int, int] | None:
    """Integer source (x0, y0, x1, y1) outside which the warped mask is 0; None for an empty mask."""
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        return None
    nonzero = Box(cols[0], rows[0], cols[-1] + 1, rows[-1] + 1)
    # Bilinear sampling reaches one bucket pixel past the last nonzero one; the area prefilter of
    # warp_to_source (source smaller than the bucket) adds up to two more source pixels.
    prefilter_px = 2.0 * geometry.scale if geometry.scale > 1.0 else 0.0
    source_box = geometry.box_to_source(nonzero.grow(1.0 + prefilter_px))
    x0, y0, x1, y1 = source_box.pixel_bounds(geometry.src_w, geometry.src_h)
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


# --- compositing ---------------------------------------------------------------------------------

def composite_frame(source_frame: np.ndarray, generated_frame: np.ndarray, geometry: CoverCrop,
                    mask: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Blend a generated bucket frame into a source frame through a feathered mask.

    source_frame: [H, W, 3] uint8 at the source size; generated_frame: [h, w, 3] uint8 at the bucket
    size; mask: float32 [h, w] in [0, 1], bucket coordinates, 1 = take the generated picture.
    Returns [H, W, 3] uint8, a new frame unless `out` is given (it may be source_frame itself, which
    saves a copy of a 4K frame). Pixels where the warped mask is 0 are the source's exactly.
    """
    if source_frame.shape[:2] != (geometry.src_h, geometry.src_w):
        raise ValueError(f"source frame is {source_frame.shape[1]}x{source_frame.shape[0]}, "
                         f"expected {geometry.src_w}x{geometry.src_h}")
    if mask.shape != (geometry.dst_h, geometry.dst_w):
        raise ValueError(f"mask is {mask.shape}, expected {(geometry.dst_h, geometry.dst_w)}")
    if out is None:
        out = source_frame.copy()
    elif out is not source_frame:
        out[...] = source_frame
    roi = mask_footprint(mask, geometry)
    if roi is None:
        return out
    x0, y0, x1, y1 = roi
    alpha = geometry.warp_to_source(np.clip(mask, 0.0, 1.0).astype(np.float32), roi, border_value=0.0)
    generated = geometry.warp_to_source(generated_frame, roi).astype(np.float32)
    region = out[y0:y1, x0:x1].astype(np.float32)
    # region + alpha * (generated - region): where alpha is 0 this adds exactly 0, so rounding gives
    # the source's uint8 value back bit for bit. cv2 arithmetic: numpy's broadcast over the colour
    # axis costs twice as much on a 4K face box.
    alpha = cv2.merge([alpha] * region.shape[2])
    blended = cv2.add(cv2.multiply(cv2.subtract(generated, region), alpha), region)
    # Values lie in [0, 255] up to float rounding, so the abs of convertScaleAbs is a no-op; it
    # rounds to nearest and saturates in one pass.
    out[y0:y1, x0:x1] = cv2.convertScaleAbs(blended)
    return out


def composite_full_frame(source_frame: np.ndarray, generated_frame: np.ndarray,
                         geometry: CoverCrop) -> np.ndarray:
    """`--video full`: the whole generated bucket frame replaces the part of the source it shows.

    NAVA only ever saw the centre crop, so the strips of the source that the crop cut away (left and
    right of a wider source, above and below a taller one) are kept from the source frame unchanged.
    """
    ones = np.ones((geometry.dst_h, geometry.dst_w), dtype=np.float32)
    return composite_frame(source_frame, generated_frame, geometry, ones)

