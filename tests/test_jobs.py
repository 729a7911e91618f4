"""NAVA's JSONL tasks: line checks before any model loads, one file per task, resume, new-video writing."""

import json
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image

from nava_dub import jobs, media
from nava_dub.errors import MediaError, UsageError
from nava_dub.jobs import Job, JobOptions, read_jobs, run_jobs
from tests import tiny_nava

T = 3                                   # 9 frames = 0.375 s at 24 fps
OPTIONS = JobOptions(n_latent_frames=T, height_px=64, width_px=64, steps=2)


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # see tests/conftest.py


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    folder = tmp_path_factory.mktemp("inputs")
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 72, 3), dtype=np.uint8)).save(folder / "first.png")
    t = np.arange(2 * 22050) / 22050
    media.write_wav(folder / "voice.wav", (0.3 * np.sin(2 * np.pi * 220 * t))[None].astype(np.float32), 22050)
    media.write_wav(folder / "short.wav", (0.3 * np.sin(2 * np.pi * 220 * t[:11025]))[None].astype(np.float32), 22050)
    return folder


def _write_jobs(folder, lines) -> object:
    path = folder / "jobs.jsonl"
    path.write_text("\n".join(line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)
                              for line in lines) + "\n", encoding="utf-8")
    return path


ALL_TASKS = [
    {"prompt": "海边的男人说<S>Hello there<E>", "spk_wavs": ["voice.wav"]},
    "",
    {"prompt": "A cat jumps off the sofa.", "image_path": "first.png"},
    {"text": "风声和海浪声", "task": "t2a"},
]


def test_lines_become_jobs(inputs):
    read = read_jobs(_write_jobs(inputs, ALL_TASKS))
    assert [(j.index, j.line_number, j.task) for j in read] == [(0, 1, "t2av"), (1, 3, "ti2av"), (2, 4, "t2a")]
    assert read[0].speaker_wavs == (inputs / "voice.wav",) and read[1].image_path == inputs / "first.png"
    assert read[2].prompt == "风声和海浪声"                                  # NAVA's legacy `text` field
    assert [j.output_name for j in read] == ["0000-海边的男人说-S-Hello-there-E.mp4", "0001-A-cat-jumps-off-the-sofa.mp4",
                                             "0002-风声和海浪声.wav"]


@pytest.mark.parametrize("line, message", [
    ("{not json", "not JSON"),
    ('["a list"]', "not an object"),
    ({"prompt": "x", "imgae_path": "first.png"}, "unknown field"),
    ({"prompt": "  "}, "no prompt"),
    ({"prompt": "x", "image_path": "first.png", "task": "t2a"}, "with an image_path"),
    ({"prompt": "x", "task": "ti2av"}, "without an image_path"),
    ({"prompt": "x", "task": "v2v"}, "task 'v2v'"),
    ({"prompt": "x", "image_path": "nowhere.png"}, "image_path file not found"),
    ({"prompt": "<S>a<E><S>b<E>", "spk_wavs": ["voice.wav"]}, "1 spk_wavs for 2 `<S>` spans"),
    ({"prompt": "<S>a<E>", "spk_wavs": "voice.wav"}, "not a list of paths"),
])
def test_a_bad_line_is_named_before_any_model_loads(inputs, monkeypatch, line, message):
    monkeypatch.setattr("nava_dub.models.load_models", _refuse)
    path = _write_jobs(inputs, [{"prompt": "fine"}, line])
    with pytest.raises(UsageError, match=message) as err:
        run_jobs(path, inputs / "never", weights_dir=tiny_nava.weights_dir(), options=OPTIONS)
    assert f"{path} line 2:" in err.value.message and err.value.hint
    assert not (inputs / "never").exists()


def _refuse(*args, **kwargs):
    raise AssertionError("models loaded before every line was checked")


def test_a_short_reference_is_named_before_any_model_loads(inputs, monkeypatch):
    monkeypatch.setattr("nava_dub.models.load_models", _refuse)
    path = _write_jobs(inputs, [{"prompt": "fine"}, {"prompt": "<S>hi<E>", "spk_wavs": ["short.wav"]}])
    with pytest.raises(MediaError, match=r"line 2: .*short.wav: reference audio is 0.50 s long"):
        run_jobs(path, inputs / "out-short", weights_dir=tiny_nava.weights_dir(), options=OPTIONS)


def test_an_over_long_prompt_fails_before_generation(inputs, monkeypatch):
    monkeypatch.setattr("nava_dub.generate.generate", _refuse)
    path = _write_jobs(inputs, [{"prompt": "fine"}, {"prompt": " ".join(["word"] * 600)}])
    with pytest.raises(UsageError, match="line 2: prompt is .* over NAVA's 512-token limit"):
        run_jobs(path, inputs / "out-long", weights_dir=tiny_nava.weights_dir(), options=OPTIONS)


def test_options_are_checked():
    for bad in (JobOptions(n_latent_frames=0), JobOptions(height_px=64), JobOptions(height_px=60, width_px=64),
                JobOptions(steps=0), JobOptions(memory="huge")):
        with pytest.raises(UsageError):
            bad.validate()


def test_each_task_writes_a_playable_file_and_a_second_run_skips(inputs, monkeypatch):
    out = inputs / "out"
    results = run_jobs(_write_jobs(inputs, ALL_TASKS), out, weights_dir=tiny_nava.weights_dir(), options=OPTIONS)
    assert [r.status for r in results] == ["written"] * 3
    n_frames, duration_s = 4 * T - 3, (4 * T - 3) / 24
    for result in results[:2]:
        info = media.probe(result.path)
        assert info.video.codec == "h264" and info.video.fps == 24 and info.video.n_frames == n_frames
        assert (info.video.width, info.video.height) == (64, 64)
        assert info.audio.codec == "aac" and info.audio.sample_rate_hz == 16000 and info.audio.n_channels == 2
        assert info.duration_s == pytest.approx(duration_s, abs=0.03)
        assert media.read_frames(info).shape == (n_frames, 64, 64, 3)
    wav = media.probe(results[2].path)
    assert wav.video is None and wav.audio.codec == "pcm_s16le" and wav.audio.sample_rate_hz == 16000
    assert wav.duration_s == pytest.approx(duration_s, abs=0.03)
    assert sorted(p.name for p in out.iterdir()) == sorted(r.path.name for r in results)   # no temp files left
    stamps = [r.path.stat().st_mtime_ns for r in results]
    monkeypatch.setattr("nava_dub.models.load_models", _refuse)
    again = run_jobs(_write_jobs(inputs, ALL_TASKS), out, weights_dir=tiny_nava.weights_dir(), options=OPTIONS)
    assert [r.status for r in again] == ["skipped"] * 3
    assert [r.path.stat().st_mtime_ns for r in again] == stamps


def test_a_low_memory_run_streams_the_blocks_and_writes_what_max_writes(inputs, monkeypatch):
    from nava_dub import placement
    placed = []
    load_placed = placement.load_placed
    monkeypatch.setattr(placement, "load_placed", lambda *a, **kw: placed.append(load_placed(*a, **kw)) or placed[-1])
    lines = [{"prompt": "海边的男人说<S>Hello there<E>", "spk_wavs": ["voice.wav"], "task": "t2a"}]
    written = {}
    for mode in ("max", "low"):
        options = JobOptions(n_latent_frames=T, steps=2, memory=mode, device="cpu")
        [result] = run_jobs(_write_jobs(inputs, lines), inputs / f"out-{mode}", weights_dir=tiny_nava.weights_dir(),
                            options=options)
        written[mode] = media.read_audio(result.path, 16000, None)
    assert placed[0].offload is None and placed[1].offload is not None and placed[1].offload.n_bytes_copied > 0
    np.testing.assert_allclose(written["low"], written["max"], atol=2e-3, rtol=0)   # 16-bit samples, ≤ a few LSB


def test_image_jobs_take_the_image_bucket_without_a_size():
    image = np.zeros((1080, 1920, 3), np.uint8)
    job = Job(0, 1, "ti2av", "x")
    request = jobs._request(job, jobs._Inputs(image=image), None, JobOptions(n_latent_frames=2))
    assert (request.height_px, request.width_px) == (704, 1280) and request.first_frame is image
    text_job = jobs._request(Job(1, 2, "t2av", "x"), jobs._Inputs(), None, JobOptions(n_latent_frames=2, seed=5))
    assert (text_job.height_px, text_job.width_px) == (704, 1280) and text_job.seed == 6


def test_write_new_video(tmp_path):
    y, x = np.mgrid[0:32, 0:48]
    frames = np.stack([np.stack([x * 5, y * 7, np.full_like(x, 40 * t)], axis=-1) for t in range(5)]).astype(np.uint8)
    waveform = (0.1 * np.random.default_rng(1).standard_normal((2, 3200))).astype(np.float32)
    info = media.write_new_video(tmp_path / "new.mp4", frames, Fraction(24), waveform, 16000)
    assert info.path == tmp_path / "new.mp4" and info.video.n_frames == 5 and info.video.pix_fmt == "yuv420p"
    assert info.video.color_space == "bt709" and info.audio.codec == "aac"
    decoded = media.read_frames(info)
    assert np.abs(decoded.astype(int) - frames.astype(int)).mean() < 3    # colours and orientation survive
    silent = media.write_new_video(tmp_path / "silent.mp4", frames, 24, None)
    assert silent.audio is None and silent.video.n_frames == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.mp4", "silent.mp4"]
