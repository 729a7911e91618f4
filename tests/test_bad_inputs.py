"""The bad-input corpus: each input either dubs or ends in one `error:` line with the right exit code; the input
is never modified; nothing is left at the output path and no temporary file in its folder.

Runs the real command line (typer's CliRunner) with the stand-in generator (tests/fake_nava.py): the model
itself is tests/test_dub.py's business; here everything around it meets the inputs users bring.
"""

import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import wave
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from nava_dub import media
from nava_dub.cli import app
from nava_dub.timeline import Span
from nava_dub.transcript import write_transcript
from tests import fake_nava
from tests.clips import (
    ffmpeg,
    make_audio_only,
    make_long_clip,
    make_talking_clip,
    make_text_as_video,
    make_truncated,
    make_video_only,
    make_zero_byte,
)

runner = CliRunner()


@dataclass(frozen=True)
class Kit:
    clip: Path
    transcript: Path
    voice: Path
    weights: Path


@pytest.fixture(scope="module")
def kit(tmp_path_factory):
    root = tmp_path_factory.mktemp("kit")
    clip, transcript = fake_nava.clip_with_transcript(root, "two.mp4", lines=fake_nava.TWO_LINES, gaps_s=1.5)
    return Kit(clip, transcript, fake_nava.voice(root), fake_nava.fake_weights(root / "weights"))


@dataclass
class Run:
    """One dub to try: a default command on the kit's clip that a case changes."""

    input: Path
    output: Path
    transcript: Path | None
    ref: str | None
    weights: Path
    extra: list = field(default_factory=list)

    def args(self) -> list[str]:
        args = ["dub", str(self.input), "-o", str(self.output), "--weights", str(self.weights), "--device", "cpu",
                "--steps", "2", "--resolution", "128", "-q"]
        args += ["--transcript", str(self.transcript)] if self.transcript else []
        return args + (["--ref", self.ref] if self.ref else []) + [str(a) for a in self.extra]


def _wav(path: Path, samples: np.ndarray, rate: int = 16000) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(rate)
        w.writeframes(samples.astype(np.int16).tobytes())
    return path


def _own_clip(make, **kw):
    """A case on its own clip: the make_talking_clip options, and its transcript."""
    def change(run: Run, folder: Path) -> None:
        run.input, run.transcript = fake_nava.clip_with_transcript(folder, **kw) if make is None else make(folder)
    return change


def _very_short(folder: Path):
    clip = make_talking_clip(folder, name="short.mp4", size=(160, 120), fps="25", duration_s=0.4,
                             lines=(("en-us", "Hi."),), gaps_s=0.05)
    write_transcript(folder / "short.json", [Span(0.05, 0.35, "Hi.", "SPEAKER_00")])
    return clip, folder / "short.json"


def _long(folder: Path, sound: str = "aac"):
    """31 minutes, made by stream copy in a second; one short line to dub at 20 minutes.

    With PCM sound, since writing the new soundtrack re-encodes all of it, and AAC at this length
    takes ffmpeg longer than every other case together (the preview case keeps AAC)."""
    if sound == "aac":
        clip = make_long_clip(folder)
    else:
        piece = make_talking_clip(folder, name="piece.mov", size=(160, 120), fps="25", duration_s=6.4,
                                  audio_codec="pcm_s16le")
        clip = folder / "long.mov"
        ffmpeg("-stream_loop", "290", "-i", str(piece), "-c", "copy", "-t", "1860", str(clip))
    write_transcript(folder / "long.json", [Span(1200.2, 1201.4, "Hello there.", "SPEAKER_00")])
    return clip, folder / "long.json"


def _input(make):
    def change(run: Run, folder: Path) -> None:
        run.input = make(folder)
    return change


def _set(**values):
    def change(run: Run, folder: Path) -> None:
        for name, value in values.items():
            setattr(run, name, value(folder) if callable(value) else value)
    return change


def _add(*extra):
    def change(run: Run, folder: Path) -> None:
        run.extra += list(extra)
    return change


def _transcript_text(name: str, text: str):
    def change(run: Run, folder: Path) -> None:
        run.transcript = folder / name
        run.transcript.write_text(text)
    return change


def _truncated_safetensors() -> bytes:
    header = json.dumps({"x": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}}).encode()
    return struct.pack("<Q", len(header)) + header + b"\0" * 5          # 5 of its 16 data bytes


def _damage_weights(relpath: str, data: bytes | None):
    def change(run: Run, folder: Path) -> None:
        run.weights = Path(shutil.copytree(run.weights, folder / "weights"))
        target = run.weights / relpath
        target.unlink() if data is None else target.write_bytes(data)
    return change


# (id, change, exit code, what the error line says; "" = the dub works, "preview" = it makes a preview)
CASES = [
    ("zero-byte input", _input(make_zero_byte), 1, "empty (0 bytes)"),
    ("text named .mp4", _input(make_text_as_video), 1, "not a readable media file"),
    ("truncated mp4", _input(make_truncated), 1, "not a readable media file"),
    ("truncated faststart mp4", _input(lambda d: make_truncated(d, faststart=True)), 1, "truncated"),
    ("audio only", _input(make_audio_only), 1, "no video stream"),
    ("video only", _input(make_video_only), 1, "without an audio stream"),
    ("missing input", _input(lambda d: d / "take [1].mp4"), 1, "take [1].mp4"),
    ("input is a folder", _input(lambda d: (d / "clip.mp4").mkdir() or d / "clip.mp4"), 1, "not a file"),
    ("variable frame rate", _own_clip(None, name="vfr.mp4", vfr=True), 0, ""),
    ("odd size 853x479", _own_clip(None, name="odd.mp4", size=(853, 479), duration_s=3.0), 0, ""),
    ("rotated phone clip", _own_clip(None, name="phone.mp4", rotation=270), 0, ""),
    ("5.1 sound", _own_clip(None, name="surround.mp4", n_channels=6, sample_rate_hz=48000), 0, ""),
    ("shorter than 0.5 s", _own_clip(_very_short), 0, ""),
    ("31 minutes long", lambda run, d: (_own_clip(lambda f: _long(f, "pcm"))(run, d),
                                        _add("--video", "keep")(run, d)), 0, ""),
    ("31 minutes long, preview", lambda run, d: (_own_clip(_long)(run, d), _add("--only", "1199-1203")(run, d)), 0,
     "preview"),
    ("broken transcript", _transcript_text("t.json", '{"spans": [\n {"start_s": 1, "end_s": 2, "text": "a"},\n'),
     1, "broken JSON"),
    ("transcript past the end", _transcript_text("t.srt", "1\n00:00:30,000 --> 00:00:31,000\nLate.\n"), 1,
     "past the end"),
    ("transcript in an unknown format", _transcript_text("t.txt", "Hello."), 1, "unknown transcript format"),
    ("missing transcript", _set(transcript=lambda d: d / "none.json"), 1, "transcript not found"),
    ("reference in an unknown format", _set(ref=lambda d: str(make_text_as_video(d, "voice.wav"))), 1,
     "not a readable media file"),
    ("missing reference", _set(ref=lambda d: str(d / "gone.wav")), 1, "does not exist"),
    ("too short reference", _set(ref=lambda d: str(_wav(d / "r.wav", 3000 * np.sin(np.arange(8000) / 5)))), 1,
     "at least 3 s"),
    ("silent reference", _set(ref=lambda d: str(_wav(d / "r.wav", np.zeros(64000)))), 1, "silent"),
    ("reference for an unknown speaker", _set(ref=lambda d: f"BOB={fake_nava.voice(d)}"), 2, "not in the transcript"),
    ("unknown --speakers", _add("--speakers", "BOB"), 2, "unknown speaker(s) BOB"),
    ("--face with three numbers", _add("--face", "1,2,3"), 2, "expected 4"),
    ("--face not numbers", _add("--face", "a,b,c,d"), 2, "not four numbers"),
    ("--steps 0", _add("--steps", "0"), 2, "--steps 0"),
    ("--only backwards", _add("--only", "5-2"), 2, "ends before it starts"),
    ("--span past the last line", _add("--span", "9"), 2, "has 2 lines"),
    ("--device that is none", _add("--device", "tpu", "--dry-run"), 2, "not a device"),
    ("missing weights folder", _set(weights=lambda d: d / "no-weights"), 1, "weights folder not found"),
    ("a weight file missing", _damage_weights("Wan2.2-TI2V-5B/Wan2.2_VAE.pth", None), 1, "video_vae weights missing"),
    ("truncated transformer weights", _damage_weights("NAVA.safetensors", _truncated_safetensors()), 1,
     "transformer weights wrong"),
    ("text in place of a checkpoint", _damage_weights("M-vb2+vox2+cnc-ft_mix.pt", b"not a zip"), 1,
     "not a torch checkpoint"),
    ("output in a missing folder", _set(output=lambda d: d / "nowhere" / "out.mp4"), 1, "output folder does not exist"),
    ("output equal to input", lambda run, d: setattr(run, "output", run.input), 2, "is the input"),
    ("output not a video", _set(output=lambda d: d / "out" / "out.wav"), 2, "not a video file"),
    ("output is a folder", _set(output=lambda d: (d / "out" / "o.mp4").mkdir() or d / "out" / "o.mp4"), 1,
     "is a folder"),
]


def _prepare(kit: Kit, folder: Path, change) -> Run:
    (folder / "out").mkdir()
    run = Run(kit.clip, folder / "out" / "dubbed.mp4", kit.transcript, str(kit.voice), kit.weights)
    change(run, folder)
    return run


def _fingerprint(path: Path) -> str | None:
    return fake_nava.file_hash(path) if path.is_file() else None


def _check_error(result, code: int, message: str) -> None:
    assert result.exit_code == code, result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], result.stderr
    assert "Traceback" not in result.stderr and "unexpectedly" not in result.stderr


@pytest.mark.parametrize("name, change, code, message", CASES, ids=[c[0] for c in CASES])
def test_bad_input(name, change, code, message, kit, tmp_path, monkeypatch):
    fake = fake_nava.install(monkeypatch)
    run = _prepare(kit, tmp_path, change)
    before = _fingerprint(run.input)
    existed = run.output.exists()
    result = runner.invoke(app, run.args())
    assert _fingerprint(run.input) == before                                  # the input is never modified
    if code == 0:
        assert result.exit_code == 0, result.output
        source, dubbed = media.probe(run.input), media.probe(run.output)
        if message == "preview":   # an excerpt around the selected window
            assert 2 < dubbed.duration_s < 15 and "preview of" in result.stdout
        else:
            assert abs(dubbed.duration_s - source.duration_s) < 0.1
        assert dubbed.video.display_size == source.video.display_size
        assert dubbed.audio.n_channels == source.audio.n_channels and fake.generated
    else:
        _check_error(result, code, message)
        assert run.output.exists() == existed and (not existed or run.output.is_dir() or run.output == run.input)
        assert fake.generated == []                                           # it failed before any generation
    if run.output.parent.is_dir():
        assert fake_nava.leftovers(run.output.parent) == []


def test_corpus_size():
    assert len(CASES) + 7 >= 25   # + a read-only folder, two full disks, two unloadable weights, two interrupts


@pytest.mark.parametrize("damage, message", [
    ("tokenizer", "cannot read the umT5 tokenizer"), ("text encoder", "cannot read umT5 weights")])
def test_weights_that_pass_the_checks_but_do_not_load(kit, tmp_path, monkeypatch, damage, message):
    from nava_dub import dub_window
    from nava_dub.tiny_weights import TOKENIZER_JSON
    real_load = dub_window.load_dub_models
    fake = fake_nava.install(monkeypatch)
    monkeypatch.setattr(dub_window, "load_dub_models", real_load)    # the real loaders meet the damaged files
    weights = fake_nava.fake_weights(tmp_path / "weights")            # zip files that hold no state dict
    if damage == "text encoder":
        shutil.copy(TOKENIZER_JSON, weights / "Wan2.2-TI2V-5B" / "google" / "umt5-xxl" / "tokenizer.json")
    run = Run(kit.clip, tmp_path / "out.mp4", kit.transcript, str(kit.voice), weights)
    result = runner.invoke(app, run.args())
    _check_error(result, 1, message)
    assert not run.output.exists() and fake_nava.leftovers(tmp_path) == [] and fake.generated == []


# --- the file system fights back ---------------------------------------------------------------------

@contextmanager
def mounted(folder: Path, options: str):
    """A small tmpfs on folder (root only; skipped where mounting is not permitted)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_output_in_a_read_only_folder(kit, tmp_path, monkeypatch):
    fake = fake_nava.install(monkeypatch)
    with mounted(tmp_path / "ro", "ro,size=1m") as folder:
        run = Run(kit.clip, folder / "out.mp4", kit.transcript, str(kit.voice), kit.weights)
        result = runner.invoke(app, run.args())
        _check_error(result, 1, "cannot write to the output folder")
        assert list(folder.iterdir()) == [] and fake.generated == []


@pytest.mark.parametrize("cache", [False, True], ids=["output write", "cache write"])
def test_a_disk_that_fills_up_mid_write(kit, tmp_path, monkeypatch, cache):
    fake_nava.install(monkeypatch)
    before = fake_nava.file_hash(kit.clip)
    with mounted(tmp_path / "small", "size=96k") as folder:
        run = Run(kit.clip, folder / "out.mkv", kit.transcript, str(kit.voice), kit.weights,
                  ["--video", "full", "--codec", "ffv1"] + ([] if cache else ["--no-cache"]))
        result = runner.invoke(app, run.args())
        _check_error(result, 1, "No space left on device")
        assert not run.output.exists() and fake_nava.leftovers(folder) == []
        cache_dir = folder / ".out.mkv.nava-cache"
        assert not cache_dir.exists() or not [p for p in cache_dir.iterdir() if p.name.startswith(".")]
    assert fake_nava.file_hash(kit.clip) == before


def test_an_interrupted_dub_resumes_without_redoing_finished_windows(kit, tmp_path, monkeypatch):
    fake = fake_nava.install(monkeypatch)

    def interrupt(window, step):
        if window.index == 1:
            raise KeyboardInterrupt

    fake.on_step = interrupt
    run = Run(kit.clip, tmp_path / "out.mp4", kit.transcript, str(kit.voice), kit.weights, ["--video", "keep"])
    result = runner.invoke(app, run.args())
    assert result.exit_code == 130 and "interrupted" in result.stderr and "resume" in result.stderr
    assert not run.output.exists() and fake_nava.leftovers(tmp_path) == []
    assert fake.generated == [0]                              # window 0 finished and was kept
    fake.on_step, fake.generated = None, []
    again = runner.invoke(app, run.args())
    assert again.exit_code == 0, again.output
    assert fake.generated == [1]                              # only the window that did not finish
    record = json.loads(Path(str(run.output) + ".run.json").read_text())
    assert [w["cached"] for w in record["windows"]] == [True, False]


def test_a_dub_killed_with_sigterm_cleans_up_like_ctrl_c(kit, tmp_path):
    run = Run(kit.clip, tmp_path / "out.mp4", kit.transcript, str(kit.voice), kit.weights, ["--steps", "50"])
    args = [a for a in run.args() if a != "-q"]
    code = "import sys; from tests.fake_nava import main_with_stand_in; main_with_stand_in(sys.argv[1:], 0.05)"
    worker = subprocess.Popen([sys.executable, "-c", code, *args], stderr=subprocess.PIPE, text=True,
                              cwd=Path(__file__).resolve().parents[1])
    for line in worker.stderr:                     # wait until it samples window 2 (window 1 is in the cache)
        if line.startswith("window 2 sample"):
            break
    worker.send_signal(signal.SIGTERM)
    rest = worker.stderr.read()
    assert worker.wait(timeout=60) == 130 and "error: interrupted" in rest
    assert not run.output.exists() and fake_nava.leftovers(tmp_path) == []
    assert len(list((tmp_path / ".out.mp4.nava-cache").glob("*.npz"))) == 1


def test_voices_cut_from_the_input_are_written_only_by_a_dub_that_succeeds(tmp_path, monkeypatch):
    fake = fake_nava.install(monkeypatch)
    long_lines = (("en-us", "This first speaker reads a sentence that is long enough to carry a voice."),
                  ("en-gb+f3", "And the second speaker answers with a sentence of about the same length."))
    clip, transcript = fake_nava.clip_with_transcript(tmp_path, "long.mp4", lines=long_lines, gaps_s=1.5)
    run = Run(clip, tmp_path / "out.mp4", transcript, None, fake_nava.fake_weights(tmp_path / "weights"),
              ["--video", "keep"])

    def interrupt(window, step):
        raise KeyboardInterrupt

    fake.on_step = interrupt
    assert runner.invoke(app, run.args()).exit_code == 130
    assert sorted(tmp_path.glob("out.ref-*.wav")) == []            # an interrupted dub leaves no voice files
    fake.on_step = None
    result = runner.invoke(app, run.args())
    assert result.exit_code == 0, result.output
    cuts = sorted(p.name for p in tmp_path.glob("out.ref-*.wav"))
    assert cuts == ["out.ref-SPEAKER_00.wav", "out.ref-SPEAKER_01.wav"]
    record = json.loads(Path(str(run.output) + ".run.json").read_text())
    assert all(str(tmp_path / name) in record["references"][name[8:-4]] for name in cuts)
    assert media.probe(tmp_path / cuts[0]).duration_s >= 3.0
