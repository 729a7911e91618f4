"""The run record: a JSON beside the output saying how it was made, so a dub can be redone and audited."""

from __future__ import annotations

import dataclasses
import json
import platform
from importlib import metadata
from pathlib import Path

from nava_dub import __version__
from nava_dub.transcript import write_text_atomic

PACKAGES = ("torch", "torchaudio", "diffusers", "transformers", "whisperx", "pyannote.audio", "numpy",
            "opencv-python-headless", "ffmpeg-python")


def record_path(output: Path) -> Path:
    return output.with_name(output.name + ".run.json")


def versions() -> dict[str, str]:
    found = {"nava-dub": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def write_run_record(output: Path, record: dict) -> Path:
    path = record_path(output)
    body = {"nava_dub_run": 1, "versions": versions(), **record}
    write_text_atomic(path, json.dumps(body, indent=2, ensure_ascii=False, default=_plain) + "\n")
    return path


def _plain(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    return str(value)
