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
(or in chunks of `max_batch`). `Shortcuts` (off by default) skip passes at some steps.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum

import torch
from torch import Tensor

from nava_dub.model.transformer import NavaInputs, NavaOutputs, NavaTransformer
from nava_dub.options import GuidanceOptions, Shortcuts
from nava_dub.sampler import N_TRAIN_TIMESTEPS


class Branch(Enum):
    COND = "cond"
    UNCOND = "uncond"
    MMASK = "mmask"
    TIMBRE = "timbre"


@dataclass(frozen=True)
class GuidanceScales(GuidanceOptions):
    """The user's scales (NAVA's configs/nava.yaml defaults) and which of NAVA's extra branches run."""

    align_3d: bool = True        # run the modality-masked branch
    timbre_cfg: bool = True      # run the timbre branch (only when speakers are given)


@dataclass(frozen=True, eq=False)
class Conditioning:
    """What stays fixed over the steps of one clip (text features are umT5 outputs, unpadded)."""

    context: Tensor                              # [Lt, 4096] positive prompt
    negative_context: Tensor                     # [Ln, 4096] the video negative prompt (audio-only runs: the audio one)
    speaker_embeddings: Tensor | None = None     # [S, 192]
    speaker_positions: tuple[int, ...] = ()      # [S] `<extra_id_2>` rows of the positive prompt

    def to(self, device: torch.device | str) -> Conditioning:
        """The same conditions on `device` (kept in host memory between the encoding and the window)."""
        speakers = None if self.speaker_embeddings is None else self.speaker_embeddings.to(device)
        return replace(self, context=self.context.to(device), negative_context=self.negative_context.to(device),
                       speaker_embeddings=speakers)


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
                    max_batch: int | None = None, *, contexts: Mapping[Branch, Tensor] | None = None,
                    ) -> tuple[Tensor | None, Tensor | None]:
    """Run every branch for one sample and combine: (video velocity [C,F,H,W] | None, audio [La,C] | None), fp32.

    contexts: each branch's `model.embed_context` row [n_text_tokens, D], computed once per window.
    """
    run = branches(scales, has_speakers(cond))
    outs = run_branches(model, base, cond, run, max_batch, contexts)
    video = guide_video(_velocities(outs, "video"), scales) if base.video_latents is not None else None
    audio = guide_audio(_velocities(outs, "audio"), scales) if base.audio_latents is not None else None
    return video, audio


def has_speakers(cond: Conditioning) -> bool:
    return cond.speaker_embeddings is not None and len(cond.speaker_positions) > 0


def run_branches(model: NavaTransformer, base: NavaInputs, cond: Conditioning, run: Sequence[Branch],
                 max_batch: int | None = None, contexts: Mapping[Branch, Tensor] | None = None,
                 ) -> dict[Branch, NavaOutputs]:
    """The transformer outputs of the branches `run`, batched (in chunks of `max_batch`).

    The modality-masked branch goes last, so the joint branches form one run of the batch that
    shares a single attention call.
    """
    order = sorted(run, key=lambda b: b is Branch.MMASK)
    batch = [branch_inputs(base, cond, b) for b in order]
    step = max_batch or len(batch)
    outs = []
    for i in range(0, len(batch), step):
        chunk = None if contexts is None else torch.stack([contexts[b] for b in order[i:i + step]])
        outs += model(batch[i:i + step], contexts=chunk)
    return dict(zip(order, outs, strict=True))


def _velocities(outs: Mapping[Branch, NavaOutputs], stream: str) -> dict[Branch, Tensor]:
    return {b: getattr(o, f"{stream}_velocity").float() for b, o in outs.items()}


class NavaVelocity:
    """The guided velocity callable of one window for `sampler.sample` (see `nava_velocity`).

    It keeps what stays fixed over the window's steps (the branches' text contexts) and, with
    shortcuts, the last guidance correction; `n_passes` counts the transformer passes run.
    """

    def __init__(self, model: NavaTransformer, cond: Conditioning, scales: GuidanceScales,
                 clean_video_tokens: Tensor | None, clean_audio_tokens: Tensor | None,
                 max_batch: int | None, shortcuts: Shortcuts) -> None:
        self.model, self.cond, self.scales, self.max_batch, self.shortcuts = model, cond, scales, max_batch, shortcuts
        self.clean_video_tokens, self.clean_audio_tokens = clean_video_tokens, clean_audio_tokens
        self.n_passes = 0
        self._full = branches(scales, has_speakers(cond))
        self._contexts: dict[Branch, Tensor] | None = None
        self._correction: Velocities | None = None  # guided − cond of the last full step
        self._n_reused = 0
        self._last_timestep = math.inf

    def __call__(self, latents: list[Tensor], timestep: int) -> list[Tensor]:
        video = next((x for x in latents if x.ndim == 4), None)
        audio = next((x for x in latents if x.ndim == 2), None)
        base = NavaInputs(video_latents=video, audio_latents=audio, context=self.cond.context, timestep=timestep,
                          video_timesteps=_token_timesteps(self.clean_video_tokens, timestep),
                          audio_timesteps=_token_timesteps(self.clean_audio_tokens, timestep))
        if timestep > self._last_timestep:  # a new run of the sampler: nothing carries over
            self._correction = None
        self._last_timestep = timestep
        with torch.no_grad():
            v, a = self._velocity(base, timestep / N_TRAIN_TIMESTEPS)
        return [v if x.ndim == 4 else a for x in latents]

    def _velocity(self, base: NavaInputs, sigma: float) -> Velocities:
        if self._contexts is None:
            rows = self.model.embed_context([branch_inputs(base, self.cond, b) for b in self._full])
            self._contexts = dict(zip(self._full, rows, strict=True))
        if not self.shortcuts.guides_at(sigma):
            self._correction = None
            return _cond_velocities(self._run(base, (Branch.COND,)))
        if self._correction is not None and self._n_reused < self.shortcuts.reuse_steps:
            self._n_reused += 1
            return _plus(_cond_velocities(self._run(base, (Branch.COND,))), self._correction)
        outs = self._run(base, self._full)
        guided = (guide_video(_velocities(outs, "video"), self.scales) if base.video_latents is not None else None,
                  guide_audio(_velocities(outs, "audio"), self.scales) if base.audio_latents is not None else None)
        if self.shortcuts.reuse_steps:
            self._correction, self._n_reused = _plus(guided, _cond_velocities(outs), -1.0), 0
        return guided

    def _run(self, base: NavaInputs, run: Sequence[Branch]) -> dict[Branch, NavaOutputs]:
        self.n_passes += len(run)
        return run_branches(self.model, base, self.cond, run, self.max_batch, self._contexts)


Velocities = tuple[Tensor | None, Tensor | None]   # (video, audio), fp32


def _cond_velocities(outs: Mapping[Branch, NavaOutputs]) -> Velocities:
    video, audio = outs[Branch.COND].video_velocity, outs[Branch.COND].audio_velocity
    return None if video is None else video.float(), None if audio is None else audio.float()


def _plus(a: Velocities, b: Velocities, scale: float = 1.0) -> Velocities:
    """a + scale·b per stream (a stream that is absent stays absent)."""
    def add(x: Tensor | None, y: Tensor | None) -> Tensor | None:
        return None if x is None or y is None else x + scale * y
    return add(a[0], b[0]), add(a[1], b[1])


def nava_velocity(model: NavaTransformer, cond: Conditioning, scales: GuidanceScales = GuidanceScales(), *,
                  clean_video_tokens: Tensor | None = None, clean_audio_tokens: Tensor | None = None,
                  max_batch: int | None = None, shortcuts: Shortcuts = Shortcuts()) -> NavaVelocity:
    """The guided velocity callable for `sampler.sample`. Its latents are a video [C, F, H, W] and/or
    an audio [La, C] latent (told apart by rank); velocities come back in the same order, fp32.

    clean_*_tokens (bool, video [F, Hp, Wp], audio [La]) get t = 0 in every pass: with a "clean"
    `sampler.Keep` on the same entries this is NAVA's first-frame conditioning, generalised.
    Make one per window: it computes the window's text contexts once, at the first step.
    """
    return NavaVelocity(model, cond, scales, clean_video_tokens, clean_audio_tokens, max_batch, shortcuts)


def _token_timesteps(clean: Tensor | None, timestep: int) -> Tensor | None:
    if clean is None:
        return None
    return torch.where(clean, 0.0, float(timestep)).to(torch.float64)
