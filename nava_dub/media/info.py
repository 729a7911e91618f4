"""What a media file holds, from ffprobe: MediaInfo and its streams; ffmpeg's presence; exact seconds."""

from __future__ import annotations

import math
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import ffmpeg

from nava_dub.errors import MediaError

FFMPEG_LOG = ["-hide_banner", "-nostats", "-loglevel", "error"]
PROBE_PACKETS = 240              # packets read at the start of a file to judge the frame rate
_VFR_JITTER = 0.1                # packet intervals may differ by 10% of a frame on a CFR stream
_REORDER_DEPTH = 16              # B-frames shown after the last packet read leave holes at the end


# --- the types --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Stream:
    """Any stream of the container, as much as the writer needs to carry it over."""

    index: int
    kind: str                        # video, audio, subtitle, data, attachment
    codec: str
    codec_tag: str
    disposition: tuple[str, ...]     # the flags set, e.g. ("default",)


@dataclass(frozen=True)
class VideoStream:
    index: int
    codec: str
    width: int                       # as stored; display_size swaps them for 90/270 rotations
    height: int
    fps: Fraction
    is_vfr: bool
    n_frames: int | None             # from the container's index, when it has one
    duration_s: float
    rotation_deg: int                # counter-clockwise display rotation: 0, 90, 180 or 270
    pix_fmt: str
    start_s: float = 0.0             # first frame's time after the container's start: the timeline's zero
    color_space: str | None = None
    color_range: str | None = None
    color_transfer: str | None = None
    color_primaries: str | None = None

    @property
    def display_size(self) -> tuple[int, int]:
        """(width, height) of the frames read_frames returns."""
        turned = self.rotation_deg in (90, 270)
        return (self.height, self.width) if turned else (self.width, self.height)

    def n_frames_at(self, fps: Fraction) -> int:
        """How many frames at fps start before the stream ends."""
        n_source = self.n_frames or _frames_within(self.duration_s, self.fps)
        return math.ceil(Fraction(n_source) * Fraction(fps) / self.fps)


@dataclass(frozen=True)
class AudioStream:
    index: int
    codec: str
    sample_rate_hz: int
    n_channels: int
    channel_layout: str
    sample_fmt: str
    duration_s: float

    @property
    def is_lossless(self) -> bool:
        return self.codec.startswith("pcm_") or self.codec in ("flac", "alac")


@dataclass(frozen=True)
class MediaInfo:
    path: Path
    format_name: str
    duration_s: float
    size_bytes: int
    streams: tuple[Stream, ...]
    video: VideoStream | None               # the main picture (cover art is not one)
    audio_streams: tuple[AudioStream, ...]  # the first is the main audio
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def audio(self) -> AudioStream | None:
        return self.audio_streams[0] if self.audio_streams else None

    def n_streams_of(self, kind: str) -> int:
        return sum(s.kind == kind for s in self.streams)

    @property
    def n_other_streams(self) -> int:
        """Streams besides the main video and main audio: extra audio, subtitles, data..."""
        main = {s.index for s in (self.video, self.audio) if s is not None}
        return sum(s.index not in main for s in self.streams)


# --- ffmpeg itself ----------------------------------------------------------------------------

def ffmpeg_available() -> bool:
    return all(shutil.which(tool) for tool in ("ffmpeg", "ffprobe"))


def require_ffmpeg() -> None:
    missing = [tool for tool in ("ffmpeg", "ffprobe") if not shutil.which(tool)]
    if missing:
        raise MediaError(f"{' and '.join(missing)} not found on PATH", hint="install it: apt-get install ffmpeg")


def stderr_tail(stderr: bytes | str | None, n_lines: int = 3) -> str:
    """The last lines ffmpeg wrote, on one line, without its '[mov,mp4 @ 0x55...]' prefixes."""
    text = stderr.decode(errors="replace") if isinstance(stderr, bytes) else (stderr or "")
    lines = [re.sub(r"^\[[^\]]* @ 0x[0-9a-f]+\] ", "", ln.strip()) for ln in text.splitlines() if ln.strip()]
    return " | ".join(lines[-n_lines:])[-400:] or "no message"


def input_file(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaError(f"input file not found: {p}", hint="check the path")
    if not p.is_file():
        raise MediaError(f"input is not a file: {p}", hint="give the path of a video file")
    if p.stat().st_size == 0:
        raise MediaError(f"input file is empty (0 bytes): {p}", hint="copy or export it again")
    return p


# --- probe --------------------------------------------------------------------------------------

def probe(path: str | os.PathLike) -> MediaInfo:
    require_ffmpeg()
    p = input_file(path)
    try:
        data = ffmpeg.probe(str(p), v="error", show_entries="packet=stream_index,pts_time",
                            read_intervals=f"%+#{PROBE_PACKETS}")
    except ffmpeg.Error as e:
        said = stderr_tail(e.stderr, 2).replace(f"{p}: ", "")
        raise MediaError(f"not a readable media file: {p} (ffprobe: {said})",
                         hint="check that it is a complete video or audio file") from None
    streams, fmt = data.get("streams", []), data["format"]
    if not streams:
        raise MediaError(f"no audio or video streams in {p}", hint="check that it is a video file")
    info = MediaInfo(
        path=p, format_name=fmt.get("format_name", "?"), duration_s=float(fmt.get("duration", 0) or 0),
        size_bytes=p.stat().st_size, streams=tuple(_stream(s) for s in streams),
        video=_main_video(streams, data.get("packets", []), fmt),
        audio_streams=tuple(_audio(s, fmt) for s in streams if s.get("codec_type") == "audio"),
        tags=dict(fmt.get("tags", {})))
    _check_complete(info, streams)
    return info


def as_info(source: str | os.PathLike | MediaInfo) -> MediaInfo:
    return source if isinstance(source, MediaInfo) else probe(source)


def _stream(s: dict) -> Stream:
    flags = tuple(k for k, v in s.get("disposition", {}).items() if v)
    return Stream(index=int(s["index"]), kind=s.get("codec_type", "unknown"), codec=s.get("codec_name", "unknown"),
                  codec_tag=s.get("codec_tag_string", ""), disposition=flags)


def _rate(text: str | None) -> Fraction | None:
    try:
        rate = Fraction(text or "")
    except (ValueError, ZeroDivisionError):
        return None
    return rate if rate > 0 else None


def _main_video(streams: list[dict], packets: list[dict], fmt: dict) -> VideoStream | None:
    pictures = [s for s in streams if s.get("codec_type") == "video"
                and not s.get("disposition", {}).get("attached_pic")]
    if not pictures:
        return None
    s = pictures[0]
    r_fps, avg_fps = _rate(s.get("r_frame_rate")), _rate(s.get("avg_frame_rate"))
    pts = sorted(float(p["pts_time"]) for p in packets
                 if p.get("stream_index") == s["index"] and p.get("pts_time") not in (None, "N/A"))
    rates_differ = bool(r_fps and avg_fps and abs(r_fps - avg_fps) > r_fps / 500)
    is_vfr = rates_differ or _irregular(pts[:-_REORDER_DEPTH])
    fps = (avg_fps or r_fps) if is_vfr else (r_fps or avg_fps)
    if fps is None:
        raise MediaError(f"video stream {s['index']} of {fmt['filename']} has no frame rate",
                         hint="re-encode it at a constant rate: ffmpeg -i IN -r 25 OUT")
    return VideoStream(
        index=int(s["index"]), codec=s.get("codec_name", "unknown"), width=int(s["width"]), height=int(s["height"]),
        fps=fps.limit_denominator(1001) if is_vfr else fps, is_vfr=is_vfr,
        n_frames=int(s["nb_frames"]) if str(s.get("nb_frames", "")).isdigit() else None,
        duration_s=_duration(s, fmt), rotation_deg=_rotation(s), pix_fmt=s.get("pix_fmt", "unknown"),
        start_s=_start(s, fmt), color_space=s.get("color_space"), color_range=s.get("color_range"),
        color_transfer=s.get("color_transfer"), color_primaries=s.get("color_primaries"))


def _irregular(pts: list[float]) -> bool:
    """Frame intervals that differ by more than jitter (and a millisecond of rounding): variable rate."""
    steps = [b - a for a, b in zip(pts, pts[1:], strict=False) if b > a]
    if len(steps) < 3:
        return False
    typical = sorted(steps)[len(steps) // 2]
    return max(steps) - min(steps) > _VFR_JITTER * typical + 1e-3


def _rotation(s: dict) -> int:
    """Counter-clockwise display rotation from the display matrix (or the legacy rotate tag)."""
    for side in s.get("side_data_list", []):
        if "rotation" in side:
            return round(float(side["rotation"])) % 360
    return round(float(s.get("tags", {}).get("rotate", 0))) % 360


def _audio(s: dict, fmt: dict) -> AudioStream:
    n_channels = int(s.get("channels", 0))
    layout = s.get("channel_layout") or {1: "mono", 2: "stereo"}.get(n_channels, f"{n_channels} channels")
    return AudioStream(index=int(s["index"]), codec=s.get("codec_name", "unknown"),
                       sample_rate_hz=int(s.get("sample_rate", 0)), n_channels=n_channels, channel_layout=layout,
                       sample_fmt=s.get("sample_fmt", ""), duration_s=_duration(s, fmt))


def _duration(s: dict, fmt: dict) -> float:
    """The stream's own duration: its header's, Matroska's DURATION tag (an end time), or the container's."""
    if s.get("duration") not in (None, "N/A"):
        return float(s["duration"])
    tag = s.get("tags", {}).get("DURATION")
    if tag:
        h, m, sec = tag.split(":")
        return int(h) * 3600 + int(m) * 60 + float(sec) - _start(s, fmt)
    return float(fmt.get("duration") or 0) - _start(s, fmt)


def _start(s: dict, fmt: dict) -> float:
    """A stream can start after the container (Matroska shifts video past an AAC encoder delay)."""
    try:
        return max(0.0, float(s["start_time"]) - float(fmt["start_time"]))
    except (KeyError, ValueError):
        return 0.0


def _check_complete(info: MediaInfo, streams: list[dict]) -> None:
    """An mp4 cut short can keep its index (written first): then the index outweighs the file.

    Only the mp4 family: its stream bit rates come from that index, other formats' are nominal.
    """
    if "mp4" not in info.format_name:
        return
    expected = sum(int(s.get("bit_rate", 0) or 0) * float(s.get("duration", 0) or 0) / 8 for s in streams)
    if expected > 1.05 * info.size_bytes + 65536:
        raise MediaError(f"file is truncated: {info.path} holds {info.size_bytes} bytes, its index "
                         f"describes about {int(expected)}", hint="copy or download it again")


def require_video(info: MediaInfo) -> VideoStream:
    if info.video is None:
        raise MediaError(f"no video stream in {info.path} (it holds only {_kinds(info)})",
                         hint="give a video file, not an audio file")
    return info.video


def require_audio(info: MediaInfo) -> AudioStream:
    if info.audio is None:
        raise MediaError(f"video without an audio stream: {info.path} (it holds only {_kinds(info)})",
                         hint="give a video with its soundtrack")
    return info.audio


def _kinds(info: MediaInfo) -> str:
    return ", ".join(sorted({s.kind for s in info.streams}))


# --- shared by reading and writing -----------------------------------------------------------

def exact_seconds(t_s: float | Fraction) -> Fraction:
    """Seconds as an exact Fraction; floats are read to the microsecond (0.1 -> 1/10)."""
    return t_s if isinstance(t_s, Fraction) else Fraction(t_s).limit_denominator(1_000_000)


def seconds_arg(t_s: Fraction) -> str:
    """Seconds as ffmpeg reads them."""
    return f"{float(t_s):.6f}"


def _frames_within(duration_s: float, fps: Fraction) -> int:
    # ffprobe prints durations to the microsecond: forgive that much rounding.
    return math.ceil(exact_seconds(duration_s) * fps - Fraction(1, 1000))


def color_matrix(video: VideoStream) -> tuple[str, bool]:
    """The YUV<->RGB matrix (and full range or not) reading and writing share, so pixels round-trip."""
    matrix = {"bt709": "bt709", "bt2020nc": "bt2020", "bt2020c": "bt2020", "smpte240m": "smpte240m",
              "fcc": "fcc"}.get(video.color_space or "", "bt601")
    return matrix, video.color_range == "pc" or video.pix_fmt.startswith("yuvj")


def color_tags(video: VideoStream) -> dict[str, str]:
    """The source's colour tags an encoder copies, as ffmpeg options: only those it states ("unknown" is none)."""
    return {option: value for option, value in (("colorspace", video.color_space),
                                                ("color_primaries", video.color_primaries),
                                                ("color_trc", video.color_transfer))
            if value and value != "unknown"}
