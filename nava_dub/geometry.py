"""Source picture <-> NAVA bucket: the "cover" scale and centre crop, and its inverse placement.

NAVA sees the source scaled so it covers the bucket (both sides at least the bucket's) and
centre-cropped to it (nava_pipeline.md §4). Coordinates here are continuous pixel coordinates:
pixel (i, j) covers [i, i+1) x [j, j+1), so a whole W x H image is the box (0, 0, W, H). In these
coordinates a resize by s per axis is exactly x -> s * x, which is the convention cv2.resize uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import cv2
import numpy as np

# Above this back-scale (bucket px per source px), bilinear sampling would skip bucket pixels and
# alias, so the region is first area-averaged down to about the source's density.
_PREFILTER_ABOVE_SCALE = 1.5


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in continuous pixel coordinates: left, top, right, bottom edges (px).

    The one box type of the package: face boxes, masks' regions and crops alike. A box whose right
    edge is not past its left (or bottom not below its top) is empty.
    """

    x0: float
    y0: float
    x1: float
    y1: float

    @classmethod
    def from_xywh(cls, x: float, y: float, width: float, height: float) -> Box:
        return cls(x, y, x + width, y + height)

    @property
    def xywh(self) -> tuple[float, float, float, float]:
        return self.x0, self.y0, self.width, self.height

    @property
    def width(self) -> float:
        return self.x1 - self.x0

    @property
    def height(self) -> float:
        return self.y1 - self.y0

    @property
    def area(self) -> float:
        return max(self.width, 0.0) * max(self.height, 0.0)

    @property
    def is_empty(self) -> bool:
        return self.width <= 0 or self.height <= 0

    @property
    def centre(self) -> tuple[float, float]:
        return (self.x0 + self.x1) / 2, (self.y0 + self.y1) / 2

    def grow(self, margin_px: float = 0.0, *, factor: float = 1.0) -> Box:
        """Scaled by `factor` about its centre, then grown by margin_px on every side (< 0 shrinks)."""
        # Written from the edges, so factor 1 moves each edge by exactly margin_px.
        dx, dy = (factor - 1) * self.width / 2 + margin_px, (factor - 1) * self.height / 2 + margin_px
        return Box(self.x0 - dx, self.y0 - dy, self.x1 + dx, self.y1 + dy)

    def pad(self, *, left: float = 0.0, top: float = 0.0, right: float = 0.0, bottom: float = 0.0) -> Box:
        """Grown by a different number of pixels on each side."""
        return Box(self.x0 - left, self.y0 - top, self.x1 + right, self.y1 + bottom)

    def rescale(self, scale_x: float, scale_y: float, shift_x: float = 0.0, shift_y: float = 0.0) -> Box:
        """Into another pixel grid: x' = x * scale_x + shift_x, and the same for y."""
        return Box(self.x0 * scale_x + shift_x, self.y0 * scale_y + shift_y,
                   self.x1 * scale_x + shift_x, self.y1 * scale_y + shift_y)

    def clip(self, width_px: int, height_px: int) -> Box:
        """This box cut to an image of width_px x height_px (may become empty)."""
        x0, y0 = min(max(self.x0, 0.0), width_px), min(max(self.y0, 0.0), height_px)
        return Box(x0, y0, max(x0, min(self.x1, width_px)), max(y0, min(self.y1, height_px)))

    def intersection(self, other: Box) -> Box | None:
        """The overlap with `other`, or None when they share no area."""
        x0, y0 = max(self.x0, other.x0), max(self.y0, other.y0)
        x1, y1 = min(self.x1, other.x1), min(self.y1, other.y1)
        return Box(x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def iou(self, other: Box) -> float:
        inter = self.intersection(other)
        if inter is None:
            return 0.0
        return inter.area / (self.area + other.area - inter.area)

    def pixel_bounds(self, width_px: int, height_px: int) -> tuple[int, int, int, int]:
        """Integer (x0, y0, x1, y1) of the pixels this box touches, inside a width_px x height_px image."""
        box = self.clip(width_px, height_px)
        return math.floor(box.x0), math.floor(box.y0), math.ceil(box.x1), math.ceil(box.y1)


@dataclass(frozen=True)
class CoverCrop:
    """How a src_w x src_h picture becomes a dst_w x dst_h bucket: scale to cover, then centre-crop.

    The source is resized to scaled_w x scaled_h (the cover size: one side equals the bucket's, the
    other is at least the bucket's), then the window at (crop_x, crop_y) of size dst_w x dst_h is kept.
    """

    src_w: int
    src_h: int
    dst_w: int
    dst_h: int
    scaled_w: int
    scaled_h: int
    crop_x: int
    crop_y: int

    @classmethod
    def for_sizes(cls, src_w: int, src_h: int, dst_w: int, dst_h: int) -> CoverCrop:
        if min(src_w, src_h, dst_w, dst_h) < 1:
            raise ValueError(f"sizes must be positive, got source {src_w}x{src_h}, target {dst_w}x{dst_h}")
        scale = max(Fraction(dst_w, src_w), Fraction(dst_h, src_h))
        # The limiting side lands exactly on the bucket; rounding the other never undershoots it.
        scaled_w = max(dst_w, round(src_w * scale))
        scaled_h = max(dst_h, round(src_h * scale))
        return cls(src_w, src_h, dst_w, dst_h, scaled_w, scaled_h,
                   (scaled_w - dst_w) // 2, (scaled_h - dst_h) // 2)

    @property
    def scale(self) -> float:
        """The cover scale: bucket pixels per source pixel (> 1 enlarges the source)."""
        return max(self.dst_w / self.src_w, self.dst_h / self.src_h)

    @property
    def scale_x(self) -> float:
        """The exact horizontal scale after rounding the cover size (what cv2.resize applies)."""
        return self.scaled_w / self.src_w

    @property
    def scale_y(self) -> float:
        return self.scaled_h / self.src_h

    # --- coordinates ---------------------------------------------------------------------------

    def point_to_target(self, x: float, y: float) -> tuple[float, float]:
        """A source point (px) -> the same point in bucket coordinates (may fall outside the crop)."""
        return x * self.scale_x - self.crop_x, y * self.scale_y - self.crop_y

    def point_to_source(self, x: float, y: float) -> tuple[float, float]:
        """A bucket point (px) -> the same point in source coordinates."""
        return (x + self.crop_x) / self.scale_x, (y + self.crop_y) / self.scale_y

    def box_to_target(self, box: Box) -> Box:
        return box.rescale(self.scale_x, self.scale_y, -self.crop_x, -self.crop_y)

    def box_to_source(self, box: Box) -> Box:
        return Box(*self.point_to_source(box.x0, box.y0), *self.point_to_source(box.x1, box.y1))

    @property
    def crop_in_source(self) -> Box:
        """The part of the source that the bucket shows."""
        return self.box_to_source(Box(0, 0, self.dst_w, self.dst_h))

    # --- pictures ------------------------------------------------------------------------------

    def to_target(self, frame: np.ndarray) -> np.ndarray:
        """[src_h, src_w, C] -> [dst_h, dst_w, C]: area filter when shrinking, Lanczos when enlarging.

        The path for video frames (cv2, fast on a whole clip). NAVA's first image goes through PIL's
        LANCZOS instead, as NAVA does: codecs.cover_resize, with the same sizes and offsets.
        """
        self._check_shape(frame, self.src_w, self.src_h, "source")
        scaled = frame
        if (self.scaled_w, self.scaled_h) != (self.src_w, self.src_h):
            shrinking = self.scaled_w * self.scaled_h < self.src_w * self.src_h
            scaled = cv2.resize(frame, (self.scaled_w, self.scaled_h),
                                interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LANCZOS4)
        return np.ascontiguousarray(
            scaled[self.crop_y:self.crop_y + self.dst_h, self.crop_x:self.crop_x + self.dst_w])

    def warp_to_source(self, image: np.ndarray, roi: tuple[int, int, int, int],
                       border_value: float | None = None) -> np.ndarray:
        """The inverse placement of a bucket-sized image, rendered only over source pixels `roi`.

        image: [dst_h, dst_w] or [dst_h, dst_w, C]; roi: integer source (x0, y0, x1, y1).
        Returns [y1 - y0, x1 - x0(, C)] in image's dtype. Outside the bucket the image's edge is
        repeated, or border_value is used when given (0 for a mask, so nothing leaks past the crop).
        Only the roi is computed, so a face box on a 4K frame costs what the box costs.
        """
        self._check_shape(image, self.dst_w, self.dst_h, "bucket")
        x0, y0, x1, y1 = roi
        # Source pixel centre u + 0.5 (roi-local u) sits at bucket pixel-centre coordinate a*u + b.
        ax, bx = self.scale_x, (x0 + 0.5) * self.scale_x - self.crop_x - 0.5
        ay, by = self.scale_y, (y0 + 0.5) * self.scale_y - self.crop_y - 0.5
        if min(ax, ay) > _PREFILTER_ABOVE_SCALE:
            image, (ax, bx, ay, by) = _area_prefilter(image, (ax, bx, ay, by), (x1 - x0, y1 - y0))
        matrix = np.array([[ax, 0.0, bx], [0.0, ay, by]], dtype=np.float64)
        border = (dict(borderMode=cv2.BORDER_REPLICATE) if border_value is None
                  else dict(borderMode=cv2.BORDER_CONSTANT, borderValue=border_value))
        return cv2.warpAffine(image, matrix, (x1 - x0, y1 - y0),
                              flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP, **border)

    @staticmethod
    def _check_shape(image: np.ndarray, width_px: int, height_px: int, what: str) -> None:
        if image.shape[:2] != (height_px, width_px):
            raise ValueError(f"{what} image is {image.shape[1]}x{image.shape[0]}, expected {width_px}x{height_px}")


def _area_prefilter(image: np.ndarray, affine: tuple[float, float, float, float],
                    out_size: tuple[int, int]) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """Area-average the part of `image` that an affine sampling reads, down to about its density.

    affine (ax, bx, ay, by) maps output pixel u to image pixel-centre coordinate ax*u + bx (and the
    same for y); the returned affine maps u into the returned, smaller image instead.
    """
    ax, bx, ay, by = affine
    out_w, out_h = out_size
    height, width = image.shape[:2]
    tx0, tx1 = _span(bx, ax * (out_w - 1) + bx, ax, width)
    ty0, ty1 = _span(by, ay * (out_h - 1) + by, ay, height)
    region = image[ty0:ty1, tx0:tx1]
    new_w, new_h = max(1, round((tx1 - tx0) / ax)), max(1, round((ty1 - ty0) / ay))
    small = cv2.resize(region, (new_w, new_h), interpolation=cv2.INTER_AREA)
    kx, ky = new_w / (tx1 - tx0), new_h / (ty1 - ty0)
    # A region pixel-centre coordinate t becomes (t - t0 + 0.5) * k - 0.5 in the small image.
    return small, (kx * ax, kx * (bx - tx0 + 0.5) - 0.5, ky * ay, ky * (by - ty0 + 0.5) - 0.5)


def _span(first: float, last: float, step: float, size: int) -> tuple[int, int]:
    """Integer [lo, hi) of image pixels that sampling from `first` to `last` may read, with margin."""
    margin = math.ceil(2 * step) + 1
    lo = min(max(math.floor(first) - margin, 0), size - 1)
    hi = max(min(math.ceil(last) + margin + 1, size), lo + 1)
    return lo, hi
