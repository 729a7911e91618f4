"""The command line as a user meets it: exit codes, one-line errors, JSON on stdout, nothing left behind."""

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from nava_dub.cli import app
from nava_dub.transcript import write_transcript
from nava_dub.timeline import Span
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
