"""Previews: --only and --span pick windows; a lossless excerpt reads like the source; the preview's window
is the full run's (same source read, same seed), so it sounds the same."""

import json
from fractions import Fraction

import numpy as np
import pytest
from typer.testing import CliRunner

from nava_dub import media, pipeline
from nava_dub.cli import app
from nava_dub.errors import UsageError
from nava_dub.options import DubOptions, PlanOptions
from nava_dub.plan import plan_windows
from nava_dub.selection import (
    Selection,
    excerpt_grid_s,
    excerpt_start,
    parse_selection,
    parse_time,
    select_windows,
)
from nava_dub.timeline import Span
from tests import fake_nava
from tests.clips import ffmpeg, make_rotated_clip, make_talking_clip

runner = CliRunner()


# --- parsing and choosing (pure) --------------------------------------------------------------------

@pytest.mark.parametrize("text, seconds", [("12.5", Fraction(25, 2)), ("01:02.5", Fraction(125, 2)),
                                           ("00:01:02.5", Fraction(125, 2)), ("1:00:00", Fraction(3600))])
def test_times_in_seconds_or_timecodes(text, seconds):
    assert parse_time(text) == seconds


@pytest.mark.parametrize("only, span, message", [
    ("20-12.5", None, "ends before"), ("abc-2", None, "not a time"), ("1:75-2:00", None, "run to 59"),
    ("12", None, "START-END"), ("1-2", 3, "both"), (None, 0, "from 1")])
def test_bad_selections_are_usage_errors(only, span, message):
    with pytest.raises(UsageError, match=message):
        parse_selection(only, span)


def test_selections_pick_the_windows_of_the_plan():
    spans = (Span(1.0, 2.0, "one", "A"), Span(5.0, 6.0, "two", "B"), Span(10.0, 11.0, "three", "A"))
    windows = plan_windows(spans, 14.0)
    assert len(windows) == 3
    only = parse_selection("00:00:04.5-7", None)
    assert [w.index for w in select_windows(windows, spans, only)] == [1]
    assert [w.index for w in select_windows(windows, spans, Selection(Fraction(0), Fraction(14)))] == [0, 1, 2]
    assert [w.index for w in select_windows(windows, spans, parse_selection(None, 3))] == [2]
    with pytest.raises(UsageError, match="no re-voiced speech"):
        select_windows(windows, spans, parse_selection("12.5-13", None))
    with pytest.raises(UsageError, match="has 3 lines"):
        select_windows(windows, spans, parse_selection(None, 4))
    only_a = plan_windows(spans, 14.0, PlanOptions(speakers=("A",)))
    with pytest.raises(UsageError, match="not re-voiced"):
        select_windows(only_a, spans, parse_selection(None, 2))


def test_the_excerpt_starts_on_the_grid_every_clock_shares():
    assert excerpt_grid_s(Fraction(25), 16000) == 1
    assert excerpt_grid_s(Fraction(30), 48000) == Fraction(1, 6)
    assert excerpt_grid_s(Fraction(30000, 1001), 48000) == Fraction(1001, 24)
    assert excerpt_start(Fraction(157, 24), Fraction(25), 16000) == (6, True)
    assert excerpt_start(Fraction(157, 24), Fraction(30000, 1001), 48000) == (Fraction(157, 24), False)


# --- the lossless excerpt ----------------------------------------------------------------------------

def _reads_alike(source, excerpt, start_s):
    for offset in (Fraction(0), Fraction(5, 24), Fraction(13, 24)):
        duration = Fraction(25, 24)
        assert np.array_equal(media.read_frames(source, start_s + offset, duration, fps=24),
                              media.read_frames(excerpt, offset, duration, fps=24))
        assert np.array_equal(media.read_audio(source, 16000, 2, start_s + offset, duration),
                              media.read_audio(excerpt, 16000, 2, offset, duration))


def test_an_excerpt_reads_exactly_like_its_source(tmp_path):
    source = make_talking_clip(tmp_path, name="s.mp4", fps="30", size=(160, 120), sample_rate_hz=48000)
    start_s = Fraction(7, 6)                                   # on the 30 fps, 24 fps and 48 kHz grid
    excerpt = media.cut_excerpt(source, tmp_path / f"e{media.EXCERPT_SUFFIX}", start_s, 2)
    assert excerpt.video.codec == "ffv1" and excerpt.audio.codec == "pcm_f32le"
    assert abs(excerpt.duration_s - 2) < 0.05
    _reads_alike(source, excerpt, start_s)


def test_a_phone_clip_and_its_colours_survive_the_cut(tmp_path):
    rotated = make_rotated_clip(tmp_path, 270, size=(160, 120), fps="25")
    excerpt = media.cut_excerpt(rotated, tmp_path / "r.mov", 1, 2)
    assert excerpt.video.display_size == media.probe(rotated).video.display_size == (120, 160)
    _reads_alike(rotated, excerpt, Fraction(1))
    tagged = tmp_path / "bt709.mp4"
    ffmpeg("-i", str(rotated), "-map", "0", "-c:v", "libx264", "-preset", "ultrafast", "-colorspace", "bt709",
           "-color_primaries", "bt709", "-color_trc", "bt709", "-c:a", "copy", str(tagged))
    cut = media.cut_excerpt(tagged, tmp_path / "t.mov", 1, 2)
    assert (cut.video.color_space, cut.video.color_primaries) == ("bt709", "bt709")
    _reads_alike(tagged, cut, Fraction(1))


# --- previews ----------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_lines(tmp_path_factory):
    folder = tmp_path_factory.mktemp("preview")
    clip, transcript = fake_nava.clip_with_transcript(folder, "talk.mov", lines=fake_nava.TWO_LINES, gaps_s=1.5,
                                                      audio_codec="pcm_s16le")
    return clip, transcript, fake_nava.voice(folder), fake_nava.fake_weights(folder / "weights")


def _options(output, transcript, ref, weights, **kw):
    return DubOptions(**{**dict(output=output, transcript=transcript, refs=(str(ref),), weights_dir=weights, steps=2,
                                resolution_px=128, device="cpu", codec="ffv1", video_mode="full"), **kw})


def test_a_preview_sounds_like_the_same_window_of_the_full_run(tmp_path, two_lines, monkeypatch):
    clip, transcript, ref, weights = two_lines
    fake = fake_nava.install(monkeypatch)
    full = pipeline.dub(clip, _options(tmp_path / "full.mkv", transcript, ref, weights, use_cache=False))
    full_source = fake.sources[1]
    preview = pipeline.dub(clip, _options(tmp_path / "prev.mkv", transcript, ref, weights, use_cache=False),
                           selection=parse_selection(None, 2))
    assert fake.generated == [0, 1, 1] and preview.n_windows == 1
    assert preview.preview["exact"] and preview.preview["windows"] == [1]
    assert np.array_equal(fake.sources[1].frames, full_source.frames)          # the same picture read ...
    assert np.array_equal(fake.sources[1].waveform_16k, full_source.waveform_16k)   # ... and sound
    start_s = Fraction(preview.preview["excerpt_start_s"]).limit_denominator(1000)
    result = media.probe(preview.output)
    assert result.duration_s < media.probe(clip).duration_s - 3                 # an excerpt, not the whole
    n = result.audio.duration_s
    heard = media.read_audio(preview.output, 16000, 1, 0, n)
    assert np.array_equal(heard, media.read_audio(full.output, 16000, 1, start_s, n))
    record = json.loads(preview.record.read_text())
    assert record["preview"]["selection"] == "--span 2" and [w["index"] for w in record["windows"]] == [1]
    assert fake_nava.leftovers(tmp_path) == []                                  # the excerpt is gone


def test_preview_windows_share_the_cache_of_the_full_run(tmp_path, two_lines, monkeypatch):
    clip, transcript, ref, weights = two_lines
    fake = fake_nava.install(monkeypatch)
    output = tmp_path / "out.mkv"
    pipeline.dub(clip, _options(output, transcript, ref, weights), selection=parse_selection("4-7", None))
    report = pipeline.dub(clip, _options(output, transcript, ref, weights))
    assert fake.generated == [1, 0] and report.n_cached == 1


def test_cli_preview_and_its_dry_run(tmp_path, two_lines, monkeypatch):
    clip, transcript, ref, weights = two_lines
    fake = fake_nava.install(monkeypatch)
    base = ["dub", str(clip), "-t", str(transcript), "--ref", str(ref), "--weights", str(weights), "--device", "cpu",
            "--steps", "2", "--resolution", "128", "--video", "keep", "-q"]
    dry = runner.invoke(app, base + ["-o", str(tmp_path / "p.mp4"), "--span", "1", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "preview: windows 0" in dry.stdout and "8 model passes per window" in dry.stdout
    assert not (tmp_path / "p.mp4").exists() and fake.loads == 0
    done = runner.invoke(app, base + ["-o", str(tmp_path / "p.mp4"), "--only", "0:01-0:03"])
    assert done.exit_code == 0, done.output
    assert "preview of" in done.stdout and fake.generated == [0]
    assert media.probe(tmp_path / "p.mp4").duration_s < media.probe(clip).duration_s - 3
