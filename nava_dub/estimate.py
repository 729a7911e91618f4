"""What a dub will cost before anything loads: model passes, memory and time per window. Pure, no torch.

A window runs `steps` sampling steps of `n_passes` transformer passes each: cond, uncond and the
align-3D branch make 3; the timbre branch makes 4 when voices are given, as in every dub
(guidance.branches); with pass shortcuts (options.Shortcuts) some steps run the cond pass alone. One pass costs `pass_flops` (the count of bench/step.py, without the
context MLPs that run once per window). Memory comes from `nava_dub.memory.plan_memory` for the
largest window. Time is the transformer's share only (text encoding, the VAEs and the vocoder come
on top): the window's FLOP at an assumed achieved rate, ASSUMED_EFFICIENCY of the GPU's nominal
dense bf16 rate (the fp8 path is counted at the bf16 rate too, which errs on the slow side).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nava_dub.memory import GenerationShape, MemoryPlan, plan_for_device
from nava_dub.options import Shortcuts
from nava_dub.timeline import audio_tokens_for_latent_frames

if TYPE_CHECKING:
    from nava_dub.model.transformer import NavaParams

AUDIO_STEM_KERNEL = 7          # the audio stem's Conv1d and SwiGLU convolutions
ASSUMED_EFFICIENCY = 0.4       # share of the nominal dense bf16 rate a pass achieves (bench/README.md targets 55%)
CPU_FLOPS_PER_S = 5e10         # a rough figure for fp32 on a few cores: CPU runs suit tiny test weights only

# Nominal dense bf16 tensor rates (TFLOP/s, without sparsity) from the vendors' data sheets; the first
# name contained in the device's name wins, so the longer names come first.
GPU_BF16_TFLOPS: tuple[tuple[str, float], ...] = (
    ("H100 PCIe", 756), ("GH200", 989), ("H200", 989), ("H100", 989), ("B200", 2250), ("A100", 312),
    ("L40S", 362), ("L40", 181), ("L4", 121), ("A10", 125), ("RTX 6000 Ada", 364), ("RTX A6000", 155),
    ("RTX 4090", 165), ("RTX 3090", 71),
)


@dataclass(frozen=True)
class DeviceInfo:
    """Where the dub would run, as far as it is known before loading."""

    kind: str                        # cpu | cuda
    name: str
    total_bytes: int | None = None
    free_bytes: int | None = None


@dataclass(frozen=True)
class WindowCost:
    index: int
    n_latent_frames: int
    n_video_tokens: int
    n_audio_tokens: int
    n_model_passes: int              # steps × passes per step
    flops: int                       # all of the window's passes
    seconds: float | None            # None: no rate known for the device


@dataclass(frozen=True)
class RunEstimate:
    weights: str                     # which transformer, e.g. "release (fp8)"
    device: DeviceInfo
    steps: int
    n_passes_per_step: int
    height_px: int
    width_px: int
    memory: MemoryPlan
    windows: tuple[WindowCost, ...]
    flops_per_s: float | None        # the assumed achieved rate
    n_passes_per_window: int = 0     # steps × passes, fewer with pass shortcuts

    @property
    def fits(self) -> bool:
        """Whether the GPU holds the model in the chosen memory mode (always True on the CPU)."""
        return self.device.kind != "cuda" or self.memory.fits

    @property
    def total_seconds(self) -> float | None:
        if self.flops_per_s is None:
            return None
        return sum(w.seconds or 0.0 for w in self.windows)

    def problem(self) -> str | None:
        """One line saying why the run cannot start, or None."""
        return None if self.fits else self.memory.problem(self.device.name)


def pass_flops(params: NavaParams, n_video_tokens: int, n_audio_tokens: int, *, masked: bool = False) -> int:
    """FLOP of one transformer pass of one sample (a multiply-add is 2): stems, blocks and heads.

    masked: the align-3D branch, whose self-attention runs within each modality (Lv² + La² pairs, not L²).
    """
    d, lt, lv, la = params.dim, params.n_text_tokens, n_video_tokens, n_audio_tokens
    n = lv + la
    patch = math.prod(params.patch_size)
    pairs = lv**2 + la**2 if masked else n**2
    stems = (2 * lv * patch * params.video_in_channels * d
             + 2 * la * AUDIO_STEM_KERNEL * (params.audio_in_channels * d + 3 * d * params.audio_hidden_dim))
    time_mlp = 2 * (params.freq_dim * d + 7 * d * d)

    def block(n_streams: int) -> int:   # self-attention, its scores, cross-attention, FFN
        return (8 * n * d * d + 4 * d * pairs + 4 * n * d * d + 4 * n_streams * lt * d * d + 4 * n * lt * d
                + 4 * n * d * params.ffn_dim)

    blocks = params.n_double_blocks * block(2) + params.n_single_blocks * block(1)
    heads = 2 * lv * d * patch * params.video_out_channels + 2 * la * d * params.audio_out_channels
    return stems + time_mlp + blocks + heads


def n_passes_per_step(with_voices: bool) -> int:
    """NAVA's default guidance: cond, uncond, align-3D, and timbre when voices are given."""
    return 4 if with_voices else 3


def flops_per_s(device: DeviceInfo) -> float | None:
    """The achieved rate assumed for the device, or None for a GPU not in the table."""
    if device.kind == "cpu":
        return CPU_FLOPS_PER_S
    for name, tflops in GPU_BF16_TFLOPS:
        if name.lower() in device.name.lower():
            return ASSUMED_EFFICIENCY * tflops * 1e12
    return None


def estimate_run(params: NavaParams, windows: Sequence[tuple[int, int]], *, height_px: int, width_px: int,
                 steps: int, with_voices: bool, device: DeviceInfo, memory_mode: str = "auto",
                 weights_dtype: str = "bf16", weights: str = "release",
                 shortcuts: Shortcuts = Shortcuts()) -> RunEstimate:
    """The cost of windows given as (index, n_latent_frames) at height_px × width_px."""
    n_passes = n_passes_per_step(with_voices)
    passes = shortcuts.passes_per_step(model_timesteps(steps), n_passes)
    rate = flops_per_s(device)
    largest = max((n for _, n in windows), default=1)
    shape = GenerationShape(height_px, width_px, largest, n_passes)
    latent_h, latent_w = shape.latent_size()
    costs = []
    for index, n_latent_frames in windows:
        n_video = math.prod(params.token_grid(n_latent_frames, latent_h, latent_w))
        n_audio = audio_tokens_for_latent_frames(n_latent_frames)
        joint = pass_flops(params, n_video, n_audio)
        guided = (n_passes - 1) * joint + pass_flops(params, n_video, n_audio, masked=True)
        flops = sum(guided if p == n_passes else p * joint for p in passes)
        costs.append(WindowCost(index, n_latent_frames, n_video, n_audio, sum(passes), flops,
                                None if rate is None else flops / rate))
    memory = plan_for_device(params, shape, memory_mode, device.kind == "cuda", device.free_bytes, weights_dtype)
    return RunEstimate(weights, device, steps, n_passes, height_px, width_px, memory, tuple(costs), rate,
                       sum(passes))


def model_timesteps(n_steps: int, shift: float = 5.0) -> list[int]:
    """The timesteps the transformer sees over `n_steps` (sampler.schedule, without torch): Wan's
    shifted grid σ = shift·u / (1 + (shift−1)·u), u = σ_max·(1 − i/N), truncated to t = ⌊1000·σ⌋."""
    top = 1.0 - 1.0 / 1000
    sigma_max = shift * top / (1 + (shift - 1) * top)
    grid = (sigma_max * (1 - i / n_steps) for i in range(n_steps))
    return [int(1000 * shift * u / (1 + (shift - 1) * u)) for u in grid]


def estimate_summary(estimate: RunEstimate) -> dict:
    """The estimate as JSON (the `estimate` of `nava-dub plan --json`)."""
    return {
        "weights": estimate.weights,
        "device": {"kind": estimate.device.kind, "name": estimate.device.name,
                   "total_bytes": estimate.device.total_bytes, "free_bytes": estimate.device.free_bytes},
        "steps": estimate.steps,
        "passes_per_step": estimate.n_passes_per_step,
        "passes_per_window": estimate.n_passes_per_window,
        "size_px": [estimate.height_px, estimate.width_px],
        "memory": {"mode": estimate.memory.mode, "peak_bytes": estimate.memory.estimate.peak_bytes,
                   "summary": estimate.memory.summary()},
        "fits": estimate.fits,
        "assumed_flops_per_s": estimate.flops_per_s,
        "windows": [{"index": w.index, "n_latent_frames": w.n_latent_frames, "n_video_tokens": w.n_video_tokens,
                     "n_audio_tokens": w.n_audio_tokens, "model_passes": w.n_model_passes, "flops": w.flops,
                     "seconds": None if w.seconds is None else round(w.seconds, 3)} for w in estimate.windows],
        "total_seconds": None if estimate.total_seconds is None else round(estimate.total_seconds, 3),
        "problem": estimate.problem(),
    }
