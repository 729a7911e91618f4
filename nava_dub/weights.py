"""The weights folder: one manifest naming every file of the official release, and checks on it.

Everything here is cheap (sizes and file headers); nothing loads gigabytes. Loading itself is
done by each component's loader once `check_weights` has said the files are there.

A folder holding a file named `TINY` (written by `python -m nava_dub.tiny_weights DIR`) declares
itself a folder of tiny random test weights: its files are checked like the release's (present,
well-formed headers) except for their sizes, and each is reported "found" with the detail
"tiny test weights".
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nava_dub.errors import WeightsError

GB = 1000**3
MB = 1000**2
ENV_VAR = "NAVA_DUB_WEIGHTS"


@dataclass(frozen=True)
class WeightFile:
    component: str
    relpath: str
    approx_bytes: int          # what the release ships; a file far from it is the wrong file
    kind: str                  # "safetensors", "pth" (torch zip), "dir"
    alternative_of: str = ""   # satisfied if this file or the named one is present


MANIFEST: tuple[WeightFile, ...] = (
    WeightFile("transformer", "NAVA.safetensors", int(25.19 * GB), "safetensors", alternative_of="NAVA_fp8.safetensors"),
    WeightFile("transformer", "NAVA_fp8.safetensors", int(6.94 * GB), "safetensors", alternative_of="NAVA.safetensors"),
    WeightFile("video_vae", "Wan2.2-TI2V-5B/Wan2.2_VAE.pth", int(2.82 * GB), "pth"),
    WeightFile("text_encoder", "Wan2.2-TI2V-5B/models_t5_umt5-xxl-enc-bf16.pth", int(11.36 * GB), "pth"),
    WeightFile("tokenizer", "Wan2.2-TI2V-5B/google/umt5-xxl", 0, "dir"),
    WeightFile("audio_vae", "params/LTX2/ltx-2.3-22b-dev_audio_vae.safetensors", 348 * MB, "safetensors"),
    WeightFile("speaker_encoder", "M-vb2+vox2+cnc-ft_mix.pt", 0, "pth"),
)
SIZE_TOLERANCE = 0.10   # sizes are from the release notes, not byte-exact: allow 10 %
TINY_MARKER = "TINY"    # a file of this name marks a folder of tiny test weights (sizes not checked)
TINY_DETAIL = "tiny test weights"


@dataclass(frozen=True)
class FileStatus:
    file: WeightFile
    path: Path
    state: str                 # "found", "missing", "wrong", "optional"
    size_bytes: int | None
    detail: str = ""


def weights_dir(value: str | os.PathLike | None = None) -> Path:
    """--weights, else $NAVA_DUB_WEIGHTS, else ./weights."""
    return Path(value or os.environ.get(ENV_VAR) or "weights")


def check_weights(root: Path) -> tuple[FileStatus, ...]:
    """The state of every manifest file under root, from sizes and headers only."""
    statuses = [_status(root, f) for f in MANIFEST]
    present = {s.file.relpath for s in statuses if s.state == "found"}
    return tuple(
        FileStatus(s.file, s.path, "optional", s.size_bytes, f"not needed: {s.file.alternative_of} is present")
        if s.state == "missing" and s.file.alternative_of in present else s
        for s in statuses)


def require_weights(root: Path, components: set[str]) -> dict[str, Path]:
    """Paths of the files the named components need, or a WeightsError naming the first problem."""
    if not root.is_dir():
        raise WeightsError(f"weights folder not found: {root}",
                           f"put the model files there (see weights/README.md) or pass --weights / set {ENV_VAR}")
    chosen: dict[str, Path] = {}
    for status in check_weights(root):
        if status.file.component not in components or status.state == "optional":
            continue
        if status.state != "found":
            raise WeightsError(f"{status.file.component} weights {status.state}: {status.path}"
                               + (f" ({status.detail})" if status.detail else ""),
                               "download the official release file into that path, then run `nava-dub check`")
        chosen.setdefault(status.file.component, status.path)
    return chosen


def _status(root: Path, file: WeightFile) -> FileStatus:
    path = root / file.relpath
    if file.kind == "dir":
        if not path.is_dir():
            return FileStatus(file, path, "missing", None)
        found = {p.name for p in path.iterdir()}
        ok = "spiece.model" in found or "tokenizer.json" in found
        return FileStatus(file, path, "found" if ok else "wrong", None,
                          "" if ok else "no spiece.model or tokenizer.json inside")
    if not path.is_file():
        return FileStatus(file, path, "missing", None)
    size = path.stat().st_size
    problem = _header_problem(path, file.kind)
    if is_tiny_folder(root):
        return FileStatus(file, path, "wrong" if problem else "found", size, problem or TINY_DETAIL)
    if not problem and file.approx_bytes and abs(size - file.approx_bytes) > SIZE_TOLERANCE * file.approx_bytes:
        problem = f"size {size / GB:.2f} GB, expected about {file.approx_bytes / GB:.2f} GB"
    return FileStatus(file, path, "wrong" if problem else "found", size, problem)


def is_tiny_folder(root: Path) -> bool:
    """True for a folder of tiny random test weights (it holds a `TINY` marker file)."""
    return (root / TINY_MARKER).is_file()


def _header_problem(path: Path, kind: str) -> str:
    if kind == "safetensors":
        return safetensors_header_problem(path)
    if kind == "pth" and not zipfile.is_zipfile(path):
        return "not a torch checkpoint (zip) file"
    return ""


def safetensors_header_problem(path: Path) -> str:
    """'' if path starts with a well-formed safetensors header whose data fits in the file."""
    size = path.stat().st_size
    with path.open("rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return "file is too short to be safetensors"
        (header_len,) = struct.unpack("<Q", head)
        if header_len > min(size - 8, 100 * MB):
            return f"corrupted safetensors header (claims {header_len} header bytes in a {size}-byte file)"
        try:
            header = json.loads(f.read(header_len))
        except (UnicodeDecodeError, json.JSONDecodeError):
            return "corrupted safetensors header (not JSON)"
    ends = [entry["data_offsets"][1] for key, entry in header.items() if key != "__metadata__"]
    if ends and 8 + header_len + max(ends) > size:
        return f"truncated: the header needs {8 + header_len + max(ends)} bytes, the file has {size}"
    return ""


# --- strict loading -----------------------------------------------------------------------------

N_KEYS_SHOWN = 5          # keys an error names before "… (N more)"


def first_keys(keys: Iterable[object]) -> str:
    """The first few keys, and how many more there are."""
    keys = list(keys)
    shown = ", ".join(str(k) for k in keys[:N_KEYS_SHOWN])
    return shown + (f", … ({len(keys) - N_KEYS_SHOWN} more)" if len(keys) > N_KEYS_SHOWN else "")


def key_mismatch(expected: Mapping[str, tuple[int, ...]], found: Mapping[str, tuple[int, ...]]) -> str | None:
    """What differs between two {key: shape} maps, naming the first keys of each kind; None if nothing."""
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    wrong = [f"{k} {list(found[k])} (expected {list(s)})" for k, s in expected.items()
             if k in found and tuple(found[k]) != tuple(s)]
    parts = [f"{len(ks)} {what} ({first_keys(ks)})" for what, ks in
             (("missing keys", missing), ("unexpected keys", unexpected), ("of the wrong shape", wrong)) if ks]
    return "; ".join(parts) or None


def load_strict(module: Any, state: Mapping[str, Any], *, what: str, path: str | Path, hint: str,
                assign: bool = True) -> None:
    """Load `state` into `module` (an nn.Module, possibly built on the meta device) with every key and
    shape checked first: a mismatch is a WeightsError naming the first offending keys."""
    expected = {k: tuple(v.shape) for k, v in module.state_dict().items()}
    problem = key_mismatch(expected, {k: tuple(v.shape) for k, v in state.items()})
    if problem:
        raise WeightsError(f"{what} in {path} do not fit: {problem}", hint)
    module.load_state_dict(state, strict=True, assign=assign)


def read_pth_state_dict(path: Path, what: str, label: str = "") -> dict[str, Any]:
    """A plain state dict from a torch zip file, memory-mapped, without unpickling any code.

    `what` names the official file in the hints; `label` (e.g. "umT5 weights") goes before the path.
    """
    import torch

    named = f"{label} {path}" if label else str(path)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:  # torch and pickle raise many kinds for a bad file
        raise WeightsError(f"cannot read {named}: {err}", f"download {what} again; it may be truncated") from err
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"{named} is not a plain state dict", f"use the official {what}")
    return state
