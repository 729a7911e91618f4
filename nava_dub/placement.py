"""Carries a MemoryPlan (nava_dub.memory) out on the models, for the whole of a run.

    load     the components the plan keeps off the GPU load into host memory (`host_components`);
             with block offload, the transformer's blocks then stream from pinned host memory one
             group ahead of use (model/offload.py) and the rest of it moves to the GPU
    encode   `text_encoder_ready`: umT5 comes to the GPU for the prompts (unless the plan runs it
             on the CPU) and goes back to host memory afterwards unless the plan keeps it. Parked,
             not dropped: the next input of a batch encodes its prompts without reading 11 GB again
    sample   `max_batch`: guidance branches per transformer call
    decode   `vae_tiling`: the Wan VAE's spatial tiles

On the CPU the same steps run (blocks stream from one host buffer to another), so tests show a
plan changes where things are, never what comes out.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path

import torch

from nava_dub.memory import MemoryPlan
from nava_dub.model.video_vae import VaeTiling
from nava_dub.models import ALL, Models
from nava_dub.progress import ProgressFn, silent

HOST = torch.device("cpu")


def host_components(plan: MemoryPlan) -> frozenset[str]:
    """Components that load into host memory under the plan."""
    streamed = {"transformer"} if plan.offload_group_size is not None else set()
    return frozenset(streamed | ({"text_encoder"} if not plan.text_encoder_on_gpu else set()))


def load_placed(weights_dir: str | Path, plan: MemoryPlan, *, components: Iterable[str] = ALL,
                device: str | torch.device | None = None, progress: ProgressFn = silent) -> Models:
    """load_models, each component where the plan puts it, block streaming started."""
    from nava_dub.models import load_models
    models = load_models(weights_dir, components=components, device=device, on_host=host_components(plan),
                         progress=progress)
    return place(models, plan)


def place(models: Models, plan: MemoryPlan) -> Models:
    """Start the plan's block offload on the loaded transformer (a no-op without one, or when started)."""
    if plan.offload_group_size is None or models.transformer is None or models.offload is not None:
        return models
    from nava_dub.model.offload import offload_blocks
    return replace(models, offload=offload_blocks(models.transformer, plan.offload_group_size, models.device))


@contextlib.contextmanager
def text_encoder_ready(models: Models, plan: MemoryPlan | None) -> Iterator[None]:
    """umT5 where the plan encodes, for the body; parked in host memory after it unless the plan keeps it."""
    encoder = models.require("text_encoder")
    if plan is None:
        yield
        return
    encoder.to(models.device if plan.text_encoder_on_gpu else HOST)
    try:
        yield
    finally:
        if not plan.keep_text_encoder:
            park(encoder)


def park(module: torch.nn.Module) -> None:
    """Move a model to host memory and return the GPU blocks it held to the driver (torch caches them)."""
    on_gpu = any(p.device.type == "cuda" for p in module.parameters())
    module.to(HOST)
    if on_gpu:
        torch.cuda.empty_cache()


def max_batch(plan: MemoryPlan | None) -> int | None:
    """Guidance branches per transformer call (None: all of a step's in one)."""
    return None if plan is None else plan.max_batch


def vae_tiling(plan: MemoryPlan | None) -> VaeTiling | None:
    """The plan's VAE tiles (None: decode whole frames)."""
    if plan is None or plan.vae_tiles is None:
        return None
    return VaeTiling(*plan.vae_tiles)
