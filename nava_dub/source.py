"""A window of the source as NAVA sees it: 24 fps frames covering its size bucket, and 16 kHz stereo."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nava_dub import media
from nava_dub.codecs import bucket_for
from nava_dub.geometry import CoverCrop
from nava_dub.timeline import NAVA_FPS, Window, frames_to_seconds

NAVA_AUDIO_RATE_HZ = 16000
TOKEN_PX = 32   # one DiT token is 2x2 latent cells of 16 px: sizes stay multiples of it


@dataclass(frozen=True)
class WindowSource:
    frames: np.ndarray          # uint8 [n_frames, h, w, 3] at 24 fps, NAVA's size
    geometry: CoverCrop         # source frame <-> NAVA frame
    waveform_16k: np.ndarray    # float32 [2, n_samples]


def nava_size(width: int, height: int, resolution_px: int = 960) -> tuple[int, int]:
    """(height, width) NAVA generates for a width x height source.

    960 is NAVA's own bucket table; the smaller tables are that table scaled down to whole tokens
    (our choice, for previews and CPU tests; NAVA's 640/512/256 tables are not all documented).
    """
    height_px, width_px = bucket_for(width, height)
    if resolution_px == 960:
        return height_px, width_px
    scale = resolution_px / 960
    return (max(TOKEN_PX, round(height_px * scale / TOKEN_PX) * TOKEN_PX),
            max(TOKEN_PX, round(width_px * scale / TOKEN_PX) * TOKEN_PX))


def nava_geometry(info: media.MediaInfo, resolution_px: int = 960) -> CoverCrop:
    """The input's displayed picture <-> the NAVA frame it is generated at."""
    width, height = media.require_video(info).display_size
    height_px, width_px = nava_size(width, height, resolution_px)
    return CoverCrop.for_sizes(width, height, width_px, height_px)


def read_window_source(info: media.MediaInfo, window: Window, resolution_px: int = 960) -> WindowSource:
    geometry = nava_geometry(info, resolution_px)
    duration_s = frames_to_seconds(window.n_frames)
    frames = np.empty((window.n_frames, geometry.dst_h, geometry.dst_w, 3), dtype=np.uint8)
    n_read = 0
    for i, frame in enumerate(media.iter_frames(info, window.start_s, duration_s, fps=NAVA_FPS)):
        frames[i] = geometry.to_target(frame)
        n_read = i + 1
    frames[n_read:] = frames[n_read - 1]   # a window may reach a few frames past the end: hold the last
    waveform = media.read_audio(info, NAVA_AUDIO_RATE_HZ, 2, window.start_s, duration_s)
    return WindowSource(frames, geometry, waveform)
