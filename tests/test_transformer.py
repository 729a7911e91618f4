"""The NAVA transformer: architecture fingerprint, config reading, batching, masking and fp8/bf16 numerics.

Exactness against the official code is proven by the fixture cases (tests/test_parity.py); these tests
pin the properties that the fixtures do not cover directly.
"""

import json
import math
from pathlib import Path

import pytest
import torch

from nava_dub.checkpoint import CHECKPOINT_PREFIX, load_transformer
from nava_dub.model.fp8 import quantise_weight
from nava_dub.model.layers import rope_band_pairs
from nava_dub.model.transformer import PRESETS, NavaInputs, NavaParams, NavaTransformer
from nava_dub.parity import TOLERANCES, forward_inputs

DATA = Path(__file__).parent / "data" / "nava_dit"


@pytest.fixture(scope="module")
def tiny() -> NavaTransformer:
    return load_transformer(DATA / "tiny_weights.safetensors", params=PRESETS["tiny"], dtype=torch.float32)


def _random_sample(grid=(2, 4, 6), n_audio=6, n_text=9, seed=0, **kw) -> NavaInputs:
    g = torch.Generator().manual_seed(seed)
    return NavaInputs(video_latents=torch.randn(48, *grid, generator=g),
                      audio_latents=torch.randn(n_audio, 128, generator=g),
                      context=torch.randn(n_text, 4096, generator=g), timestep=700, **kw)


def test_release_preset_matches_the_official_manifest():
    manifest = json.loads((DATA / "manifest_6b.json").read_text())
    with torch.device("meta"):
        model = NavaTransformer(PRESETS["release"])
    shapes = {CHECKPOINT_PREFIX + k: list(v.shape) for k, v in model.state_dict().items()}
    assert shapes == manifest["keys"]
    assert len(shapes) == 1052
    assert sum(math.prod(s) for s in shapes.values()) == 6_296_995_520


def test_config_dicts_give_the_presets():
    manifest = json.loads((DATA / "manifest_6b.json").read_text())
    release = {**manifest["config"], **manifest["extra_constructor_args"]}
    assert NavaParams.from_config_dict(release) == PRESETS["release"]
    assert NavaParams.from_config_dict(manifest["config"]) == PRESETS["release"]  # NAVA_6B.json alone
    assert NavaParams.from_config_dict(json.loads((DATA / "tiny_config.json").read_text())) == PRESETS["tiny"]


def test_config_dict_rejects_unknown_keys_and_unsupported_architectures():
    config = json.loads((DATA / "tiny_config.json").read_text())
    with pytest.raises(ValueError, match="unknown config keys: bogus, zzz"):
        NavaParams.from_config_dict({**config, "zzz": 1, "bogus": 2})
    with pytest.raises(ValueError, match="no_split_norm_ffn"):
        NavaParams.from_config_dict({**config, "no_split_norm_ffn": False})
    with pytest.raises(ValueError, match="num_layers=5"):
        NavaParams.from_config_dict({**config, "num_layers": 5})
    with pytest.raises(ValueError, match="dim"):
        NavaParams.from_config_dict({k: v for k, v in config.items() if k != "dim"})


def test_rope_band_split_follows_the_generic_rule():
    assert rope_band_pairs(128) == (22, 21, 21)   # release
    assert rope_band_pairs(64) == (12, 10, 10)    # tiny fixture model
    assert PRESETS["release"].audio_hidden_dim == 8192 and PRESETS["tiny"].audio_hidden_dim == 512


def test_each_sample_of_a_padded_mixed_batch_equals_running_it_alone(tiny):
    # different grids (odd H), audio lengths, contexts, masking and per-token timesteps in one call
    a = _random_sample((3, 4, 6), 10, 24, seed=1)
    b = _random_sample((2, 5, 3), 6, 9, seed=2, modality_masked=True,
                       video_timesteps=torch.tensor([0.0, 300.0]).repeat_interleave(6).reshape(2, 3, 2))
    with torch.no_grad():
        together = tiny([a, b])
        alone = [tiny([a])[0], tiny([b])[0]]
    for joint, single in zip(together, alone, strict=True):
        torch.testing.assert_close(joint.video_velocity, single.video_velocity, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(joint.audio_velocity, single.audio_velocity, atol=1e-5, rtol=1e-5)
    assert together[1].video_velocity.shape == (48, 2, 5, 3)


def test_per_token_timesteps_equal_to_the_scalar_change_nothing_and_clean_tokens_change_the_output(tiny):
    plain = _random_sample()
    same = _random_sample(video_timesteps=torch.full((2, 2, 3), 700.0), audio_timesteps=torch.full((6,), 700.0))
    clean_audio = _random_sample(audio_timesteps=torch.zeros(6))
    with torch.no_grad():
        out = tiny([plain, same, clean_audio])
    torch.testing.assert_close(out[0].video_velocity, out[1].video_velocity, atol=0, rtol=0)
    assert (out[0].audio_velocity - out[2].audio_velocity).abs().max() > 1e-2


def test_modality_masking_cuts_all_cross_modal_attention(tiny):
    # with masking, the audio output must not depend on the video latents at all
    g = torch.Generator().manual_seed(5)
    s1 = _random_sample(modality_masked=True)
    s2 = NavaInputs(torch.randn(48, 2, 4, 6, generator=g), s1.audio_latents, s1.context, 700, modality_masked=True)
    unmasked = NavaInputs(s2.video_latents, s1.audio_latents, s1.context, 700)
    with torch.no_grad():
        out = tiny([s1, s2, unmasked])
    torch.testing.assert_close(out[0].audio_velocity, out[1].audio_velocity, atol=1e-6, rtol=1e-6)
    assert (out[1].audio_velocity - out[2].audio_velocity).abs().max() > 1e-2


def test_audio_only_and_video_only_samples(tiny):
    s = _random_sample()
    with torch.no_grad():
        audio_only, video_only = tiny([NavaInputs(None, s.audio_latents, s.context, 700),
                                       NavaInputs(s.video_latents, None, s.context, 700)])
    assert audio_only.video_velocity is None and audio_only.audio_velocity.shape == (6, 128)
    assert video_only.audio_velocity is None and video_only.video_velocity.shape == (48, 2, 4, 6)
    assert torch.isfinite(audio_only.audio_velocity).all() and torch.isfinite(video_only.video_velocity).all()


def test_invalid_inputs_raise_value_errors(tiny):
    s = _random_sample()
    with pytest.raises(ValueError, match="1 speaker embeddings for 2 speaker positions"):
        tiny([NavaInputs(s.video_latents, s.audio_latents, s.context, 700, speaker_embeddings=torch.ones(1, 192),
                         speaker_positions=(1, 2))])
    with pytest.raises(ValueError, match="context must be"):
        tiny([NavaInputs(s.video_latents, s.audio_latents, torch.zeros(513, 4096), 700)])
    with pytest.raises(ValueError, match="token grid shape"):
        tiny([NavaInputs(s.video_latents, s.audio_latents, s.context, 700, video_timesteps=torch.zeros(2, 4, 6))])


def test_quantised_weights_are_within_the_e4m3_rounding_bound():
    w = torch.randn(64, 256, generator=torch.Generator().manual_seed(0)) * torch.logspace(-3, 1, 64).unsqueeze(1)
    q, scale = quantise_weight(w)
    assert q.dtype == torch.float8_e4m3fn and scale.dtype == torch.bfloat16 and scale.shape == (64,)
    error = (q.float() * scale.float().unsqueeze(1) - w).abs()
    # 3 mantissa bits: half a step is ≤ 1/16 of the value; the bf16 scale adds ≤ 2^-8 of the row max
    bound = w.abs() / 16 + w.abs().amax(1, keepdim=True) * 2**-8
    assert (error <= bound).all()


def test_bf16_forward_within_the_fixture_smoke_tolerance():
    model = load_transformer(DATA / "tiny_weights.safetensors", params=PRESETS["tiny"], dtype=torch.bfloat16)
    case = json.loads((DATA / "case_b_speakers.json").read_text())
    from safetensors.torch import load_file
    tensors = load_file(str(DATA / "case_b_speakers.safetensors"))
    with torch.no_grad():
        (out,) = model(forward_inputs(case, tensors, model.params, model.dtype))
    tolerance = TOLERANCES[("forward", "bf16")]
    assert out.audio_velocity.dtype == torch.bfloat16
    assert tolerance.passes(out.audio_velocity.float(), tensors["out.velocity_audio"])
    assert not TOLERANCES[("forward", "fp32")].passes(out.audio_velocity.float(), tensors["out.velocity_audio"])
