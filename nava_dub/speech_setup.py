"""What the speech adapters (transcribe.py, diarize.py) share before loading a model: the sample rate,
the offline switches, the library log settings, and the folder checks that turn a missing or broken
model into a WeightsError. A module of its own because the adapters must not import each other.

Nothing heavy is imported here at module level; huggingface_hub is imported when going offline.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from nava_dub.errors import WeightsError

SAMPLE_RATE_HZ = 16000                     # whisperx and pyannote work at 16 kHz


def require_model_folder(folder: Path, needed: tuple[str, ...], what: str) -> Path:
    """WeightsError naming the folder (and the first missing file) unless it holds `needed`."""
    missing = [name for name in needed if not (folder / name).exists()]
    if not folder.is_dir() or missing:
        detail = "" if not folder.is_dir() else f" (no {missing[0]})"
        raise WeightsError(f"{what} model folder missing or incomplete: {folder}{detail}",
                           f"put the {what} model there as weights/README.md describes")
    return folder


@contextmanager
def loading(folder: Path, what: str) -> Iterator[None]:
    """A folder that is there but does not load (truncated file, other format) -> WeightsError."""
    try:
        yield
    except Exception as err:     # whatever the loader raises, the folder does not load
        raise WeightsError(f"{what} model in {folder} could not be loaded: {err}",
                           "replace the folder with a complete copy (weights/README.md)") from err


def go_offline() -> None:
    """Hub libraries must never reach the network: every model is a local folder. Call it before
    importing whisperx or pyannote: they read these variables at import time (pyannote's usage
    telemetry is on by default)."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ["PYANNOTE_METRICS_ENABLED"] = "false"
    import huggingface_hub.constants

    huggingface_hub.constants.HF_HUB_OFFLINE = True   # in case the hub was imported before us


def quiet_library_logs() -> None:
    """whisperx gives its logger an INFO handler on *stdout* unless one exists (it would corrupt
    `--json` output): give it a NullHandler first and let records propagate to the app's logging.
    Lightning announces at INFO each old-format checkpoint it upgrades in memory (the one inside
    the whisperx wheel, and pyannote's)."""
    whisperx_log = logging.getLogger("whisperx")
    if not any(isinstance(h, logging.NullHandler) for h in whisperx_log.handlers):
        whisperx_log.handlers = [logging.NullHandler()]
    whisperx_log.propagate = True
    whisperx_log.setLevel(logging.NOTSET)
    logging.getLogger("lightning.pytorch.utilities.migration.utils").setLevel(logging.WARNING)
