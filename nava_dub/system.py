"""What this machine offers: the ffmpeg tools and the GPUs with their free memory."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    total_bytes: int
    free_bytes: int
    compute_capability: str


@dataclass(frozen=True)
class SystemReport:
    tools: tuple[tuple[str, bool, str], ...]   # (name, usable, version or fix)
    gpus: tuple[GpuInfo, ...]


def system_report() -> SystemReport:
    return SystemReport(tuple(_tool(name) for name in ("ffmpeg", "ffprobe")), gpus())


def _tool(name: str) -> tuple[str, bool, str]:
    path = shutil.which(name)
    if not path:
        return name, False, "not found: install it (Debian/Ubuntu: apt-get install ffmpeg)"
    first = subprocess.run([path, "-version"], capture_output=True, text=True).stdout.splitlines()
    return name, True, first[0] if first else path


def gpus() -> tuple[GpuInfo, ...]:
    import torch

    if not torch.cuda.is_available():
        return ()
    found = []
    for i in range(torch.cuda.device_count()):
        free, total = torch.cuda.mem_get_info(i)
        major, minor = torch.cuda.get_device_capability(i)
        found.append(GpuInfo(i, torch.cuda.get_device_name(i), total, free, f"{major}.{minor}"))
    return tuple(found)
