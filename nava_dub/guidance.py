"""NAVA's classifier-free guidance: which transformer passes run, with what, and how they combine.

Per step NAVA runs up to four passes at the same latents and timestep (nava_dit.md §4.4):
  cond    positive prompt, speaker tokens injected
  uncond  the video negative prompt for both streams, no speakers
  mmask   positive prompt, no speakers, modality-masked attention ("align-3D")   [align_3d]
  timbre  positive prompt, no speakers (raw `<extra_id_2>` rows)                   [timbre, with speakers]
and combines them (c, u, m, τ):
  video = c + g_v·(c − u) + g_va·(c − m)
  audio = c + g_a·(c − u) + g_aa·(c − m) + g_t·(c − τ)
A term is present only when its branch ran; with no extra term the formula is the classic
u + g·(c − u), as in the official code. The passes go through the transformer as one batch
(or in chunks of `max_batch`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from enum import Enum

import torch
from torch import Tensor

from nava_dub.model.transformer import NavaInputs, NavaTransformer


class Branch(Enum):
    COND = "cond"
    UNCOND = "uncond"
    MMASK = "mmask"
    TIMBRE = "timbre"


@dataclass(frozen=True)
class GuidanceScales:
    """Defaults from NAVA's configs/nava.yaml."""

    video: float = 3.0
    audio: float = 2.0
    video_align: float = 3.0
    audio_align: float = 2.0
    timbre: float = 3.0
    align_3d: bool = True        # run the modality-masked branch
    timbre_cfg: bool = True      # run the timbre branch (only when speakers are given)


@dataclass(frozen=True, eq=False)
class Conditioning:
    """What stays fixed over the steps of one clip (text features are umT5 outputs, unpadded)."""

    context: Tensor                              # [Lt, 4096] positive prompt
    negative_context: Tensor                     # [Ln, 4096] the video negative prompt (audio-only runs: the audio one)
    speaker_embeddings: Tensor | None = None     # [S, 192]
    speaker_positions: tuple[int, ...] = ()      # [S] `<extra_id_2>` rows of the positive prompt


def branches(scales: GuidanceScales, has_speakers: bool) -> tuple[Branch, ...]:
    """The passes NAVA runs per step, in its order."""
    out = [Branch.COND, Branch.UNCOND]
    if scales.align_3d:
        out.append(Branch.MMASK)
    if scales.timbre_cfg and has_speakers:
        out.append(Branch.TIMBRE)
    return tuple(out)


def combine(cond: Tensor, uncond: Tensor, scale: float, extra: Sequence[tuple[float, Tensor]] = ()) -> Tensor:
    """c + s·(c − u) + Σ s_i·(c − b_i) when there are extra terms, else the classic u + s·(c − u)."""
    if not extra:
        return uncond + scale * (cond - uncond)
    out = cond + scale * (cond - uncond)
    for s, other in extra:
        out = out + s * (cond - other)
    return out


def guide_video(v: dict[Branch, Tensor], scales: GuidanceScales) -> Tensor:
    extra = [(scales.video_align, v[Branch.MMASK])] if Branch.MMASK in v else []
    return combine(v[Branch.COND], v[Branch.UNCOND], scales.video, extra)


def guide_audio(v: dict[Branch, Tensor], scales: GuidanceScales) -> Tensor:
    extra = [(scales.audio_align, v[Branch.MMASK])] if Branch.MMASK in v else []
    if Branch.TIMBRE in v:
        extra.append((scales.timbre, v[Branch.TIMBRE]))
    return combine(v[Branch.COND], v[Branch.UNCOND], scales.audio, extra)


def branch_inputs(base: NavaInputs, cond: Conditioning, branch: Branch) -> NavaInputs:
    """The transformer input of one branch, from the latents/timesteps in `base`."""
    plain = replace(base, context=cond.context, speaker_embeddings=None, speaker_positions=(), modality_masked=False)
    if branch is Branch.COND:
        return replace(plain, speaker_embeddings=cond.speaker_embeddings, speaker_positions=cond.speaker_positions)
    if branch is Branch.UNCOND:
        return replace(plain, context=cond.negative_context)
    if branch is Branch.MMASK:
        return replace(plain, modality_masked=True)
    return plain  # TIMBRE: positive prompt, slots keep their raw T5 vectors


def guided_velocity(model: NavaTransformer, base: NavaInputs, cond: Conditioning, scales: GuidanceScales,
                    max_batch: int | None = None) -> tuple[Tensor | None, Tensor | None]:
    """Run every branch for one sample and combine: (video velocity [C,F,H,W] | None, audio [La,C] | None), fp32."""
    run = branches(scales, cond.speaker_embeddings is not None and len(cond.speaker_positions) > 0)
    batch = [branch_inputs(base, cond, b) for b in run]
    step = max_batch or len(batch)
    outs = [o for i in range(0, len(batch), step) for o in model(batch[i:i + step])]
    video = audio = None
    if base.video_latents is not None:
        video = guide_video({b: o.video_velocity.float() for b, o in zip(run, outs, strict=True)}, scales)
    if base.audio_latents is not None:
        audio = guide_audio({b: o.audio_velocity.float() for b, o in zip(run, outs, strict=True)}, scales)
    return video, audio


def nava_velocity(model: NavaTransformer, cond: Conditioning, scales: GuidanceScales = GuidanceScales(), *,
                  clean_video_tokens: Tensor | None = None, clean_audio_tokens: Tensor | None = None,
                  max_batch: int | None = None) -> Callable[[list[Tensor], int], list[Tensor]]:
    """The guided velocity callable for `sampler.sample`. Its latents are a video [C, F, H, W] and/or
    an audio [La, C] latent (told apart by rank); velocities come back in the same order, fp32.

    clean_*_tokens (bool, video [F, Hp, Wp], audio [La]) get t = 0 in every pass: with a "clean"
    `sampler.Keep` on the same entries this is NAVA's first-frame conditioning, generalised.
    """

    def velocity(latents: list[Tensor], timestep: int) -> list[Tensor]:
        video = next((x for x in latents if x.ndim == 4), None)
        audio = next((x for x in latents if x.ndim == 2), None)
        base = NavaInputs(video_latents=video, audio_latents=audio, context=cond.context, timestep=timestep,
                          video_timesteps=_token_timesteps(clean_video_tokens, timestep),
                          audio_timesteps=_token_timesteps(clean_audio_tokens, timestep))
        with torch.no_grad():
            v, a = guided_velocity(model, base, cond, scales, max_batch)
        return [v if x.ndim == 4 else a for x in latents]

    return velocity


def _token_timesteps(clean: Tensor | None, timestep: int) -> Tensor | None:
    if clean is None:
        return None
    return torch.where(clean, 0.0, float(timestep)).to(torch.float64)
