"""Loading NAVA's components from a weights folder: checks first, real loaders, partial loads, release."""

import json
from types import SimpleNamespace

import pytest
import torch

from nava_dub import checkpoint, models, text, voice
from nava_dub.convert.wan_vae import wan_to_diffusers_vae
from nava_dub.errors import UsageError, WeightsError
from nava_dub.model.video_vae import WAN22_RELEASE, WAN22_TINY, WanVideoVAE
from nava_dub.models import ALL, Models, check_compatible, load_models, video_vae_preset
from tests import tiny_nava

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # see tests/conftest.py


def test_every_component_loads_in_eval_mode_on_the_cpu():
    loaded = tiny_nava.models()
    for name in ("transformer", "text_encoder", "video_vae", "audio_vae", "vocoder", "speaker_encoder"):
        module = getattr(loaded, name)
        assert not module.training, name
        assert {p.device.type for p in module.parameters()} == {"cpu"}, name
    assert loaded.tokenizer is not None and loaded.dtype == torch.float32
    assert loaded.transformer.dtype == torch.float32
    assert {p.dtype for p in loaded.vocoder.parameters()} == {torch.float32}    # the bf16 file runs in fp32


def test_components_load_one_at_a_time_and_are_released():
    text_only = load_models(tiny_nava.weights_dir(), components={"text_encoder", "tokenizer"}, device="cpu")
    assert text_only.text_encoder is not None and text_only.transformer is None and text_only.vocoder is None
    released = text_only.without("text_encoder")
    assert released.text_encoder is None and released.tokenizer is text_only.tokenizer
    with pytest.raises(UsageError, match="text_encoder is not loaded"):
        released.require("text_encoder")
    audio = load_models(tiny_nava.weights_dir(), components={"audio_vae"}, device="cpu")
    both = released.merged(audio)
    assert both.tokenizer is text_only.tokenizer and both.vocoder is audio.vocoder
    assert both.without("audio_vae").vocoder is None                 # the vocoder goes with its file


@pytest.mark.parametrize("bad", [{"vocoderz"}, {"transformer", "clip"}])
def test_unknown_components_are_usage_errors(bad):
    with pytest.raises(UsageError, match="unknown model components"):
        load_models(tiny_nava.weights_dir(), components=bad)
    with pytest.raises(UsageError):
        Models().without("dtype")


def _no_loading(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a loader ran before every file was checked")
    for module, name in ((checkpoint, "load_transformer"), (text, "load_text_encoder"), (text, "load_tokenizer"),
                         (voice, "load_speaker_encoder"), (models, "load_video_vae"), (models, "load_audio_codec")):
        monkeypatch.setattr(module, name, refuse)


@pytest.mark.parametrize("damage", ["missing", "truncated", "corrupt_header"])
def test_a_bad_file_fails_before_anything_loads(tmp_path, monkeypatch, damage):
    root = tiny_nava.copy_weights(tmp_path / "w")
    target = root / "params" / "LTX2" / "ltx-2.3-22b-dev_audio_vae.safetensors"   # the last in the manifest
    if damage == "missing":
        target.unlink()
    elif damage == "truncated":
        target.write_bytes(target.read_bytes()[:-100])
    else:
        target.write_bytes(b"\xff" * 8 + target.read_bytes()[8:])
    _no_loading(monkeypatch)
    with pytest.raises(WeightsError) as err:
        load_models(root, device="cpu")
    assert "audio_vae" in err.value.message and str(target) in err.value.message and err.value.hint


def test_an_empty_folder_names_the_first_missing_file(tmp_path):
    with pytest.raises(WeightsError, match="missing"):
        load_models(tmp_path, components={"transformer"})


def test_the_release_layout_needs_no_extra_files(tmp_path):
    """Without config.json the transformer is built as the release preset (so tiny weights no longer fit)."""
    root = tiny_nava.copy_weights(tmp_path / "w")
    (root / "config.json").unlink()
    with pytest.raises(WeightsError, match="another size of model"):
        load_models(root, components={"transformer"}, device="cpu")
    config = json.loads((tiny_nava.weights_dir() / "config.json").read_text())
    (root / "config.json").write_text(json.dumps(config))
    assert load_models(root, components={"transformer"}, device="cpu").transformer.params.dim == config["dim"]


def test_the_wan_vae_preset_comes_from_its_widths():
    with torch.device("meta"):
        release = wan_to_diffusers_vae(_wan_keys(WanVideoVAE(WAN22_RELEASE)))
        tiny = wan_to_diffusers_vae(_wan_keys(WanVideoVAE(WAN22_TINY)))
    assert video_vae_preset(release, "r") == WAN22_RELEASE and video_vae_preset(tiny, "t") == WAN22_TINY
    tiny["encoder.conv_in.weight"] = torch.empty(96, 12, 3, 3, 3, device="meta")
    with pytest.raises(WeightsError, match=r"no known size \(encoder width, decoder width, latent channels = \(96,"):
        video_vae_preset(tiny, "odd.pth")


def _wan_keys(vae):
    from nava_dub.convert.wan_vae import diffusers_to_wan_vae
    return diffusers_to_wan_vae(vae.autoencoder.state_dict())


def test_components_that_do_not_fit_together_are_refused():
    transformer = SimpleNamespace(params=SimpleNamespace(text_dim=4096, video_in_channels=48, audio_in_channels=128))
    check_compatible(Models(transformer=transformer, video_vae=SimpleNamespace(params=SimpleNamespace(z_dim=48))))
    encoder = SimpleNamespace(d_model=64, umt5=SimpleNamespace(config=SimpleNamespace(vocab_size=896)))
    with pytest.raises(WeightsError, match="umT5 is 64 wide, the transformer takes 4096"):
        check_compatible(Models(transformer=transformer, text_encoder=encoder))
    audio = SimpleNamespace(params=SimpleNamespace(latent_width=32))
    with pytest.raises(WeightsError, match="LTX audio latent is 32 wide"):
        check_compatible(Models(transformer=transformer, audio_vae=audio))


def test_all_names_the_manifest_components():
    from nava_dub.weights import MANIFEST
    assert ALL == {f.component for f in MANIFEST}


def test_strict_loading_names_the_offending_keys():
    from nava_dub.weights import key_mismatch, load_strict
    expected = {f"layer.{i}.weight": (4, 4) for i in range(8)}
    assert key_mismatch(expected, dict(expected)) is None
    found = {**{k: s for k, s in expected.items() if k != "layer.0.weight"}, "extra.bias": (4,), "layer.1.weight": (4, 5)}
    assert key_mismatch(expected, found) == ("1 missing keys (layer.0.weight); 1 unexpected keys (extra.bias); "
                                             "1 of the wrong shape (layer.1.weight [4, 5] (expected [4, 4]))")
    many = key_mismatch(expected, {})
    assert many.startswith("8 missing keys (layer.0.weight, layer.1.weight") and "(3 more)" in many
    module = torch.nn.Linear(2, 3)
    with pytest.raises(WeightsError, match=r"the test weights in f.pt do not fit: 1 missing keys \(bias\)") as err:
        load_strict(module, {"weight": torch.zeros(3, 2)}, what="the test weights", path="f.pt", hint="fix it")
    assert err.value.hint == "fix it"
    load_strict(module, {"weight": torch.ones(3, 2), "bias": torch.ones(3)}, what="w", path="f", hint="h")
    assert module.weight.sum().item() == 6
