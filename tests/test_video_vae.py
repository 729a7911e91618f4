"""The Wan2.2 video VAE: parity with Wan's own code (tests/data/wan_vae), key conversion, tiling."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nava_dub.convert.wan_vae import diffusers_to_wan_vae, wan_to_diffusers_vae
from nava_dub.errors import WeightsError
from nava_dub.model.video_vae import (
    WAN22_LATENTS_MEAN,
    WAN22_LATENTS_STD,
    WAN22_RELEASE,
    WAN22_TINY,
    VaeTiling,
    WanVaeParams,
    WanVideoVAE,
    decode_tiled,
)

DATA = Path(__file__).parent / "data" / "wan_vae"
ATOL = 2e-5     # the fixture README's assertion for fp32 on CPU


@pytest.fixture(scope="module")
def io():
    return load_file(DATA / "io.safetensors")


@pytest.fixture(scope="module")
def official():
    return load_file(DATA / "tiny_vae.safetensors")


@pytest.fixture(scope="module")
def config():
    return json.loads((DATA / "config.json").read_text())


@pytest.fixture(scope="module")
def vae(official, config):
    model = WanVideoVAE(WanVaeParams.from_diffusers_config(config["diffusers_equivalent"]))
    model.autoencoder.load_state_dict(wan_to_diffusers_vae(official), strict=True)
    return model


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


# --- parity with Wan2_2_VAE ---------------------------------------------------------------------

def test_fixture_config_is_the_tiny_preset_and_tables_are_wans(config, io):
    assert WanVaeParams.from_diffusers_config(config["diffusers_equivalent"]) == WAN22_TINY
    assert torch.equal(torch.tensor(WAN22_LATENTS_MEAN), io["latents_mean"])
    assert torch.equal(torch.tensor(WAN22_LATENTS_STD), io["latents_std"])
    assert torch.equal(1.0 / torch.tensor(WAN22_LATENTS_STD), io["latents_inv_std"])


def test_encode_matches_wan(vae, io):
    video = io["video"][None]
    assert _max_diff(vae.encode_mean(video)[0], io["mu_raw"]) <= ATOL
    latent = vae.encode(video)[0]
    assert latent.shape == (48, 3, 4, 6)                 # [z, 1 + (9-1)/4, 64/16, 96/16]
    assert _max_diff(latent, io["latent"]) <= ATOL


def test_decode_matches_wan_and_gives_4t_minus_3_frames(vae, io):
    decoded = vae.decode(io["latent"][None])[0]
    assert decoded.shape == (3, 4 * 3 - 3, 64, 96)
    assert _max_diff(decoded, io["decoded"]) <= ATOL
    assert _max_diff(vae.decode(io["latent_rand"][None])[0], io["decoded_from_latent_rand"]) <= ATOL


def test_first_frame_encodes_to_latent_frame_zero(vae, io):
    # the encoder is causal and sees frame 0 alone, so a single image gives the video's first latent frame
    image = io["video"][None, :, 0]
    latent = vae.encode_image(image)
    assert latent.shape == (1, 48, 1, 4, 6)
    assert _max_diff(latent[0], io["latent"][:, :1]) <= ATOL


@pytest.mark.parametrize("n_latent_frames", [1, 2, 4])
def test_decode_length_is_4t_minus_3(vae, n_latent_frames):
    latent = torch.randn(1, 48, n_latent_frames, 2, 3, generator=torch.Generator().manual_seed(0))
    video = vae.decode(latent)
    assert video.shape == (1, 3, 4 * n_latent_frames - 3, 32, 48)
    assert video.abs().max() <= 1.0


@pytest.mark.parametrize("shape", [(1, 3, 8, 64, 96), (1, 3, 9, 60, 96), (1, 4, 9, 64, 96), (3, 9, 64, 96)])
def test_encode_rejects_shapes_wan_cannot_take(vae, shape):
    with pytest.raises(ValueError):
        vae.encode(torch.zeros(shape))


def test_decode_rejects_a_latent_with_the_wrong_channels(vae):
    with pytest.raises(ValueError, match="48"):
        vae.decode(torch.zeros(1, 16, 2, 2, 2))


def test_a_non_wan22_config_is_rejected(config):
    with pytest.raises(ValueError, match="is_residual"):
        WanVaeParams.from_diffusers_config({**config["diffusers_equivalent"], "is_residual": False})


# --- key conversion -----------------------------------------------------------------------------

def test_every_official_key_maps_onto_the_release_model(official):
    # key names do not depend on the widths, so the tiny file's 196 keys are the release file's
    with torch.device("meta"):
        release = WanVideoVAE(WAN22_RELEASE)
    converted = wan_to_diffusers_vae(official)
    assert len(converted) == len(official) == 196
    assert set(converted) == set(release.autoencoder.state_dict())


def test_conversion_round_trips(official):
    back = diffusers_to_wan_vae(wan_to_diffusers_vae(official))
    assert set(back) == set(official)
    assert all(back[k] is official[k] for k in official)


def test_known_renames(official):
    converted = wan_to_diffusers_vae(official)
    for wan, hf in [("encoder.downsamples.0.downsamples.2.resample.1.weight",
                     "encoder.down_blocks.0.downsampler.resample.1.weight"),
                    ("decoder.upsamples.0.upsamples.3.time_conv.bias", "decoder.up_blocks.0.upsampler.time_conv.bias"),
                    ("decoder.upsamples.2.upsamples.0.shortcut.weight",
                     "decoder.up_blocks.2.resnets.0.conv_shortcut.weight"),
                    ("conv1.weight", "quant_conv.weight"), ("decoder.head.2.bias", "decoder.conv_out.bias"),
                    ("encoder.middle.1.to_qkv.weight", "encoder.mid_block.attentions.0.to_qkv.weight")]:
        assert converted[hf] is official[wan]


@pytest.mark.parametrize("bad", ["encoder.blocks.0.weight", "decoder.middle.1.residual.0.gamma",
                                 "encoder.upsamples.0.upsamples.0.residual.0.gamma", "model.conv1.weight"])
def test_an_unknown_key_is_an_error_naming_it(official, bad):
    with pytest.raises(WeightsError, match=bad.replace(".", r"\.")):
        wan_to_diffusers_vae({**official, bad: torch.zeros(1)})


# --- tiled decode -------------------------------------------------------------------------------

def _pointwise_decode(z: torch.Tensor) -> torch.Tensor:
    # a decoder with no spatial context: 4T'-3 frames, each latent cell -> a 16x16 block of its first 3 channels
    frames = torch.cat([z[:, :3, :1], z[:, :3, 1:].repeat_interleave(4, dim=2)], dim=2)
    return frames.repeat_interleave(16, dim=3).repeat_interleave(16, dim=4)


@pytest.mark.parametrize("tiling", [VaeTiling(3, 4, 2, 3), VaeTiling(4, 4, 1, 1), VaeTiling(5, 3, 5, 3),
                                    VaeTiling(20, 20, 10, 10)])
def test_tiling_covers_every_pixel_with_weights_summing_to_one(tiling):
    z = torch.randn(1, 48, 2, 7, 9, generator=torch.Generator().manual_seed(1))
    tiled = decode_tiled(_pointwise_decode, z, tiling)
    assert torch.allclose(tiled, _pointwise_decode(z), atol=1e-6, rtol=0)


def test_tiled_decode_of_the_tiny_vae_is_close_to_untiled(vae, io):
    # A smooth 8x12 latent frame, 2x2 tiles. The middle attention and the ~17-cell receptive field
    # reach past the overlap, so random weights cannot give the same pixels; the blend must still
    # stay close (components.md measured 0.076 mean for diffusers' own tiling on the release config).
    latent = torch.nn.functional.interpolate(io["latent"][None, :, 0], size=(8, 12), mode="bilinear")[:, :, None]
    untiled = vae.decode(latent)
    tiled = vae.decode(latent, VaeTiling(6, 8, 2, 4))
    assert tiled.shape == untiled.shape == (1, 3, 1, 128, 192)
    assert tiled.abs().max() <= 1.0
    assert float((tiled - untiled).abs().mean()) < 0.05
    assert torch.equal(vae.decode(latent, VaeTiling(8, 12, 8, 12)), untiled)   # one tile: no blending


def test_tile_stride_must_fit_the_tile():
    with pytest.raises(ValueError):
        VaeTiling(4, 4, 5, 2)
    with pytest.raises(ValueError):
        VaeTiling(4, 4, 2, 0)
