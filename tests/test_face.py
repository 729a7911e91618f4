"""The face region for `--video face`: detection on a real portrait, tracking, masks, the hint."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from nava_dub.errors import UsageError
from nava_dub.face import (
    FaceTrack,
    detect_faces,
    latent_frame_of_frame,
    latent_token_mask,
    parse_face_hint,
    region_boxes,
    track_face,
)
from nava_dub.geometry import Box

DATA = Path(__file__).parent / "data" / "face"
FACE = cv2.cvtColor(cv2.imread(str(DATA / "astronaut_face.jpg")), cv2.COLOR_BGR2RGB)   # 256 x 256
# Hand-labelled on a 16 px grid in the 256 px image (not detector output): the face from
# eyebrows to chin and cheek to cheek, the centre of the mouth, the tip of the chin.
FACE_BOX = Box.from_xywh(88, 86, 88, 88)
MOUTH_XY = (129, 146)
CHIN_XY = (131, 172)


def _noise(n_frames, height, width, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (n_frames, height, width, 3), dtype=np.uint8)


def _paste(frame, size_px, x, y):
    """The portrait scaled to size_px, top-left at (x, y); returns the true face box there."""
    frame[y:y + size_px, x:x + size_px] = cv2.resize(FACE, (size_px, size_px), interpolation=cv2.INTER_AREA)
    s = size_px / FACE.shape[0]
    return FACE_BOX.rescale(s, s, x, y)


def _contains(box, xy):
    return box.x0 <= xy[0] < box.x1 and box.y0 <= xy[1] < box.y1


def _centres(boxes):
    return np.array([b.centre for b in boxes])


# --- detection and tracking on real pictures ---------------------------------------------

def test_face_found_in_still_and_region_holds_mouth_and_chin():
    detections = detect_faces(FACE[None], every_n_frames=1)
    assert len(detections) == 1 and len(detections[0]) == 1
    assert detections[0][0].iou(FACE_BOX) > 0.4
    track = track_face(detections, 1)
    assert track is not None and track.detected_fraction == 1.0
    (region,) = region_boxes(track, np.array([True]))
    assert _contains(region, MOUTH_XY) and _contains(region, CHIN_XY)
    face = track.boxes[0]
    assert face.y0 - region.y0 < region.y1 - face.y1   # grows downwards more than upwards


def test_track_follows_moving_face_through_misses():
    n_frames, blank = 21, (6, 7, 8)
    frames, truth = _noise(n_frames, 160, 224), []
    for t in range(n_frames):
        box = _paste(frames[t].copy(), 128, 8 + 3 * t, 10 + t)   # true box even where blanked
        if t not in blank:
            _paste(frames[t], 128, 8 + 3 * t, 10 + t)
        truth.append(box)
    detections = detect_faces(frames, every_n_frames=2)
    assert detections[1] is None and detections[6] == () and detections[8] == ()
    track = track_face(detections, n_frames)
    assert track is not None and track.n_frames == n_frames
    assert 0.7 <= track.detected_fraction < 1.0            # the blanked frames were misses
    offset = _centres(track.boxes) - _centres(truth)       # detector bias + tracking error
    bias = np.median(offset, axis=0)
    assert np.abs(bias).max() < 10                         # on the face (true face is 44 px)
    assert np.abs(offset - bias).max() < 4                 # follows it, the misses included
    assert np.abs(np.diff(_centres(track.boxes), 2, axis=0)).max() < 1.5   # smooth path
    assert np.ptp([b.width for b in track.boxes]) < 6


def test_largest_face_by_default_and_hint_names_the_other():
    frames = _noise(3, 160, 320, seed=1)
    for frame in frames:
        big = _paste(frame, 144, 8, 8)
        small = _paste(frame, 104, 200, 30)
    detections = detect_faces(frames, every_n_frames=1)
    assert all(len(d) == 2 for d in detections)
    default = track_face(detections, 3)
    assert default.boxes[1].iou(big) > 0.4
    hinted = track_face(detections, 3, hint=small.grow(factor=1.3))
    assert hinted.boxes[1].iou(small) > 0.4
    near_small = track_face(detections, 3, hint=Box.from_xywh(300, 150, 10, 10))   # overlaps no face
    assert near_small.boxes[1].iou(small) > 0.4


def test_no_face_gives_none():
    assert track_face(detect_faces(_noise(9, 128, 160)), 9) is None
    grey = np.full((5, 128, 160, 3), 128, dtype=np.uint8)
    assert detect_faces(grey) == [(), None, (), None, ()]
    assert track_face(detect_faces(grey), 5) is None


# --- tracking on hand-made boxes ----------------------------------------------------------

def _examined_every(n_frames, every, box_at):
    return [tuple(box_at(t)) if t % every == 0 else None for t in range(n_frames)]


def test_misses_interpolated_linearly_and_ends_held():
    detections = [None] * 11
    detections[0], detections[8] = (Box.from_xywh(0, 0, 40, 40),), (Box.from_xywh(16, 8, 40, 40),)
    for t in (2, 4, 6, 10):
        detections[t] = ()
    track = track_face(detections, 11, smooth_frames=1, min_detected_fraction=0.3)
    assert track.boxes[4] == Box.from_xywh(8, 4, 40, 40)
    assert track.boxes[9] == track.boxes[10] == Box.from_xywh(16, 8, 40, 40)
    assert track.detected_fraction == pytest.approx(2 / 6)
    assert track_face(detections, 11, min_detected_fraction=0.5) is None


def test_one_off_detection_rejected():
    def face(t):
        return [Box.from_xywh(40 + 2 * t, 40, 30, 30)] + ([Box.from_xywh(0, 0, 120, 120)] if t == 4 else [])
    detections = _examined_every(13, 2, face)
    track = track_face(detections, 13)
    assert all(abs(b.width - 30) < 1e-9 for b in track.boxes)
    assert track.detected_fraction == 1.0


def test_smoothing_removes_jitter():
    jitter = [2.0 if t % 2 else -2.0 for t in range(25)]
    detections = [(Box.from_xywh(50 + t + jitter[t], 50, 30, 30),) for t in range(25)]
    raw = track_face(detections, 25, smooth_frames=1)      # the median of 3 alone
    smooth = track_face(detections, 25, smooth_frames=5)
    line = np.array([50 + t for t in range(25)], dtype=float)
    raw_err = np.abs(np.array([b.x0 for b in raw.boxes]) - line)[2:-2]
    smooth_err = np.abs(np.array([b.x0 for b in smooth.boxes]) - line)[2:-2]
    assert raw_err.min() > 0.9
    assert smooth_err.max() < 0.5


def test_region_boxes_only_where_active():
    track = FaceTrack(boxes=(Box.from_xywh(10, 10, 20, 20),) * 4, detected_fraction=1.0)
    regions = region_boxes(track, np.array([False, True, True, False]), side=0.1, up=0.1, down=0.5)
    assert regions[0] is None and regions[3] is None
    assert regions[1] == Box.from_xywh(8, 8, 24, 32)
    with pytest.raises(ValueError, match="shape"):
        region_boxes(track, np.ones(5, dtype=bool))


# --- latent masks --------------------------------------------------------------------------------

def test_latent_frame_of_frame():
    assert [latent_frame_of_frame(f) for f in (0, 1, 2, 3, 4, 5, 8, 9, 144)] == [0, 1, 1, 1, 1, 2, 2, 3, 36]


def test_latent_token_mask_maps_frames_and_cells():
    boxes = [None] * 9                # 3 latent frames: {0}, {1..4}, {5..8}
    boxes[0] = Box.from_xywh(0, 0, 16, 16)    # exactly cell (0, 0): its far edges touch nothing
    boxes[3] = Box.from_xywh(17, 33, 10, 10)  # inside cell (2, 1)
    boxes[5] = Box.from_xywh(15, 0, 2, 40)    # straddles columns 0|1, rows 0..2
    boxes[8] = Box.from_xywh(-8, 60, 20, 20)  # hangs off the left and bottom edges
    mask = latent_token_mask(boxes, 3, 4, 3)
    expected = np.zeros((3, 4, 3), dtype=bool)
    expected[0, 0, 0] = True
    expected[1, 2, 1] = True
    expected[2, 0:3, 0:2] = True
    expected[2, 3, 0] = True
    np.testing.assert_array_equal(mask, expected)
    assert latent_token_mask(boxes, 3, 2, 2, cell_px=32)[1, 1, 0]   # 32 px cells: (33, 17) -> (1, 0)
    with pytest.raises(ValueError, match="expected 9"):
        latent_token_mask(boxes[:8], 3, 4, 3)


# --- the --face option ---------------------------------------------------------------------

def test_parse_face_hint():
    assert parse_face_hint("400, 120,220,260") == Box.from_xywh(400, 120, 220, 260)
    assert parse_face_hint("1.5,2,3,4") == Box.from_xywh(1.5, 2, 3, 4)


@pytest.mark.parametrize("text", ["1,2,3", "1,2,3,4,5", "a,b,c,d", "1,2,0,4", "-1,2,3,4", "nan,1,2,3", ""])
def test_parse_face_hint_errors(text):
    with pytest.raises(UsageError) as err:
        parse_face_hint(text)
    assert repr(text) in err.value.message and "--face" in err.value.hint
    assert err.value.exit_code == 2
