"""Batch: what it dubs and where, skipping finished outputs, going past failures, JSON lines, one model load,
and lock files that keep several processes on one folder from dubbing a file twice."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nava_dub.batch import InputLock, batch_items, is_complete, read_inputs
from nava_dub.cli import app
from nava_dub.errors import UsageError
from nava_dub.record import record_path
from tests import fake_nava
from tests.clips import make_text_as_video

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


# --- what to dub ---------------------------------------------------------------------------------------

def test_inputs_from_a_folder_or_a_list(tmp_path):
    for name in ("b.mp4", "a.MOV", ".hidden.mp4", "notes.txt", "c.avi"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub.mp4").mkdir()
    assert [p.name for p in read_inputs(tmp_path)] == ["a.MOV", "b.mp4", "c.avi"]
    listing = tmp_path / "list.txt"
    listing.write_text("# to dub\nb.mp4\n\n  /abs/x.mkv  \nmissing.mp4\n")
    assert read_inputs(listing) == (tmp_path / "b.mp4", Path("/abs/x.mkv"), tmp_path / "missing.mp4")


@pytest.mark.parametrize("make, message", [
    (lambda d: d / "nowhere", "not found"), (lambda d: d, "no videos"), (lambda d: fake_nava.voice(d), "no video")])
def test_bad_sources_are_usage_errors(tmp_path, make, message):
    (tmp_path / "readme.txt").write_text("")
    source = make(tmp_path)
    if source.suffix == ".wav":   # a list that names nothing
        source = tmp_path / "empty.lst"
        source.write_text("# nothing\n")
    with pytest.raises(UsageError, match=message):
        read_inputs(source)


def test_outputs_keep_the_names_and_transcripts_are_found_by_name(tmp_path):
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.srt").write_text("")
    items = batch_items([tmp_path / "a.mp4", tmp_path / "b.avi"], tmp_path / "out", tmp_path / "t")
    assert [i.output.name for i in items] == ["a.mp4", "b.mkv"]
    assert [i.transcript for i in items] == [tmp_path / "t" / "a.srt", None]
    with pytest.raises(UsageError, match="both be dubbed"):
        batch_items([tmp_path / "a.mp4", tmp_path / "x" / "a.mov"], tmp_path / "out")
    with pytest.raises(UsageError, match="holds the inputs"):
        batch_items([tmp_path / "a.mp4"], tmp_path)


def test_an_output_is_complete_when_its_run_record_names_it(tmp_path):
    output = tmp_path / "a.mp4"
    output.write_bytes(b"video")
    assert not is_complete(output)
    record_path(output).write_text(json.dumps({"output": "elsewhere/b.mp4"}))
    assert not is_complete(output)
    record_path(output).write_text(json.dumps({"output": str(output), "preview": {"selection": "--span 1"}}))
    assert not is_complete(output)
    record_path(output).write_text(json.dumps({"output": str(output)}))
    assert is_complete(output)
    record_path(output).write_text("{torn")
    assert not is_complete(output)


# --- locks ---------------------------------------------------------------------------------------------

def _dead_pid() -> int:
    process = subprocess.Popen(["true"])
    process.wait()
    return process.pid


def test_a_lock_is_held_once_and_a_dead_holders_lock_is_taken_over(tmp_path):
    output = tmp_path / "a.mp4"
    first = InputLock(output)
    assert first.acquire() is None and first.path.name == ".a.mp4.lock"
    holder = json.loads(first.path.read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    first.release()
    assert not first.path.exists()
    first.path.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    assert InputLock(output).acquire() is None                       # stale: taken over
    first.path.write_text(json.dumps({"pid": 1, "host": "another-machine"}))
    assert InputLock(output).acquire() == "pid 1 on another-machine"  # only that machine knows


def test_processes_racing_for_a_stale_lock_get_it_once(tmp_path):
    output = tmp_path / "a.mp4"
    InputLock(output).path.write_text(json.dumps({"pid": _dead_pid(), "host": socket.gethostname()}))
    code = ("import sys, time; from pathlib import Path; from nava_dub.batch import InputLock; "
            "time.sleep(float(sys.argv[2]) - time.time()); lock = InputLock(Path(sys.argv[1])); "
            "print(lock.acquire() is None); time.sleep(1)")
    start = str(time.time() + 1.5)
    racers = [subprocess.Popen([sys.executable, "-c", code, str(output), start], stdout=subprocess.PIPE, text=True,
                               cwd=ROOT) for _ in range(4)]
    won = [r.communicate(timeout=30)[0].strip() for r in racers]
    assert sorted(won) == ["False", "False", "False", "True"]


# --- runs ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Five inputs, one of them not a video, with their transcripts; a voice; weights that pass the checks."""
    root = tmp_path_factory.mktemp("batch")
    videos, transcripts = root / "in", root / "transcripts"
    videos.mkdir(), transcripts.mkdir()
    for i, fps in enumerate(("25", "24", "30", "25")):
        clip, transcript = fake_nava.clip_with_transcript(videos, f"clip{i}.mp4", fps=fps)
        transcript.rename(transcripts / transcript.name)
    make_text_as_video(videos, "broken.mp4")
    return videos, transcripts, fake_nava.voice(root), fake_nava.fake_weights(root / "weights")


def _batch(folder, out, *extra):
    videos, transcripts, ref, weights = folder
    return runner.invoke(app, ["batch", str(videos), "-o", str(out), "--transcripts", str(transcripts), "--ref",
                               str(ref), "--weights", str(weights), "--device", "cpu", "--steps", "2",
                               "--resolution", "128", "--video", "keep", *map(str, extra)])


def test_a_batch_goes_past_a_bad_file_and_a_rerun_skips_the_finished_ones(tmp_path, folder, monkeypatch):
    fake = fake_nava.install(monkeypatch)
    first = _batch(folder, tmp_path / "out", "--json")
    assert first.exit_code == 1, first.output
    lines = [json.loads(line) for line in first.stdout.splitlines()]
    rows, summary = lines[:-1], lines[-1]["summary"]
    assert [Path(r["input"]).name for r in rows] == ["broken.mp4", "clip0.mp4", "clip1.mp4", "clip2.mp4", "clip3.mp4"]
    assert [r["status"] for r in rows] == ["failed", "done", "done", "done", "done"]
    assert "not a readable media file" in rows[0]["error"] and rows[0]["hint"]
    assert (summary["done"], summary["failed"], summary["skipped"], summary["total"]) == (4, 1, 0, 5)
    assert sorted(p.name for p in (tmp_path / "out").glob("*.mp4")) == [f"clip{i}.mp4" for i in range(4)]
    assert fake.loads == 1 and len(fake.generated) == 4                  # one model load for the batch
    assert fake.plans[0].mode == "max" and fake.memories == fake.plans * 4   # every input runs as placed
    assert fake_nava.leftovers(tmp_path / "out") == []                   # no lock or temporary file left
    again = _batch(folder, tmp_path / "out", "--json")
    rows = [json.loads(line) for line in again.stdout.splitlines()][:-1]
    assert again.exit_code == 1 and [r["status"] for r in rows] == ["failed"] + ["skipped"] * 4
    assert {r["reason"] for r in rows[1:]} == {"complete"} and fake.loads == 1 and len(fake.generated) == 4
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").glob("*.mp4")}
    forced = _batch(folder, tmp_path / "out", "--force", "-q")             # written again, windows from the cache
    assert forced.exit_code == 1 and len(fake.generated) == 4 and forced.stderr == ""
    assert all(p.stat().st_mtime_ns > before[p.name] for p in (tmp_path / "out").glob("*.mp4"))
    assert "4 done, 0 skipped, 1 failed" in forced.stdout and "broken.mp4" in forced.stdout


def test_an_input_locked_by_another_process_is_left_to_it(tmp_path, folder, monkeypatch):
    fake = fake_nava.install(monkeypatch)
    out = tmp_path / "out"
    out.mkdir()
    InputLock(out / "clip1.mp4").path.write_text(json.dumps({"pid": 1, "host": "gpu-node-2"}))
    result = _batch(folder, out, "--json")
    rows = {Path(r["input"]).name: r for r in map(json.loads, result.stdout.splitlines()[:-1])}
    assert rows["clip1.mp4"]["status"] == "skipped" and rows["clip1.mp4"]["reason"] == "locked by pid 1 on gpu-node-2"
    assert not (out / "clip1.mp4").exists() and sorted(fake.generated) == [0, 0, 0]


def test_two_processes_on_one_folder_dub_each_file_once(tmp_path, folder):
    videos, transcripts, ref, weights = folder
    argv = ["batch", str(videos), "-o", str(tmp_path / "out"), "--transcripts", str(transcripts), "--ref", str(ref),
            "--weights", str(weights), "--device", "cpu", "--steps", "4", "--resolution", "128", "--video", "keep",
            "--json"]
    code = "import sys; from tests.fake_nava import main_with_stand_in; main_with_stand_in(sys.argv[1:], 0.1)"
    workers = [subprocess.Popen([sys.executable, "-c", code, *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=ROOT) for _ in range(2)]
    outputs = [w.communicate(timeout=120) for w in workers]
    done = [[Path(r["input"]).name for r in map(json.loads, out.splitlines()[:-1]) if r["status"] == "done"]
            for out, _ in outputs]
    failed = [Path(r["input"]).name for out, _ in outputs for r in map(json.loads, out.splitlines()[:-1])
              if r["status"] == "failed"]
    assert "broken.mp4" in failed and 1 in [w.returncode for w in workers], [e for _, e in outputs]
    assert sorted(done[0] + done[1]) == [f"clip{i}.mp4" for i in range(4)]   # each dubbed by exactly one of them
    assert all(is_complete(tmp_path / "out" / f"clip{i}.mp4") for i in range(4))
    assert fake_nava.leftovers(tmp_path / "out") == []


@pytest.mark.parametrize("args, code, message", [
    (["--video", "both"], 2, "--video 'both'"), (["--steps", "0"], 2, "--steps 0"), (["--face", "1,2"], 2, "--face"),
    (["--weights", "/nowhere"], 1, "weights folder not found"), (["--ref", "/gone.wav"], 1, "does not exist")])
def test_what_fails_for_every_input_stops_the_batch_before_it_starts(tmp_path, folder, monkeypatch, args, code,
                                                                      message):
    fake = fake_nava.install(monkeypatch)
    result = _batch(folder, tmp_path / "out", *args)
    assert result.exit_code == code and message in result.stderr.splitlines()[0] and fake.generated == []
    assert not (tmp_path / "out").exists() and result.stdout == ""
