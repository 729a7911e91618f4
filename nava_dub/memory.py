"""How a generation fits in GPU memory: what stays resident, what streams, what is tiled. Pure, no torch.

`plan_memory` estimates the peak of the three phases of a window (text encoding, denoising, VAE
decoding) for one of three modes and picks one from the free memory in `auto`; nava_dub.placement
carries a plan out:

    max       everything resident: text encoder kept, transformer resident, every guidance
              branch in one batch, VAE decoded untiled
    balanced  text encoder parked in host memory after encoding, transformer resident, branches
              batched, VAE decoded in tiles of 22×40 latent cells (NAVA's default)
    low       text encoder parked (or run on the CPU when it does not fit beside the rest even
              with one block per group), transformer blocks streamed from host memory in groups
              (the largest size up to a quarter of the blocks that fits), one branch per call,
              VAE tiles of 16×30 cells

Weights are counted exactly from the architecture. Activations and the VAE working set are
estimates: per token and pass, the FFN phase of a block holds x, the modulated input and two
hidden tensors (2·D + 2·Dff elements) beside the residual stream, plus fp32 norm/RoPE temporaries
(about 4·D more); the Wan VAE decoder holds about 9,500 elements per output pixel of a tile
(calibrated on NAVA's published "≈35 GB untiled at 704×1280"). Both constants are to be checked
against `python -m bench.step --memory ...` on a GPU (bench/README.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from nava_dub.errors import UsageError
from nava_dub.timeline import audio_tokens_for_latent_frames, latent_frames_to_frames

if TYPE_CHECKING:
    from nava_dub.model.transformer import NavaParams

GB = 1e9
MODES = ("auto", "max", "balanced", "low")
WEIGHTS_DTYPES = {"fp32": 4, "bf16": 2, "fp8": 1}     # bytes per (quantised) weight
VAE_SPATIAL_FACTOR = 16                               # pixels per latent cell (Wan2.2 VAE)
HEADROOM = 0.92                                       # share of the free memory a plan may use

# release components besides the transformer (parameter counts of the built modules)
TEXT_ENCODER_PARAMS = 5_680_910_336                   # umT5-xxl encoder, run in bf16
VIDEO_VAE_PARAMS = 704_688_668                        # Wan2.2 VAE, run in fp32
AUDIO_PARAMS = 53_248_146 + 128_537_448               # LTX-2.3 audio VAE + vocoder, fp32
TEXT_ACTIVATION_BYTES = int(0.5 * GB)                 # 512 tokens through umT5: small

# activation model (elements per token and pass, see the module docstring)
ACT_DIM_ELEMENTS = 6                                  # × D: x, modulated x, FFN output, fp32 temporaries
ACT_FFN_ELEMENTS = 2                                  # × Dff: FFN hidden and its GELU
VAE_ELEMENTS_PER_PIXEL = 9_500                        # decoder working set per output pixel of a tile
LATENT_STATE_COPIES = 8                               # fp32 latents: x, noise, velocities, UniPC history

BALANCED_TILES = (22, 40, 14, 26)                     # (height, width, stride h, stride w) in latent cells
LOW_TILES = (16, 30, 8, 16)
LOW_MAX_GROUP_DIVISOR = 4                             # low mode streams groups of at most n_blocks/4 blocks


def check_mode(mode: str) -> str:
    """mode, when it is one of MODES; else the usage error every command gives for `--memory`."""
    if mode not in MODES:
        raise UsageError(f"--memory {mode!r} is not a mode", f"use one of {', '.join(MODES)}")
    return mode


@dataclass(frozen=True)
class GenerationShape:
    """One window as the transformer sees it."""

    height_px: int
    width_px: int
    n_latent_frames: int
    n_passes: int = 3                 # transformer passes per step (3; 4 with speaker references)

    @property
    def n_audio_tokens(self) -> int:
        return audio_tokens_for_latent_frames(self.n_latent_frames)

    def latent_size(self) -> tuple[int, int]:
        return self.height_px // VAE_SPATIAL_FACTOR, self.width_px // VAE_SPATIAL_FACTOR

    def n_tokens(self, params: NavaParams) -> int:
        """Joint sequence length: video tokens + audio tokens."""
        return math.prod(params.token_grid(self.n_latent_frames, *self.latent_size())) + self.n_audio_tokens


@dataclass(frozen=True)
class PeakEstimate:
    """Estimated peak allocated bytes of each phase of a window."""

    text_bytes: int
    denoise_bytes: int
    decode_bytes: int
    transformer_bytes: int            # the transformer's share of denoise_bytes (what bench.step measures)

    @property
    def peak_bytes(self) -> int:
        return max(self.text_bytes, self.denoise_bytes, self.decode_bytes)


@dataclass(frozen=True)
class MemoryPlan:
    """What stays on the GPU during a window, what streams or is tiled, and the estimated peak."""

    mode: str                                        # max | balanced | low (auto resolved)
    weights_dtype: str                               # fp32 | bf16 | fp8
    keep_text_encoder: bool                          # False: released (or moved to the CPU) after encoding
    text_encoder_on_gpu: bool                        # False (low mode, when it does not fit): encode on the CPU
    offload_group_size: int | None                   # None: every transformer block resident
    max_batch: int | None                            # passes per transformer call; None: all in one batch
    vae_tiles: tuple[int, int, int, int] | None      # latent cells (h, w, stride h, stride w); None: untiled
    transformer_resident_bytes: int
    estimate: PeakEstimate
    free_bytes: int | None

    @property
    def fits(self) -> bool:
        return self.free_bytes is None or self.estimate.peak_bytes <= self.free_bytes * HEADROOM

    def problem(self, device_name: str) -> str | None:
        """One line saying why device_name cannot run this plan, or None when it fits."""
        if self.fits:
            return None
        return (f"{device_name} cannot hold NAVA in memory mode {self.mode}: about "
                f"{self.estimate.peak_bytes / GB:.1f} GB needed, {(self.free_bytes or 0) / GB:.1f} GB free")

    def summary(self) -> str:
        """One line for the dry run."""
        blocks = ("transformer resident" if self.offload_group_size is None
                  else f"transformer streamed {self.offload_group_size} block(s) at a time")
        tiles = "VAE untiled" if self.vae_tiles is None else f"VAE tiles {self.vae_tiles[0]}x{self.vae_tiles[1]}"
        passes = "branches batched" if self.max_batch is None else f"{self.max_batch} branch per call"
        text = ("text encoder kept" if self.keep_text_encoder else "text encoder parked in host memory after encoding"
                if self.text_encoder_on_gpu else "text encoder run on the CPU")
        free = "" if self.free_bytes is None else f" of {self.free_bytes / GB:.1f} GB free"
        return (f"memory {self.mode} ({self.weights_dtype}): {text}, {blocks}, {passes}, {tiles}; "
                f"estimated peak {self.estimate.peak_bytes / GB:.1f} GB{free}")


def plan_memory(params: NavaParams, shape: GenerationShape, mode: str = "auto", free_bytes: int | None = None,
                weights_dtype: str = "bf16") -> MemoryPlan:
    """The plan for `mode`; `auto` takes the first of max, balanced, low that fits in `free_bytes`
    (low with the largest block group that fits; if nothing fits, low with one block per group)."""
    if mode not in MODES:
        raise UsageError(f"unknown memory mode {mode!r}", f"use one of {', '.join(MODES)}")
    if weights_dtype not in WEIGHTS_DTYPES:
        raise UsageError(f"unknown weights dtype {weights_dtype!r}", f"use one of {', '.join(WEIGHTS_DTYPES)}")
    if mode == "auto" and free_bytes is None:
        raise UsageError("memory mode auto needs the free GPU memory", "pass --memory max, balanced or low")
    if mode != "auto":
        return _plan(params, shape, mode, free_bytes, weights_dtype)
    for candidate in ("max", "balanced"):
        plan = _plan(params, shape, candidate, free_bytes, weights_dtype)
        if plan.fits:
            return plan
    return _plan(params, shape, "low", free_bytes, weights_dtype)


def plan_for_device(params: NavaParams, shape: GenerationShape, mode: str, on_gpu: bool,
                    free_bytes: int | None, weights_dtype: str) -> MemoryPlan:
    """plan_memory for the run's device. Without a GPU there is no free memory to choose a mode
    from: `auto` is `max` there (the CPU runs what it is given)."""
    if not on_gpu:
        return plan_memory(params, shape, "max" if mode == "auto" else mode, None, weights_dtype)
    return plan_memory(params, shape, mode, free_bytes, weights_dtype)


def _plan(params: NavaParams, shape: GenerationShape, mode: str, free_bytes: int | None,
          weights_dtype: str) -> MemoryPlan:
    if mode == "low":
        n_blocks = params.n_double_blocks + params.n_single_blocks
        # two groups are resident at a time: bigger groups would keep most blocks on the device.
        # Encoding on the CPU is slow, so a smaller group with umT5 on the GPU beats a larger one without.
        sizes = range(max(1, n_blocks // LOW_MAX_GROUP_DIVISOR), 0, -1)
        plans = [_build(params, shape, mode, free_bytes, weights_dtype, k, text_on_gpu)
                 for text_on_gpu in (True, False) for k in sizes]
        return next((p for p in plans if p.fits), plans[-1])
    return _build(params, shape, mode, free_bytes, weights_dtype, None, True)


def _build(params: NavaParams, shape: GenerationShape, mode: str, free_bytes: int | None, weights_dtype: str,
           group_size: int | None, text_on_gpu: bool) -> MemoryPlan:
    keep_text = mode == "max"
    max_batch = 1 if mode == "low" else None
    tiles = {"max": None, "balanced": BALANCED_TILES, "low": LOW_TILES}[mode]
    weights = transformer_weight_bytes(params, weights_dtype)
    resident = weights.total if group_size is None else weights.non_block + 2 * weights.largest_group(group_size)
    codecs = (VIDEO_VAE_PARAMS + AUDIO_PARAMS) * 4
    # the prompts are encoded with every other model already placed (nava_dub.placement)
    text_phase = resident + codecs + TEXT_ENCODER_PARAMS * 2 + TEXT_ACTIVATION_BYTES
    act_bytes = 4 if weights_dtype == "fp32" else 2
    text = TEXT_ENCODER_PARAMS * 2 if keep_text else 0
    batch = max_batch or shape.n_passes
    activations = batch * shape.n_tokens(params) * (ACT_DIM_ELEMENTS * params.dim + ACT_FFN_ELEMENTS * params.ffn_dim)
    latents = LATENT_STATE_COPIES * 4 * (shape.n_tokens(params) * math.prod(params.patch_size)
                                         * params.video_in_channels)
    transformer = resident + activations * act_bytes + latents
    estimate = PeakEstimate(
        text_bytes=text_phase if text_on_gpu else 0,
        denoise_bytes=transformer + text + codecs,
        decode_bytes=resident + text + codecs + _decode_bytes(shape, tiles),
        transformer_bytes=transformer)
    return MemoryPlan(mode, weights_dtype, keep_text, text_on_gpu, group_size, max_batch, tiles, resident, estimate,
                      free_bytes)


def _decode_bytes(shape: GenerationShape, tiles: tuple[int, int, int, int] | None) -> int:
    """VAE decoder working set (fp32) for one tile, plus the blended fp32 output video and its weights."""
    cells_h, cells_w = shape.latent_size()
    if tiles is not None:
        cells_h, cells_w = min(cells_h, tiles[0]), min(cells_w, tiles[1])
    tile_px = cells_h * cells_w * VAE_SPATIAL_FACTOR**2
    n_frames = latent_frames_to_frames(shape.n_latent_frames)
    output = 2 * 3 * n_frames * shape.height_px * shape.width_px * 4
    return VAE_ELEMENTS_PER_PIXEL * 4 * tile_px + output


@dataclass(frozen=True)
class WeightBytes:
    """Transformer weight bytes: outside the blocks, and per block in execution order."""

    non_block: int
    blocks: tuple[int, ...]

    @property
    def total(self) -> int:
        return self.non_block + sum(self.blocks)

    def largest_group(self, group_size: int) -> int:
        return max(sum(self.blocks[i:i + group_size]) for i in range(0, len(self.blocks), group_size))


def transformer_weight_bytes(params: NavaParams, weights_dtype: str = "bf16") -> WeightBytes:
    """Exact bytes of the transformer's tensors in memory: fp32/bf16 everywhere, or the fp8 layout
    (e4m3 block Linear weights with bf16 row scales, everything else bf16)."""
    fp8 = weights_dtype == "fp8"
    other = 2 if fp8 else WEIGHTS_DTYPES[weights_dtype]

    def linear(n_in: int, n_out: int, quantised: bool = False) -> int:
        if quantised and fp8:
            return n_in * n_out + 2 * n_out + other * n_out   # e4m3 weight, bf16 scale, bias
        return other * (n_in * n_out + n_out)

    d, dff = params.dim, params.ffn_dim

    def attention(n_streams: int) -> int:   # q, k, v, o and the q/k RMSNorm weights per stream
        return n_streams * (4 * linear(d, d, True) + 2 * other * d)

    def block(n_streams: int) -> int:       # self- and cross-attention, norm3, FFN, AdaLN tables
        ffn = linear(d, dff, True) + linear(dff, d, True)
        return 2 * attention(n_streams) + 2 * other * d + ffn + n_streams * 6 * other * d

    return WeightBytes(_non_block_parameters(params) * other,
                       (block(2),) * params.n_double_blocks + (block(1),) * params.n_single_blocks)


def transformer_parameter_count(params: NavaParams) -> int:
    """Number of transformer parameters (6,296,995,520 for the release preset)."""
    return transformer_weight_bytes(params, "fp32").total // 4


def _non_block_parameters(p: NavaParams) -> int:
    d, patch = p.dim, math.prod(p.patch_size)
    speaker = 2 * 192 + (192 * d + d) + (d * d + d) + 2 * d + d      # LayerNorm, 2 Linears, LayerNorm, null token
    stems = (d * p.video_in_channels * patch + d) + (d * p.audio_in_channels * 7 + d) + 3 * 7 * d * p.audio_hidden_dim
    embeddings = (p.text_dim * d + d + d * d + d) + (p.freq_dim * d + d + d * d + d) + (d * 6 * d + 6 * d)
    heads = (d * patch * p.video_out_channels + patch * p.video_out_channels + 2 * d) + (
        d * p.audio_out_channels + p.audio_out_channels + 2 * d)
    return speaker + stems + embeddings + heads
