"""NAVA's Align-then-Fuse MMDiT (the official `WanAVModel`), written so the release keys load as is.

Module names equal the checkpoint keys after its `backbone.` prefix; nothing is renamed at load time.
The release flags `add_spk_emb=true` and `no_split_norm_ffn=true` are the only architecture built:
the alignment (double-stream) blocks keep separate q/k/v/o and AdaLN tables per modality but share
norm3 and the FFN.

Axis legend: B batch, D model dim, N heads, d head dim; per sample F latent frames, H/W latent rows/
columns, Hp/Wp token rows/columns (H/2, W/2 rounded up), Lv/La video/audio tokens, Lt text tokens;
in the joint sequence video tokens are padded to the batch maximum Lv and audio tokens follow.

Reference: ernie-research/NAVA `nava_src/models/nava/modules/model_mm.py`; the forward pass is
described in ../shared/docs/nava_dit.md §3 and checked against ../shared/fixtures/nava_dit.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from nava_dub.model.layers import (
    LayerNorm,
    Modulation,
    Ranges,
    RMSNorm,
    TokenTime,
    apply_rope,
    attention,
    audio_rope_angles,
    grouped_attention,
    modulate,
    rope_rotations,
    sdpa_backends,
    timestep_sinusoid,
    token_groups,
    video_rope_angles,
)

SPEAKER_DIM = 192           # ReDimNet embedding width
SPEAKER_NULL_NORM_SQ = 1e-6  # an embedding with ‖s‖² at most this is "no speaker" → null_token
TIME_MLP_MIN_ROWS = 16       # rows the time MLP runs on at least (see NavaTransformer._time)
ROPE_CACHE_SIZE = 4          # RoPE tables kept per model (one per batch layout: a window needs one or two)


@dataclass(frozen=True)
class NavaParams:
    """Architecture of the transformer (defaults = the released NAVA_6B)."""

    dim: int = 3072
    ffn_dim: int = 14336
    freq_dim: int = 256                      # width of the timestep sinusoid
    n_heads: int = 24
    n_double_blocks: int = 10                # alignment layers
    n_single_blocks: int = 20                # fusion layers
    patch_size: tuple[int, int, int] = (1, 2, 2)
    video_in_channels: int = 48
    video_out_channels: int = 48
    audio_in_channels: int = 128
    audio_out_channels: int = 128
    n_text_tokens: int = 512                 # contexts are zero-padded to this many rows
    text_dim: int = 4096                     # umT5-XXL width
    eps: float = 1e-6
    audio_rope_scale: float = 0.24           # video latent frames per audio latent: (24/4) / 25

    def __post_init__(self) -> None:
        if self.dim % self.n_heads or (self.dim // self.n_heads) % 2:
            raise ValueError(f"dim {self.dim} must split into {self.n_heads} heads of even width")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def audio_hidden_dim(self) -> int:
        """Hidden width of the audio stem's SwiGLU: ⌊8·dim/3⌋ rounded up to a multiple of 256 (8192 for 3072)."""
        return 256 * math.ceil(int(8 * self.dim / 3) / 256)

    def token_grid(self, n_latent_frames: int, height: int, width: int) -> tuple[int, int, int]:
        """Video token grid for a latent of F×H×W (odd sizes are padded up to the patch)."""
        pt, ph, pw = self.patch_size
        return math.ceil(n_latent_frames / pt), math.ceil(height / ph), math.ceil(width / pw)

    @classmethod
    def from_config_dict(cls, config: Mapping[str, Any]) -> NavaParams:
        """Read the official joint-model config (NAVA_6B.json keys, plus the four constructor flags the
        release takes from elsewhere). Unknown keys and architectures this class does not build raise."""
        unknown = sorted(set(config) - _CONFIG_KEYS)
        if unknown:
            raise ValueError(f"unknown config keys: {', '.join(unknown)}")
        missing = sorted(k for k in _REQUIRED_CONFIG_KEYS if k not in config)
        if missing:
            raise ValueError(f"config lacks required keys: {', '.join(missing)}")
        for key, supported in _FIXED_CONFIG_VALUES.items():
            if key in config and _normalise(config[key]) != supported:
                raise ValueError(f"config {key}={config[key]!r} is not supported (only {supported!r})")
        n_blocks = config["num_double_layers"] + config["num_single_layers"]
        if "num_layers" in config and config["num_layers"] != n_blocks:
            raise ValueError(f"config num_layers={config['num_layers']} != double + single layers ({n_blocks})")
        kwargs = {field: config[key] for key, field in _CONFIG_TO_FIELD.items() if key in config}
        kwargs["patch_size"] = tuple(kwargs["patch_size"])
        kwargs.setdefault("audio_rope_scale", 1.0)  # the official default when the key is absent
        return cls(**kwargs)


def _normalise(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


_CONFIG_TO_FIELD = {
    "dim": "dim", "ffn_dim": "ffn_dim", "freq_dim": "freq_dim", "num_heads": "n_heads",
    "num_double_layers": "n_double_blocks", "num_single_layers": "n_single_blocks",
    "patch_size": "patch_size", "vid_in_dim": "video_in_channels", "vid_out_dim": "video_out_channels",
    "audio_in_dim": "audio_in_channels", "audio_out_dim": "audio_out_channels",
    "text_len": "n_text_tokens", "text_dim": "text_dim", "eps": "eps",
    "temporal_rope_scaling_factor": "audio_rope_scale",
}
_FIXED_CONFIG_VALUES: dict[str, Any] = {
    "model_type": "ti2v", "window_size": [-1, -1], "qk_norm": True, "cross_attn_norm": True,
    "add_spk_emb": True, "no_split_norm_ffn": True, "num_double_final_layers": 0,
}
_REQUIRED_CONFIG_KEYS = frozenset(_CONFIG_TO_FIELD) - {"text_len", "text_dim", "eps", "temporal_rope_scaling_factor"}
_CONFIG_KEYS = frozenset(_CONFIG_TO_FIELD) | frozenset(_FIXED_CONFIG_VALUES) | {"num_layers"}

PRESETS: dict[str, NavaParams] = {
    "release": NavaParams(),
    # the architecture of ../shared/fixtures/nava_dit (same code path, tiny sizes; head_dim 64)
    "tiny": NavaParams(dim=128, ffn_dim=256, n_heads=2, n_double_blocks=2, n_single_blocks=2),
}


@dataclass(frozen=True, eq=False)
class NavaInputs:
    """One sample of a transformer call. Samples of a batch may differ in every size.

    The caller chooses the one text context all blocks of both streams see (the official rule:
    the audio-side context when speakers are given, else the video-side one). Speaker token i
    overwrites context row `speaker_positions[i]` after the text MLP.
    """

    video_latents: Tensor | None             # [C_v=48, F, H, W] Wan2.2 latent; None = audio only
    audio_latents: Tensor | None             # [La, C_a=128] LTX audio latent, time-major; None = video only
    context: Tensor                          # [Lt ≤ 512, 4096] umT5 features, unpadded
    timestep: float | Tensor                 # scalar t = 1000·σ (the sampler passes int-truncated values)
    video_timesteps: Tensor | None = None    # [F, Hp, Wp] per-token t overriding `timestep` (0 = clean)
    audio_timesteps: Tensor | None = None    # [La] per-token t overriding `timestep`
    speaker_embeddings: Tensor | None = None  # [S, 192] ReDimNet; an all-zero row → learned null token
    speaker_positions: tuple[int, ...] = ()  # [S] context rows (the `<extra_id_2>` slots)
    modality_masked: bool = False            # video attends only to video, audio only to audio


@dataclass(frozen=True, eq=False)
class NavaOutputs:
    """Velocity (noise − x0) of one sample, in the model's compute dtype, cropped to the input sizes."""

    video_velocity: Tensor | None            # [C_v, F, H, W]
    audio_velocity: Tensor | None            # [La, C_a]


def first_frame_timesteps(params: NavaParams, video_latents: Tensor, timestep: float) -> Tensor:
    """Per-token video t for first-frame (I2V) conditioning: tokens of latent frame 0 get t = 0. → [F, Hp, Wp]"""
    grid = params.token_grid(*video_latents.shape[1:])
    t = torch.full(grid, float(timestep), dtype=torch.float64, device=video_latents.device)
    t[0] = 0.0
    return t


# --- modules ------------------------------------------------------------------------------------

class ChannelLastConv1d(nn.Conv1d):
    """Conv1d over time on [B, L, C] tensors."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.transpose(1, 2)).transpose(1, 2)


class ConvMLP(nn.Module):
    """SwiGLU made of k=7 temporal convolutions: w2(silu(w1 x) ⊙ w3 x)."""

    def __init__(self, dim: int, hidden_dim: int, kernel_size: int = 7) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.w1 = ChannelLastConv1d(dim, hidden_dim, kernel_size, padding=pad, bias=False)
        self.w2 = ChannelLastConv1d(hidden_dim, dim, kernel_size, padding=pad, bias=False)
        self.w3 = ChannelLastConv1d(dim, hidden_dim, kernel_size, padding=pad, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class SpeakerEmbedding(nn.Module):
    """SpkToken: ReDimNet embedding [S, 192] → one context token [S, D]; zero embeddings → null_token."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(LayerNorm(SPEAKER_DIM, eps=1e-5), nn.Linear(SPEAKER_DIM, dim), nn.SiLU(),
                                 nn.Linear(dim, dim))
        self.out_norm = LayerNorm(dim, eps=1e-5)
        self.null_token = nn.Parameter(torch.randn(1, dim))

    def forward(self, embeddings: Tensor) -> Tensor:
        dtype = self.net[1].weight.dtype
        h = self.net[0](embeddings.float()).to(dtype)   # the official runs the input LayerNorm in fp32
        tokens = self.out_norm(self.net[1:](h))          # [S, D]
        is_null = embeddings.float().pow(2).sum(-1, keepdim=True) <= SPEAKER_NULL_NORM_SQ
        return torch.where(is_null, self.null_token.to(dtype), tokens)


class Attention(nn.Module):
    """q/k/v/o projections with q/k RMSNorm; one set per stream suffix ("" = video or shared, "_audio")."""

    def __init__(self, dim: int, n_heads: int, eps: float, streams: tuple[str, ...] = ("",)) -> None:
        super().__init__()
        self.n_heads = n_heads
        for s in streams:
            for name in ("q", "k", "v", "o"):
                self.add_module(name + s, nn.Linear(dim, dim))
            self.add_module("norm_q" + s, RMSNorm(dim, eps))
            self.add_module("norm_k" + s, RMSNorm(dim, eps))

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.n_heads, -1))  # [B, L, D] → [B, L, N, d]

    def _layer(self, name: str) -> nn.Module:
        return self.get_submodule(name)

    def _project(self, x: Tensor, s: str) -> tuple[Tensor, Tensor, Tensor]:
        q = self._layer("norm_q" + s)(self._layer("q" + s)(x))
        k = self._layer("norm_k" + s)(self._layer("k" + s)(x))
        return self._heads(q), self._heads(k), self._heads(self._layer("v" + s)(x))

    def self_attention(self, parts: Sequence[tuple[Tensor, str]], args: BlockArgs) -> list[Tensor]:
        """`parts` are consecutive pieces of the joint sequence with their projection suffix."""
        q, k, v = (torch.cat(t, dim=1) for t in zip(*(self._project(x, s) for x, s in parts), strict=True))
        q, k = apply_rope(q, args.rope), apply_rope(k, args.rope)
        y = grouped_attention(q, k, v, args.groups).flatten(2)  # [B, L, D]
        outs, start = [], 0
        for x, s in parts:
            outs.append(self._layer("o" + s)(y[:, start:start + x.shape[1]]))
            start += x.shape[1]
        return outs

    def cross_attention(self, x: Tensor, context: Tensor, s: str = "") -> Tensor:
        """Text cross-attention over all context rows (no key mask, no RoPE). x [B, L, D], context [B, Lc, D]."""
        q = self._heads(self._layer("norm_q" + s)(self._layer("q" + s)(x)))
        k = self._heads(self._layer("norm_k" + s)(self._layer("k" + s)(context)))
        v = self._heads(self._layer("v" + s)(context))
        return self._layer("o" + s)(attention(q, k, v).flatten(2))


@dataclass(frozen=True, eq=False)
class BlockArgs:
    """What every block needs besides the residual stream."""

    time: TokenTime                          # per-token time embedding and projection (e0)
    context: Tensor                          # [B, n_text_tokens, D]
    rope: Tensor                             # [B, L, 1, d/2] complex rotations
    groups: list[tuple[Ranges, ...]]         # attention groups per sample
    video_len: int                           # Lv: the joint sequence is [video (Lv); audio]


def _ffn(dim: int, ffn_dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, ffn_dim), nn.GELU(approximate="tanh"), nn.Linear(ffn_dim, dim))


class DoubleStreamBlock(nn.Module):
    """Alignment layer: joint self-attention with per-modality q/k/v/o and AdaLN, shared norm3 and FFN."""

    def __init__(self, p: NavaParams) -> None:
        super().__init__()
        self.norm1 = LayerNorm(p.dim, p.eps, elementwise_affine=False)
        self.self_attn = Attention(p.dim, p.n_heads, p.eps, ("", "_audio"))
        self.norm3 = LayerNorm(p.dim, p.eps)
        self.cross_attn = Attention(p.dim, p.n_heads, p.eps, ("", "_audio"))
        self.norm2 = LayerNorm(p.dim, p.eps, elementwise_affine=False)
        self.ffn = _ffn(p.dim, p.ffn_dim)
        self.modulation = Modulation(6, p.dim)
        self.modulation_audio = Modulation(6, p.dim)

    def forward(self, x: Tensor, args: BlockArgs) -> Tensor:
        n = args.video_len
        xv, xa = x[:, :n], x[:, n:]                                     # [B, Lv, D], [B, La, D]
        mv, ma = self.modulation(args.time.tokens(0, n)), self.modulation_audio(args.time.tokens(n))
        yv, ya = self.self_attn.self_attention(
            [(modulate(self.norm1(xv), mv[0], mv[1]), ""), (modulate(self.norm1(xa), ma[0], ma[1]), "_audio")], args)
        xv, xa = xv + yv * mv[2], xa + ya * ma[2]
        # cross-attention is neither modulated nor gated
        xv = xv + self.cross_attn.cross_attention(self.norm3(xv), args.context, "")
        xa = xa + self.cross_attn.cross_attention(self.norm3(xa), args.context, "_audio")
        xv = xv + self.ffn(modulate(self.norm2(xv), mv[3], mv[4])) * mv[5]
        xa = xa + self.ffn(modulate(self.norm2(xa), ma[3], ma[4])) * ma[5]
        return torch.cat([xv, xa], dim=1)


class SingleStreamBlock(nn.Module):
    """Fusion layer: one weight set for all tokens; modality is known only through RoPE and per-token t."""

    def __init__(self, p: NavaParams) -> None:
        super().__init__()
        self.norm1 = LayerNorm(p.dim, p.eps, elementwise_affine=False)
        self.self_attn = Attention(p.dim, p.n_heads, p.eps)
        self.norm3 = LayerNorm(p.dim, p.eps)
        self.cross_attn = Attention(p.dim, p.n_heads, p.eps)
        self.norm2 = LayerNorm(p.dim, p.eps, elementwise_affine=False)
        self.ffn = _ffn(p.dim, p.ffn_dim)
        self.modulation = Modulation(6, p.dim)

    def forward(self, x: Tensor, args: BlockArgs) -> Tensor:
        m = self.modulation(args.time)
        (y,) = self.self_attn.self_attention([(modulate(self.norm1(x), m[0], m[1]), "")], args)
        x = x + y * m[2]
        x = x + self.cross_attn.cross_attention(self.norm3(x), args.context)
        return x + self.ffn(modulate(self.norm2(x), m[3], m[4])) * m[5]


class Head(nn.Module):
    """Output head: AdaLN (shift, scale from the time embedding e, not e0) + Linear."""

    def __init__(self, dim: int, out_dim: int, eps: float) -> None:
        super().__init__()
        self.norm = LayerNorm(dim, eps, elementwise_affine=False)
        self.head = nn.Linear(dim, out_dim)
        self.modulation = nn.Parameter(torch.randn(1, 2, dim) / dim**0.5)

    def forward(self, x: Tensor, e: Tensor) -> Tensor:
        # e [B, L or 1, D] → shift, scale [B, L or 1, D]
        shift, scale = (self.modulation.to(e.dtype).unsqueeze(0) + e.unsqueeze(2)).unbind(2)
        return self.head(modulate(self.norm(x), shift, scale))


# --- the model ----------------------------------------------------------------------------------

class NavaTransformer(nn.Module):
    """The NAVA DiT. `forward(batch)` maps a list of NavaInputs to a list of NavaOutputs.

    Speed settings (none changes the numbers beyond kernel rounding): `attention_backends` picks
    the SDPA kernels; `compile_blocks()` compiles each block; `embed_context()` lets a sampler
    compute the text contexts once per window; RoPE tables are cached per batch layout.
    """

    def __init__(self, params: NavaParams) -> None:
        super().__init__()
        p = self.params = params
        self.patch_embedding = nn.Conv3d(p.video_in_channels, p.dim, p.patch_size, stride=p.patch_size)
        self.patch_embedding_audio = nn.Sequential(
            ChannelLastConv1d(p.audio_in_channels, p.dim, 7, padding=3), nn.SiLU(),
            ConvMLP(p.dim, p.audio_hidden_dim))
        self.speaker_embedding = SpeakerEmbedding(p.dim)
        self.text_embedding = nn.Sequential(nn.Linear(p.text_dim, p.dim), nn.GELU(approximate="tanh"),
                                            nn.Linear(p.dim, p.dim))
        self.time_embedding = nn.Sequential(nn.Linear(p.freq_dim, p.dim), nn.SiLU(), nn.Linear(p.dim, p.dim))
        self.time_projection = nn.Sequential(nn.SiLU(), nn.Linear(p.dim, 6 * p.dim))
        self.double_blocks = nn.ModuleList(DoubleStreamBlock(p) for _ in range(p.n_double_blocks))
        self.single_blocks = nn.ModuleList(SingleStreamBlock(p) for _ in range(p.n_single_blocks))
        self.head = Head(p.dim, math.prod(p.patch_size) * p.video_out_channels, p.eps)
        self.head_audio = Head(p.dim, p.audio_out_channels, p.eps)
        self.attention_backends: tuple[str, ...] | None = None  # SDPA backends by priority; None: PyTorch's
        self._rope_cache: dict[tuple, Tensor] = {}

    @property
    def dtype(self) -> torch.dtype:
        """Compute dtype: activations run in the dtype of the (never quantised) stem weights."""
        return self.patch_embedding.weight.dtype

    def compile_blocks(self, **options: Any) -> None:
        """torch.compile every block in place (options go to `torch.compile`, e.g. mode="max-autotune").

        Blocks see one shape per window, so each compiles once per window size and batch layout.
        """
        for block in (*self.double_blocks, *self.single_blocks):
            block.compile(**options)

    def forward(self, batch: Sequence[NavaInputs], *, contexts: Tensor | None = None) -> list[NavaOutputs]:
        """contexts: `embed_context(batch)` computed earlier (it depends on neither latents nor t)."""
        if not batch:
            raise ValueError("empty batch")
        for sample in batch:
            _validate(sample, self.params)
        expected = (len(batch), self.params.n_text_tokens, self.params.dim)
        if contexts is not None and tuple(contexts.shape) != expected:
            raise ValueError(f"contexts must be {list(expected)}, got {list(contexts.shape)}")
        video = _per_tensor(self._embed_video, [s.video_latents for s in batch])   # [Lv_i, D] each, or None
        audio = _per_tensor(self._embed_audio, [s.audio_latents for s in batch])   # [La_i, D] each, or None
        n_video = [0 if v is None else v.shape[0] for v in video]
        n_audio = [0 if a is None else a.shape[0] for a in audio]
        lv, la = max(n_video), max(n_audio)
        x = torch.cat([self._pad_stack(video, lv), self._pad_stack(audio, la)], dim=1)  # [B, Lv + La, D]

        time = self._time(torch.stack([self._token_timesteps(s, lv, la) for s in batch]))
        args = BlockArgs(
            time=time, context=self.embed_context(batch) if contexts is None else contexts.to(self.dtype),
            rope=self._rope(batch, lv, la), video_len=lv,
            groups=[token_groups(nv, na, lv, s.modality_masked)
                    for nv, na, s in zip(n_video, n_audio, batch, strict=True)])
        with sdpa_backends(self.attention_backends):
            for block in (*self.double_blocks, *self.single_blocks):
                x = block(x, args)

        out_v = self.head(x[:, :lv], time.tokens(0, lv).embedding())    # [B, Lv, pt·ph·pw·C_v]
        out_a = self.head_audio(x[:, lv:], time.tokens(lv).embedding())  # [B, La, C_a]
        return [NavaOutputs(
            video_velocity=None if s.video_latents is None else self._unpatchify(out_v[b], s.video_latents.shape),
            audio_velocity=None if s.audio_latents is None else out_a[b, :n_audio[b]],
        ) for b, s in enumerate(batch)]

    # --- inputs → tokens ---

    def _embed_video(self, latents: Tensor | None) -> Tensor | None:
        if latents is None:
            return None
        grid = self.params.token_grid(*latents.shape[1:])
        pt, ph, pw = self.params.patch_size
        pad = (0, grid[2] * pw - latents.shape[3], 0, grid[1] * ph - latents.shape[2], 0, grid[0] * pt - latents.shape[1])
        x = F.pad(latents.to(self._device(), self.dtype), pad)       # zero rows/cols at the bottom/right
        return self.patch_embedding(x.unsqueeze(0)).flatten(2)[0].T  # [1, D, F, Hp, Wp] → [Lv, D], (f,h,w) order

    def _embed_audio(self, latents: Tensor | None) -> Tensor | None:
        if latents is None:
            return None
        # per sample: the k=7 convolutions must see zeros past the end, not a neighbour's padding
        return self.patch_embedding_audio(latents.to(self._device(), self.dtype).unsqueeze(0))[0]  # [La, D]

    def embed_context(self, batch: Sequence[NavaInputs]) -> Tensor:
        """Each sample's context through the text MLP, speaker tokens written in: [B, n_text_tokens, D]."""
        p = self.params
        padded = torch.zeros(len(batch), p.n_text_tokens, p.text_dim, dtype=self.dtype, device=self._device())
        for b, s in enumerate(batch):
            padded[b, : s.context.shape[0]] = s.context.to(self.dtype)
        context = self.text_embedding(padded)  # [B, n_text_tokens, D]; padding rows become a constant
        for b, s in enumerate(batch):
            if s.speaker_positions:
                # speaker tokens replace their slot rows after the text MLP
                context[b, list(s.speaker_positions)] = self.speaker_embedding(
                    s.speaker_embeddings.to(context.device)).to(context.dtype)
        return context

    def _token_timesteps(self, s: NavaInputs, lv: int, la: int) -> Tensor:
        t = torch.full((lv + la,), float(s.timestep), dtype=torch.float64, device=self._device())
        if s.video_timesteps is not None:
            t[: s.video_timesteps.numel()] = s.video_timesteps.reshape(-1).to(t)
        if s.audio_timesteps is not None:
            t[lv: lv + s.audio_timesteps.numel()] = s.audio_timesteps.to(t)
        return t

    def _time(self, t: Tensor) -> TokenTime:
        """Per-token t [B, L] float64 → the time MLP run once per distinct t (a window has one or two)."""
        levels, index = torch.unique(t, return_inverse=True)                           # [U], [B, L]
        if bool((index == index[:, :1]).all()):
            index = index[:, :1]                                                       # one t per sample
        # GEMM kernels sum in another order for a handful of rows; padding to TIME_MLP_MIN_ROWS rows
        # gives the numbers of the official per-token computation (bitwise on CPU)
        rows = F.pad(levels, (0, max(0, TIME_MLP_MIN_ROWS - len(levels))))
        e = self.time_embedding(timestep_sinusoid(rows, self.params.freq_dim).to(self.dtype))  # [U', D]
        e0 = self.time_projection(e).unflatten(-1, (6, self.params.dim))                      # [U', 6, D]
        return TokenTime(e[: len(levels)], e0[: len(levels)], index)

    def _rope(self, batch: Sequence[NavaInputs], lv: int, la: int) -> Tensor:
        """Rotations [B, Lv + La, 1, d/2], cached per layout (they depend on shapes only)."""
        layout = tuple((None if s.video_latents is None else tuple(s.video_latents.shape[1:]),
                        None if s.audio_latents is None else s.audio_latents.shape[0]) for s in batch)
        key = (layout, lv, la, self._device(), self.dtype)
        if key not in self._rope_cache:
            if len(self._rope_cache) >= ROPE_CACHE_SIZE:
                self._rope_cache.pop(next(iter(self._rope_cache)))
            self._rope_cache[key] = self._rope_table(batch, lv, la)
        return self._rope_cache[key]

    def _rope_table(self, batch: Sequence[NavaInputs], lv: int, la: int) -> Tensor:
        """Rotations [B, Lv + La, 1, d/2]; padding positions stay unrotated."""
        d, device = self.params.head_dim, self._device()
        angles = torch.zeros(len(batch), lv + la, d // 2, dtype=torch.float64, device=device)
        for b, s in enumerate(batch):
            if s.video_latents is not None:
                grid = self.params.token_grid(*s.video_latents.shape[1:])
                angles[b, : math.prod(grid)] = video_rope_angles(grid, d, device)
            if s.audio_latents is not None:
                n = s.audio_latents.shape[0]
                angles[b, lv: lv + n] = audio_rope_angles(n, d, self.params.audio_rope_scale, device)
        # RoPE runs in >= fp32 (float64 in the official code; fp32 is within every tolerance)
        return rope_rotations(angles, self.dtype).unsqueeze(2)

    def _unpatchify(self, tokens: Tensor, latent_shape: torch.Size) -> Tensor:
        """[Lv_pad, pt·ph·pw·C] → [C, F, H, W], cropping token and spatial padding."""
        _, f, h, w = latent_shape
        grid = self.params.token_grid(f, h, w)
        pt, ph, pw = self.params.patch_size
        x = tokens[: math.prod(grid)].reshape(*grid, pt, ph, pw, -1)  # [F', Hp, Wp, pt, ph, pw, C]
        x = x.permute(6, 0, 3, 1, 4, 2, 5).reshape(-1, grid[0] * pt, grid[1] * ph, grid[2] * pw)
        return x[:, :f, :h, :w]

    def _device(self) -> torch.device:
        return self.patch_embedding.weight.device

    def _pad_stack(self, rows: list[Tensor | None], length: int) -> Tensor:
        """Per-sample tokens [L_i, D] (or None) → zero-padded [B, length, D]."""
        out = torch.zeros(len(rows), length, self.params.dim, dtype=self.dtype, device=self._device())
        for b, r in enumerate(rows):
            if r is not None:
                out[b, : r.shape[0]] = r
        return out


def _per_tensor(embed: Callable[[Tensor | None], Tensor | None], latents: list[Tensor | None]) -> list[Tensor | None]:
    """embed(x) for each entry, computed once per distinct tensor object (guidance branches share latents)."""
    done: dict[int, Tensor | None] = {}
    for x in latents:
        if id(x) not in done:
            done[id(x)] = embed(x)
    return [done[id(x)] for x in latents]


def _validate(s: NavaInputs, p: NavaParams) -> None:
    """Shapes and speaker bindings of one sample; raises ValueError naming the problem."""
    if s.video_latents is None and s.audio_latents is None:
        raise ValueError("a sample needs video latents, audio latents or both")
    video, audio = s.video_latents, s.audio_latents
    if video is not None and (video.ndim != 4 or video.shape[0] != p.video_in_channels):
        raise ValueError(f"video latents must be [{p.video_in_channels}, F, H, W], got {list(video.shape)}")
    if audio is not None and (audio.ndim != 2 or audio.shape[1] != p.audio_in_channels):
        raise ValueError(f"audio latents must be [La, {p.audio_in_channels}], got {list(audio.shape)}")
    if s.context.ndim != 2 or s.context.shape[1] != p.text_dim or s.context.shape[0] > p.n_text_tokens:
        raise ValueError(f"context must be [Lt <= {p.n_text_tokens}, {p.text_dim}], got {list(s.context.shape)}")
    n_speakers = 0 if s.speaker_embeddings is None else s.speaker_embeddings.shape[0]
    if n_speakers != len(s.speaker_positions):
        raise ValueError(f"{n_speakers} speaker embeddings for {len(s.speaker_positions)} speaker positions")
    if any(not 0 <= i < s.context.shape[0] for i in s.speaker_positions):
        raise ValueError(f"speaker positions {s.speaker_positions} outside the {s.context.shape[0]} context rows")
    if s.video_timesteps is not None:
        grid = None if video is None else p.token_grid(*video.shape[1:])
        if tuple(s.video_timesteps.shape) != grid:
            raise ValueError(f"video_timesteps must have the token grid shape {grid}, "
                             f"got {list(s.video_timesteps.shape)}")
    if s.audio_timesteps is not None and (audio is None or tuple(s.audio_timesteps.shape) != (audio.shape[0],)):
        raise ValueError(f"audio_timesteps must be [La], got {list(s.audio_timesteps.shape)}")
