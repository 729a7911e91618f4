"""Writing: an output that is the source with its main picture and/or main sound replaced, and WAV files.

Two ffmpeg passes: the first encodes only the new streams (raw frames arrive on a pipe), the second
stream-copies every source stream in its order with the new ones in place, so the extra audio tracks,
subtitles, chapters and tags come through untouched. Both write hidden files beside the output.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import IO

import ffmpeg
import numpy as np

from nava_dub.errors import MediaError, UsageError
from nava_dub.media.info import (
    FFMPEG_LOG,
    MediaInfo,
    Stream,
    VideoStream,
    as_info,
    color_matrix,
    color_tags,
    exact_seconds,
    input_file,
    probe,
    require_ffmpeg,
    require_video,
    seconds_arg,
    stderr_tail,
)

VIDEO_CODECS = ("libx264", "libx265", "prores_ks", "ffv1", "copy")
_CODEC_OPTIONS: dict[str, dict[str, object]] = {
    "libx264": {"crf": 17, "preset": "medium"},
    "libx265": {"crf": 18, "preset": "medium", "x265-params": "log-level=error"},
    "prores_ks": {"profile:v": 3},         # ProRes 422 HQ
    "ffv1": {"level": 3, "g": 1},
}
_MP4_LIKE = (".mp4", ".m4v", ".mov", ".3gp")     # the containers that store a display rotation
_MP4_TAGS = {"major_brand", "minor_version", "compatible_brands", "encoder", "creation_time", "title", "artist",
             "album", "album_artist", "comment", "date", "genre", "copyright", "composer", "description",
             "synopsis", "show", "episode_id", "network", "lyrics", "track", "disc", "grouping", "compilation",
             "location", "keywords", "media_type", "hd_video", "gapless_playback", "encoding_tool", "rating"}
Frames = np.ndarray | Iterable[np.ndarray]
Progress = Callable[[int], None] | None        # called with the number of frames written so far


@dataclass(frozen=True)
class AudioTrack:
    """A waveform to write: float32 [C, S] in [-1, 1]."""

    waveform: np.ndarray
    sample_rate_hz: int


def write_output(source: str | os.PathLike | MediaInfo, out_path: str | os.PathLike, *,
                 video: Frames | str | os.PathLike | None = None, audio: AudioTrack | str | os.PathLike | None = None,
                 codec: str = "libx264", on_progress: Progress = None) -> MediaInfo:
    """Write the source with its main video and/or main audio replaced; every other stream is copied.

    video: display-oriented frames at the source's display size and frame rate ([T, H, W, 3] uint8, or an
    iterator of [H, W, 3] / [t, H, W, 3]), or a video file (re-encoded, or taken as is with codec="copy");
    None keeps the source picture, stream-copied. audio: an AudioTrack or an audio file, written at the
    source's rate and channel count; a lossless source track stays lossless (the same codec where the
    container takes it); None keeps the source sound. Returns the probe of the output.
    """
    require_ffmpeg()
    info = as_info(source)
    out = Path(out_path)
    _check_output(info, out, video, codec)
    if video is None and info.video and info.video.rotation_deg and not _keeps_rotation(out):
        video = info.path    # a copied picture would lose its rotation: re-encode it upright
    with _atomic(out) as tmp:
        if video is None and audio is None:
            _mux(info, None, tmp, f"writing {out}", video=False, audio=False)
        else:
            with _scratch(out, "new") as new:
                _encode_new_streams(info, new, out, video, audio, codec, on_progress)
                _mux(info, new, tmp, f"writing {out}", video=video is not None, audio=audio is not None)
        written = probe(tmp)
        _check_written(info, written)
    return dataclasses.replace(written, path=out)


def write_wav(path: str | os.PathLike, waveform: np.ndarray, sample_rate_hz: int, codec: str = "pcm_s16le") -> None:
    """Write float32 [C, S] (or [S]) as a WAV file, atomically; codec pcm_s16le or pcm_f32le."""
    require_ffmpeg()
    waveform = _checked_waveform(waveform)
    out = Path(path)
    with _atomic(out) as tmp:
        pcm = ffmpeg.input("pipe:", format="f32le", ar=sample_rate_hz, ac=waveform.shape[0])
        node = pcm.output(str(tmp), format="wav", acodec=codec).overwrite_output()
        _run(node, f"writing {out}", [np.ascontiguousarray(waveform.T, dtype="<f4")])


def check_output_path(info: MediaInfo, out_path: str | os.PathLike) -> None:
    """Fail now, not after an hour of work, if the output cannot be written where asked."""
    out = Path(out_path)
    _check_output(info, out, None, "libx264")
    with _scratch(out, "probe"):   # the folder exists and takes a file
        pass


def write_new_video(path: str | os.PathLike, frames: np.ndarray, fps: Fraction | int, waveform: np.ndarray | None,
                    sample_rate_hz: int | None = None, crf: int = 18) -> MediaInfo:
    """Write new frames (uint8 RGB [T, H, W, 3]) and optionally a waveform (float32 [C, S]) as a new
    H.264 + AAC file (yuv420p, BT.709, CRF 18 as NAVA writes), atomically; returns its probe."""
    require_ffmpeg()
    frames = np.asarray(frames)
    if frames.dtype != np.uint8 or frames.ndim != 4 or frames.shape[-1] != 3 or not len(frames):
        raise MediaError(f"frames of shape {frames.shape} and type {frames.dtype} cannot be written",
                         hint="give uint8 RGB frames of shape [T, H, W, 3]")
    if waveform is not None and not sample_rate_hz:
        raise UsageError("a waveform needs its sample rate", hint="pass sample_rate_hz")
    out = Path(path)
    if out.is_dir():
        raise MediaError(f"the output is a folder: {out}", hint="give a file name, e.g. out.mp4")
    height, width = frames.shape[1:3]
    picture = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}",
                           framerate=str(Fraction(fps)))["v"]
    picture = picture.filter("scale", width, height, out_color_matrix="bt709", out_range="tv",
                             flags="accurate_rnd")
    options: dict[str, object] = {
        "c:v": "libx264", "crf": crf, "preset": "medium",
        "pix_fmt": "yuv444p" if width % 2 or height % 2 else "yuv420p",   # 4:2:0 needs even sizes
        "colorspace": "bt709", "color_primaries": "bt709", "color_trc": "bt709", "color_range": "tv"}
    with _atomic(out) as tmp, _scratch(out, "pcm") as raw:
        streams = [picture]
        if waveform is not None:
            streams.append(_audio_input(AudioTrack(waveform, int(sample_rate_hz or 0)), raw))
            options.update({"c:a": "aac", "b:a": "128k", "ar": sample_rate_hz})
        if out.suffix.lower() in _MP4_LIKE:
            options["movflags"] = "+faststart"
        node = ffmpeg.output(*streams, str(tmp), **options).overwrite_output()
        _run(node, f"writing {out}", _checked_frames(frames, (height, width, 3)))
        written = probe(tmp)
    return dataclasses.replace(written, path=out)


def _check_output(info: MediaInfo, out: Path, video: object, codec: str) -> None:
    if out.resolve() == info.path.resolve() or (out.exists() and os.path.samefile(out, info.path)):
        raise UsageError(f"the output is the input: {out}", hint="choose another output path")
    if out.is_dir():
        raise MediaError(f"the output is a folder: {out}", hint="give a file name, e.g. out.mp4")
    if video is not None and info.video is None:
        raise MediaError(f"cannot replace the picture of {info.path}: it has no video stream",
                         hint="give a video file as the source")
    if codec == "copy" and video is not None and not isinstance(video, str | os.PathLike):
        raise UsageError("codec 'copy' needs the video as a file, not as frames",
                         hint=f"choose a codec: {', '.join(VIDEO_CODECS[:-1])}")


# --- files that appear whole or not at all ----------------------------------------------------

@contextmanager
def _atomic(out: Path) -> Iterator[Path]:
    """A hidden temporary file beside out, renamed to out on success and removed on any failure."""
    with _scratch(out, "part") as tmp:
        yield tmp
        try:
            os.chmod(tmp, 0o666 & ~_umask())   # mkstemp makes 0600 files; an output gets the usual mode
            os.replace(tmp, out)
        except OSError as e:
            raise MediaError(f"cannot move the finished output into place at {out}: {e.strerror}",
                             hint="check the output path") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def _scratch(out: Path, tag: str) -> Iterator[Path]:
    """A hidden file beside out ('.out.mp4.x1y2.tag.mp4': ffmpeg reads the format from the end), always removed."""
    folder = out.parent
    if not folder.is_dir():
        raise MediaError(f"output folder does not exist: {folder}", hint="create it, or choose another folder")
    try:
        fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".{tag}{out.suffix}", dir=folder)
    except OSError as e:
        raise MediaError(f"cannot write to the output folder {folder}: {e.strerror}",
                         hint="choose a folder you can write to") from None
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _run(command: ffmpeg.nodes.OutputStream | list[str], what: str, frames: Iterable[np.ndarray] | None = None,
         on_progress: Progress = None) -> None:
    """Run one ffmpeg command (a graph, or plain arguments), feeding `frames` to its stdin."""
    head = ["ffmpeg", *FFMPEG_LOG] + ([] if frames is not None else ["-nostdin"])
    args = head + command if isinstance(command, list) else command.compile(cmd=head)
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(args, stdin=subprocess.PIPE if frames is not None else None,
                                stdout=subprocess.DEVNULL, stderr=err)
        try:
            if frames is not None and proc.stdin is not None:
                _feed(proc.stdin, frames, on_progress)
            rc = proc.wait()
        except BaseException:       # Ctrl-C or a failing frame source: stop ffmpeg before cleaning up
            proc.kill()
            proc.wait()
            raise
        if rc != 0:
            err.seek(0)
            raise MediaError(f"ffmpeg failed {what}: {stderr_tail(err.read())}",
                             hint="check the codec and the container, and the free disk space")


def _feed(pipe: IO[bytes], chunks: Iterable[np.ndarray], on_progress: Progress) -> None:
    n_done = 0
    try:
        for chunk in chunks:
            pipe.write(np.ascontiguousarray(chunk).data)
            n_done += len(chunk) if chunk.ndim == 4 else 1
            if on_progress:
                on_progress(n_done)
        pipe.close()
    except BrokenPipeError:
        pass   # ffmpeg stopped reading: its exit code and stderr say why


# --- pass 1: the new streams -------------------------------------------------------------------

def _encode_new_streams(info: MediaInfo, new: Path, out: Path, video: Frames | str | os.PathLike | None,
                        audio: AudioTrack | str | os.PathLike | None, codec: str, on_progress: Progress) -> None:
    """Encode the replacement streams alone into `new` (video first, then audio)."""
    streams: list[ffmpeg.nodes.FilterableStream] = []
    options: dict[str, object] = {}
    frames = None
    if video is not None:
        src = require_video(info)
        if isinstance(video, str | os.PathLike):
            picture = ffmpeg.input(str(input_file(video)))["v:0"]
            picture = picture if codec == "copy" else picture.filter("fps", fps=str(src.fps))
        else:
            width, height = src.display_size
            picture = ffmpeg.input("pipe:", format="rawvideo", pix_fmt="rgb24", s=f"{width}x{height}",
                                   framerate=str(src.fps))["v"]
            frames = _checked_frames(video, (height, width, 3))
        if codec == "copy":
            options["c:v"] = "copy"
        else:
            picture, video_options = _encoder_chain(picture, src, codec, out)
            options.update(video_options)
        streams.append(picture)
    with _scratch(out, "pcm") as raw:
        if audio is not None:
            streams.append(_audio_input(audio, raw))
            options.update(_audio_options(info, out.suffix.lower()))
        _run(ffmpeg.output(*streams, str(new), **options).overwrite_output(), f"encoding {out}", frames, on_progress)


def _checked_frames(video: Frames, shape: tuple[int, int, int]) -> Iterator[np.ndarray]:
    chunks = (video[i:i + 16] for i in range(0, len(video), 16)) if isinstance(video, np.ndarray) else video
    for chunk in chunks:
        if chunk.dtype != np.uint8 or chunk.shape[-3:] != shape or chunk.ndim not in (3, 4):
            raise MediaError(f"frames of shape {chunk.shape} and type {chunk.dtype} do not fit the source",
                             hint=f"give uint8 RGB frames of shape [T, {shape[0]}, {shape[1]}, 3]")
        yield chunk


def _encoder_chain(picture: ffmpeg.nodes.FilterableStream, src: VideoStream, codec: str, out: Path):
    """Display-oriented RGB -> the source's stored orientation, colour matrix and range -> codec options."""
    keep_rotation = _keeps_rotation(out)
    turn_back: dict[int, list[tuple[str, ...]]] = {
        90: [("transpose", "clock")], 180: [("hflip",), ("vflip",)], 270: [("transpose", "cclock")]}
    for step in turn_back.get(src.rotation_deg, []) if keep_rotation else []:
        picture = picture.filter(*step)
    matrix, full_range = color_matrix(src)
    width, height = (src.width, src.height) if keep_rotation else src.display_size
    # A 2x2 average of chroma undoes read_frames' nearest-neighbour upsampling exactly.
    picture = picture.filter("scale", width, height, out_color_matrix=matrix, out_range="pc" if full_range else "tv",
                             flags="area+accurate_rnd")
    pix_fmt = "yuv422p10le" if codec == "prores_ks" else ("yuv444p" if width % 2 or height % 2 else "yuv420p")
    options: dict[str, object] = {"c:v": codec, "pix_fmt": pix_fmt, "color_range": "pc" if full_range else "tv",
                                  **_CODEC_OPTIONS.get(codec, {})}
    if codec == "libx265" and keep_rotation:
        options["tag:v"] = "hvc1"    # the tag Apple's players look for
    options.update(color_tags(src))
    return picture, options


def _audio_input(audio: AudioTrack | str | os.PathLike, raw: Path) -> ffmpeg.nodes.FilterableStream:
    if isinstance(audio, AudioTrack):
        waveform = _checked_waveform(audio.waveform)
        try:   # a plain write, not ndarray.tofile: a full disk then says so (errno 28), not "n bytes written"
            with raw.open("wb") as f:
                f.write(np.ascontiguousarray(waveform.T, dtype="<f4").data)
        except OSError as e:
            raise MediaError(f"cannot write the new sound beside the output in {raw.parent}: {e.strerror or e}",
                             hint="free some disk space, or choose another output folder") from None
        return ffmpeg.input(str(raw), format="f32le", ar=audio.sample_rate_hz, ac=waveform.shape[0])["a"]
    return ffmpeg.input(str(input_file(audio)))["a:0"]


def _checked_waveform(waveform: np.ndarray) -> np.ndarray:
    waveform = np.asarray(waveform, dtype=np.float32)
    waveform = waveform[None] if waveform.ndim == 1 else waveform
    if waveform.ndim != 2 or not 0 < waveform.shape[0] <= 16 or not np.isfinite(waveform).all():
        raise MediaError(f"a waveform of shape {waveform.shape} (or with NaN/inf) cannot be written",
                         hint="give finite float32 samples of shape [channels, samples]")
    return waveform


def _audio_options(info: MediaInfo, suffix: str) -> dict[str, object]:
    """The source's rate and channels; lossless stays lossless, the rest becomes AAC."""
    src = info.audio
    options: dict[str, object] = {"ar": src.sample_rate_hz, "ac": src.n_channels} if src else {}
    if src is None or not src.is_lossless:
        n_channels = src.n_channels if src else 2
        return {**options, "c:a": "libopus" if suffix == ".webm" else "aac",
                "b:a": f"{min(512, max(128, 64 * n_channels))}k"}
    codec = src.codec
    if suffix == ".flac":
        codec = "flac"
    elif suffix in _MP4_LIKE and suffix != ".mov" and codec.startswith("pcm_"):
        codec = "alac"              # mp4 takes no PCM: the lossless codec it does take
    options["c:a"] = codec
    if codec in ("flac", "alac"):
        depth = "s16" if src.sample_fmt.startswith("s16") else "s32"
        options["sample_fmt"] = depth + ("p" if codec == "alac" else "")
    if codec == "flac" and suffix in _MP4_LIKE:
        options["strict"] = "-2"    # ffmpeg 5 still calls FLAC in MP4 experimental
    return options


# --- pass 2: everything in its place -----------------------------------------------------------

def _mux(info: MediaInfo, new: Path | None, tmp: Path, what: str, *, video: bool, audio: bool) -> None:
    """Every source stream in its order, the replaced ones taken from `new`; all stream copy.

    Plain arguments, since per-stream options name inputs by number and ffmpeg-python reorders inputs.
    """
    start = info.video.start_s if info.video else 0.0     # new streams begin at the timeline's zero
    offset = ["-itsoffset", seconds_arg(exact_seconds(start))] if start else []
    args = ["-i", str(info.path)] + (offset + ["-i", str(new)] if new is not None else [])
    args += ["-map_metadata", "0", "-map_chapters", "0", "-c", "copy"]
    main_video, o = info.video, 0
    for s in info.streams:
        if s.kind == "data" and s.codec_tag == "tmcd":
            continue    # a timecode track: the muxer rebuilds it from the video's timecode tag
        replace_video = video and main_video is not None and s.index == main_video.index
        replace_audio = audio and info.audio is not None and s.index == info.audio.index
        # Each stream's tags come from its source stream (one -map_metadata:s turns the default off).
        mapped = "1:v:0" if replace_video else "1:a:0" if replace_audio else f"0:{s.index}"
        args += ["-map", mapped, f"-map_metadata:s:{o}", f"0:s:{s.index}"]
        if replace_video or replace_audio:
            args += [f"-disposition:{o}", "+".join(s.disposition) or "0"]
        if replace_video and main_video and main_video.rotation_deg and _keeps_rotation(tmp):
            args += [f"-metadata:s:{o}", f"rotate={main_video.rotation_deg}"]   # ffmpeg 5 reads it counter-clockwise
        args += _subtitle_codec(s, o, tmp.suffix.lower())
        o += 1
    if audio and info.audio is None:
        args += ["-map", "1:a:0"]
    if tmp.suffix.lower() in _MP4_LIKE:
        if set(info.tags) - _MP4_TAGS:
            args += ["-movflags", "use_metadata_tags"]   # else mp4 drops the tags it has no atom for
        if any(s.codec == "flac" for s in info.audio_streams):
            args += ["-strict", "-2"]
    _run(args + ["-y", str(tmp)], what)


def _subtitle_codec(s: Stream, o: int, suffix: str) -> list[str]:
    """Text subtitles change format with the container: mov_text in mp4, SubRip elsewhere."""
    if s.kind == "subtitle" and (suffix in _MP4_LIKE) != (s.codec == "mov_text"):
        return [f"-c:{o}", "mov_text" if suffix in _MP4_LIKE else "srt"]
    return []


def _keeps_rotation(out: Path) -> bool:
    """Only the mp4 family stores a display rotation (ffmpeg 5 writes none into Matroska)."""
    return out.suffix.lower() in _MP4_LIKE


def _check_written(info: MediaInfo, written: MediaInfo) -> None:
    if not (info.video and written.video):
        return
    if info.video.display_size != written.video.display_size or (
            _keeps_rotation(written.path) and info.video.rotation_deg != written.video.rotation_deg):
        raise MediaError(f"the output shows {written.video.display_size} turned {written.video.rotation_deg} deg, "
                         f"the source {info.video.display_size} turned {info.video.rotation_deg} deg",
                         hint="this ffmpeg stores rotation differently: use ffmpeg 5.1 (apt-get install ffmpeg)")
