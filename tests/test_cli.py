"""The command line as a user meets it: exit codes, one-line errors, JSON on stdout, nothing left behind."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from nava_dub.cli import app
from nava_dub.timeline import Span
from nava_dub.transcript import write_transcript
from tests.clips import make_talking_clip, make_text_as_video, make_video_only
from tests.plan_rules import check_plan_rules

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    return make_talking_clip(tmp_path_factory.mktemp("cli"), fps="25", size=(160, 120))


def test_help_lists_the_commands():
    result = _run("--help")
    assert result.exit_code == 0
    for command in ("dub", "plan", "transcribe", "check"):
        assert command in result.output


def test_entry_point_reports_usage_errors():
    result = subprocess.run([sys.executable, "-m", "nava_dub", "plan", "input.mp4", "--no-such-option"],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "No such option" in result.stderr


def test_plan_json_from_an_edited_transcript(tmp_path, clip):
    transcript = tmp_path / "edited.json"
    spans = [Span(0.5, 2.0, "Bonjour à tous.", "ANNA"), Span(2.6, 4.0, "Ravi de vous voir.", "BOB")]
    write_transcript(transcript, spans)
    result = _run("plan", clip, "--transcript", transcript, "--json", "--speakers", "BOB")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["speakers"] == ["ANNA", "BOB"] and plan["fps"] == "25"
    assert [s["text"] for w in plan["windows"] for s in w["spans"]] == ["Ravi de vous voir."]
    window = plan["windows"][0]
    assert window["n_frames"] == 4 * window["n_latent_frames"] - 3
    assert "<S>Ravi de vous voir.<E>" in window["prompt"]


def test_plan_table_with_transcript(tmp_path, clip):
    transcript = tmp_path / "t.srt"
    write_transcript(transcript, [Span(0.5, 2.0, "Hello there.", "A")])
    result = _run("plan", clip, "--transcript", transcript)
    assert result.exit_code == 0, result.output
    assert "Hello there." in result.stdout and "Generation windows" in result.stdout


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "missing.mp4", "not found"),
    (make_text_as_video, "missing.mp4"),
    (make_video_only, "audio"),
])
def test_bad_inputs_are_one_line_errors(tmp_path, make, message):
    path = make(tmp_path)
    result = _run("plan", path, "--transcript", tmp_path / "unused.json")
    assert result.exit_code == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("error:") and "Traceback" not in result.stderr
    assert str(path.name) in lines[0] or message in lines[0]
    assert any(line.startswith("help:") for line in lines)


def test_broken_transcript_names_the_line(tmp_path, clip):
    transcript = tmp_path / "t.json"
    transcript.write_text('{"spans": [\n {"start_s": 1, "end_s": 2, "text": "a"},\n {"start_s": 3, "end_s": 2.5, "text": "b"}\n]}')
    result = _run("plan", clip, "--transcript", transcript)
    assert result.exit_code == 1
    assert "t.json:3:" in result.stderr and "reversed" in result.stderr


def test_missing_speech_models_name_the_folder(tmp_path, clip):
    result = _run("plan", clip, "--weights", tmp_path / "empty-weights", "--device", "cpu")
    assert result.exit_code == 1
    assert "empty-weights" in result.stderr and "help:" in result.stderr


def test_transcribe_round_trip(tmp_path, clip, speech_models, monkeypatch):
    # random-weight whisper decodes gibberish until its length cap: keep that cap small here
    from nava_dub import transcribe
    from tests.speech_models import TEST_SPEECH_OPTIONS
    real = transcribe.load_transcriber
    monkeypatch.setattr(transcribe, "load_transcriber", lambda weights, options: real(
        weights, transcribe.SpeechOptions(**{**TEST_SPEECH_OPTIONS, "cache_dir": tmp_path})))
    out = tmp_path / "spans.json"
    result = _run("transcribe", clip, "-o", out, "--weights", speech_models.weights_dir, "--device", "cpu",
                  "--num-speakers", "2")
    assert result.exit_code == 0, result.output
    assert out.exists() and "spans" in result.stdout
    planned = _run("plan", clip, "--transcript", out, "--json")
    assert planned.exit_code == 0, planned.output
    plan = json.loads(planned.stdout)
    from nava_dub.pipeline import plan_input  # the same plan as the library gives from the file
    from nava_dub.transcript import read_transcript
    spans = list(read_transcript(out).spans)
    result_windows = plan_input(clip, transcript_path=out, speech=None).windows
    check_plan_rules(result_windows, spans, plan["duration_s"])
    assert len(plan["windows"]) == len(result_windows)


def test_transcribe_rejects_unknown_output_format(tmp_path, clip):
    result = _run("transcribe", clip, "-o", tmp_path / "spans.txt")
    assert result.exit_code == 2 and "json or .srt" in result.stderr


def test_check_on_empty_weights_lists_every_missing_file(tmp_path):
    result = _run("check", "--weights", tmp_path, "--json")
    assert result.exit_code == 1
    report = json.loads(result.stdout)
    states = {f["path"].split(str(tmp_path))[1].lstrip("/"): f["state"] for f in report["files"]}
    assert states["Wan2.2-TI2V-5B/Wan2.2_VAE.pth"] == "missing"
    assert states["NAVA.safetensors"] == states["NAVA_fp8.safetensors"] == "missing"
    assert not report["ok"]


def test_check_says_which_memory_mode_a_default_window_would_take_on_each_gpu(tmp_path, monkeypatch):
    from nava_dub import system
    cards = (system.GpuInfo(0, "NVIDIA H200", 150 * 10**9, 140 * 10**9, "9.0"),
             system.GpuInfo(1, "NVIDIA GeForce RTX 4090", 25 * 10**9, 24 * 10**9, "8.9"),
             system.GpuInfo(2, "NVIDIA GeForce RTX 3060", 12 * 10**9, 11 * 10**9, "8.6"))
    monkeypatch.setattr(system, "gpus", lambda: cards)
    report = json.loads(_run("check", "--weights", tmp_path, "--json").stdout)
    memory = [g["default_window_memory"] for g in report["gpus"]]
    assert [(m["mode"], m["fits"]) for m in memory] == [("max", True), ("low", True), ("low", False)]
    assert "streamed" in memory[1]["summary"]              # the release's bf16 file: blocks stream on 24 GB
    text = _run("check", "--weights", tmp_path).stdout
    assert "gpu 1: NVIDIA GeForce RTX 4090" in text and "a 704x1280 window: memory low (bf16)" in text
    assert "DOES NOT FIT" in text


# --- dub: progress, dry runs, estimates (the stand-in generator: tests/fake_nava.py) ----------------------

@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    from tests import fake_nava
    folder = tmp_path_factory.mktemp("cli-dub")
    clip, transcript = fake_nava.clip_with_transcript(folder, "two.mp4", lines=fake_nava.TWO_LINES, gaps_s=1.5)
    return clip, transcript, fake_nava.voice(folder), fake_nava.fake_weights(folder / "weights")


def _dub_args(kit, output, *extra):
    clip, transcript, voice, weights = kit
    return ["dub", clip, "-o", output, "-t", transcript, "--ref", voice, "--weights", weights, "--device", "cpu",
            "--steps", "3", "--resolution", "128", *extra]


STAGES = ["read voices", "load models", "window 1 read source", "window 1 sample", "window 2 read source",
          "window 2 sample", "decode source audio", "encode"]


def test_every_stage_reports_in_plain_lines_when_stderr_is_no_terminal(tmp_path, kit, monkeypatch):
    from tests import fake_nava
    fake_nava.install(monkeypatch)
    result = _run(*_dub_args(kit, tmp_path / "o.mp4", "--video", "full"))
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    started = [line.removesuffix(" ...") for line in lines if line.endswith(" ...")]
    assert started == STAGES
    for stage in STAGES:
        assert any(line.startswith(f"{stage} done (") for line in lines), stage
    assert "window 1 sample done (3/3" in result.stderr and "\x1b[" not in result.stderr


def test_quiet_shows_only_the_result(tmp_path, kit, monkeypatch):
    from tests import fake_nava
    fake_nava.install(monkeypatch)
    result = _run(*_dub_args(kit, tmp_path / "o.mp4", "-q", "--video", "keep"))
    assert result.exit_code == 0 and result.stderr == ""
    assert "2 windows (0 from the cache)" in result.stdout


def test_progress_bars_on_a_terminal(tmp_path, kit, monkeypatch):
    import io

    from rich.console import Console

    from nava_dub.options import DubOptions
    from nava_dub.pipeline import dub
    from nava_dub.render import make_reporter
    from tests import fake_nava
    fake_nava.install(monkeypatch)
    clip, transcript, voice, weights = kit
    screen = io.StringIO()
    reporter = make_reporter(Console(file=screen, force_terminal=True, width=100), quiet=False)
    dub(clip, DubOptions(tmp_path / "o.mp4", refs=(str(voice),), transcript=transcript, weights_dir=weights, steps=3,
                         resolution_px=128, device="cpu"), progress=reporter)
    reporter.bars.stop()
    drawn = screen.getvalue()
    assert "\x1b[" in drawn and "━" in drawn                               # drawn as bars, in colour
    for stage in STAGES:
        assert stage in drawn, stage
    assert "3/3" in drawn


def test_dry_run_checks_everything_and_loads_and_writes_nothing(tmp_path, kit, monkeypatch):
    from tests import fake_nava
    fake = fake_nava.install(monkeypatch)
    clip, transcript, voice, weights = kit
    result = _run("dub", clip, "-o", tmp_path / "o.mp4", "-t", transcript, "--weights", weights, "--device", "cpu",
                  "--steps", "3", "--dry-run")                         # no --ref: voices would be cut from the input
    assert result.exit_code == 0, result.output
    assert "Generation windows" in result.stdout and "12 model passes per window" in result.stdout
    assert "window 1:" in result.stdout and "FLOP, about" in result.stdout
    assert list(tmp_path.iterdir()) == [] and fake.loads == 0 and fake.generated == []
    broken = _run(*_dub_args(kit, tmp_path / "o.mp4", "--dry-run", "--face", "1,2"))
    assert broken.exit_code == 2 and "--face" in broken.stderr


def test_num_speakers_reaches_the_speaker_search_of_a_dub(tmp_path, kit, monkeypatch):
    from nava_dub import pipeline
    from tests import fake_nava
    fake_nava.install(monkeypatch)
    asked, analyse = [], pipeline.analyse
    monkeypatch.setattr(pipeline, "analyse", lambda *a, **kw: (asked.append(kw["n_speakers"]), analyse(*a, **kw))[1])
    for extra, expected in ((["--num-speakers", "3"], 3), ([], None)):
        result = _run(*_dub_args(kit, tmp_path / "o.mp4", "--dry-run", *extra))
        assert result.exit_code == 0, result.output
        assert asked.pop() == expected


def test_pass_shortcuts_are_parsed_checked_and_counted_by_the_dry_run(tmp_path, kit, monkeypatch):
    from tests import fake_nava
    fake_nava.install(monkeypatch)
    result = _run(*_dub_args(kit, tmp_path / "o.mp4", "--dry-run", "--steps", "4", "--reuse-guidance", "1",
                             "--guidance-sigmas", "0,1"))
    assert result.exit_code == 0, result.output
    assert "16 model passes per window, 10 with the shortcuts" in result.stdout     # 4 + 1 + 4 + 1
    for args, message in ((["--guidance-sigmas", "0.9,0.2"], "not an interval"),
                          (["--guidance-sigmas", "half"], "is not LO,HI"), (["--reuse-guidance", "-1"], "out of range")):
        bad = _run(*_dub_args(kit, tmp_path / "o.mp4", "--dry-run", *args))
        assert bad.exit_code == 2 and message in bad.stderr, bad.output


def test_plan_json_includes_the_estimate(kit):
    clip, transcript, _, weights = kit
    result = _run("plan", clip, "-t", transcript, "--json", "--weights", weights, "--device", "cpu", "--steps", "10")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    estimate = plan["estimate"]
    assert estimate["passes_per_step"] == 4 and estimate["device"]["kind"] == "cpu" and estimate["fits"]
    assert [w["index"] for w in estimate["windows"]] == [w["index"] for w in plan["windows"]]
    assert all(w["model_passes"] == 40 and w["flops"] > 0 for w in estimate["windows"])
    assert "tiny test weights" in estimate["weights"]


def test_a_gpu_too_small_is_named_before_anything_loads(tmp_path, kit, monkeypatch):
    from nava_dub import resources
    from nava_dub.estimate import DeviceInfo
    from tests import fake_nava
    fake = fake_nava.install(monkeypatch)
    monkeypatch.setattr(resources, "device_info",
                        lambda device: DeviceInfo("cuda", "NVIDIA GeForce RTX 3090", 24 * 10**9, 6 * 10**9))
    for extra in (["--dry-run"], []):
        result = _run(*_dub_args(kit, tmp_path / "o.mp4", "--memory", "max", "-q", *extra))
        assert result.exit_code == 1, result.output
        assert "cannot hold NAVA in memory mode max" in result.stderr and "RTX 3090" in result.stderr
    assert fake.loads == 0 and not (tmp_path / "o.mp4").exists()


def test_batch_is_listed_and_usage_errors_exit_2(tmp_path):
    assert "batch" in _run("--help").output
    result = _run("batch", tmp_path / "nowhere", "-o", tmp_path / "out")
    assert result.exit_code == 2 and result.stderr.startswith("error:") and "not found" in result.stderr
