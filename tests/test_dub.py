"""The whole dub on CPU with tiny random weights: what must change changes, everything else is the source's."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest

from nava_dub import media
from nava_dub.options import DubOptions
from nava_dub.pipeline import dub
from nava_dub.timeline import Span
from nava_dub.transcript import write_transcript
from tests import fake_nava, tiny_nava
from tests.clips import ffmpeg, make_talking_clip, spoken_lines
from tests.speech_models import torch_threads

FACE = Path(__file__).parent / "data" / "face" / "astronaut_face.jpg"
LINES = (("en-us", "Hello there, this is a short test."), ("en-gb+f3", "And this is the other voice."))


def _clip_with_transcript(folder: Path, *, face: bool, audio_codec="pcm_s16le", name="in.mkv"):
    """A 25 fps clip (lossless audio so untouched samples can be compared exactly) and its transcript."""
    talk = make_talking_clip(folder, name="talk" + Path(name).suffix, fps="25", size=(192, 144), lines=LINES,
                             gaps_s=1.2, audio_codec=audio_codec, sample_rate_hz=16000)   # > max gap: 2 windows
    clip = folder / name
    if face:   # the public-domain astronaut portrait drifting over a grey background
        duration = media.probe(talk).duration_s
        ffmpeg("-i", str(talk), "-loop", "1", "-i", str(FACE), "-filter_complex",
               "[1:v]scale=136:136[f];color=c=0x606060:s=192x144:r=25[bg];"
               "[bg][f]overlay=x='28+6*sin(2*t)':y=4:shortest=1,format=yuv420p[v]",
               "-map", "[v]", "-map", "0:a", "-c:v", "ffv1", "-c:a", "copy", "-t", f"{duration:.3f}", str(clip))
    else:
        talk.rename(clip)
        (folder / f".{talk.name}.lines.json").rename(folder / f".{clip.name}.lines.json")
    lines = spoken_lines(talk if face else clip)
    transcript = folder / "spans.json"
    write_transcript(transcript, [Span(line.start_s, line.end_s, line.text, f"SPEAKER_0{i % 2}")
                                  for i, line in enumerate(lines)])
    return clip, transcript, lines


def _dub(clip, transcript, output, **options):
    defaults = dict(output=output, transcript=transcript, weights_dir=tiny_nava.weights_dir(), steps=2,
                    resolution_px=128, device="cpu", codec="ffv1", refs=(str(fake_nava.voice(clip.parent)),))
    with torch_threads(2):
        return dub(clip, DubOptions(**{**defaults, **options}), models=tiny_nava.models())


def _packets(path):
    return subprocess.run(["ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries",
                           "packet=size,pts", "-of", "csv", str(path)], capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    return _clip_with_transcript(tmp_path_factory.mktemp("plain"), face=False)


def test_keep_mode_changes_only_the_speech(tmp_path, plain):
    clip, transcript, lines = plain
    before = clip.read_bytes()
    report = _dub(clip, transcript, tmp_path / "out.mkv", video_mode="keep")
    assert clip.read_bytes() == before                                    # the input is never touched
    source, result = media.probe(clip), media.probe(report.output)
    assert abs(result.duration_s - source.duration_s) <= 1 / 25
    assert (result.video.fps, result.video.display_size) == (source.video.fps, source.video.display_size)
    assert _packets(report.output) == _packets(clip)                      # picture stream-copied
    assert result.audio.codec == source.audio.codec == "pcm_s16le"        # lossless stays lossless
    old = media.read_audio(clip, 16000, 1)[0]
    new = media.read_audio(report.output, 16000, 1)[0]
    assert old.shape == new.shape
    changed = np.flatnonzero(old != new) / 16000
    assert changed.size, "the speech was not replaced"
    margin = 0.2 + 0.03 + 0.05                                             # span margin, crossfade, token rounding
    assert all(any(line.start_s - margin <= t <= line.end_s + margin for line in lines) for t in changed[::50])
    record = json.loads(report.record.read_text())
    assert record["seed"] == 0 and record["options"]["video_mode"] == "keep"
    assert len(record["windows"]) == report.n_windows >= 1
    assert record["weights"]["transformer"]["size_bytes"] > 0 and "torch" in record["versions"]
    assert {"model", "compositing audio"} <= set(record["timings_s"])


def test_same_seed_same_output_and_resume_from_cache(tmp_path, plain, monkeypatch):
    clip, transcript, _ = plain
    from nava_dub import dub_window
    calls = []
    real = dub_window.generate_window
    monkeypatch.setattr(dub_window, "generate_window", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = _dub(clip, transcript, tmp_path / "a.mkv", video_mode="keep", seed=7)
    n_windows = len(calls)
    again = _dub(clip, transcript, tmp_path / "a.mkv", video_mode="keep", seed=7)   # resumes: no model call
    assert len(calls) == n_windows and again.n_cached == n_windows
    fresh = _dub(clip, transcript, tmp_path / "b.mkv", video_mode="keep", seed=7, use_cache=False)
    assert np.array_equal(media.read_audio(first.output, 16000, 1), media.read_audio(fresh.output, 16000, 1))
    other = _dub(clip, transcript, tmp_path / "c.mkv", video_mode="keep", seed=8, use_cache=False)
    assert not np.array_equal(media.read_audio(first.output, 16000, 1), media.read_audio(other.output, 16000, 1))


def test_edited_transcript_regenerates_only_changed_windows(tmp_path, plain, monkeypatch):
    clip, transcript, lines = plain
    from nava_dub import dub_window
    calls = []
    real = dub_window.generate_window
    monkeypatch.setattr(dub_window, "generate_window", lambda *a, **k: calls.append(a[3].index) or real(*a, **k))
    spans = [Span(line.start_s, line.end_s, line.text, f"SPEAKER_0{i % 2}") for i, line in enumerate(lines)]
    write_transcript(tmp_path / "t.json", spans)
    first = _dub(clip, tmp_path / "t.json", tmp_path / "o.mkv", video_mode="keep", margin_s=0.1)
    assert first.n_windows == 2, "the two lines should plan as two windows (max gap)"
    spans[1] = Span(spans[1].start_s, spans[1].end_s, "A translated second line.", spans[1].speaker)
    write_transcript(tmp_path / "t.json", spans)
    calls.clear()
    second = _dub(clip, tmp_path / "t.json", tmp_path / "o.mkv", video_mode="keep", margin_s=0.1)
    assert calls == [1] and second.n_cached == 1


@pytest.fixture(scope="module")
def faced(tmp_path_factory):
    return _clip_with_transcript(tmp_path_factory.mktemp("face"), face=True)


def test_face_mode_changes_pixels_only_in_the_face_region(tmp_path, faced):
    clip, transcript, _ = faced
    report = _dub(clip, transcript, tmp_path / "face.mkv", video_mode="face")
    assert not report.notes, report.notes                                  # the face was found
    source = media.read_frames(clip)
    result = media.read_frames(report.output)
    assert result.shape == source.shape
    differs = np.any(source != result, axis=-1)                            # ffv1: every change is ours
    assert differs.any(), "nothing was regenerated"
    rows, cols = np.nonzero(differs.any(axis=0))
    assert 10 <= rows.min() and rows.max() <= 143 and 30 <= cols.min() and cols.max() <= 165  # around the face
    assert not differs[:, :, :20].any() and not differs[:, :8, :].any()   # background corners untouched


def test_face_mode_without_a_face_falls_back_to_keep(tmp_path, plain):
    clip, transcript, _ = plain                                            # testsrc2: no face
    report = _dub(clip, transcript, tmp_path / "nf.mkv", video_mode="face")
    assert report.notes and "no face found" in report.notes[0]
    assert _packets(report.output) == _packets(clip)


def test_full_mode_regenerates_whole_windows(tmp_path, plain):
    clip, transcript, _ = plain
    report = _dub(clip, transcript, tmp_path / "full.mkv", video_mode="full", audio_mode="full")
    source, result = media.read_frames(clip), media.read_frames(report.output)
    assert source.shape == result.shape and (source != result).any()
