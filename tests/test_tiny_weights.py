"""Tiny random weights laid out and formatted like the release, loaded by the release's loaders."""

import json
import zipfile

import pytest
import torch
from safetensors import safe_open

from nava_dub.convert.ltx_audio import params_from_ltx_config
from nava_dub.model.audio_vae import LTX23_AUDIO_VAE_TINY
from nava_dub.model.text_encoder import tiny_umt5_config
from nava_dub.model.transformer import NavaParams
from nava_dub.model.video_vae import WAN22_TINY
from nava_dub.model.vocoder import LTX23_VOCODER_TINY
from nava_dub.tiny_weights import ltx_config, main, nava_config, tiny_transformer_params, write_tiny_weights
from nava_dub.weights import MANIFEST, TINY_DETAIL, TINY_MARKER, check_weights
from tests import tiny_nava

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # see tests/conftest.py


def test_every_release_file_is_written_at_its_release_path():
    root = tiny_nava.weights_dir()
    for file in MANIFEST:
        if file.relpath != "NAVA_fp8.safetensors":       # the bf16/fp32 checkpoint is the one written
            assert (root / file.relpath).exists(), file.relpath
    assert (root / "config.json").is_file() and (root / TINY_MARKER).is_file()


def test_check_reports_a_tiny_folder_as_found():
    statuses = {s.file.relpath: s for s in check_weights(tiny_nava.weights_dir())}
    assert statuses["NAVA_fp8.safetensors"].state == "optional"
    for relpath, status in statuses.items():
        if relpath != "NAVA_fp8.safetensors":
            assert status.state == "found", (relpath, status.detail)
    assert statuses["NAVA.safetensors"].detail == TINY_DETAIL


def test_the_marker_relaxes_only_the_size_check(tmp_path):
    root = tiny_nava.copy_weights(tmp_path / "w")
    (root / TINY_MARKER).unlink()
    wrong = {s.file.relpath: s.detail for s in check_weights(root) if s.state == "wrong"}
    assert "NAVA.safetensors" in wrong and "expected about 25.19 GB" in wrong["NAVA.safetensors"]
    (root / TINY_MARKER).write_text("")
    vae = root / "Wan2.2-TI2V-5B" / "Wan2.2_VAE.pth"
    vae.write_bytes(vae.read_bytes()[:1000])                  # a truncated download
    status = next(s for s in check_weights(root) if s.path == vae)
    assert status.state == "wrong" and "zip" in status.detail


def test_files_are_in_the_release_formats():
    root = tiny_nava.weights_dir()
    with safe_open(str(root / "NAVA.safetensors"), "pt") as f:
        assert all(k.startswith("backbone.") for k in f.keys())
        assert f.get_tensor("backbone.patch_embedding.weight").dtype == torch.float32
    t5 = torch.load(root / "Wan2.2-TI2V-5B" / "models_t5_umt5-xxl-enc-bf16.pth", weights_only=True)
    assert "token_embedding.weight" in t5 and "blocks.0.attn.q.weight" in t5          # Wan's names
    assert {v.dtype for v in t5.values()} == {torch.bfloat16}
    vae = torch.load(root / "Wan2.2-TI2V-5B" / "Wan2.2_VAE.pth", weights_only=True)
    assert "encoder.conv1.weight" in vae and "decoder.head.2.weight" in vae            # Wan's names
    assert zipfile.is_zipfile(root / "M-vb2+vox2+cnc-ft_mix.pt")
    redimnet = torch.load(root / "M-vb2+vox2+cnc-ft_mix.pt", weights_only=True)
    assert set(redimnet) == {"model_config", "state_dict"} and redimnet["model_config"]["embed_dim"] == 192
    with safe_open(str(root / "params" / "LTX2" / "ltx-2.3-22b-dev_audio_vae.safetensors"), "pt") as f:
        assert "config" in f.metadata()
        assert "audio_vae.per_channel_statistics.mean-of-means" in set(f.keys())


def test_configs_round_trip_to_the_tiny_presets():
    params = tiny_transformer_params()
    assert NavaParams.from_config_dict(nava_config(params)) == params
    assert params_from_ltx_config(json.loads(json.dumps(ltx_config(LTX23_AUDIO_VAE_TINY, LTX23_VOCODER_TINY)))) \
        == (LTX23_AUDIO_VAE_TINY, LTX23_VOCODER_TINY)


def test_the_real_loaders_build_the_tiny_presets():
    models = tiny_nava.models()
    assert models.transformer.params == tiny_transformer_params()
    assert models.video_vae.params == WAN22_TINY
    assert models.audio_vae.params == LTX23_AUDIO_VAE_TINY and models.vocoder.params == LTX23_VOCODER_TINY
    assert models.text_encoder.d_model == tiny_umt5_config().d_model
    assert models.speaker_encoder.params.C == 4 and models.speaker_encoder.params.embed_dim == 192
    assert models.tokenizer.convert_tokens_to_ids("<extra_id_2>") == 809   # the test tokenizer's slot id


def test_same_seed_same_tensors_and_the_command_line(tmp_path, capsys):
    assert main([str(tmp_path / "a"), "--seed", "0"]) == 0
    assert "tiny test weights" in capsys.readouterr().out
    write_tiny_weights(tmp_path / "b", seed=1)
    before = torch.get_rng_state()
    write_tiny_weights(tmp_path / "c", seed=0)
    assert torch.equal(before, torch.get_rng_state())        # the caller's RNG is left alone
    tensors = {}
    for name in ("a", "b", "c"):
        with safe_open(str(tmp_path / name / "NAVA.safetensors"), "pt") as f:
            tensors[name] = f.get_tensor("backbone.head.head.weight")
    assert torch.equal(tensors["a"], tensors["c"]) and not torch.equal(tensors["a"], tensors["b"])
