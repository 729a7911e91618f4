"""Time one sampling step of the NAVA transformer with the default guidance, against its FLOP count.

    python -m bench.step [--size tiny|release] [--shapes 704x1280x37,960x960x37,480x832x37]
                         [--mode bf16|fp8] [--memory max|balanced|low] [--speakers] [--compile]
                         [--attention default|auto|cudnn,flash,...] [--cap-gb G] [--warmup N] [--repeats N]
                         [--json F]

Random weights (bf16 on a GPU, fp32 on the CPU at the tiny size); a shape is HEIGHTxWIDTHxLATENT_FRAMES
in pixels. One step = the guided velocity (3 transformer passes, 4 with --speakers, batched) plus
the UniPC update. Prints one line per shape; --json writes everything.

FLOP count of one pass of one sample (a multiply-add is 2 FLOP; norms, modulation, RoPE and
activations are elementwise and not counted). Lv = F·⌈H/2⌉·⌈W/2⌉ video tokens of an F×H×W
latent, La audio tokens, L = Lv + La, Lt = 512 context rows, D = 3072, Dff = 14336:

    video stem   2·Lv·(pt·ph·pw·C_v)·D                  patch Conv3d, C_v = 48
    audio stem   2·La·7·(C_a·D + 3·D·H_a)               k=7 Conv1d, then a SwiGLU of three k=7 convs
                                                         (C_a = 128, H_a = 8192)
    time MLP     2·U·(f·D + D² + 6·D²)                  per distinct timestep, U ≤ 16 rows (the
                                                         official runs it per token, U = L)
    per block    8·L·D²                                  self-attention q, k, v, o
               + 4·D·Σ_g |g|²                            QKᵀ and AV within each attention group g
                                                         (joint: one group of L; modality-masked: Lv, La)
               + 4·L·D² + 4·s·Lt·D²                      cross-attention q, o on the tokens; k, v on the
                                                         context per stream (s = 2 alignment, 1 fusion)
               + 4·L·Lt·D                                cross-attention QKᵀ and AV
               + 4·L·D·Dff                               FFN
    heads        2·Lv·D·(pt·ph·pw·C_v) + 2·La·D·C_a
    context      2·Lt·(4096·D + D²) + 2·S·(192·D + D²)  text MLP, S speaker tokens: once per window

At 704x1280x37 (Lv = 32,560, La = 152) one joint pass is 0.69 PFLOP, 57% of it self-attention.
TFLOP/s = FLOP of the step's passes (context excluded: it is computed before the first step) /
seconds per step. tests/test_bench.py checks this count against torch's FlopCounterMode.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from bench.measure import (
    compute_dtype,
    environment,
    gigabytes,
    host_peak_rss_bytes,
    median,
    peak_gpu_bytes,
    pick_device,
    random_init_,
    reset_peak,
    synchronize,
    write_json,
)
from nava_dub import estimate
from nava_dub.guidance import Branch, Conditioning, GuidanceScales, branches, nava_velocity
from nava_dub.memory import GenerationShape, plan_memory
from nava_dub.model.fp8 import fp8_matmul_granularity, quantise_model
from nava_dub.model.layers import rank_attention_backends
from nava_dub.model.offload import offload_blocks
from nava_dub.model.transformer import PRESETS, NavaParams, NavaTransformer
from nava_dub.sampler import draw_nava_noise, sample

DEFAULT_SHAPES = {"release": "704x1280x37,960x960x37,480x832x37", "tiny": "64x96x3,32x32x2"}
SPEAKER_DIM = 192
N_PROMPT_TOKENS, N_NEGATIVE_TOKENS = 200, 120   # umT5 rows of a typical dubbing prompt and the negative one


def parse_shape(text: str) -> GenerationShape:
    try:
        height, width, frames = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise SystemExit(f"error: shape {text!r} is not HEIGHTxWIDTHxLATENT_FRAMES, e.g. 704x1280x37") from None
    return GenerationShape(height, width, frames)


def pass_flops(p: NavaParams, n_video_tokens: int, n_audio_tokens: int, *, masked: bool = False,
               n_time_levels: int = 1, include_context: bool = False, n_speakers: int = 0) -> int:
    """FLOP of one transformer pass of one sample (the formula of the module docstring).

    estimate.pass_flops counts one time-MLP row and no context; the extra rows and the once-per-window
    context MLPs are added here, so FlopCounterMode can check the whole forward.
    """
    d, lt = p.dim, p.n_text_tokens
    extra_time_rows = 2 * (n_time_levels - 1) * (p.freq_dim * d + d * d + 6 * d * d)
    context = 2 * lt * (p.text_dim * d + d * d) + 2 * n_speakers * (SPEAKER_DIM * d + d * d)
    return (estimate.pass_flops(p, n_video_tokens, n_audio_tokens, masked=masked) + extra_time_rows
            + (context if include_context else 0))


def build_model(params: NavaParams, device: torch.device, dtype: torch.dtype, seed: int = 0) -> NavaTransformer:
    """A random-weight transformer built straight on the device (no host copy)."""
    with torch.device("meta"):
        model = NavaTransformer(params)
    model.to(dtype).to_empty(device=device)   # in place: the same module, now with storage
    random_init_(model, seed).requires_grad_(False).eval()
    return model


def window_inputs(params: NavaParams, shape: GenerationShape, device: torch.device, speakers: bool,
                  seed: int = 0) -> tuple[Conditioning, list[torch.Tensor]]:
    """Random prompt features (and a speaker) and the initial noise of one window."""
    g = torch.Generator(device=device).manual_seed(seed)
    context = torch.randn(N_PROMPT_TOKENS, params.text_dim, generator=g, device=device)
    negative = torch.randn(N_NEGATIVE_TOKENS, params.text_dim, generator=g, device=device)
    speaker = torch.randn(1, SPEAKER_DIM, generator=g, device=device) if speakers else None
    cond = Conditioning(context, negative, speaker, (5,) if speakers else ())
    height, width = shape.latent_size()
    noise = draw_nava_noise((params.video_in_channels, shape.n_latent_frames, height, width),
                            shape.n_audio_tokens, g, device, params.audio_in_channels)
    return cond, [x for x in noise if x is not None]


def step_flops(params: NavaParams, shape: GenerationShape, speakers: bool) -> tuple[int, int]:
    """(FLOP of one step's passes, number of passes) with the default guidance."""
    run = branches(GuidanceScales(), speakers)
    n_video = math.prod(params.token_grid(shape.n_latent_frames, *shape.latent_size()))
    flops = sum(pass_flops(params, n_video, shape.n_audio_tokens, masked=b is Branch.MMASK) for b in run)
    return flops, len(run)


def time_steps(model: NavaTransformer, cond: Conditioning, noise: list[torch.Tensor], device: torch.device,
               n_warmup: int, n_repeats: int, max_batch: int | None) -> list[float]:
    """Seconds of each sampling step after the warm-up ones (the first also embeds the contexts)."""
    stamps: list[float] = []

    def on_step(_: object) -> None:
        synchronize(device)
        stamps.append(time.perf_counter())

    velocity = nava_velocity(model, cond, max_batch=max_batch)
    synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        sample(velocity, noise, n_steps=n_warmup + n_repeats, on_step=on_step)
    seconds = [b - a for a, b in zip([start, *stamps], stamps, strict=False)]
    return seconds[n_warmup:]


def fp8_error(model: NavaTransformer, cond: Conditioning, noise: list[torch.Tensor]) -> dict[str, float]:
    """Quantise `model` in place; relative L2 error of one guided velocity against the unquantised one.

    One pass per call, so the bf16 reference fits under the caps the fp8 runs are checked with.
    """
    with torch.no_grad():
        reference = nava_velocity(model, cond, max_batch=1)(noise, 937)
        quantise_model(model)
        quantised = nava_velocity(model, cond, max_batch=1)(noise, 937)
    return {name: float((q - r).norm() / r.norm()) for name, q, r in zip(("video", "audio"), quantised, reference,
                                                                           strict=True)}


def measure_shape(model: NavaTransformer, shape: GenerationShape, args: argparse.Namespace,
                  device: torch.device) -> dict[str, object]:
    params = model.params
    plan = plan_memory(params, replace(shape, n_passes=3 + args.speakers), args.memory, None,
                       "fp8" if args.mode == "fp8" else "bf16" if device.type == "cuda" else "fp32")
    cond, noise = window_inputs(params, shape, device, args.speakers)
    reset_peak(device)
    seconds = time_steps(model, cond, noise, device, args.warmup, args.repeats, plan.max_batch)
    flops, n_passes = step_flops(params, shape, args.speakers)
    per_step = median(seconds)
    n_video = math.prod(params.token_grid(shape.n_latent_frames, *shape.latent_size()))
    return {"shape": f"{shape.height_px}x{shape.width_px}x{shape.n_latent_frames}", "n_video_tokens": n_video,
            "n_audio_tokens": shape.n_audio_tokens, "n_passes": n_passes, "seconds_per_step": per_step,
            "seconds_all_steps": seconds, "flops_per_pass": flops // n_passes, "flops_per_step": flops,
            "tflops_per_s": flops / per_step / 1e12, "peak_gpu_bytes": peak_gpu_bytes(device),
            "estimated_transformer_bytes": plan.estimate.transformer_bytes, "memory_plan": plan.summary(),
            "host_peak_rss_bytes": host_peak_rss_bytes()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.step", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--tiny", dest="size", action="store_const", const="tiny", help="same as --size tiny")
    parser.add_argument("--shapes", help="comma-separated HxWxF (pixels, latent frames)")
    parser.add_argument("--mode", choices=["bf16", "fp8"], default="bf16")
    parser.add_argument("--memory", choices=["max", "balanced", "low"], default="balanced")
    parser.add_argument("--speakers", action="store_true", help="one speaker reference: 4 passes per step")
    parser.add_argument("--compile", action="store_true", help="torch.compile every block")
    parser.add_argument("--attention", default="default",
                        help="SDPA backends: default (PyTorch's choice), auto (fastest at the first shape), "
                             "or a comma-separated priority list of cudnn, flash, efficient, math")
    parser.add_argument("--cap-gb", type=float, help="cap this process's GPU memory (an out-of-memory error = fails)")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    device = pick_device(args.size)
    if args.cap_gb is not None and device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, args.cap_gb * 1e9 / total), device)
    params = PRESETS[args.size]
    shapes = [parse_shape(s) for s in (args.shapes or DEFAULT_SHAPES[args.size]).split(",")]
    model = build_model(params, device, compute_dtype(device))
    result: dict[str, object] = {"size": args.size, **environment(device), "dtype": str(compute_dtype(device)),
                                 "mode": args.mode, "memory": args.memory, "speakers": args.speakers,
                                 "compile": args.compile, "cap_gb": args.cap_gb}
    if args.mode == "fp8":
        cond, noise = window_inputs(params, shapes[0], device, args.speakers)
        result["fp8_relative_error"] = fp8_error(model, cond, noise)
        result["fp8_matmul"] = fp8_matmul_granularity(device) or "dequantise"
    result["attention_backends"] = _choose_attention(model, shapes[0], args.attention, device)
    plan = plan_memory(params, shapes[0], args.memory, None, args.mode)
    if plan.offload_group_size is not None:
        offload = offload_blocks(model, plan.offload_group_size, device)
        result["offload_group_size"], result["offload_buffer_bytes"] = plan.offload_group_size, offload.buffer_bytes
    if args.compile:
        model.compile_blocks()
    rows = [measure_shape(model, shape, args, device) for shape in shapes]
    result["shapes"] = rows
    for row in rows:
        print(f"{row['shape']} {args.mode} {args.memory}: {row['seconds_per_step']:.3f} s/step, "
              f"{row['n_passes']} passes, {row['tflops_per_s']:.1f} TFLOP/s, "
              f"peak {gigabytes(row['peak_gpu_bytes'])} (estimated {gigabytes(row['estimated_transformer_bytes'])})")
    write_json(args.json, result)
    return 0


def _choose_attention(model: NavaTransformer, shape: GenerationShape, choice: str,
                      device: torch.device) -> list[str] | None:
    """Set model.attention_backends from --attention; returns what was set (None: PyTorch's default)."""
    if choice == "default":
        return None
    if choice == "auto":
        p = model.params
        n_tokens = shape.n_tokens(p)
        ranking = rank_attention_backends(n_tokens, p.n_heads, p.head_dim, dtype=model.dtype, device=device)
        names = [name for name, _ in ranking]
    else:
        names = choice.split(",")
    model.attention_backends = tuple(names)
    return names


if __name__ == "__main__":
    sys.exit(main())
