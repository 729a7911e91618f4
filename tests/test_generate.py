"""The generation core on tiny random weights (CPU): tasks, seeding, keeps, conditioning, checks."""

import numpy as np
import pytest
import torch

from nava_dub.codecs import image_to_vae_input
from nava_dub.errors import ModelError
from nava_dub.generate import (
    AUDIO_NEGATIVE_PROMPT,
    VIDEO_NEGATIVE_PROMPT,
    GenerationRequest,
    _kept_tokens,
    conditioning_for,
    encode_audio,
    encode_text,
    encode_video,
    generate,
    speaker_embeddings,
)
from nava_dub.timeline import audio_tokens_for_latent_frames
from nava_dub.voice import Reference
from tests import tiny_nava

T, H, W = 3, 64, 96            # 3 latent frames = 9 frames; 4x6 latent cells
STEPS = 2
PROMPT = "海边的男人说<S>Hello there<E>然后<S>Bye<E>"


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # see tests/conftest.py


@pytest.fixture(scope="module")
def models():
    return tiny_nava.models()


def _request(**kwargs) -> GenerationRequest:
    return GenerationRequest(**{"prompt": PROMPT, "n_latent_frames": T, "height_px": H, "width_px": W,
                                "steps": STEPS, "seed": 7, **kwargs})


def _n_samples_16k(n_latent_frames: int) -> int:
    return (4 * audio_tokens_for_latent_frames(n_latent_frames) - 3) * 160    # mel frames x hop


@pytest.fixture(scope="module")
def t2av(models):
    return generate(models, _request())


def _image(seed=0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (50, 70, 3), dtype=np.uint8)


def test_text_to_audio_video_shapes(t2av):
    assert t2av.frames.shape == (4 * T - 3, H, W, 3) and t2av.frames.dtype == np.uint8
    assert t2av.waveform_16k.shape == (2, _n_samples_16k(T)) and t2av.waveform_16k.dtype == np.float32
    assert np.abs(t2av.waveform_16k).max() == pytest.approx(0.95, abs=1e-6)   # NAVA's peak normalisation
    assert t2av.waveform_48k is None
    assert t2av.video_latent.shape == (48, T, H // 16, W // 16)


def test_first_image_to_audio_video_pins_the_image_latent(models):
    image = _image()
    out = generate(models, _request(first_frame=image))
    assert out.frames.shape == (4 * T - 3, H, W, 3)
    expected = models.video_vae.encode_image(image_to_vae_input(image, H, W))[0, :, 0]
    torch.testing.assert_close(out.video_latent[:, 0], expected, rtol=0, atol=0)


def test_text_to_audio_with_the_48k_vocoder_output(models):
    out = generate(models, _request(height_px=None, width_px=None, vocoder_48k=True, n_latent_frames=2))
    assert out.frames is None and out.video_latent is None
    assert out.waveform_16k.shape == (2, _n_samples_16k(2))
    assert out.waveform_48k.shape == (2, 3 * _n_samples_16k(2)) and out.sample_rate_48k_hz == 48000


def test_same_seed_same_output_other_seed_other_output(models, t2av):
    again = generate(models, _request())
    assert np.array_equal(again.frames, t2av.frames) and np.array_equal(again.waveform_16k, t2av.waveform_16k)
    other = generate(models, _request(seed=8))
    assert not np.array_equal(other.frames, t2av.frames)
    assert not np.array_equal(other.waveform_16k, t2av.waveform_16k)


@pytest.mark.parametrize("mode", ["clean", "noised"])
def test_kept_latents_are_exactly_the_source(models, mode):
    frames = np.random.default_rng(1).integers(0, 256, (4 * T - 3, H, W, 3), dtype=np.uint8)
    video_source = encode_video(models, frames)
    assert video_source.shape == (48, T, H // 16, W // 16)
    n_tokens = audio_tokens_for_latent_frames(T)
    waveform = np.random.default_rng(2).standard_normal((1, 16000)).astype(np.float32) * 0.1
    audio_source = encode_audio(models, waveform, 16000)[:n_tokens]
    video_keep = torch.zeros(T, H // 16, W // 16, dtype=torch.bool)
    video_keep[:, :, :3] = True                                   # the left half of every frame
    audio_keep = torch.arange(n_tokens) < n_tokens // 2
    out = generate(models, _request(video_source=video_source, video_keep=video_keep, audio_source=audio_source,
                                    audio_keep=audio_keep, keep_mode=mode))
    assert torch.equal(out.video_latent[:, video_keep], video_source[:, video_keep])
    assert torch.equal(out.audio_latent[audio_keep], audio_source[audio_keep])
    assert not torch.allclose(out.video_latent[:, ~video_keep], video_source[:, ~video_keep])
    assert not torch.allclose(out.audio_latent[~audio_keep], audio_source[~audio_keep])


def test_progress_is_reported_per_step(models):
    seen = []
    generate(models, _request(height_px=None, width_px=None, steps=3), lambda *a: seen.append(a))
    assert [a for a in seen if a[0] == "sample"] == [("sample", i, 3) for i in range(4)]
    assert ("decode audio", 1, 1) in seen and not any(a[0] == "decode video" for a in seen)


def test_conditioning_follows_nava(models):
    references = [Reference(np.random.default_rng(i).standard_normal((1, 32000)).astype(np.float32) * 0.1, 16000)
                  for i in (3, 4)]
    speakers = speaker_embeddings(models, references)
    assert speakers.shape == (2, 192)
    request = _request(speaker_embeddings=speakers)
    cond = conditioning_for(models, request)
    encoded = encode_text(models, [PROMPT, VIDEO_NEGATIVE_PROMPT, AUDIO_NEGATIVE_PROMPT])
    assert cond.speaker_positions == encoded[0].speaker_slot_positions and len(cond.speaker_positions) == 2
    torch.testing.assert_close(cond.context, encoded[0].context)
    torch.testing.assert_close(cond.negative_context, encoded[1].context)          # video negative for AV
    audio_only = conditioning_for(models, _request(height_px=None, width_px=None))
    torch.testing.assert_close(audio_only.negative_context, encoded[2].context)    # audio negative for T2A
    assert audio_only.speaker_embeddings is None and audio_only.speaker_positions == ()
    assert VIDEO_NEGATIVE_PROMPT.endswith(AUDIO_NEGATIVE_PROMPT)


def test_a_precomputed_conditioning_spares_the_text_encoder(models, t2av):
    request = _request()
    cond = conditioning_for(models, request)
    out = generate(models.without("text_encoder"), request, conditioning=cond)
    assert np.array_equal(out.frames, t2av.frames)


def test_kept_tokens_need_all_their_cells():
    cells = torch.zeros(2, 3, 5, dtype=torch.bool)   # odd sizes: the last token row/column is half padding
    cells[0] = True
    cells[1, 0:2, 0:2] = True                         # token (0, 0) complete
    cells[1, 2, 4] = True                             # token (1, 2): its only real cell
    cells[1, 0, 2] = True                             # token (0, 1): one of four cells
    tokens = _kept_tokens(cells, (1, 2, 2))
    assert tokens.shape == (2, 2, 3)
    assert tokens[0].all()
    assert tokens[1].tolist() == [[True, False, False], [False, False, True]]


@pytest.mark.parametrize("kwargs, message", [
    ({"speaker_embeddings": torch.zeros(1, 192)}, "1 speaker embeddings for 2 `<S>` spans"),
    ({"speaker_embeddings": torch.zeros(2, 128)}, r"must be \[S, 192\]"),
    ({"height_px": 60}, "not a positive multiple of 16"),
    ({"height_px": None}, "give both or neither"),
    ({"video_keep": torch.ones(T, 4, 6, dtype=torch.bool)}, "without the source latent"),
    ({"audio_source": torch.zeros(10, 32)}, "without its keep mask"),
    ({"video_keep": torch.ones(T, 4, 5, dtype=torch.bool), "video_source": torch.zeros(48, T, 4, 6)},
     r"expected bool \[3, 4, 6\]"),
    ({"first_frame": np.zeros((8, 8, 3), np.uint8), "video_keep": torch.ones(T, 4, 6, dtype=torch.bool),
      "video_source": torch.zeros(48, T, 4, 6), "keep_mode": "noised"}, "cannot be combined"),
    ({"first_frame": np.zeros((8, 8), np.uint8)}, "uint8 RGB"),
    ({"steps": 0}, ">= 1 step"),
])
def test_bad_requests_fail_on_construction(kwargs, message):
    with pytest.raises(ModelError, match=message):
        _request(**kwargs)


def test_encoders_check_their_inputs(models):
    with pytest.raises(ModelError, match="4k\\+1 frames"):
        encode_video(models, np.zeros((4, 64, 64, 3), np.uint8))
    tokens = encode_audio(models, np.zeros((2, 16000 * 2), np.float32), 16000)
    assert tokens.shape == (1 + 32000 // 640, models.audio_vae.params.latent_width)


def test_pass_shortcuts_in_a_request_reach_the_sampler(models):
    from nava_dub.options import Shortcuts
    batches = []
    hook = models.transformer.register_forward_pre_hook(lambda m, args: batches.append(len(args[0])))
    try:
        generate(models, _request(height_px=None, width_px=None, steps=4))
        full = list(batches)
        batches.clear()
        generate(models, _request(height_px=None, width_px=None, steps=4, shortcuts=Shortcuts(reuse_steps=1)))
    finally:
        hook.remove()
    assert full == [3] * 4                 # audio only, no voices: cond, uncond, align-3D per step
    assert batches == [3, 1, 3, 1]         # every other step reuses the correction: the cond pass alone
