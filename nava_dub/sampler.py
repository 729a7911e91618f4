"""Flow-matching sampling as NAVA runs it: UniPC (order 2, bh2, x0-prediction) on Wan's shifted sigma grid.

Rectified flow: x_σ = (1−σ)·x0 + σ·noise and the model predicts v = noise − x0 at t = 1000·σ.
NAVA's scheduler is Wan2.2's `FlowUniPCMultistepScheduler`; diffusers' `UniPCMultistepScheduler`
given Wan's sigma grid reproduces it (../shared/docs/components.md §5.2):
σ_i = shift·u_i / (1 + (shift−1)·u_i), u_i = σ_max·(1 − i/N), i < N, then a final σ = 0, where
σ_max = 0.99980 is Wan's shifted top training sigma (in fp32). The model gets the timesteps
truncated to int64 (999, 937, 833, 624 for N = 4); the solver uses the unrounded sigmas.

The loop is a function over a callable `model(latents, timestep) -> velocities` that works on a
list of latents (video and audio, each with its own scheduler instance; both driven by one
timestep list, as NAVA does). Known tokens can be held two ways (`Keep.mode`):
  "clean":  overwritten with the clean source before every model call, and the solver continues
            from the overwritten latent; the model is expected to see them at t = 0 (per-token
            timesteps). This is NAVA's first-frame (I2V) mode; like NAVA, nothing re-imposes them
            after the last step.
  "noised": overwritten with the source noised to the current sigma along the straight path to
            the initial noise, (1−σ)·source + σ·noise, before every call, and set to the source
            at the end (RePaint-style inpainting without resampling).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import Tensor

N_TRAIN_TIMESTEPS = 1000
DEFAULT_SHIFT = 5.0
DEFAULT_STEPS = 50

VelocityModel = Callable[[list[Tensor], int], Sequence[Tensor]]


@dataclass(frozen=True, eq=False)
class Keep:
    """Latent entries held at a source during sampling."""

    mask: Tensor                              # bool, broadcastable to the latent; True = held
    source: Tensor                            # clean latent, broadcastable to the latent
    mode: Literal["clean", "noised"] = "clean"


@dataclass(frozen=True, eq=False)
class StepInfo:
    """Passed to the progress callback after each solver step."""

    step: int                                 # 0-based index of the step just taken
    n_steps: int
    timestep: int                             # what the model saw
    latents: list[Tensor]                     # the latents after the step (do not modify)


def wan_sigma_max(shift: float = DEFAULT_SHIFT, n_train_timesteps: int = N_TRAIN_TIMESTEPS) -> float:
    """Wan's largest shifted training sigma, computed in fp32 as Wan does (0.99980 for shift 5)."""
    top = torch.tensor(1.0 - 1.0 / n_train_timesteps, dtype=torch.float64).float()
    return float(shift * top / (1 + (shift - 1) * top))


def make_scheduler(n_steps: int, shift: float = DEFAULT_SHIFT):  # -> diffusers.UniPCMultistepScheduler
    """A fresh UniPC scheduler on NAVA's grid (one per modality: UniPC keeps a history)."""
    from diffusers import UniPCMultistepScheduler  # heavy import, only when sampling

    scheduler = UniPCMultistepScheduler(
        num_train_timesteps=N_TRAIN_TIMESTEPS, solver_order=2, solver_type="bh2", predict_x0=True,
        lower_order_final=True, final_sigmas_type="zero", prediction_type="flow_prediction",
        use_flow_sigmas=True, flow_shift=shift)
    # unshifted grid; diffusers applies the shift once, as Wan's set_timesteps does
    scheduler.set_timesteps(sigmas=np.linspace(wan_sigma_max(shift), 0.0, n_steps + 1)[:-1])
    return scheduler


def schedule(n_steps: int, shift: float = DEFAULT_SHIFT) -> tuple[list[int], list[float]]:
    """(timesteps the model sees [n_steps], solver sigmas [n_steps + 1] ending at 0)."""
    scheduler = make_scheduler(n_steps, shift)
    return [int(t) for t in scheduler.timesteps], [float(s) for s in scheduler.sigmas]


def draw_noise(shapes: Sequence[Sequence[int]], generator: torch.Generator,
               device: torch.device | str | None = None) -> list[Tensor]:
    """fp32 N(0, 1) latents, drawn in the order given from `generator` (on the generator's device)."""
    device = device or generator.device
    return [torch.randn(tuple(s), generator=generator, device=device, dtype=torch.float32) for s in shapes]


def draw_nava_noise(video_shape: Sequence[int] | None, n_audio_tokens: int | None, generator: torch.Generator,
                    device: torch.device | str | None = None, audio_channels: int = 128,
                    ) -> tuple[Tensor | None, Tensor | None]:
    """Initial noise with NAVA's draw order and layout: video first as [F·H·W, C] (then viewed as
    [C, F, H, W]), audio second as [La, audio_channels]; a generator seeded like the official run's
    global RNG gives its noise."""
    shapes = []
    if video_shape is not None:
        c, f, h, w = video_shape
        shapes.append((f * h * w, c))
    if n_audio_tokens is not None:
        shapes.append((n_audio_tokens, audio_channels))
    drawn = draw_noise(shapes, generator, device)
    video = drawn.pop(0).reshape(*video_shape[1:], video_shape[0]).permute(3, 0, 1, 2) if video_shape else None
    return video, (drawn.pop(0) if n_audio_tokens is not None else None)


def hold(x: Tensor, keep: Keep | None, noise: Tensor, sigma: float) -> Tensor:
    """x with the kept entries replaced by the source (clean, or noised to `sigma`)."""
    if keep is None:
        return x
    source = keep.source.to(x)
    held = source if keep.mode == "clean" else (1 - sigma) * source + sigma * noise
    return torch.where(keep.mask.to(x.device), held, x)


def sample(model: VelocityModel, noise: Sequence[Tensor], *, n_steps: int = DEFAULT_STEPS,
           shift: float = DEFAULT_SHIFT, keeps: Sequence[Keep | None] | None = None,
           on_step: Callable[[StepInfo], None] | None = None) -> list[Tensor]:
    """Integrate from `noise` (one tensor per modality) to σ = 0; returns the final latents (fp32).

    model(latents, timestep) gets the current latents (kept entries already imposed) and the int
    timestep, and returns one velocity per latent.
    """
    keeps = list(keeps) if keeps is not None else [None] * len(noise)
    if len(keeps) != len(noise):
        raise ValueError(f"{len(keeps)} keeps for {len(noise)} latents")
    schedulers = [make_scheduler(n_steps, shift) for _ in noise]
    timesteps, sigmas = schedulers[0].timesteps, schedulers[0].sigmas
    noise = [n.float() for n in noise]
    x = list(noise)
    for i, t in enumerate(timesteps):
        x = [hold(xi, k, n, float(sigmas[i])) for xi, k, n in zip(x, keeps, noise, strict=True)]
        velocities = model(x, int(t))
        x = [s.step(v.float(), t, xi, return_dict=False)[0]
             for s, v, xi in zip(schedulers, velocities, x, strict=True)]
        if on_step is not None:
            on_step(StepInfo(step=i, n_steps=len(timesteps), timestep=int(t), latents=x))
    return [hold(xi, k, n, 0.0) if k is not None and k.mode == "noised" else xi
            for xi, k, n in zip(x, keeps, noise, strict=True)]
