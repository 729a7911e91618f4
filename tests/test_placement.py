"""A memory plan changes where the models are and how calls are cut, never what comes out; a dub
encodes every prompt before it samples, so umT5 can leave the GPU first."""

import json
from dataclasses import replace

import pytest
import torch

from nava_dub import placement
from nava_dub.generate import GenerationRequest, generate
from nava_dub.memory import GenerationShape, plan_memory
from nava_dub.model.video_vae import VaeTiling
from nava_dub.options import DubOptions
from nava_dub.pipeline import dub
from tests import fake_nava, tiny_nava

SHAPE = GenerationShape(64, 64, 2, n_passes=4)


def _plan(mode: str):
    return plan_memory(tiny_nava.models().transformer.params, SHAPE, mode, None, "fp32")


def _request(**kw) -> GenerationRequest:
    speakers = torch.randn(1, 192, generator=torch.Generator().manual_seed(3))
    return GenerationRequest(prompt="A man talks. <S>Hello there.<E>", n_latent_frames=2, height_px=64,
                             width_px=64, speaker_embeddings=speakers, steps=3, seed=5, **kw)


def test_what_loads_into_host_memory_follows_the_plan():
    low = _plan("low")
    assert low.offload_group_size == 1 and low.text_encoder_on_gpu
    assert placement.host_components(low) == {"transformer"}
    assert placement.host_components(replace(low, text_encoder_on_gpu=False)) == {"transformer", "text_encoder"}
    assert placement.host_components(_plan("max")) == placement.host_components(_plan("balanced")) == set()
    assert placement.vae_tiling(_plan("max")) is None and placement.max_batch(_plan("max")) is None
    assert placement.vae_tiling(low) == VaeTiling(16, 30, 8, 16) and placement.max_batch(low) == 1


@pytest.mark.usefixtures("one_torch_thread")
def test_a_low_plan_streams_blocks_one_pass_a_call_and_generates_what_max_generates(monkeypatch):
    low = _plan("low")
    placed = placement.load_placed(tiny_nava.weights_dir(), low, device="cpu")
    assert placed.offload is not None and len(placed.offload.groups) == 4      # 4 blocks, 1 a group
    batches, tilings = [], []
    placed.transformer.register_forward_pre_hook(lambda m, args: batches.append(len(args[0])))
    decode = placed.video_vae.decode
    monkeypatch.setattr(placed.video_vae, "decode", lambda z, tiling=None: (tilings.append(tiling), decode(z))[1])

    reference = generate(tiny_nava.models(), _request())
    streamed = generate(placed, _request(), memory=low)

    assert set(batches) == {1} and len(batches) == 3 * 4                    # 3 steps x 4 branches, one a call
    assert tilings == [VaeTiling(16, 30, 8, 16)]
    assert placed.offload.n_bytes_copied >= 3 * 4 * sum(placed.offload.group_bytes)
    assert len(placed.offload.resident_groups()) <= 2
    # one pass a call changes only the GEMM row blocking; the blocks' values are the same bytes
    torch.testing.assert_close(streamed.audio_latent, reference.audio_latent, atol=1e-5, rtol=0)
    torch.testing.assert_close(streamed.video_latent, reference.video_latent, atol=1e-5, rtol=0)


def test_the_text_encoder_is_parked_after_encoding_unless_the_plan_keeps_it(monkeypatch):
    parked = []
    monkeypatch.setattr(placement, "park", parked.append)
    models = tiny_nava.models()
    with placement.text_encoder_ready(models, _plan("max")):
        pass
    assert parked == []
    with placement.text_encoder_ready(models, _plan("balanced")):
        assert parked == []                                              # not while it encodes
    assert parked == [models.text_encoder]
    with pytest.raises(RuntimeError), placement.text_encoder_ready(models, _plan("low")):
        raise RuntimeError("an encoding failed")
    assert parked == [models.text_encoder] * 2                           # parked even then


@pytest.mark.usefixtures("one_torch_thread")
def test_a_dub_encodes_every_prompt_before_it_samples_and_parks_umt5_in_between(tmp_path, monkeypatch):
    clip, transcript = fake_nava.clip_with_transcript(tmp_path, "two.mkv", lines=fake_nava.TWO_LINES, gaps_s=1.5,
                                                      audio_codec="pcm_s16le")
    models, events = tiny_nava.models(), []
    real_park = placement.park
    monkeypatch.setattr(placement, "park", lambda module: (events.append("park"), real_park(module)))
    hooks = [models.text_encoder.register_forward_hook(lambda *a: events.append("text")),
             models.transformer.register_forward_hook(lambda *a: events.append("transformer"))]
    try:
        report = dub(clip, DubOptions(output=tmp_path / "out.mkv", transcript=transcript, steps=2,
                                      weights_dir=tiny_nava.weights_dir(), resolution_px=128, device="cpu",
                                      video_mode="keep", memory="balanced", refs=(str(fake_nava.voice(tmp_path)),)),
                     models=models)
    finally:
        for hook in hooks:
            hook.remove()
    assert report.n_windows == 2
    first_sample = events.index("transformer")
    assert events[:first_sample] == ["text", "text", "park"]             # one batch (prompt + negative) a window
    assert "text" not in events[first_sample:]
    record = json.loads(report.record.read_text())
    assert record["memory"].startswith("memory balanced (fp32): text encoder parked")
