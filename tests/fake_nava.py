"""A stand-in for NAVA's window generation, and small inputs, for the tests of everything around it.

The real generation on tiny weights takes tens of seconds a window on a CPU (the vocoder most of
it; tests/test_dub.py runs it). The batch, preview, progress and bad-input tests are about what
surrounds it: reading, planning, caching, assembling, writing, cleaning up. `install(monkeypatch)`
replaces the model loading, the voice embedding and the window generation. The stand-in still
reads each window's source through the real reader (so VFR, rotated, 5.1 and odd-sized inputs are
read as in a dub), reports its progress like the real one, and returns a result that depends
only on the window's seed and its source: a tone whose pitch comes from the seed, plus a trace of
the source's sound, over the source's picture turned negative (full and face modes).
"""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from nava_dub.cache import WindowResult
from nava_dub.timeline import Span
from nava_dub.transcript import write_transcript
from tests.clips import make_talking_clip, spoken_lines

SHORT_LINES = (("en-us", "Hello there, a short line."),)
TWO_LINES = (("en-us", "Hello there, this is a test."), ("en-gb+f3", "And this is the other voice."))


@dataclass
class FakeNava:
    loads: int = 0
    generated: list[int] = field(default_factory=list)      # window indices, in the order generated
    sources: dict = field(default_factory=dict)             # window index -> the WindowSource it read
    on_step: object = None                                  # called (window, step) inside each sampling step
    plans: list = field(default_factory=list)               # the memory plan of each load
    memories: list = field(default_factory=list)            # the memory plan each window ran with

    def load(self, options, plan, progress):
        self.loads += 1
        self.plans.append(plan)
        progress("load models", 1, 1)
        return "stand-in models"

    def embed(self, models, voices):
        return {speaker: None for speaker in voices}

    def conditions(self, models, embeddings, windows, plan, progress):
        return {w.index: f"prompt of window {w.index}" for w in windows}

    def generate(self, models, embeddings, info, window, options, progress, *, conditioning=None, memory=None,
                 source_offset_frames=0):
        assert conditioning == f"prompt of window {window.index}"   # encoded before, for this window
        self.memories.append(memory)
        from nava_dub.dub_window import _face_regions, window_seed
        from nava_dub.source import read_window_source
        progress(f"window {window.index + 1} read source", 0, 1)
        source = read_window_source(info, replace(window, start_frame=window.start_frame - source_offset_frames),
                                    options.resolution_px)
        progress(f"window {window.index + 1} read source", 1, 1)
        for step in range(options.steps):
            if self.on_step:
                self.on_step(window, step)
            progress(f"window {window.index + 1} sample", step + 1, options.steps)
        self.generated.append(window.index)
        self.sources[window.index] = source
        n_samples = source.waveform_16k.shape[1]
        pitch_hz = 200 + window_seed(options.seed, window) % 400
        tone = 0.3 * np.sin(2 * np.pi * pitch_hz * np.arange(n_samples) / 16000)
        waveform = (tone[None] + 0.05 * source.waveform_16k).astype(np.float32)
        regions, mode, note = _face_regions(source, window, options)
        frames = None if mode == "keep" else 255 - source.frames
        return WindowResult(frames, tuple(regions) if mode == "face" else None, waveform, 16000, note)


def install(monkeypatch) -> FakeNava:
    from nava_dub import dub_window
    fake = FakeNava()
    monkeypatch.setattr(dub_window, "load_dub_models", fake.load)
    monkeypatch.setattr(dub_window, "embed_voices", fake.embed)
    monkeypatch.setattr(dub_window, "window_conditions", fake.conditions)
    monkeypatch.setattr(dub_window, "generate_window", fake.generate)
    return fake


def main_with_stand_in(argv: list[str], seconds_per_step: float = 0.0) -> None:
    """The CLI's entry point with the stand-in installed: for tests that run several processes."""
    import time

    import pytest

    from nava_dub.cli import main
    fake = install(pytest.MonkeyPatch())
    fake.on_step = lambda window, step: time.sleep(seconds_per_step)
    main(argv)


# --- inputs -------------------------------------------------------------------------------------------

def fake_weights(folder: Path) -> Path:
    """A weights folder that passes every check before loading (headers, the TINY marker), in milliseconds."""
    from nava_dub.weights import MANIFEST, TINY_MARKER
    folder.mkdir(parents=True, exist_ok=True)
    for f in MANIFEST:
        path = folder / f.relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if f.kind == "dir":
            path.mkdir(exist_ok=True)
            (path / "tokenizer.json").write_text("{}")
        elif f.kind == "safetensors" and f.relpath == "NAVA.safetensors":
            header = json.dumps({"x": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
            path.write_bytes(struct.pack("<Q", len(header)) + header + b"\0" * 4)
        elif f.kind == "safetensors" and "fp8" not in f.relpath:
            header = b"{}"
            path.write_bytes(struct.pack("<Q", len(header)) + header)
        elif f.kind == "pth":
            with zipfile.ZipFile(path, "w") as z:
                z.writestr("archive/data.pkl", b"")
    (folder / TINY_MARKER).write_text("")
    return folder


def voice(folder: Path) -> Path:
    """A 4 s espeak-ng reference voice."""
    path = folder / "voice.wav"
    if not path.exists():
        subprocess.run(["espeak-ng", "-v", "en-us", "-w", str(path), "This is the voice that every speaker "
                        "of the dub borrows, long enough for a timbre embedding."], check=True, capture_output=True)
    return path


def clip_with_transcript(folder: Path, name: str = "in.mp4", lines=SHORT_LINES, **clip) -> tuple[Path, Path]:
    """A short talking clip (160x120, 25 fps unless told) and a transcript of its lines (alternating speakers)."""
    clip.setdefault("size", (160, 120))
    clip.setdefault("fps", "25")
    path = make_talking_clip(folder, name=name, lines=lines, gaps_s=clip.pop("gaps_s", 0.4), **clip)
    transcript = folder / f"{Path(name).stem}.json"
    write_transcript(transcript, [Span(round(s.start_s, 3), round(s.end_s, 3), s.text, f"SPEAKER_0{i % 2}")
                                  for i, s in enumerate(spoken_lines(path))])
    return path, transcript


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(folder: Path, keep: set[str] = frozenset()) -> list[str]:
    """Hidden or temporary files a run left in folder (a resume cache folder is kept on purpose)."""
    return sorted(p.name for p in folder.iterdir()
                  if p.name.startswith(".") and not p.name.endswith(".nava-cache") and p.name not in keep
                  and not p.name.endswith(".lines.json"))
