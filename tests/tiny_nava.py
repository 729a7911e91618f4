"""One tiny random NAVA weights folder (and its loaded models) per test run, shared by every test module.

Written by the same writer users run (`python -m nava_dub.tiny_weights`) and loaded by the same
loader as the release (`nava_dub.models.load_models`). Tests must not modify the folder or the
models: copy the folder (`copy_weights`) to damage it.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

SEED = 0


@functools.cache
def weights_dir() -> Path:
    from nava_dub.tiny_weights import write_tiny_weights

    root = Path(tempfile.mkdtemp(prefix="nava-tiny-weights-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    return write_tiny_weights(root / "weights", seed=SEED)


@functools.cache
def models():
    import torch

    from nava_dub.models import load_models

    return load_models(weights_dir(), dtype=torch.float32, device="cpu")


def copy_weights(target: Path) -> Path:
    """A private copy of the folder, for tests that damage files."""
    return Path(shutil.copytree(weights_dir(), target))
