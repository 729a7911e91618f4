"""What a run would use, found without loading anything: the device and its free memory, the transformer
file and its architecture, and what the planned windows would cost there (nava_dub.estimate)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from nava_dub import media
from nava_dub.errors import UsageError
from nava_dub.estimate import DeviceInfo, RunEstimate, estimate_run
from nava_dub.options import DubOptions, Shortcuts
from nava_dub.timeline import Window


def estimate_for(info: media.MediaInfo, windows: Sequence[Window], *, weights_dir: Path, steps: int = 50,
                 resolution_px: int = 960, device: str = "auto", memory_mode: str = "auto",
                 shortcuts: Shortcuts = Shortcuts()) -> RunEstimate:
    """Passes, memory and time of the windows, with the transformer of weights_dir on the device."""
    from nava_dub.memory import check_mode
    from nava_dub.source import nava_size

    check_mode(memory_mode)
    target = device_info(device)
    params, label, weights_dtype = transformer_facts(weights_dir, target.kind == "cuda")
    width, height = media.require_video(info).display_size
    height_px, width_px = nava_size(width, height, resolution_px)
    return estimate_run(params, [(w.index, w.n_latent_frames) for w in windows], height_px=height_px,
                        width_px=width_px, steps=steps, with_voices=True, device=target, memory_mode=memory_mode,
                        weights_dtype=weights_dtype, weights=label, shortcuts=shortcuts)


def estimate_dub(info: media.MediaInfo, windows: Sequence[Window], options: DubOptions) -> RunEstimate:
    return estimate_for(info, windows, weights_dir=options.weights_dir, steps=options.steps,
                        resolution_px=options.resolution_px, device=options.device, memory_mode=options.memory,
                        shortcuts=options.shortcuts)


def default_window_plans(weights_dir: Path, gpus: Sequence) -> list:
    """The `--memory auto` plan (memory.MemoryPlan) of NAVA's default window (704x1280, 37 latent frames,
    with voices) on each GPU (system.GpuInfo), for the transformer file of weights_dir."""
    from nava_dub.memory import GenerationShape, plan_memory
    if not gpus:
        return []
    params, _, weights_dtype = transformer_facts(weights_dir, on_gpu=True)
    shape = GenerationShape(704, 1280, 37, n_passes=4)
    return [plan_memory(params, shape, "auto", gpu.free_bytes, weights_dtype) for gpu in gpus]


def device_info(device: str) -> DeviceInfo:
    """The device a run would use ("auto": the first GPU, else the CPU), with its memory; nothing loads."""
    if device == "cpu":
        return DeviceInfo("cpu", "cpu")
    kind, _, number = device.partition(":")
    if kind not in ("auto", "cuda") or (number and not number.isdigit()) or (kind == "auto" and number):
        raise UsageError(f"--device {device!r} is not a device", "use auto, cpu, cuda or cuda:N")
    from nava_dub.system import gpus
    found = gpus()
    if kind == "auto" and not found:
        return DeviceInfo("cpu", "cpu")
    index = int(number or 0)
    if index >= len(found):
        raise UsageError(f"--device {device}: {len(found)} CUDA GPU(s) found", "use --device auto, or cpu")
    gpu = found[index]
    return DeviceInfo("cuda", gpu.name, gpu.total_bytes, gpu.free_bytes)


def transformer_facts(weights_dir: Path, on_gpu: bool):
    """(architecture, a label, weights dtype) of the transformer file a run would load; the release's if none."""
    from nava_dub.checkpoint import CONFIG_NAME, read_header, read_params
    from nava_dub.model.fp8 import FP8_DTYPE
    from nava_dub.model.transformer import PRESETS
    from nava_dub.weights import check_weights, is_tiny_folder

    plain = "bf16" if on_gpu else "fp32"
    found = [s.path for s in check_weights(weights_dir) if s.file.component == "transformer" and s.state == "found"]
    if not found:
        return PRESETS["release"], f"the release's NAVA.safetensors (none found in {weights_dir})", plain
    path = found[0]
    fp8 = any(entry.dtype == FP8_DTYPE for entry in read_header(path).values())
    tiny = " (tiny test weights)" if is_tiny_folder(weights_dir) else ""
    return read_params(path.parent / CONFIG_NAME), f"{path}{tiny}", "fp8" if fp8 else plain
