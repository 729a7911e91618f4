"""The LTX-2.3 audio path: parity with NAVA's ltx-core code (tests/data/ltx_audio_vae), keys, rates."""

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from nava_dub.codecs import to_stereo, waveform_to_vae_input
from nava_dub.convert.ltx_audio import join_ltx_audio, params_from_ltx_config, split_ltx_audio
from nava_dub.errors import WeightsError
from nava_dub.model.audio_vae import (
    LTX23_AUDIO_VAE,
    LTX23_AUDIO_VAE_TINY,
    LtxAudioVAE,
    decode_audio,
)
from nava_dub.model.vocoder import LTX23_VOCODER, LTX23_VOCODER_TINY, LtxVocoder, nava_resample_16k

DATA = Path(__file__).parent / "data" / "ltx_audio_vae"
CHECKPOINT = DATA / "tiny_ltx23_audio_vae.safetensors"
# the fixture README's assertions for fp32 on CPU
ATOL_MEL_IN, ATOL_LATENT, ATOL_WAVE = 5e-4, 2e-5, 1e-4


@pytest.fixture(scope="module")
def io():
    return load_file(DATA / "io.safetensors")


@pytest.fixture(scope="module")
def checkpoint():
    return load_file(CHECKPOINT)


@pytest.fixture(scope="module")
def ltx_config():
    with safe_open(CHECKPOINT, "pt") as f:
        return json.loads(f.metadata()["config"])


@pytest.fixture(scope="module")
def models(checkpoint, ltx_config):
    vae_params, vocoder_params = params_from_ltx_config(ltx_config)
    vae, vocoder = LtxAudioVAE(vae_params), LtxVocoder(vocoder_params)
    vae_sd, vocoder_sd = split_ltx_audio(checkpoint)
    vae.autoencoder.load_state_dict(vae_sd, strict=True)          # bf16 file -> float32 modules, as NAVA
    vocoder.bwe_vocoder.load_state_dict(vocoder_sd, strict=True)
    return vae, vocoder


@pytest.fixture(scope="module")
def decoded(models, io):
    vae, vocoder = models
    return decode_audio(vae, vocoder, io["latent"])


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    assert a.shape == b.shape
    return float((a - b).abs().max())


# --- parity with NAVA's LtxAudioVAE ---------------------------------------------------------------

def test_config_gives_the_tiny_presets(ltx_config):
    assert params_from_ltx_config(ltx_config) == (LTX23_AUDIO_VAE_TINY, LTX23_VOCODER_TINY)


def test_release_widths_give_the_release_presets(ltx_config):
    release = json.loads(json.dumps(ltx_config))
    release["audio_vae"]["model"]["params"]["ddconfig"].update(ch=128, ch_mult=[1, 2, 4], z_channels=8)
    release["vocoder"]["vocoder"]["upsample_initial_channel"] = 1536
    release["vocoder"]["bwe"]["upsample_initial_channel"] = 512
    assert params_from_ltx_config(release) == (LTX23_AUDIO_VAE, LTX23_VOCODER)
    assert LTX23_AUDIO_VAE.latent_width == 128 and LTX23_AUDIO_VAE.tokens_per_second == 25


def test_log_mel_matches(models, io):
    mel = models[0].waveform_to_mel(io["waveform_in"][None])
    assert _max_diff(mel, io["mel_in"]) <= ATOL_MEL_IN


def test_encode_matches(models, io):
    latent = models[0].encode(io["waveform_in"][None])
    assert latent.shape == (1, 32, 51)                    # 2.000 s -> 201 mel frames -> 51 tokens
    assert _max_diff(latent, io["latent"]) <= ATOL_LATENT


def test_mono_is_duplicated_to_stereo(models, io):
    latent = models[0].encode(to_stereo(io["waveform_in"][:1])[None])
    assert _max_diff(latent, io["latent_from_mono"]) <= ATOL_LATENT


def test_decode_to_mel_matches(models, io):
    mel = models[0].decode(io["latent"])
    assert mel.shape == (1, 2, 4 * 51 - 3, 64)
    assert _max_diff(mel, io["mel_decoded"]) <= ATOL_LATENT


def test_vocoder_stage1_matches(models, io):
    assert _max_diff(models[1].stage1(io["mel_decoded"]), io["vocoder_stage1_16k"]) <= ATOL_WAVE


def test_vocoder_48k_and_nava_16k_match(decoded, io):
    assert decoded.vocoder_rate_hz == 48000
    assert _max_diff(decoded.waveform_vocoder, io["vocoder_48k"]) <= ATOL_WAVE
    assert _max_diff(decoded.waveform_16k[0], io["nava_decoded_16k"]) <= ATOL_WAVE
    assert decoded.waveform_16k.abs().max() <= 0.99


def test_decode_of_a_sampler_latent_matches(models, io):
    waveform = decode_audio(*models, io["latent_rand"]).waveform_16k[0]
    assert waveform.shape == (2, (4 * 50 - 3) * 160)
    assert _max_diff(waveform, io["nava_decoded_16k_from_latent_rand"]) <= ATOL_WAVE


# --- rates and lengths --------------------------------------------------------------------------

@pytest.mark.parametrize("duration_s", [1, 3, 6])
def test_audio_tokens_come_at_25_per_second(models, duration_s):
    waveform = torch.randn(1, 2, 16000 * duration_s, generator=torch.Generator().manual_seed(duration_s)) * 0.1
    tokens = models[0].encode(waveform)
    # 25 per second, plus the causal encoder's first token (one mel frame)
    assert tokens.shape == (1, 32, 25 * duration_s + 1)


def test_decoded_lengths_follow_the_token_count(models, decoded):
    n_tokens = 51
    n_mel_frames = 4 * n_tokens - 3
    assert decoded.waveform_vocoder.shape == (1, 2, n_mel_frames * 480)
    assert decoded.waveform_16k.shape == (1, 2, n_mel_frames * 160)


def test_input_at_another_rate_is_resampled_to_16k():
    stereo_48k = torch.zeros(2, 48000)
    assert waveform_to_vae_input(stereo_48k, 48000).shape == (1, 2, 16000)


def test_nava_resample_clips_at_0_99():
    loud = torch.full((1, 2, 4800), 2.0)
    assert float(nava_resample_16k(loud, 48000).max()) == pytest.approx(0.99)


@pytest.mark.parametrize("shape", [(1, 1, 16000), (2, 16000), (1, 3, 16000)])
def test_encode_rejects_non_stereo_batches(models, shape):
    with pytest.raises(ValueError):
        models[0].encode(torch.zeros(shape))


def test_decode_rejects_tokens_of_the_wrong_width(models):
    with pytest.raises(ValueError, match="32"):
        models[0].decode(torch.zeros(1, 128, 5))


# --- key conversion -----------------------------------------------------------------------------

def test_every_key_of_the_file_maps(checkpoint, models):
    vae_sd, vocoder_sd = split_ltx_audio(checkpoint)
    assert len(vae_sd) + len(vocoder_sd) == len(checkpoint) == 1325
    assert set(vae_sd) == set(models[0].autoencoder.state_dict())
    assert set(vocoder_sd) == set(models[1].bwe_vocoder.state_dict())


def test_conversion_round_trips(checkpoint):
    back = join_ltx_audio(*split_ltx_audio(checkpoint))
    assert set(back) == set(checkpoint)
    assert all(back[k] is checkpoint[k] for k in checkpoint)


def test_release_sized_modules_have_file_keys():
    # the converter's grammar covers the full-size generators (more blocks, other indices)
    with torch.device("meta"):
        vae, vocoder = LtxAudioVAE(LTX23_AUDIO_VAE), LtxVocoder(LTX23_VOCODER)
    ours = (vae.autoencoder.state_dict(), vocoder.bwe_vocoder.state_dict())
    vae_sd, vocoder_sd = split_ltx_audio(join_ltx_audio(*ours))
    assert (set(vae_sd), set(vocoder_sd)) == (set(ours[0]), set(ours[1]))


def test_a_meta_device_build_loads_completely(checkpoint, ltx_config, models):
    # the weights loader may build on the meta device and load with assign=True; the computed
    # (never stored) resampler filter must come out real and equal to a normal build's
    _, vocoder_params = params_from_ltx_config(ltx_config)
    with torch.device("meta"):
        vocoder = LtxVocoder(vocoder_params)
    vocoder.bwe_vocoder.load_state_dict(split_ltx_audio(checkpoint)[1], strict=True, assign=True)
    tensors = list(vocoder.parameters()) + list(vocoder.buffers())
    assert not any(t.is_meta for t in tensors)
    assert torch.equal(vocoder.bwe_vocoder.resampler.filter, models[1].bwe_vocoder.resampler.filter)


@pytest.mark.parametrize("bad", ["vocoder.vocoder.resblocks.0.foo.weight", "audio_vae.quant_conv.weight",
                                 "vocoder.extra.weight", "model.diffusion_model.x"])
def test_an_unknown_key_is_an_error_naming_it(checkpoint, bad):
    with pytest.raises(WeightsError, match=bad.replace(".", r"\.")):
        split_ltx_audio({**checkpoint, bad: torch.zeros(1)})


def test_config_without_a_vocoder_section_is_an_error(ltx_config):
    with pytest.raises(WeightsError, match="vocoder"):
        params_from_ltx_config({"audio_vae": ltx_config["audio_vae"]})


def test_a_pre_2_3_vocoder_is_refused(ltx_config):
    old = json.loads(json.dumps(ltx_config))
    old["vocoder"]["vocoder"]["resblock"] = "1"
    with pytest.raises(WeightsError, match="resblock"):
        params_from_ltx_config(old)
