"""Building blocks of the NAVA transformer: norms, modulation, timestep sinusoids, RoPE, attention.

Axis legend used in the shape comments:
  B batch, L tokens, N heads, d head dim, D model dim, P = d/2 rotary pairs, U distinct timesteps.

Precision: norms and RoPE run in at least fp32 whatever the weight dtype (the official runtime runs
them in fp32/fp64 under bf16 autocast); everything else runs in the dtype of its inputs.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.attention import SDPBackend, sdpa_kernel

ROPE_THETA = 10000.0
TIMESTEP_THETA = 10000.0
MAX_ROPE_POSITIONS = 1024  # the official tables have 1024 rows per axis; the model never saw more

# names accepted by `sdpa_backends` / NavaTransformer.attention_backends, fastest first on Hopper
SDPA_BACKENDS = {"cudnn": SDPBackend.CUDNN_ATTENTION, "flash": SDPBackend.FLASH_ATTENTION,
                 "efficient": SDPBackend.EFFICIENT_ATTENTION, "math": SDPBackend.MATH}


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


# --- time conditioning --------------------------------------------------------------------------

@dataclass(frozen=True, eq=False)
class TokenTime:
    """Per-token time conditioning, stored once per distinct timestep.

    A window has one or two distinct t (all tokens at the step's t; clean first-frame tokens at 0),
    so the [B, L, 6, D] per-token projection of the official code is a gather of a [U, 6, D] table.
    """

    e: Tensor       # [U, D] time embedding of each distinct t
    e0: Tensor      # [U, 6, D] its projection, the blocks' AdaLN input
    index: Tensor   # [B, L] long row of e/e0 per token, or [B, 1] when each sample has a single t

    def tokens(self, start: int, stop: int | None = None) -> TokenTime:
        """The tokens [start, stop) of the joint sequence (a [B, 1] index covers every token)."""
        if self.index.shape[1] == 1:
            return self
        return TokenTime(self.e, self.e0, self.index[:, start:stop])

    def embedding(self) -> Tensor:
        """e per token: [B, L or 1, D]."""
        return self.e[self.index]


class ModulationRows:
    """The six AdaLN rows (table + e0) of one block, gathered per token only when asked for."""

    def __init__(self, rows: Tensor, index: Tensor) -> None:
        self._rows, self._index = rows, index  # [U, 6, D], [B, L or 1]

    def __getitem__(self, i: int) -> Tensor:
        """Row i: 0 shift, 1 scale, 2 gate (attention), 3 shift, 4 scale, 5 gate (FFN) → [B, L or 1, D]."""
        return self._rows[:, i][self._index]


class Modulation(nn.Module):
    """A learned AdaLN table added to the per-token time projection (key `<block>.modulation.modulation`)."""

    def __init__(self, n_rows: int, dim: int) -> None:
        super().__init__()
        self.modulation = nn.Parameter(torch.randn(1, n_rows, dim) / dim**0.5)

    def forward(self, time: TokenTime) -> ModulationRows:
        # the official adds in the compute dtype per token; adding per distinct t gives the same numbers
        return ModulationRows(self.modulation.to(time.e0.dtype) + time.e0, time.index)


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


def rope_rotations(angles: Tensor, dtype: torch.dtype) -> Tensor:
    """Angles [..., P] float64 → unit complex rotations e^{iθ} [..., P], complex64 (complex128 for fp64)."""
    rotations = torch.polar(torch.ones_like(angles), angles)
    return rotations if dtype == torch.float64 else rotations.to(torch.complex64)


def apply_rope(x: Tensor, rotations: Tensor) -> Tensor:
    """Rotate adjacent pairs (x[2k], x[2k+1]) of x [B, L, N, d] by complex rotations [B, L, 1, P].

    One complex multiply, (x0 + i·x1)·(cos + i·sin), in fp32: the official does the same in
    complex128 before rounding to bf16; fp32 agrees within every tolerance and moves half the bytes.
    """
    pairs = torch.view_as_complex(_upcast(x).unflatten(-1, (-1, 2)).contiguous())  # [B, L, N, P]
    return torch.view_as_real(pairs * rotations).flatten(-2).to(x.dtype)


# --- attention ----------------------------------------------------------------------------------

def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Dense bidirectional attention, scale 1/√d. q [B, Lq, N, d], k/v [B, Lk, N, d] → [B, Lq, N, d]."""
    out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
    return out.transpose(1, 2)


@contextmanager
def sdpa_backends(names: Sequence[str] | None) -> Iterator[None]:
    """Let SDPA use only these backends, tried in this order (None: PyTorch's own choice)."""
    if names is None:
        yield
        return
    unknown = [n for n in names if n not in SDPA_BACKENDS]
    if unknown or not names:
        raise ValueError(f"unknown attention backends {unknown or names}; choose from {', '.join(SDPA_BACKENDS)}")
    with sdpa_kernel([SDPA_BACKENDS[n] for n in names], set_priority=True):
        yield


def rank_attention_backends(n_tokens: int, n_heads: int, head_dim: int, *, batch: int = 1,
                            dtype: torch.dtype = torch.bfloat16, device: torch.device | str = "cuda",
                            n_repeats: int = 3) -> list[tuple[str, float]]:
    """Time one SDPA call per usable backend at this shape: [(name, seconds)], fastest first.

    Backends that refuse the shape, dtype or device are left out; the math backend is timed only
    when nothing else runs (it materialises the L×L scores).
    """
    q, k, v = (torch.randn(batch, n_heads, n_tokens, head_dim, dtype=dtype, device=device) for _ in range(3))
    timings = [(n, s) for n in SDPA_BACKENDS if n != "math" and (s := _time_sdpa(n, q, k, v, n_repeats)) is not None]
    if not timings and (s := _time_sdpa("math", q, k, v, n_repeats)) is not None:
        timings.append(("math", s))
    return sorted(timings, key=lambda item: item[1])


def _time_sdpa(name: str, q: Tensor, k: Tensor, v: Tensor, n_repeats: int) -> float | None:
    """Seconds per SDPA call on one backend, or None when it refuses the inputs."""
    try:
        with sdpa_backends([name]), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # each refusal warns why; the None says enough
            F.scaled_dot_product_attention(q, k, v)  # warm-up, and refusal check
            _synchronize(q.device)
            start = time.perf_counter()
            for _ in range(n_repeats):
                F.scaled_dot_product_attention(q, k, v)
            _synchronize(q.device)
    except RuntimeError:
        return None
    return (time.perf_counter() - start) / n_repeats


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Ranges = tuple[tuple[int, int], ...]  # token ranges [start, stop) that attend to each other


def grouped_attention(q: Tensor, k: Tensor, v: Tensor, groups: Sequence[tuple[Ranges, ...]]) -> Tensor:
    """Self-attention inside token groups. q/k/v [B, L, N, d]; groups[b] lists sample b's groups.

    Tokens of one group attend only to each other; tokens in no group (padding) get zeros and never
    act as keys. Consecutive samples with the same group layout share one SDPA call on slices (no
    mask and no gathered copies, so flash kernels stay usable): a batch of equal-size joint samples
    costs one dense call, and a modality-masked sample two more.
    """
    n_tokens = q.shape[1]
    if all(g == (((0, n_tokens),),) for g in groups):
        return attention(q, k, v)
    out = q.new_zeros(q.shape)
    start = 0
    for stop in range(1, len(groups) + 1):
        if stop < len(groups) and groups[stop] == groups[start]:
            continue
        rows = slice(start, stop)  # samples start..stop-1 share a layout
        for ranges in groups[start]:
            if len(ranges) == 1:
                cols: slice | Tensor = slice(*ranges[0])
            else:
                cols = torch.cat([torch.arange(a, z, device=q.device) for a, z in ranges])
            out[rows, cols] = attention(q[rows, cols], k[rows, cols], v[rows, cols])
        start = stop
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
