"""Cutting: an excerpt of a source whose decoded frames and samples are the source's own (for previews)."""

from __future__ import annotations

import dataclasses
import math
import os
from fractions import Fraction
from pathlib import Path

from nava_dub.media.encode import _atomic, _run
from nava_dub.media.info import (
    AudioStream,
    MediaInfo,
    as_info,
    color_tags,
    exact_seconds,
    probe,
    require_audio,
    require_ffmpeg,
    require_video,
    seconds_arg,
)

EXCERPT_SUFFIX = ".mov"   # QuickTime keeps per-sample audio timestamps: seeks in the excerpt stay sample-exact
_PCM = ("pcm_s16le", "pcm_s24le", "pcm_s32le", "pcm_f32le")


def cut_excerpt(source: str | os.PathLike | MediaInfo, out_path: str | os.PathLike, start_s: float | Fraction,
                duration_s: float | Fraction) -> MediaInfo:
    """The main picture and sound of [start_s, start_s + duration_s) of source, written atomically to out_path.

    Lossless both ways: the picture in FFV1 (x264 at qp 0 for full-range yuvj sources, which FFV1 lacks), the
    sound in PCM, so reading the excerpt from t gives what reading the source from start_s + t gives, to the
    sample and the pixel, when start_s is a whole number of source frames and samples. The picture comes out
    upright (a phone clip's rotation is applied) and a variable frame rate becomes the source's average one.
    Only the main video and audio streams are kept. out_path should end in EXCERPT_SUFFIX.
    """
    require_ffmpeg()
    info = as_info(source)
    video, audio = require_video(info), require_audio(info)
    out = Path(out_path)
    # Seek a hair early (floor to the microsecond), so rounding never drops the frame that starts at start_s.
    seek_s = exact_seconds(video.start_s) + exact_seconds(start_s)
    args = ["-ss", f"{math.floor(seek_s * 1_000_000) / 1_000_000:.6f}", "-i", str(info.path),
            "-t", seconds_arg(exact_seconds(duration_s)), "-map", f"0:{video.index}", "-map", f"0:{audio.index}",
            "-map_metadata", "-1", "-map_chapters", "-1"]
    if video.is_vfr:
        args += ["-vf", f"fps={video.fps}"]
    if video.pix_fmt.startswith("yuvj"):
        args += ["-c:v", "libx264", "-qp", "0", "-preset", "ultrafast"]
    else:
        args += ["-c:v", "ffv1", "-level", "3", "-g", "1"]
    for option, value in color_tags(video).items():
        args += [f"-{option}", value]
    if video.color_range and video.color_range != "unknown":
        args += ["-color_range", video.color_range]
    args += ["-c:a", _pcm_codec(audio), "-movflags", "+write_colr"]
    with _atomic(out) as tmp:
        _run(args + ["-y", str(tmp)], f"cutting {float(exact_seconds(start_s)):.3f} s of {info.path}")
        written = probe(tmp)
    return dataclasses.replace(written, path=out)


def _pcm_codec(audio: AudioStream) -> str:
    """PCM that holds the decoded samples exactly: the source's own PCM, its integer depth, or float."""
    if audio.codec in _PCM:
        return audio.codec
    if audio.sample_fmt.startswith("s16"):
        return "pcm_s16le"
    if audio.sample_fmt.startswith("s32"):
        return "pcm_s32le"
    return "pcm_f32le"
