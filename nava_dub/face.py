"""The re-voiced speaker's face region for `--video face`: detect, track, dilate, map to latents.

Pure functions over numpy frames that are already at NAVA's 24 fps and size bucket. Detection
uses OpenCV's bundled Haar cascades (no download); everything after it is box arithmetic, so
tracking and the masks can be tested with hand-made boxes.

Pixel coordinates throughout: x to the right, y down, boxes are geometry.Box (edges x0, y0, x1, y1).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from nava_dub.errors import UsageError
from nava_dub.geometry import Box
from nava_dub.timeline import FRAMES_PER_LATENT_FRAME, latent_frames_to_frames

# The frontal cascade's native window: a face smaller than this in the detection image is
# never found, so downscaling further than min_size_px -> 24 px only loses faces.
_CASCADE_WINDOW_PX = 24
_CASCADE_DIR: str = cv2.data.haarcascades   # type: ignore[attr-defined]  # the stubs omit cv2.data
_FRONTAL = "haarcascade_frontalface_default.xml"
_PROFILE = "haarcascade_profileface.xml"   # faces a little turned: frontal misses them
# Linking: a detection continues a track when its centre moved less than this many face sizes
# (sqrt of the box area) and its size changed by less than this ratio.
_MAX_STEP_FACE_SIZES = 0.6
_MAX_SIZE_RATIO = 1.5
_MIN_TRACK_DETECTIONS = 2      # a face seen once is a false positive more often than a face


@dataclass(frozen=True)
class FaceTrack:
    """One face followed through a window: a box on every frame, smoothed and gap-filled."""

    boxes: tuple[Box, ...]
    detected_fraction: float    # examined frames where this face was really detected

    @property
    def n_frames(self) -> int:
        return len(self.boxes)


# --- detection ---------------------------------------------------------------------------

def detect_faces(
    frames: np.ndarray,
    *,
    every_n_frames: int = 2,
    min_size_px: int = 32,
    max_detect_side_px: int = 480,
) -> list[tuple[Box, ...] | None]:
    """Faces in RGB frames [T, H, W, 3] uint8, in frame pixels, one entry per frame.

    Only every n-th frame (and the last) is examined; the others hold None, so a tracker can
    tell "not looked at" from "looked and found nothing" (an empty tuple). Detection runs on a
    grey copy downscaled so that a min_size_px face fills the cascade's window (and the longer
    side is at most max_detect_side_px): faces smaller than that are not wanted anyway.
    """
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 [T, H, W, 3], got {frames.dtype} {frames.shape}")
    if every_n_frames < 1 or min_size_px < 1:
        raise ValueError(f"every_n_frames and min_size_px must be >= 1, got {every_n_frames}, {min_size_px}")
    n_frames, height, width = frames.shape[:3]
    scale = min(1.0, _CASCADE_WINDOW_PX / min_size_px, max_detect_side_px / max(height, width))
    examined = sorted(set(range(0, n_frames, every_n_frames)) | {n_frames - 1})
    detections: list[tuple[Box, ...] | None] = [None] * n_frames
    for t in examined:
        grey = _grey(frames[t], scale)
        detections[t] = tuple(b.rescale(1 / scale, 1 / scale) for b in _detect_grey(grey))
    return detections


def _grey(frame: np.ndarray, scale: float) -> np.ndarray:
    grey = cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY)
    if scale < 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA)
    return cv2.equalizeHist(grey)   # Haar features are contrast-sensitive: dim scenes miss faces


@functools.cache
def _cascade(name: str) -> cv2.CascadeClassifier:
    cascade = cv2.CascadeClassifier(_CASCADE_DIR + name)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's bundled cascade {name} did not load from {_CASCADE_DIR}")
    return cascade


def _run_cascade(name: str, grey: np.ndarray) -> list[Box]:
    found = _cascade(name).detectMultiScale(
        grey, scaleFactor=1.1, minNeighbors=5, minSize=(_CASCADE_WINDOW_PX, _CASCADE_WINDOW_PX))
    return [Box.from_xywh(float(x), float(y), float(w), float(h)) for x, y, w, h in found]


def _detect_grey(grey: np.ndarray) -> list[Box]:
    """Frontal faces; where there are none, profiles facing either way (the cascade knows one side)."""
    boxes = _run_cascade(_FRONTAL, grey)
    if boxes:
        return boxes
    width = grey.shape[1]
    mirrored = [Box(width - b.x1, b.y0, width - b.x0, b.y1) for b in _run_cascade(_PROFILE, grey[:, ::-1].copy())]
    return _drop_overlaps(_run_cascade(_PROFILE, grey) + mirrored)


def _drop_overlaps(boxes: list[Box], max_iou: float = 0.3) -> list[Box]:
    kept: list[Box] = []
    for box in sorted(boxes, key=lambda b: -b.area):
        if all(box.iou(k) <= max_iou for k in kept):
            kept.append(box)
    return kept


# --- tracking ----------------------------------------------------------------------------

Track = list[tuple[int, Box]]   # (frame index, detected box), frame indices increasing


def track_face(
    detections: list[tuple[Box, ...] | None],
    n_frames: int,
    *,
    hint: Box | None = None,
    min_detected_fraction: float = 0.3,
    smooth_frames: int = 5,
    max_gap_frames: int = 12,
) -> FaceTrack | None:
    """The speaker's face through the window, or None when no face is seen often enough.

    detections: per frame, as detect_faces returns them (None = frame not examined).
    The speaker is the face overlapping `hint` most (frame pixels), else the largest face
    summed over the window. Misses are filled by linear interpolation (held at the ends),
    one-frame outliers removed by a median of 3 detections, then the boxes smoothed over
    `smooth_frames` (a centred moving average, a local line at the ends). A face seen on fewer than min_detected_fraction of
    the examined frames is not trusted (the caller falls back to keep mode).
    """
    if len(detections) != n_frames:
        raise ValueError(f"detections cover {len(detections)} frames, expected n_frames={n_frames}")
    n_examined = sum(d is not None for d in detections)
    min_detections = min(_MIN_TRACK_DETECTIONS, n_examined)
    tracks = [tr for tr in _link(detections, max_gap_frames) if len(tr) >= min_detections]
    if not tracks:
        return None
    chosen = _pick(tracks, hint)
    detected_fraction = len(chosen) / n_examined
    if detected_fraction < min_detected_fraction:
        return None
    boxes = _smooth(_interpolate(_median3(chosen), n_frames), smooth_frames)
    return FaceTrack(boxes=boxes, detected_fraction=detected_fraction)


def _link(detections: list[tuple[Box, ...] | None], max_gap_frames: int) -> list[Track]:
    """Greedy frame-by-frame linking, largest boxes first, each track extended once per frame."""
    tracks: list[Track] = []
    for t, boxes in enumerate(detections):
        extended: set[int] = set()
        for box in sorted(boxes or (), key=lambda b: -b.area):
            i = _nearest_track(tracks, t, box, max_gap_frames, extended)
            if i is None:
                tracks.append([])
                i = len(tracks) - 1
            tracks[i].append((t, box))
            extended.add(i)
    return tracks


def _nearest_track(tracks: list[Track], t: int, box: Box, max_gap_frames: int, extended: set[int]) -> int | None:
    best, best_step = None, _MAX_STEP_FACE_SIZES
    for i, track in enumerate(tracks):
        last_t, last = track[-1]
        if i in extended or t - last_t > max_gap_frames:
            continue
        size_ratio = math.sqrt(box.area / last.area)
        if not 1 / _MAX_SIZE_RATIO < size_ratio < _MAX_SIZE_RATIO:
            continue
        step = math.dist(box.centre, last.centre) / math.sqrt(last.area)
        if step < best_step:
            best, best_step = i, step
    return best


def _pick(tracks: list[Track], hint: Box | None) -> Track:
    if hint is None:
        return max(tracks, key=lambda tr: sum(b.area for _, b in tr))

    def overlap_then_nearness(track: Track) -> tuple[float, float]:
        # a hint touching no detection still names the nearest face rather than none
        mean_dist = sum(math.dist(b.centre, hint.centre) for _, b in track) / len(track)
        return sum(b.iou(hint) for _, b in track), -mean_dist

    return max(tracks, key=overlap_then_nearness)


def _median3(track: Track) -> Track:
    """Each detection replaced by the median of itself and its two neighbours (ends kept)."""
    if len(track) < 3:
        return track
    arr = np.array([b.xywh for _, b in track])
    med = arr.copy()
    med[1:-1] = np.median(np.stack([arr[:-2], arr[1:-1], arr[2:]]), axis=0)
    return [(t, Box.from_xywh(*map(float, row))) for (t, _), row in zip(track, med, strict=True)]


def _interpolate(track: Track, n_frames: int) -> np.ndarray:
    """[n_frames, 4] x, y, w, h: linear between detections, held constant beyond the ends."""
    frames = np.array([t for t, _ in track], dtype=np.float64)
    values = np.array([b.xywh for _, b in track])
    grid = np.arange(n_frames, dtype=np.float64)
    return np.stack([np.interp(grid, frames, values[:, k]) for k in range(4)], axis=1)


def _smooth(xywh: np.ndarray, smooth_frames: int) -> tuple[Box, ...]:
    """A straight line fitted over the smooth_frames around each frame, read at that frame.

    Inside the window this equals the centred moving average; at the ends, where the window is
    one-sided, the line (unlike a plain average) does not pull a moving face back inwards.
    """
    n_frames, radius = len(xywh), max(0, smooth_frames // 2)
    boxes = []
    for t in range(n_frames):
        lo, hi = max(0, t - radius), min(n_frames, t + radius + 1)
        frames = np.arange(lo, hi, dtype=np.float64)
        values = xywh[lo:hi]
        dt = frames - frames.mean()
        slope = dt @ (values - values.mean(axis=0)) / max(dt @ dt, 1e-12)
        x, y, w, h = values.mean(axis=0) + slope * (t - frames.mean())
        boxes.append(Box.from_xywh(float(x), float(y), float(w), float(h)))
    return tuple(boxes)


# --- the region to regenerate --------------------------------------------------------------

def region_boxes(
    track: FaceTrack,
    active: np.ndarray,
    *,
    side: float = 0.2,
    up: float = 0.1,
    down: float = 0.45,
) -> tuple[Box | None, ...]:
    """The dilated face box on frames where `active` is true, None elsewhere.

    Margins are fractions of the face box: the cascade's box ends around the upper chin, and
    an open mouth moves the jaw and chin down, so the region grows downwards most. Boxes may
    reach past the frame edges; the mask functions clip them.
    """
    if active.shape != (track.n_frames,):
        raise ValueError(f"active must have shape ({track.n_frames},), got {active.shape}")
    return tuple(
        b.pad(left=side * b.width, right=side * b.width, top=up * b.height, bottom=down * b.height) if on else None
        for b, on in zip(track.boxes, active.astype(bool), strict=True)
    )


def latent_frame_of_frame(frame: int) -> int:
    """The Wan2.2 VAE latent frame holding a video frame: 0 -> 0, then 4k-3..4k -> k."""
    if frame < 0:
        raise ValueError(f"frame must be >= 0, got {frame}")
    return (frame + FRAMES_PER_LATENT_FRAME - 1) // FRAMES_PER_LATENT_FRAME


def latent_token_mask(
    boxes: tuple[Box | None, ...] | list[Box | None],
    n_latent_frames: int,
    latent_h: int,
    latent_w: int,
    *,
    cell_px: int = 16,
) -> np.ndarray:
    """bool [n_latent_frames, latent_h, latent_w]: the latent cells to regenerate.

    Cell (i, j) covers pixels [cell_px*i, cell_px*(i+1)) x [cell_px*j, cell_px*(j+1)) and is
    regenerated when any box of a frame in its latent frame overlaps it with positive area.
    cell_px is 16 for the VAE latent; 32 for DiT tokens (2x2 patches).
    """
    n_frames = latent_frames_to_frames(n_latent_frames)
    if len(boxes) != n_frames:
        raise ValueError(f"{len(boxes)} boxes for {n_latent_frames} latent frames, expected {n_frames}")
    mask = np.zeros((n_latent_frames, latent_h, latent_w), dtype=bool)
    for frame, box in enumerate(boxes):
        if box is None or box.is_empty:
            continue
        rows = _cell_span(box.y0, box.y1, cell_px, latent_h)
        cols = _cell_span(box.x0, box.x1, cell_px, latent_w)
        mask[latent_frame_of_frame(frame), rows, cols] = True
    return mask


def _cell_span(lo_px: float, hi_px: float, cell_px: int, n_cells: int) -> slice:
    """Cells overlapping [lo_px, hi_px) with positive length, clipped to the grid."""
    return slice(max(0, math.floor(lo_px / cell_px)), min(n_cells, math.ceil(hi_px / cell_px)))


# --- the --face option -------------------------------------------------------------------

_HINT_FIX = "give the speaker's face box in the input video's pixels as X,Y,W,H, e.g. --face 400,120,220,260"


def parse_face_hint(text: str) -> Box:
    """`--face X,Y,W,H` (input-video pixels) -> Box; UsageError naming the value otherwise."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 4:
        raise UsageError(f"--face {text!r} has {len(parts)} values, expected 4 (X,Y,W,H)", _HINT_FIX)
    try:
        x, y, w, h = (float(p) for p in parts)
    except ValueError:
        raise UsageError(f"--face {text!r} is not four numbers", _HINT_FIX) from None
    if not all(math.isfinite(v) for v in (x, y, w, h)):
        raise UsageError(f"--face {text!r} is not four finite numbers", _HINT_FIX)
    if x < 0 or y < 0:
        raise UsageError(f"--face {text!r} starts left of or above the picture (X, Y must be >= 0)", _HINT_FIX)
    if w <= 0 or h <= 0:
        raise UsageError(f"--face {text!r} is an empty box (W, H must be > 0)", _HINT_FIX)
    return Box.from_xywh(x, y, w, h)
