"""Finished windows kept beside the output, so an interrupted dub resumes instead of starting over.

A window's entry is keyed by everything that decides its pixels and samples: the input file, the
window's frames, spans and prompt, the voices, the generation options and the weights. Change any
of them (say, one line of the transcript) and only the windows it touches miss the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nava_dub.errors import MediaError
from nava_dub.geometry import Box

CACHE_VERSION = 1


@dataclass(frozen=True)
class WindowResult:
    """One generated window, ready to be put back: 24 fps frames at NAVA's size and the new sound."""

    frames: np.ndarray | None               # uint8 [n_frames, h, w, 3]; None: the picture was kept
    regions: tuple[Box | None, ...] | None  # per frame, the regenerated box; None: the whole frame
    waveform: np.ndarray                    # float32 [2, n_samples], window-relative
    sample_rate_hz: int
    note: str = ""                          # e.g. "no face found: picture kept"


def cache_dir_for(output: Path) -> Path:
    return output.parent / f".{output.name}.nava-cache"


def file_identity(path: Path) -> dict:
    """Cheap identity of a (possibly huge) file: size, mtime and a hash of its first and last MiB."""
    stat = path.stat()
    digest = hashlib.sha256()
    with path.open("rb") as f:
        digest.update(f.read(1 << 20))
        if stat.st_size > 2 << 20:
            f.seek(-(1 << 20), os.SEEK_END)
            digest.update(f.read(1 << 20))
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_ends": digest.hexdigest()}


def window_key(parts: dict) -> str:
    blob = json.dumps({"version": CACHE_VERSION, **parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


class WindowCache:
    """A folder of `<key>.npz` entries; disabled (never hits, never writes) when `enabled` is false."""

    def __init__(self, folder: Path, enabled: bool = True) -> None:
        self.folder, self.enabled = folder, enabled

    def load(self, key: str) -> WindowResult | None:
        path = self.folder / f"{key}.npz"
        if not self.enabled or not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                meta = json.loads(str(data["meta"]))
                frames = data["frames"] if "frames" in data.files else None
                return WindowResult(frames, _regions_from(meta["regions"]), data["waveform"],
                                    int(meta["sample_rate_hz"]), meta.get("note", ""))
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):   # a torn entry is a miss, not a failure
            path.unlink(missing_ok=True)
            return None

    def store(self, key: str, result: WindowResult) -> None:
        if not self.enabled:
            return
        meta = {"regions": _regions_to(result.regions), "sample_rate_hz": result.sample_rate_hz, "note": result.note}
        arrays = {"waveform": result.waveform, "meta": np.array(json.dumps(meta))}
        if result.frames is not None:
            arrays["frames"] = result.frames
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=f".{key}.", suffix=".npz")
        except OSError as e:
            raise _unwritable(self.folder, e) from None
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, self.folder / f"{key}.npz")
        except OSError as e:   # a full disk: say so in one line, leave no torn entry
            Path(tmp).unlink(missing_ok=True)
            raise _unwritable(self.folder, e) from None
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def keys(self) -> set[str]:
        return {p.stem for p in self.folder.glob("*.npz")} if self.folder.is_dir() else set()

    def clear(self) -> int:
        """Remove the whole cache folder; returns how many entries it held."""
        n = len(self.keys())
        shutil.rmtree(self.folder, ignore_errors=True)
        return n


def _unwritable(folder: Path, error: OSError) -> MediaError:
    return MediaError(f"cannot keep a finished window in the cache {folder}: {error.strerror or error}",
                      "free some disk space, or pass --no-cache")


def _regions_to(regions: tuple[Box | None, ...] | None) -> list | None:
    if regions is None:
        return None
    return [None if b is None else [b.x0, b.y0, b.x1, b.y1] for b in regions]


def _regions_from(data: list | None) -> tuple[Box | None, ...] | None:
    if data is None:
        return None
    return tuple(None if b is None else Box(*b) for b in data)
