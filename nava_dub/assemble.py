"""Put the generated windows back into the source: the new sound spliced in, the new picture composited.

Only regenerated regions change. Samples outside the re-voiced spans (and their short crossfades)
are the source's own, and frames outside the regenerated boxes are the source's pixels; the
media layer stream-copies the picture when no window changed it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from fractions import Fraction

import numpy as np

from nava_dub import audio_mix, media
from nava_dub.cache import WindowResult
from nava_dub.composite import (
    composite_frame,
    composite_full_frame,
    feathered_box_mask,
    generated_index_for,
    source_frames_for_window,
)
from nava_dub.geometry import CoverCrop
from nava_dub.timeline import Window, seconds_to_samples

CROSSFADE_S = 0.03
FEATHER_FRACTION = 0.15   # of the regenerated box's smaller side


def assemble_audio(info: media.MediaInfo, source: np.ndarray, windows: Sequence[Window],
                   results: Sequence[WindowResult], audio_mode: str, margin_s: float) -> np.ndarray:
    """The source soundtrack [C, S] with each window's new speech spliced in, loudness-matched."""
    stream = media.require_audio(info)
    rate = stream.sample_rate_hz
    layout = audio_mix.channel_layout(stream.channel_layout, source.shape[0])
    out = source.copy()
    for window, result in zip(windows, results, strict=True):
        start = seconds_to_samples(window.start_s, rate)
        generated = audio_mix.resample(result.waveform, result.sample_rate_hz, rate)
        n = min(generated.shape[1], out.shape[1] - start)
        if n <= 0:
            continue
        segment = out[:, start:start + n]
        placed = audio_mix.to_layout(generated[:, :n], layout, segment)
        regions = _regions(window, audio_mode, margin_s, rate, start, n)
        if not regions:
            continue
        matched = audio_mix.match_loudness(placed, segment, (regions[0][0], regions[-1][1]), rate,
                                           channels=layout.dialogue_channels).waveform
        out[:, start:start + n] = audio_mix.splice(segment, matched, regions, round(CROSSFADE_S * rate),
                                                   channels=layout.dialogue_channels)
    return out


def _regions(window: Window, audio_mode: str, margin_s: float, rate: int, start: int, n: int):
    if audio_mode == "full":
        return [(0, n)]
    absolute = audio_mix.speech_regions(window.spans, rate, margin_s)
    return [(max(0, a - start), min(n, b - start)) for a, b in absolute if min(n, b - start) > max(0, a - start)]


def picture_changed(results: Sequence[WindowResult]) -> bool:
    return any(r.frames is not None for r in results)


def composited_frames(info: media.MediaInfo, windows: Sequence[Window], results: Sequence[WindowResult],
                      geometry: CoverCrop) -> Iterator[np.ndarray]:
    """Every source frame in order, with the regenerated regions of the windows composited in."""
    video = media.require_video(info)
    plan = _frame_plan(windows, results, video.fps)
    for index, frame in enumerate(media.iter_frames(info)):
        if index not in plan:
            yield frame
            continue
        result, generated_index = plan[index]
        generated = result.frames[generated_index]
        if result.regions is None:
            yield composite_full_frame(frame, generated, geometry)
            continue
        box = result.regions[generated_index]
        if box is None:
            yield frame
            continue
        feather_px = FEATHER_FRACTION * min(box.width, box.height)
        mask = feathered_box_mask(generated.shape[1], generated.shape[0], box, feather_px)
        buffer = np.array(frame)   # frames from the decoder are read-only views
        yield composite_frame(buffer, generated, geometry, mask, out=buffer)


def _frame_plan(windows: Sequence[Window], results: Sequence[WindowResult],
                fps: Fraction) -> dict[int, tuple[WindowResult, int]]:
    """source frame index -> (the window result that replaces it, its 24 fps frame)."""
    plan: dict[int, tuple[WindowResult, int]] = {}
    for window, result in zip(windows, results, strict=True):
        if result.frames is None:
            continue
        for index in source_frames_for_window(window.start_frame, window.n_frames, fps):
            plan[index] = (result, generated_index_for(index, window.start_frame, window.n_frames, fps))
    return plan
