"""NAVA's picture codec: the Wan2.2 VAE (48 latent channels), run through diffusers' `AutoencoderKLWan`.

diffusers computes exactly what Wan's `vae2_2.py` computes (0.0 difference on the parity fixture);
what it leaves out is Wan's latent normalisation, done here with Wan's own formula:

    encode: latent = (mu - mean) * inv_std       decode: z = latent / inv_std + mean

with inv_std = 1 / std computed in float32 (`Wan2_2_VAE.scale`). `(mu - mean) / std` looks the same
but differs by up to 5e-7. NAVA's adapter adds no second scale or shift.

Shapes (B batch, T = 4k+1 frames, H and W multiples of 16):

    video  [B, 3, T, H, W] in [-1, 1]  ->  latent [B, 48, 1 + (T-1)/4, H/16, W/16]
    latent [B, 48, T', h, w]           ->  video  [B, 3, 4T'-3, 16h, 16w] in [-1, 1] (clamped)

The encoder sees frame 0 alone, then groups of 4 (causal), so a single image is just T = 1.
Keys of the official `Wan2.2_VAE.pth` convert with nava_dub.convert.wan_vae.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import torch
from diffusers import AutoencoderKLWan
from torch import nn

SPATIAL_FACTOR = 16            # 2x2 patchify, then 8x in the CNN
TEMPORAL_FACTOR = 4            # causal: the first frame alone, then 4 frames per latent frame

# Wan2.2's per-channel latent statistics, as typed in Wan's and NAVA's vae2_2.py (and diffusers' config).
WAN22_LATENTS_MEAN = (
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557, -0.1382, 0.0542, 0.2813, 0.0891,
    0.1570, -0.0098, 0.0375, -0.1825, -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230, -0.0313, -0.1649, 0.0117, 0.0723,
    -0.2839, -0.2083, -0.0520, 0.3748, 0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
)
WAN22_LATENTS_STD = (
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013, 0.8158, 1.0344, 0.5894, 1.0901,
    0.6885, 0.6165, 0.8454, 0.4978, 0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093, 0.5709, 0.6065, 0.6415, 0.4944,
    0.5726, 1.2042, 0.5458, 1.6887, 0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
)

# What makes it the Wan2.2 (TI2V-5B) VAE rather than Wan2.1's; from_diffusers_config checks these.
_WAN22_FIXED = {"is_residual": True, "in_channels": 12, "out_channels": 12, "patch_size": 2,
                "scale_factor_temporal": TEMPORAL_FACTOR, "scale_factor_spatial": SPATIAL_FACTOR,
                "attn_scales": [], "dropout": 0.0}


@dataclass(frozen=True)
class WanVaeParams:
    """The sizes that vary between the release VAE and a test-sized one."""

    base_dim: int = 160              # encoder width
    decoder_base_dim: int = 256      # decoder width (Wan2.2 widens the decoder)
    z_dim: int = 48
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temperal_downsample: tuple[bool, ...] = (False, True, True)   # diffusers' spelling
    latents_mean: tuple[float, ...] = WAN22_LATENTS_MEAN
    latents_std: tuple[float, ...] = WAN22_LATENTS_STD

    def __post_init__(self) -> None:
        if not len(self.latents_mean) == len(self.latents_std) == self.z_dim:
            raise ValueError(f"need {self.z_dim} latent means and stds, got {len(self.latents_mean)} "
                             f"and {len(self.latents_std)}")

    def diffusers_config(self) -> dict:
        sizes = asdict(self)
        sizes.update(dim_mult=list(self.dim_mult), temperal_downsample=list(self.temperal_downsample),
                     latents_mean=list(self.latents_mean), latents_std=list(self.latents_std))
        return {**sizes, **_WAN22_FIXED}

    @classmethod
    def from_diffusers_config(cls, config: Mapping) -> WanVaeParams:
        """Sizes from an AutoencoderKLWan-style config (e.g. a fixture's); a non-Wan2.2 config is an error."""
        wrong = {k: config[k] for k, v in _WAN22_FIXED.items() if k in config and config[k] != v}
        unknown = set(config) - set(_WAN22_FIXED) - set(cls.__dataclass_fields__)
        if wrong or unknown:
            raise ValueError(f"not a Wan2.2 VAE config: wrong {wrong}, unknown keys {sorted(unknown)}")
        sizes = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items() if k not in _WAN22_FIXED}
        return cls(**sizes)


WAN22_RELEASE = WanVaeParams()
WAN22_TINY = WanVaeParams(base_dim=4, decoder_base_dim=8)    # the parity fixture's widths (fixtures/wan_vae)


@dataclass(frozen=True)
class VaeTiling:
    """Spatial tiles for decoding, in latent cells (16 px each); NAVA's adapter defaults.

    Tiles overlap by (size - stride) cells and are blended with linear ramps over the overlap, the
    scheme of NAVA's tiled_decode (not checked against it: no fixture). The middle attention and the
    convolutions see one tile only, so the result differs slightly from an untiled decode.
    """

    height_cells: int = 22
    width_cells: int = 40
    stride_height_cells: int = 14
    stride_width_cells: int = 26

    def __post_init__(self) -> None:
        for size, stride in ((self.height_cells, self.stride_height_cells),
                             (self.width_cells, self.stride_width_cells)):
            if not 0 < stride <= size:
                raise ValueError(f"tile stride must be in 1..{size} cells, got {stride}")


class WanVideoVAE(nn.Module):
    """Wan2.2 VAE with NAVA's latent normalisation. `autoencoder` holds the converted Wan keys."""

    def __init__(self, params: WanVaeParams = WAN22_RELEASE) -> None:
        super().__init__()
        self.params = params
        self.autoencoder = AutoencoderKLWan(**params.diffusers_config())
        self.autoencoder.eval()

    @torch.no_grad()
    def encode_mean(self, video: torch.Tensor) -> torch.Tensor:
        """The posterior mean before normalisation: [B, 3, T, H, W] -> [B, z, T', H/16, W/16]."""
        _check_video(video)
        dtype = next(self.autoencoder.parameters()).dtype
        posterior = self.autoencoder.encode(video.to(dtype)).latent_dist
        return posterior.mode().float()       # mode() = mean: the first z of the 2z channels

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """NAVA's latent: [B, 3, T, H, W] in [-1, 1] -> [B, z, 1 + (T-1)/4, H/16, W/16], float32."""
        mean, inv_std = self._stats(video.device)
        return (self.encode_mean(video) - mean) * inv_std

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        """A first frame: [B, 3, H, W] in [-1, 1] -> [B, z, 1, H/16, W/16] (the latent NAVA pins)."""
        if image.ndim != 4:
            raise ValueError(f"image must be [B, 3, H, W], got shape {tuple(image.shape)}")
        return self.encode(image.unsqueeze(2))

    @torch.no_grad()
    def decode(self, latent: torch.Tensor, tiling: VaeTiling | None = None) -> torch.Tensor:
        """[B, z, T', h, w] NAVA latent -> [B, 3, 4T'-3, 16h, 16w] in [-1, 1], float32."""
        if latent.ndim != 5 or latent.shape[1] != self.params.z_dim:
            raise ValueError(f"latent must be [B, {self.params.z_dim}, T', h, w], got shape {tuple(latent.shape)}")
        mean, inv_std = self._stats(latent.device)
        dtype = next(self.autoencoder.parameters()).dtype
        z = (latent.float() / inv_std + mean).to(dtype)
        if tiling is None:
            return self._decode_raw(z)
        return decode_tiled(self._decode_raw, z, tiling)

    def _decode_raw(self, z: torch.Tensor) -> torch.Tensor:
        # diffusers decodes one latent frame at a time with Wan's causal cache, then clamps to [-1, 1]
        return self.autoencoder.decode(z).sample.float()

    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        # Built per call (48 numbers), not buffers: a model built on the meta device stays loadable.
        mean = torch.tensor(self.params.latents_mean, dtype=torch.float32, device=device)
        inv_std = 1.0 / torch.tensor(self.params.latents_std, dtype=torch.float32, device=device)
        return mean.view(1, -1, 1, 1, 1), inv_std.view(1, -1, 1, 1, 1)


def _check_video(video: torch.Tensor) -> None:
    if video.ndim != 5 or video.shape[1] != 3:
        raise ValueError(f"video must be [B, 3, T, H, W], got shape {tuple(video.shape)}")
    n_frames, height, width = video.shape[2:]
    if (n_frames - 1) % TEMPORAL_FACTOR:
        raise ValueError(f"the Wan VAE needs 4k+1 frames, got {n_frames}")
    if height % SPATIAL_FACTOR or width % SPATIAL_FACTOR:
        raise ValueError(f"the Wan VAE needs H and W in multiples of 16, got {height}x{width}")


def decode_tiled(decode: Callable[[torch.Tensor], torch.Tensor], z: torch.Tensor, tiling: VaeTiling,
                 factor: int = SPATIAL_FACTOR) -> torch.Tensor:
    """Decode overlapping spatial tiles of z [B, C, T', h, w] and blend them with linear ramps.

    `decode` maps a latent tile to pixels `factor` times larger in h and w. Each output pixel is
    the weighted mean of the tiles covering it, so a decoder without spatial context (a pointwise
    one) gives exactly the untiled result.
    """
    height, width = z.shape[-2:]
    rows = _tile_starts(height, tiling.height_cells, tiling.stride_height_cells)
    cols = _tile_starts(width, tiling.width_cells, tiling.stride_width_cells)
    tile_h, tile_w = min(tiling.height_cells, height), min(tiling.width_cells, width)
    total = weight = None
    for top in rows:
        for left in cols:
            pixels = decode(z[..., top:top + tile_h, left:left + tile_w]).float()
            if total is None:   # [B, 3, T, H, W] once the decoded frame count is known
                total = pixels.new_zeros(*pixels.shape[:3], height * factor, width * factor)
                weight = pixels.new_zeros(height * factor, width * factor)
            mask = (_ramp(top, tile_h, height, tiling.height_cells - tiling.stride_height_cells, factor)[:, None]
                    * _ramp(left, tile_w, width, tiling.width_cells - tiling.stride_width_cells, factor)[None, :])
            mask = mask.to(pixels.device)
            y, x = slice(top * factor, (top + tile_h) * factor), slice(left * factor, (left + tile_w) * factor)
            total[..., y, x] += pixels * mask
            weight[y, x] += mask
    return total / weight


def _tile_starts(size: int, tile: int, stride: int) -> list[int]:
    """Tile origins covering [0, size): every `stride`, plus a last tile flush with the end."""
    if size <= tile:
        return [0]
    starts = list(range(0, size - tile + 1, stride))
    if starts[-1] + tile < size:
        starts.append(size - tile)
    return starts


def _ramp(start: int, length: int, size: int, overlap_cells: int, factor: int) -> torch.Tensor:
    """1-D blend weights of one tile in pixels: rising over the overlap on sides that have a neighbour."""
    weights = torch.ones(length * factor)
    border = min(overlap_cells, length) * factor
    if border == 0:
        return weights
    ramp = torch.arange(1, border + 1, dtype=torch.float32) / border
    if start > 0:
        weights[:border] = torch.minimum(weights[:border], ramp)
    if start + length < size:
        weights[-border:] = torch.minimum(weights[-border:], ramp.flip(0))
    return weights
