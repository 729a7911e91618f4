"""Synthetic test media for everyone's tests: talking clips from espeak-ng voices over ffmpeg's lavfi test
pictures, plus the awkward inputs real users bring (variable frame rate, phone rotation, 5.1, odd sizes,
extra streams, audio or video only, broken files). Each takes well under a second to make.

make_talking_clip() also writes a hidden `.<clip>.lines.json` beside the clip: where each line is actually voiced,
so tests can check speech timing against the truth (spoken_lines()).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

ESPEAK_RATE_HZ = 22050
DEFAULT_LINES = (
    ("en-us", "Hello, my name is Anna and I am testing the dubbing tool."),
    ("en-gb+f3", "Nice to meet you Anna. The weather is lovely today."),
)
VOICE_PITCH = {"en-us": 40, "en-gb+f3": 75}   # two voices that sound (and diarize) apart
_VOICED = 300                                  # int16 level above which espeak's output counts as speech
_MP4_LIKE = (".mp4", ".m4v", ".mov", ".m4a")


@dataclass(frozen=True)
class SpokenLine:
    start_s: float
    end_s: float
    voice: str
    text: str


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-nostdin", "-loglevel", "error", "-y", *args],
                   check=True, capture_output=True)


def say(voice: str, text: str, pitch: int | None = None, words_per_min: int = 160) -> np.ndarray:
    """espeak-ng speech as int16 mono at 22050 Hz."""
    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "line.wav"
        pitch = VOICE_PITCH.get(voice, 50) if pitch is None else pitch
        subprocess.run(["espeak-ng", "-v", voice, "-p", str(pitch), "-s", str(words_per_min), "-w", str(wav), text],
                       check=True, capture_output=True)
        with wave.open(str(wav)) as w:
            return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def _dialogue(lines: Sequence[tuple[str, str]], gaps_s: float | Sequence[float],
              duration_s: float | None) -> tuple[np.ndarray, list[SpokenLine]]:
    gaps = [gaps_s] * (len(lines) + 1) if isinstance(gaps_s, int | float) else list(gaps_s)
    if len(gaps) != len(lines) + 1:
        raise ValueError("gaps_s needs one gap before, between and after the lines")
    pieces, spoken, n_done = [], [], 0
    for (voice, text), gap in zip(lines, gaps, strict=False):
        silence = np.zeros(round(gap * ESPEAK_RATE_HZ), np.int16)
        speech = say(voice, text)
        voiced = np.flatnonzero(np.abs(speech.astype(np.int32)) > _VOICED)
        n_done += len(silence)
        spoken.append(SpokenLine((n_done + voiced[0]) / ESPEAK_RATE_HZ, (n_done + voiced[-1] + 1) / ESPEAK_RATE_HZ,
                                 voice, text))
        pieces += [silence, speech]
        n_done += len(speech)
    pieces.append(np.zeros(round(gaps[-1] * ESPEAK_RATE_HZ), np.int16))
    samples = np.concatenate(pieces)
    if duration_s is not None:
        n = round(duration_s * ESPEAK_RATE_HZ)
        samples = np.pad(samples[:n], (0, max(0, n - len(samples))))
        spoken = [SpokenLine(s.start_s, min(s.end_s, duration_s), s.voice, s.text)
                  for s in spoken if s.start_s < duration_s]
    return samples, spoken


def _write_wav(path: Path, samples: np.ndarray) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(ESPEAK_RATE_HZ)
        w.writeframes(samples.tobytes())


def _srt(spoken: Sequence[SpokenLine]) -> str:
    def stamp(t: float) -> str:
        ms = round(t * 1000)
        return f"{ms // 3600000:02d}:{ms // 60000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"
    return "".join(f"{i}\n{stamp(s.start_s)} --> {stamp(s.end_s)}\n{s.text}\n\n"
                   for i, s in enumerate(spoken, 1))


def make_talking_clip(dir: Path, *, name: str = "talk.mp4", fps: str = "30", size: tuple[int, int] = (320, 240),
                      lines: Sequence[tuple[str, str]] = DEFAULT_LINES, gaps_s: float | Sequence[float] = 0.5,
                      audio_codec: str = "aac", sample_rate_hz: int = 16000, n_channels: int = 1,
                      extra_streams: bool = False, rotation: int | None = None, duration_s: float | None = None,
                      vfr: bool = False, video: bool = True, audio: bool = True) -> Path:
    """A dialogue clip: the lines spoken in turn with gaps_s of silence around them, over testsrc2.

    rotation: counter-clockwise display rotation (a phone clip); extra_streams: a subtitle track, a second
    audio track, a timecode track (mp4/mov) and title/comment tags; vfr: full rate for the first second,
    then every other frame.
    """
    out = Path(dir) / name
    out.parent.mkdir(parents=True, exist_ok=True)
    samples, spoken = _dialogue(lines, gaps_s, duration_s)
    total_s = len(samples) / ESPEAK_RATE_HZ
    with tempfile.TemporaryDirectory() as tmp:
        speech = Path(tmp) / "speech.wav"
        _write_wav(speech, samples)
        args = _inputs(size, fps, total_s, speech, Path(tmp), spoken, video, audio, extra_streams)
        args += _codecs(out.suffix, size, fps, audio_codec, sample_rate_hz, n_channels, vfr, video, audio)
        if extra_streams:
            args += _extras(out.suffix)
        encoded = Path(tmp) / f"encoded{out.suffix}"
        ffmpeg(*args, "-t", f"{total_s:.6f}", str(encoded))
        if rotation:   # ffmpeg 5 honours the rotate tag only when stream copying
            ffmpeg("-i", str(encoded), "-map", "0", "-c", "copy", "-metadata:s:v:0", f"rotate={rotation}", str(out))
        else:
            shutil.move(encoded, out)
    _lines_file(out).write_text(json.dumps([asdict(s) for s in spoken], indent=1))
    return out


def _inputs(size, fps, total_s, speech: Path, tmp: Path, spoken, video, audio, extra_streams) -> list[str]:
    args, maps = [], []
    if video:
        even = (size[0] + size[0] % 2, size[1] + size[1] % 2)    # testsrc2 rounds odd sizes down
        scale = f",scale={size[0]}:{size[1]}" if even != tuple(size) else ""
        args += ["-f", "lavfi", "-i", f"testsrc2=size={even[0]}x{even[1]}:rate={fps}:duration={total_s:.6f}{scale}"]
        maps += ["-map", f"{len(maps) // 2}:v"]
    if audio:
        args += ["-i", str(speech)]
        maps += ["-map", f"{len(maps) // 2}:a"]
    if extra_streams:
        (tmp / "lines.srt").write_text(_srt(spoken))
        args += ["-f", "lavfi", "-i", f"sine=frequency=330:sample_rate=16000:duration={total_s:.6f}",
                 "-i", str(tmp / "lines.srt")]
        n = len(maps) // 2
        maps += ["-map", f"{n}:a", "-map", f"{n + 1}:s"]
    return args + maps


def _codecs(suffix, size, fps, audio_codec, sample_rate_hz, n_channels, vfr, video, audio) -> list[str]:
    args = []
    if video:
        odd = size[0] % 2 or size[1] % 2
        args += ["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv444p" if odd else "yuv420p"]
        if vfr:
            args += ["-vf", f"select='lt(n\\,{fps})+not(mod(n\\,2))'", "-fps_mode", "vfr"]
    if audio:
        args += ["-c:a:0", audio_codec, "-ar:a:0", str(sample_rate_hz), "-ac:a:0", str(n_channels)]
        if audio_codec == "flac" and suffix in _MP4_LIKE:
            args += ["-strict", "-2"]
    return args


def _extras(suffix: str) -> list[str]:
    args = ["-c:a:1", "aac", "-metadata:s:a:1", "language=fra", "-metadata", "title=nava test clip",
            "-metadata", "comment=made by tests/clips.py"]
    args += ["-c:s", "mov_text" if suffix in _MP4_LIKE else "srt", "-metadata:s:s:0", "language=eng"]
    if suffix in _MP4_LIKE:
        args += ["-timecode", "00:00:10:00"]
    return args


def spoken_lines(clip: Path) -> list[SpokenLine]:
    """Where each line of a make_talking_clip clip is voiced."""
    return [SpokenLine(**row) for row in json.loads(_lines_file(Path(clip)).read_text())]


def _lines_file(clip: Path) -> Path:
    return clip.with_name(f".{clip.name}.lines.json")    # hidden, so a folder of clips holds only clips


# --- the usual suspects ----------------------------------------------------------------------------

def make_dialogue(dir: Path, fps: str = "30", **kw) -> Path:
    return make_talking_clip(dir, name=kw.pop("name", f"dialogue_{fps.replace('/', '_')}.mp4"), fps=fps, **kw)


def make_vfr_clip(dir: Path, **kw) -> Path:
    return make_talking_clip(dir, name="vfr.mp4", vfr=True, size=(160, 120), **kw)


def make_multistream_clip(dir: Path, name: str = "multi.mp4", **kw) -> Path:
    return make_talking_clip(dir, name=name, extra_streams=True, size=(160, 120), **kw)


def make_rotated_clip(dir: Path, rotation: int = 270, **kw) -> Path:
    """A phone clip: stored 320x240, shown upright at 240x320 (270 = a clockwise quarter turn)."""
    return make_talking_clip(dir, name=f"rotated_{rotation}.mp4", rotation=rotation, **kw)


def make_surround_clip(dir: Path, **kw) -> Path:
    return make_talking_clip(dir, name="surround.mp4", n_channels=6, sample_rate_hz=48000, size=(160, 120), **kw)


def make_odd_size_clip(dir: Path, **kw) -> Path:
    kw.setdefault("duration_s", 3.0)
    return make_talking_clip(dir, name="odd_853x479.mp4", size=(853, 479), **kw)


def make_audio_only(dir: Path, name: str = "audio_only.m4a", **kw) -> Path:
    return make_talking_clip(dir, name=name, video=False, **kw)


def make_video_only(dir: Path, **kw) -> Path:
    return make_talking_clip(dir, name="video_only.mp4", audio=False, size=(160, 120), **kw)


def make_long_clip(dir: Path, duration_s: float = 1860.0) -> Path:
    """A long input made cheaply: a 6.4 s clip repeated by stream copy (half an hour in about a second).

    6.4 s is a whole number of frames at 25 fps and of AAC packets at 16 kHz, so the copies join without gaps.
    """
    piece = make_talking_clip(dir, name="long_piece.mp4", size=(160, 120), fps="25", duration_s=6.4)
    out = Path(dir) / "long.mp4"
    n_loops = int(duration_s // 6.4) + 1
    ffmpeg("-stream_loop", str(n_loops), "-i", str(piece), "-c", "copy", "-t", f"{duration_s:.3f}", str(out))
    return out


def make_zero_byte(dir: Path, name: str = "empty.mp4") -> Path:
    out = Path(dir) / name
    out.write_bytes(b"")
    return out


def make_text_as_video(dir: Path, name: str = "notes.mp4") -> Path:
    out = Path(dir) / name
    out.write_text("These are meeting notes, not a video.\n" * 20)
    return out


def make_truncated(dir: Path, faststart: bool = False) -> Path:
    """The first half of a clip: an mp4 that lost its index (or, with faststart, its media data)."""
    whole = make_talking_clip(dir, name="whole.mp4", size=(160, 120))
    if faststart:
        moved = whole.with_name("whole_faststart.mp4")
        ffmpeg("-i", str(whole), "-c", "copy", "-movflags", "+faststart", str(moved))
        whole = moved
    out = Path(dir) / ("truncated_faststart.mp4" if faststart else "truncated.mp4")
    data = whole.read_bytes()
    out.write_bytes(data[: len(data) // 2])
    return out


# --- frames that say which frame they are ------------------------------------------------------------

def make_counter_clip(dir: Path, *, fps: str = "30", n_frames: int = 60, size: tuple[int, int] = (160, 120),
                      name: str | None = None, rotation: int | None = None, marker: bool = False) -> Path:
    """Frame n is flat grey at luma 16 + 2n (read it back with frame_number); with a 1 kHz tone.

    Keyframes every 15 frames and B-frames, so reads that seek land mid-GOP among reordered frames.

    marker: a white block in the stored picture's top-left corner, to see where rotation puts it.
    """
    if n_frames > 100:
        raise ValueError("frame_number tells at most 100 frames apart")
    out = Path(dir) / (name or f"counter_{fps.replace('/', '_')}.mp4")
    duration_s = n_frames / Fraction(fps)
    picture = f"color=c=black:size={size[0]}x{size[1]}:rate={fps},trim=end_frame={n_frames},geq=lum='16+2*N':cb=128:cr=128"
    if marker:
        picture += f",drawbox=x=0:y=0:w={size[0] // 4}:h={size[1] // 4}:color=white:t=fill"
    tmp = out.with_name(".unrotated" + out.suffix) if rotation else out
    ffmpeg("-f", "lavfi", "-i", picture, "-f", "lavfi", "-i", f"sine=frequency=1000:sample_rate=16000:duration={float(duration_s):.6f}",
           "-c:v", "libx264", "-preset", "fast", "-crf", "4", "-g", "15", "-bf", "3", "-pix_fmt", "yuv420p",
           "-c:a", "aac", str(tmp))
    if rotation:
        ffmpeg("-i", str(tmp), "-map", "0", "-c", "copy", "-metadata:s:v:0", f"rotate={rotation}", str(out))
        tmp.unlink()
    return out


def frame_number(frame: np.ndarray) -> int:
    """Which frame of a make_counter_clip clip an RGB frame is (from its mean grey level)."""
    luma = 16 + float(np.median(frame)) * 219 / 255
    return round((luma - 16) / 2)
