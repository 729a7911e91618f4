"""Reading: audio as float32 [C, S] at a chosen rate, frames as uint8 [T, H, W, 3] of a time range."""

from __future__ import annotations

import math
import os
import subprocess
import tempfile
from collections.abc import Generator, Iterator
from fractions import Fraction
from typing import IO

import ffmpeg
import numpy as np

from nava_dub.errors import MediaError
from nava_dub.media.info import (
    FFMPEG_LOG,
    MediaInfo,
    VideoStream,
    as_info,
    color_matrix,
    exact_seconds,
    require_audio,
    require_video,
    seconds_arg,
    stderr_tail,
)
from nava_dub.timeline import convert_frame_index, seconds_to_frames_ceil, seconds_to_samples

Source = str | os.PathLike | MediaInfo
Seconds = float | Fraction


def frame_range(start_s: Seconds, duration_s: Seconds, fps: Fraction) -> tuple[int, int]:
    """(first frame, n_frames): the frames at fps whose start lies in [start_s, start_s + duration_s)."""
    start, duration = exact_seconds(start_s), exact_seconds(duration_s)
    first = seconds_to_frames_ceil(start, fps)
    return first, seconds_to_frames_ceil(start + duration, fps) - first


def read_audio(source: Source, sample_rate_hz: int, n_channels: int | None = 1, start_s: Seconds = 0,
               duration_s: Seconds | None = None) -> np.ndarray:
    """The main audio as float32 [C, S] at sample_rate_hz (n_channels=None keeps the source's).

    With duration_s the length is exactly seconds_to_samples(duration_s), zero-padded past the end;
    without, a lossy stream ends where its header says (decoders keep e.g. AAC's final padding) and a
    lossless one where its samples do (Matroska's durations are rounded to the millisecond).
    """
    info = as_info(source)
    stream = require_audio(info)
    n_channels = n_channels or stream.n_channels
    start = exact_seconds(start_s) + exact_seconds(info.video.start_s if info.video else 0)
    inp = ffmpeg.input(str(info.path), **({"ss": seconds_arg(start)} if start > 0 else {}))
    limit = {} if duration_s is None else {"t": seconds_arg(exact_seconds(duration_s) + Fraction(1, 10))}
    node = inp[str(stream.index)].output("pipe:", format="f32le", acodec="pcm_f32le", ac=n_channels,
                                         ar=sample_rate_hz, **limit)
    try:
        raw, _ = node.run(cmd=["ffmpeg", *FFMPEG_LOG, "-nostdin"], capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as e:
        raise MediaError(f"cannot decode the audio of {info.path}: {stderr_tail(e.stderr)}",
                         hint="the file may be damaged: check it with ffprobe") from None
    samples: np.ndarray = np.frombuffer(raw, dtype="<f4").reshape(-1, n_channels).T
    if duration_s is None and not stream.is_lossless:
        remaining_s = max(exact_seconds(stream.duration_s) - start, Fraction(0))
        samples = samples[:, : seconds_to_samples(remaining_s, sample_rate_hz)]
    elif duration_s is not None:
        n_samples = seconds_to_samples(exact_seconds(duration_s), sample_rate_hz)
        samples = np.pad(samples[:, :n_samples], ((0, 0), (0, max(0, n_samples - samples.shape[1]))))
    return np.ascontiguousarray(samples, dtype=np.float32)


def read_frames(source: Source, start_s: Seconds = 0, duration_s: Seconds | None = None,
                fps: Fraction | int | None = None, size: tuple[int, int] | None = None) -> np.ndarray:
    """Frames [T, H, W, 3] uint8 RGB, display-oriented; T = frame_range(start_s, duration_s, fps)[1].

    fps=None reads at the source rate; size=(width, height) scales each frame; duration_s=None reads to
    the end. Frames past the end of the stream repeat its last frame.
    """
    info = as_info(source)
    video = require_video(info)
    _, n_frames = _request(info, video, start_s, duration_s, Fraction(fps or video.fps))
    width, height = size or video.display_size
    out = np.empty((n_frames, height, width, 3), dtype=np.uint8)
    for i, frame in enumerate(iter_frames(info, start_s, duration_s, fps, size)):
        out[i] = frame
    return out


def iter_frames(source: Source, start_s: Seconds = 0, duration_s: Seconds | None = None,
                fps: Fraction | int | None = None, size: tuple[int, int] | None = None) -> Iterator[np.ndarray]:
    """read_frames one frame [H, W, 3] at a time (read-only views), for inputs too long to hold."""
    info = as_info(source)
    video = require_video(info)
    out_fps = Fraction(fps or video.fps)
    first, n_frames = _request(info, video, start_s, duration_s, out_fps)
    wanted = [convert_frame_index(k, out_fps, video.fps) for k in range(first, first + n_frames)]
    if not wanted:
        return
    decoded = _decode_source_frames(info, video, wanted[0], wanted[-1] - wanted[0] + 1, size)
    try:
        current, index = next(decoded), wanted[0]
        for source_index in wanted:     # a frame repeats when out_fps is above the source rate
            while index < source_index:
                current, index = next(decoded), index + 1
            yield current
    finally:
        decoded.close()


def _request(info: MediaInfo, video: VideoStream, start_s: Seconds, duration_s: Seconds | None,
             fps: Fraction) -> tuple[int, int]:
    n_total = video.n_frames_at(fps)
    if duration_s is None:
        first = frame_range(start_s, 0, fps)[0]
        return first, max(0, n_total - first)
    first, n_frames = frame_range(start_s, duration_s, fps)
    if not 0 <= first < n_total:
        raise MediaError(f"start {float(exact_seconds(start_s)):.3f} s is outside the video of {info.path} "
                         f"({video.duration_s:.3f} s)", hint="choose a start inside the video")
    return first, n_frames


def _decode_source_frames(info: MediaInfo, video: VideoStream, first: int, n_frames: int,
                          size: tuple[int, int] | None) -> Generator[np.ndarray, None, None]:
    """Source frames first .. first+n_frames-1 in order; past the stream's end, the last one again."""
    width, height = size or video.display_size
    # Seek half a frame early, so rounding in ffmpeg's seek never drops the first frame wanted.
    seek_s = exact_seconds(video.start_s) + (first - Fraction(1, 2)) / video.fps
    stream = ffmpeg.input(str(info.path), **({"ss": seconds_arg(seek_s)} if first > 0 else {}))[str(video.index)]
    if video.is_vfr:
        stream = stream.filter("fps", fps=str(video.fps), start_time=0)
    matrix, full_range = color_matrix(video)
    # Nearest chroma at the source size: write_output's 2x2 chroma average then gives it back exactly.
    flags = "neighbor" if size in (None, video.display_size) else "bicubic"
    stream = stream.filter("scale", width, height, in_color_matrix=matrix, in_range="pc" if full_range else "tv",
                           flags=f"{flags}+accurate_rnd+full_chroma_int")
    node = stream.output("pipe:", format="rawvideo", pix_fmt="rgb24", fps_mode="passthrough",
                         **{"frames:v": n_frames})
    frame_bytes = width * height * 3
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(node.compile(cmd=["ffmpeg", *FFMPEG_LOG, "-nostdin"]),
                                stdout=subprocess.PIPE, stderr=err)
        try:
            last = np.zeros((height, width, 3), np.uint8)
            for i in range(n_frames):
                raw = proc.stdout.read(frame_bytes) if proc.stdout else b""
                if len(raw) == frame_bytes:
                    last = np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3)
                else:
                    _check_short_read(info, video, first + i, i == 0, err)
                yield last
        finally:
            proc.kill()
            proc.wait()


def _check_short_read(info: MediaInfo, video: VideoStream, index: int, nothing_yet: bool, err: IO[bytes]) -> None:
    """Running out well before the stream's end means the file is damaged (near the end: a rough count)."""
    slack = 2 if video.n_frames else max(2, math.ceil(video.fps / 2))
    n_expected = video.n_frames_at(video.fps)
    if nothing_yet or index < n_expected - slack:
        err.seek(0)
        raise MediaError(f"decoding {info.path} stopped at frame {index} of {n_expected} "
                         f"({stderr_tail(err.read())})", hint="the file is damaged or truncated: copy or export it again")
