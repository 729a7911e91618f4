"""The media layer against real files made by ffmpeg and espeak-ng (tests/clips.py)."""

from __future__ import annotations

import hashlib
import os
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from nava_dub import media
from nava_dub.errors import MediaError, UsageError
from nava_dub.timeline import convert_frame_index, seconds_to_samples
from tests import clips

pytestmark = pytest.mark.skipif(not media.ffmpeg_available(), reason="needs ffmpeg (apt-get install ffmpeg)")


# --- fixtures ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """Clips made once per module, on first use."""
    folder = tmp_path_factory.mktemp("clips")
    cache: dict[str, Path] = {}

    def get(key: str, maker, **kw) -> Path:
        if key not in cache:
            cache[key] = maker(folder, **kw)
        return cache[key]
    return get


SHORT_LINE = [("en-us", "Hello there.")]


def counter(made, fps: str = "30") -> Path:
    return made(f"counter{fps}", clips.make_counter_clip, fps=fps)


def multistream(made, suffix: str = ".mp4") -> Path:
    return made(f"multi{suffix}", clips.make_multistream_clip, name=f"multi{suffix}", lines=SHORT_LINE, gaps_s=0.3)


def pcm_clip(made, suffix: str, codec: str) -> Path:
    return made(f"pcm{suffix}{codec}", clips.make_talking_clip, name=f"lossless_{codec}{suffix}", lines=SHORT_LINE,
                gaps_s=0.3, size=(160, 120), audio_codec=codec, sample_rate_hz=22050)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hidden_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def video_packet_hashes(path: Path) -> list[str]:
    """One md5 per packet of the main video, as ffmpeg's framemd5 muxer prints them (stream copy)."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:v:0", "-c", "copy", "-f", "framemd5", "-"],
                         check=True, capture_output=True, text=True).stdout
    return [line.split(",")[-1].strip() for line in out.splitlines() if line and not line.startswith("#")]


def raw_samples(path: Path) -> np.ndarray:
    """The main audio as int16, decoded by plain ffmpeg (no media.py involved)."""
    out = subprocess.run(["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-f", "s16le", "-"],
                         check=True, capture_output=True).stdout
    return np.frombuffer(out, dtype=np.int16)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# --- probe ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("fps", ["25", "30000/1001", "30", "24"])
def test_probe_reads_exact_frame_rate(made, fps):
    info = media.probe(counter(made, fps))
    assert info.video.fps == Fraction(fps)
    assert isinstance(info.video.fps, Fraction)
    assert not info.video.is_vfr
    assert info.video.n_frames == 60
    assert info.video.display_size == (160, 120)
    assert info.duration_s == pytest.approx(60 / Fraction(fps), abs=0.05)
    assert info.audio.sample_rate_hz == 16000 and info.audio.n_channels == 1


def test_probe_tells_variable_frame_rate(made):
    vfr = media.probe(made("vfr", clips.make_vfr_clip, lines=SHORT_LINE, gaps_s=0.6))
    assert vfr.video.is_vfr
    assert Fraction(15) < vfr.video.fps < Fraction(30)     # full rate for 1 s, then half rate


@pytest.mark.parametrize("rotation", [90, 270])
def test_probe_reads_rotation(made, rotation):
    info = media.probe(made(f"rot{rotation}", clips.make_rotated_clip, rotation=rotation, lines=SHORT_LINE))
    assert info.video.rotation_deg == rotation
    assert (info.video.width, info.video.height) == (320, 240)
    assert info.video.display_size == (240, 320)


def test_probe_counts_channels_and_other_streams(made):
    surround = media.probe(made("surround", clips.make_surround_clip, lines=SHORT_LINE, gaps_s=0.2))
    assert (surround.audio.n_channels, surround.audio.channel_layout, surround.audio.sample_rate_hz) == (6, "5.1", 48000)
    multi = media.probe(multistream(made))
    assert [s.kind for s in multi.streams] == ["video", "audio", "audio", "subtitle", "data"]
    assert len(multi.audio_streams) == 2 and multi.audio.index == 1
    assert multi.n_streams_of("subtitle") == 1 and multi.n_other_streams == 3
    assert multi.tags["title"] == "nava test clip"


def test_probe_odd_size_audio_only_and_video_only(made):
    odd = media.probe(made("odd", clips.make_odd_size_clip, lines=SHORT_LINE, duration_s=1.0))
    assert (odd.video.width, odd.video.height) == (853, 479)
    audio_only = media.probe(made("audio_only", clips.make_audio_only, lines=SHORT_LINE))
    assert audio_only.video is None and audio_only.audio.codec == "aac"
    with pytest.raises(MediaError, match="no video stream"):
        media.require_video(audio_only)
    video_only = media.probe(made("video_only", clips.make_video_only, lines=SHORT_LINE))
    assert media.require_video(video_only) is video_only.video
    with pytest.raises(MediaError, match="video without an audio stream") as err:
        media.require_audio(video_only)
    assert str(video_only.path) in err.value.message and err.value.hint


@pytest.mark.parametrize("bad, says", [
    (clips.make_zero_byte, "empty"),
    (clips.make_text_as_video, "not a readable media file"),
    (clips.make_truncated, "not a readable media file"),
    (lambda d: clips.make_truncated(d, faststart=True), "truncated"),
    (lambda d: Path(d) / "missing.mp4", "not found"),
    (lambda d: Path(d), "not a file"),
])
def test_probe_rejects_bad_inputs_in_one_line(tmp_path, bad, says):
    path = bad(tmp_path)
    with pytest.raises(MediaError, match=says) as err:
        media.probe(path)
    assert str(path) in err.value.message
    assert "\n" not in str(err.value) and err.value.hint


def test_require_ffmpeg_says_how_to_install(monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    assert not media.ffmpeg_available()
    with pytest.raises(MediaError, match="ffmpeg") as err:
        media.require_ffmpeg()
    assert "apt-get install ffmpeg" in err.value.hint


# --- reading -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fps", ["25", "30000/1001", "30"])
@pytest.mark.parametrize("start_s, duration_s", [(0.5, 1.0), (Fraction(7, 24), Fraction(33, 24))])
def test_read_frames_gives_the_predicted_frames(made, fps, start_s, duration_s):
    info = media.probe(counter(made, fps))
    first, n_frames = media.frame_range(start_s, duration_s, info.video.fps)
    frames = media.read_frames(info, start_s, duration_s)
    assert frames.shape == (n_frames, 120, 160, 3) and frames.dtype == np.uint8
    assert [clips.frame_number(f) for f in frames] == list(range(first, first + n_frames))
    # At NAVA's 24 fps, each frame is the source frame on screen when it starts.
    first_24, n_24 = media.frame_range(start_s, duration_s, Fraction(24))
    at_24 = media.read_frames(info, start_s, duration_s, fps=24)
    assert len(at_24) == n_24
    expected = [convert_frame_index(k, Fraction(24), info.video.fps) for k in range(first_24, first_24 + n_24)]
    assert [clips.frame_number(f) for f in at_24] == expected


def test_read_frames_nava_window_counts(made):
    """A 37-latent-frame window is 145 frames at 24 fps, whatever the source rate."""
    info = media.probe(counter(made, "30000/1001"))
    assert len(media.read_frames(info, 0, Fraction(145, 24), fps=24, size=(64, 48))) == 145


def test_read_frames_pads_past_the_end_and_rejects_starts_beyond_it(made):
    info = media.probe(counter(made, "25"))          # 60 frames = 2.4 s
    frames = media.read_frames(info, 2.0, 1.0)
    assert len(frames) == 25
    assert [clips.frame_number(f) for f in frames[:10]] == list(range(50, 60))
    assert all(clips.frame_number(f) == 59 for f in frames[10:])
    with pytest.raises(MediaError, match="outside the video"):
        media.read_frames(info, 3.0, 1.0)


def test_iter_frames_matches_read_frames_and_scales(made):
    info = media.probe(counter(made, "30"))
    whole = media.read_frames(info, 0.2, 0.5, size=(64, 48))
    assert whole.shape == (15, 48, 64, 3)
    streamed = list(media.iter_frames(info, 0.2, 0.5, size=(64, 48)))
    np.testing.assert_array_equal(np.stack(streamed), whole)
    assert len(media.read_frames(info)) == 60        # no duration: to the end


def test_read_frames_is_display_oriented(tmp_path):
    """rotation_deg is counter-clockwise: the stored top-left corner shows at the bottom-left for 90."""
    clip = clips.make_counter_clip(tmp_path, n_frames=4, rotation=90, marker=True, name="marked.mp4")
    info = media.probe(clip)
    assert info.video.rotation_deg == 90
    frame = media.read_frames(info, 0, Fraction(1, 30))[0]
    assert frame.shape == (160, 120, 3)
    assert frame[-10:, :10].mean() > 200 and frame[:10, :10].mean() < 100


def test_read_frames_of_vfr_follow_the_average_rate(made):
    info = media.probe(made("vfr", clips.make_vfr_clip, lines=SHORT_LINE, gaps_s=0.6))
    frames = media.read_frames(info, 0.5, 1.0)
    assert len(frames) == media.frame_range(0.5, 1.0, info.video.fps)[1]


@pytest.mark.parametrize("rate", [16000, 44100])
def test_read_audio_length_is_exact(made, rate):
    clip = counter(made, "30")
    audio = media.read_audio(clip, rate, start_s=0.25, duration_s=1.3)
    assert audio.shape == (1, seconds_to_samples(Fraction(13, 10), rate)) and audio.dtype == np.float32
    assert np.abs(audio).max() > 0.1                  # the tone is there
    stereo = media.read_audio(clip, rate, n_channels=2, duration_s=5.0)   # past the end: zero padded
    assert stereo.shape == (2, 5 * rate) and not stereo[:, -rate:].any()
    whole = media.read_audio(clip, rate)             # the AAC encoder's padding is not part of the sound
    assert whole.shape[1] == seconds_to_samples(Fraction(2), rate)


def test_read_audio_of_pcm_is_sample_exact(tmp_path):
    rng = np.random.default_rng(0)
    samples = rng.integers(-20000, 20000, size=(2, 32000), dtype=np.int16)
    wav = tmp_path / "noise.wav"
    media.write_wav(wav, samples / 32768, 16000)
    info = media.probe(wav)
    assert (info.audio.codec, info.audio.n_channels, info.audio.sample_rate_hz) == ("pcm_s16le", 2, 16000)
    part = media.read_audio(info, 16000, n_channels=None, start_s=0.5, duration_s=1.0)
    np.testing.assert_array_equal(part, samples[:, 8000:24000] / np.float32(32768))


def test_talking_clip_speaks_where_it_says(made):
    clip = made("dialogue", clips.make_dialogue, size=(160, 120))
    lines = clips.spoken_lines(clip)
    assert [line.voice for line in lines] == ["en-us", "en-gb+f3"]
    audio = media.read_audio(clip, 16000)[0]

    def rms(start_s: float, end_s: float) -> float:
        return float(np.sqrt(np.mean(audio[int(start_s * 16000):int(end_s * 16000)] ** 2)))
    gap = (lines[0].end_s + 0.05, lines[1].start_s - 0.05)
    assert all(rms(line.start_s, line.end_s) > 20 * rms(*gap) for line in lines)
    assert not any(p.suffix == ".json" and not p.name.startswith(".") for p in clip.parent.iterdir())


def test_write_wav_is_atomic(tmp_path):
    with pytest.raises(MediaError):
        media.write_wav(tmp_path / "x.wav", np.zeros(100, np.float32), 16000, codec="no_such_codec")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(MediaError, match="does not exist"):
        media.write_wav(tmp_path / "missing" / "x.wav", np.zeros(100, np.float32), 16000)


# --- writing -------------------------------------------------------------------------------------

def test_write_output_keeps_streams_metadata_and_format(made, tmp_path):
    source = multistream(made)
    before = sha256(source)
    info = media.probe(source)
    audio = media.read_audio(info, 16000)
    progress: list[int] = []
    out = media.write_output(info, tmp_path / "out.mp4", video=media.read_frames(info),
                             audio=media.AudioTrack(audio * 0.5, 16000), on_progress=progress.append)
    assert progress[-1] == info.video.n_frames
    again = media.probe(tmp_path / "out.mp4")
    assert out.path == tmp_path / "out.mp4"
    assert [(s.kind, s.codec_tag) for s in again.streams] == [(s.kind, s.codec_tag) for s in info.streams]
    assert (again.video.fps, again.video.width, again.video.height) == (info.video.fps, 160, 120)
    assert again.video.n_frames == info.video.n_frames
    assert again.tags["title"] == "nava test clip" and again.tags["comment"] == info.tags["comment"]
    languages = subprocess.run(["ffprobe", "-v", "error", "-show_entries", "stream_tags=language", "-of", "csv=p=0",
                                str(tmp_path / "out.mp4")], capture_output=True, text=True).stdout.split()
    assert languages[1:4] == ["und", "fra", "eng"]
    assert sha256(source) == before
    assert hidden_files(tmp_path) == []


def test_write_output_to_matroska_converts_subtitles(made, tmp_path):
    info = media.probe(multistream(made))
    out = media.write_output(info, tmp_path / "out.mkv")
    assert [s.kind for s in out.streams] == ["video", "audio", "audio", "subtitle"]   # timecode lives in a tag
    assert out.streams[3].codec == "subrip"


def test_unchanged_picture_is_stream_copied(made, tmp_path):
    source = counter(made, "30000/1001")
    info = media.probe(source)
    silence = media.AudioTrack(np.zeros((1, 32000), np.float32), 16000)
    out = media.write_output(info, tmp_path / "voice_only.mp4", audio=silence)
    assert video_packet_hashes(out.path) == video_packet_hashes(source)
    assert out.video.fps == Fraction(30000, 1001)
    assert not raw_samples(out.path)[:16000].any()


@pytest.mark.parametrize("rotation", [90, 270])
def test_rotation_survives_new_frames(tmp_path, rotation):
    clip = clips.make_counter_clip(tmp_path, n_frames=12, rotation=rotation, marker=True, name="phone.mp4")
    info = media.probe(clip)
    frames = media.read_frames(info)
    out = media.write_output(info, tmp_path / "out.mp4", video=frames)
    assert out.video.rotation_deg == rotation and out.video.display_size == (120, 160)
    assert (out.video.width, out.video.height) == (160, 120)
    assert psnr(media.read_frames(out), frames) > 35


def test_unchanged_pixels_survive_a_lossless_round_trip(made, tmp_path):
    """read_frames -> write_output -> read_frames loses only 8-bit rounding (chroma restored exactly)."""
    info = media.probe(clips.make_talking_clip(tmp_path, name="odd.mp4", size=(161, 121), lines=SHORT_LINE,
                                               duration_s=1.0))
    frames = media.read_frames(info)
    out = media.write_output(info, tmp_path / "out.mkv", video=frames, codec="ffv1")
    assert (out.video.codec, out.video.width, out.video.height) == ("ffv1", 161, 121)
    assert psnr(media.read_frames(out), frames) > 40


@pytest.mark.parametrize("suffix, codec, out_suffix, out_codec", [
    (".mkv", "pcm_s16le", ".mkv", "pcm_s16le"),
    (".mov", "pcm_s16le", ".mp4", "alac"),       # mp4 takes no PCM: another lossless codec
    (".mkv", "flac", ".mkv", "flac"),
])
def test_lossless_audio_stays_bit_exact_outside_the_edit(made, tmp_path, suffix, codec, out_suffix, out_codec):
    source = pcm_clip(made, suffix, codec)
    info = media.probe(source)
    audio = media.read_audio(info, info.audio.sample_rate_hz, n_channels=None)
    edited = audio.copy()
    edited[:, 5000:9000] = 0.25
    out = media.write_output(info, tmp_path / f"out{out_suffix}", audio=media.AudioTrack(edited, 22050))
    assert out.audio.codec == out_codec and out.audio.sample_rate_hz == 22050
    before, after = raw_samples(source), raw_samples(out.path)
    assert len(before) == len(after)
    keep = np.ones(len(before), bool)
    keep[5000:9000] = False
    np.testing.assert_array_equal(after[keep], before[keep])
    assert (after[5000:9000] == 8192).all()


def test_new_audio_on_a_lossy_source_is_aac_at_the_source_rate(made, tmp_path):
    info = media.probe(made("surround", clips.make_surround_clip, lines=SHORT_LINE, gaps_s=0.2))
    tone = np.sin(np.linspace(0, 2000, 16000, dtype=np.float32))[None] * 0.3
    out = media.write_output(info, tmp_path / "out.mp4", audio=media.AudioTrack(tone, 16000))
    assert (out.audio.codec, out.audio.sample_rate_hz, out.audio.n_channels) == ("aac", 48000, 6)
    media.write_wav(tmp_path / "tone.wav", tone, 16000)
    from_file = media.write_output(info, tmp_path / "from_wav.mp4", audio=tmp_path / "tone.wav")
    assert (from_file.audio.codec, from_file.audio.n_channels) == ("aac", 6)
    assert from_file.audio.duration_s == pytest.approx(1.0, abs=0.05)


@pytest.mark.parametrize("codec, suffix, expected", [("libx265", ".mp4", "hevc"), ("prores_ks", ".mov", "prores")])
def test_codec_choice(made, tmp_path, codec, suffix, expected):
    info = media.probe(counter(made, "25"))
    out = media.write_output(info, tmp_path / f"out{suffix}", video=media.read_frames(info, 0, 0.4), codec=codec)
    assert out.video.codec == expected and out.video.fps == 25


def test_video_from_a_file_and_copy_codec(made, tmp_path):
    info = media.probe(counter(made, "25"))
    other = counter(made, "30")
    out = media.write_output(info, tmp_path / "out.mp4", video=other)
    assert out.video.fps == 25 and out.video.n_frames == 50       # the 2 s of the 30 fps clip, resampled
    copied = media.write_output(info, tmp_path / "copied.mp4", video=other, codec="copy")
    assert video_packet_hashes(copied.path) == video_packet_hashes(other)
    with pytest.raises(UsageError, match="copy"):
        media.write_output(info, tmp_path / "bad.mp4", video=media.read_frames(info, 0, 0.2), codec="copy")


def test_failed_write_leaves_nothing_and_keeps_an_old_output(made, tmp_path):
    info = media.probe(counter(made, "25"))
    old = tmp_path / "out.mp4"
    old.write_bytes(b"previous result")
    with pytest.raises(MediaError, match="ffmpeg failed") as err:
        media.write_output(info, old, video=media.read_frames(info, 0, 0.2), codec="no_such_encoder")
    assert "\n" not in str(err.value)
    assert old.read_bytes() == b"previous result"
    assert hidden_files(tmp_path) == []


def test_interrupted_write_leaves_nothing(made, tmp_path):
    info = media.probe(counter(made, "25"))

    def frames_then_ctrl_c():
        yield from media.iter_frames(info, 0, 0.5)
        raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        media.write_output(info, tmp_path / "out.mp4", video=frames_then_ctrl_c())
    assert list(tmp_path.iterdir()) == []


def test_wrong_frames_are_refused(made, tmp_path):
    info = media.probe(counter(made, "25"))
    with pytest.raises(MediaError, match=r"shape \(3, 100, 100, 3\)"):
        media.write_output(info, tmp_path / "out.mp4", video=np.zeros((3, 100, 100, 3), np.uint8))
    assert list(tmp_path.iterdir()) == []


def test_output_paths_that_cannot_work(made, tmp_path):
    source = counter(made, "25")
    before = sha256(source)
    with pytest.raises(UsageError, match="the output is the input"):
        media.write_output(source, source)
    with pytest.raises(UsageError):
        media.write_output(source, source.parent / ".." / source.parent.name / source.name)
    with pytest.raises(MediaError, match="does not exist") as err:
        media.write_output(source, tmp_path / "no" / "out.mp4")
    assert str(tmp_path / "no") in err.value.message
    assert sha256(source) == before


@pytest.fixture
def read_only_dir(tmp_path):
    folder = tmp_path / "locked"
    folder.mkdir()
    if os.geteuid() == 0:    # root ignores permission bits; the immutable flag stops it
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("running as root without chattr +i: cannot make a read-only folder")
        yield folder
        subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        yield folder
        folder.chmod(0o755)


def test_read_only_output_folder(made, read_only_dir):
    with pytest.raises(MediaError, match="cannot write to the output folder") as err:
        media.write_output(counter(made, "25"), read_only_dir / "out.mp4")
    assert str(read_only_dir) in err.value.message
    assert list(read_only_dir.iterdir()) == []
