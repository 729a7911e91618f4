"""What every bench script needs: the device, random weights, a clock that waits for the GPU, peak memory."""

from __future__ import annotations

import json
import math
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

GB = 1e9


def pick_device(size: str) -> torch.device:
    """The GPU when there is one; the CPU for tiny sizes only (release sizes take hours there)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    if size != "tiny":
        raise SystemExit(f"error: --size {size} needs a CUDA GPU; use --size tiny on the CPU")
    return torch.device("cpu")


def compute_dtype(device: torch.device) -> torch.dtype:
    """bf16 on a GPU (what NAVA runs in); fp32 on the CPU, where bf16 matmuls are slow and inexact."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def random_init_(module: nn.Module, seed: int = 0) -> nn.Module:
    """Fill every parameter in place: N(0, 1/fan_in) for weights, 1 for norm gains, small noise elsewhere."""
    generator = torch.Generator(device=next(module.parameters()).device).manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if p.ndim >= 2 and leaf == "weight":
                p.normal_(0.0, 1.0 / math.sqrt(p[0].numel()), generator=generator)
            elif "norm" in name and leaf == "weight":
                p.fill_(1.0)
            else:
                p.normal_(0.0, 0.02, generator=generator)
    return module


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, n_warmup: int = 1, n_repeats: int = 3) -> list[float]:
    """Seconds of each of n_repeats calls after n_warmup untimed ones."""
    for _ in range(n_warmup):
        fn()
    seconds = []
    for _ in range(n_repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return seconds


def median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


def peak_gpu_bytes(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def proc_status_bytes(field: str) -> int | None:
    """A kB field of /proc/self/status (VmRSS, VmHWM, ...) in bytes, or None where /proc or the field is missing."""
    status = Path("/proc/self/status")
    if not status.is_file():
        return None
    for line in status.read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return None


def host_peak_rss_bytes() -> int | None:
    """The process's peak resident set (VmHWM), or None where /proc is missing."""
    return proc_status_bytes("VmHWM")


def environment(device: torch.device) -> dict[str, object]:
    return {"device": device.type, "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "torch": torch.__version__, "python": platform.python_version()}


def write_json(path: Path | None, result: dict) -> None:
    if path is not None:
        path.write_text(json.dumps(result, indent=1) + "\n")


def gigabytes(n_bytes: object) -> str:
    """A byte count as GB for the summary lines ("n/a" for None: no GPU)."""
    return f"{n_bytes / GB:.2f} GB" if isinstance(n_bytes, int) else "n/a"
