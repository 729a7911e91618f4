"""Building blocks of the NAVA transformer: norms, modulation, timestep sinusoids, RoPE, attention.

Axis legend used in the shape comments:
  B batch, L tokens, N heads, d head dim, D model dim, P = d/2 rotary pairs.

Precision: norms and RoPE run in at least fp32 whatever the weight dtype (the official runtime runs
them in fp32/fp64 under bf16 autocast); everything else runs in the dtype of its inputs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ROPE_THETA = 10000.0
TIMESTEP_THETA = 10000.0
MAX_ROPE_POSITIONS = 1024  # the official tables have 1024 rows per axis; the model never saw more


def _upcast(x: Tensor) -> Tensor:
    """fp32 for half types, unchanged for fp32/fp64."""
    return x if x.dtype in (torch.float32, torch.float64) else x.float()


class LayerNorm(nn.LayerNorm):
    """LayerNorm computed in >= fp32 (as autocast does), returned in the input dtype."""

    def forward(self, x: Tensor) -> Tensor:
        xf = _upcast(x)
        weight = None if self.weight is None else self.weight.to(xf.dtype)
        bias = None if self.bias is None else self.bias.to(xf.dtype)
        return F.layer_norm(xf, self.normalized_shape, weight, bias, self.eps).to(x.dtype)


class RMSNorm(nn.Module):
    """q/k RMSNorm over the full projection width: round(x·rsqrt(mean(x²)+eps)) · weight."""

    def __init__(self, dim: int, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: Tensor) -> Tensor:
        xf = _upcast(x)
        normed = (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)
        return normed * self.weight.to(x.dtype)


class Modulation(nn.Module):
    """A learned AdaLN table added to the per-token time projection (key `<block>.modulation.modulation`)."""

    def __init__(self, n_rows: int, dim: int) -> None:
        super().__init__()
        self.modulation = nn.Parameter(torch.randn(1, n_rows, dim) / dim**0.5)

    def forward(self, e0: Tensor) -> tuple[Tensor, ...]:
        # e0 [B, L, n_rows, D] → n_rows tensors [B, L, D]; rows: shift, scale, gate (attn), shift, scale, gate (ffn)
        return (self.modulation.to(e0.dtype).unsqueeze(0) + e0).unbind(2)


def modulate(x: Tensor, shift: Tensor, scale: Tensor) -> Tensor:
    return x * (1 + scale) + shift


def timestep_sinusoid(t: Tensor, dim: int) -> Tensor:
    """t [...] (0..1000) → [..., dim] float64, cos half first then sin half (NAVA/Wan order)."""
    half = dim // 2
    freqs = torch.pow(TIMESTEP_THETA, -torch.arange(half, dtype=torch.float64, device=t.device) / half)
    angles = t.to(torch.float64).unsqueeze(-1) * freqs
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


# --- RoPE ---------------------------------------------------------------------------------------

def rope_band_pairs(head_dim: int) -> tuple[int, int, int]:
    """Complex pairs per axis (time, height, width); the official split rule for any head_dim.

    Height and width get 2·⌊d/6⌋ real dims each, time the rest: 22/21/21 pairs for d=128, 12/10/10 for d=64.
    """
    hw_dims = 2 * (head_dim // 6)
    return (head_dim - 2 * hw_dims) // 2, hw_dims // 2, hw_dims // 2


def _band_freqs(n_pairs: int, device: torch.device | None) -> Tensor:
    # ω_j = θ^(-2j / band_dims), band_dims = 2·n_pairs real dims
    return torch.pow(ROPE_THETA, -torch.arange(n_pairs, dtype=torch.float64, device=device) / n_pairs)


def _check_positions(n_positions: int, axis: str) -> None:
    if n_positions > MAX_ROPE_POSITIONS:
        raise ValueError(f"{n_positions} {axis} positions exceed the model's {MAX_ROPE_POSITIONS}-position RoPE")


def video_rope_angles(grid: tuple[int, int, int], head_dim: int, device: torch.device | None = None) -> Tensor:
    """Token grid (frames, rows, cols) → rotation angles [frames·rows·cols, head_dim/2] float64, (f,h,w) order."""
    n_t, n_h, n_w = rope_band_pairs(head_dim)
    for n, axis in zip(grid, ("frame", "row", "column"), strict=True):
        _check_positions(n, axis)
    f, h, w = torch.meshgrid(*(torch.arange(n, dtype=torch.float64, device=device) for n in grid), indexing="ij")
    return torch.cat([
        f.reshape(-1, 1) * _band_freqs(n_t, device),
        h.reshape(-1, 1) * _band_freqs(n_h, device),
        w.reshape(-1, 1) * _band_freqs(n_w, device),
    ], dim=1)


def audio_rope_angles(n_tokens: int, head_dim: int, scale: float, device: torch.device | None = None) -> Tensor:
    """Audio token n rotates the time band by n·scale·ω (scale 0.24 = video latents per audio latent);
    the height/width bands stay unrotated. → [n_tokens, head_dim/2] float64."""
    n_t, n_h, n_w = rope_band_pairs(head_dim)
    _check_positions(n_tokens, "audio")
    n = torch.arange(n_tokens, dtype=torch.float64, device=device).unsqueeze(1)
    time_band = n * (_band_freqs(n_t, device) * scale)
    return torch.cat([time_band, time_band.new_zeros(n_tokens, n_h + n_w)], dim=1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate adjacent pairs (x[2k], x[2k+1]) of x [B, L, N, d] by angles given as cos/sin [B, L, 1, P]."""
    xf = _upcast(x)
    x0, x1 = xf.unflatten(-1, (-1, 2)).unbind(-1)  # [B, L, N, P] each
    cos, sin = cos.to(xf.dtype), sin.to(xf.dtype)
    return torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2).to(x.dtype)


# --- attention ----------------------------------------------------------------------------------

def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Dense bidirectional attention, scale 1/√d. q [B, Lq, N, d], k/v [B, Lk, N, d] → [B, Lq, N, d]."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


Ranges = tuple[tuple[int, int], ...]  # token ranges [start, stop) that attend to each other


def grouped_attention(q: Tensor, k: Tensor, v: Tensor, groups: Sequence[tuple[Ranges, ...]]) -> Tensor:
    """Self-attention inside token groups. q/k/v [B, L, N, d]; groups[b] lists sample b's groups.

    Tokens of one group attend only to each other; tokens in no group (padding) get zeros and never
    act as keys. Samples with the same group layout share one SDPA call, so a batch of equal-size
    samples costs one dense call (no mask, so flash kernels stay usable).
    """
    n_tokens = q.shape[1]
    if all(g == (((0, n_tokens),),) for g in groups):
        return attention(q, k, v)
    out = torch.zeros_like(q)
    by_layout: dict[tuple[Ranges, ...], list[int]] = defaultdict(list)
    for b, sample_groups in enumerate(groups):
        by_layout[sample_groups].append(b)
    for layout, batch_index in by_layout.items():
        rows = torch.tensor(batch_index, device=q.device)
        for ranges in layout:
            if ranges == ((0, n_tokens),):  # whole sequence: select samples only
                out[rows] = attention(q[rows], k[rows], v[rows])
                continue
            cols = torch.cat([torch.arange(a, z, device=q.device) for a, z in ranges])
            pick = (rows[:, None], cols[None, :])
            out[pick] = attention(q[pick], k[pick], v[pick])
    return out


def token_groups(n_video: int, n_audio: int, video_len: int, modality_masked: bool) -> tuple[Ranges, ...]:
    """Attention groups of one sample in the joint sequence [video padded to video_len; audio].

    Joint: all valid video and audio tokens form one group. Modality-masked (the align-3D branch):
    video and audio attend only within their own modality.
    """
    video: Ranges = ((0, n_video),) if n_video else ()
    audio: Ranges = ((video_len, video_len + n_audio),) if n_audio else ()
    if modality_masked:
        return tuple(r for r in (video, audio) if r)
    if video and audio and n_video == video_len:
        return (((0, video_len + n_audio),),)  # contiguous: one range
    return (video + audio,) if video or audio else ()
