"""NAVA's reference preprocessing and the per-span speaker embeddings."""

from pathlib import Path

import numpy as np
import pytest
import torch
import torchaudio
from safetensors.torch import load_file

from nava_dub.errors import MediaError, TranscriptError
from nava_dub.timeline import Span
from nava_dub.voice import Reference, embed_reference, embed_spans, load_speaker_encoder, prepare_reference

DATA = Path(__file__).parent / "data" / "redimnet"


@pytest.fixture(scope="module")
def io():
    return load_file(str(DATA / "io.safetensors"))


@pytest.fixture(scope="module")
def model():
    return load_speaker_encoder(DATA / "redimnet_M_randomweights.safetensors")


def _noise(n_channels, duration_s, sample_rate_hz, seed=0):
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal((n_channels, int(duration_s * sample_rate_hz)))).astype(np.float32)


def test_stereo_44k_40s_becomes_16k_mono_30s_as_nava_does():
    waveform = _noise(2, 40, 44100)
    prepared = prepare_reference(waveform, 44100)
    assert prepared.shape == (1, 30 * 16000)
    assert prepared.dtype == torch.float32
    # NAVA's order on the whole file: resample, average channels, keep the first 30 s.
    nava = torchaudio.functional.resample(torch.from_numpy(waveform), 44100, 16000).mean(0, keepdim=True)
    torch.testing.assert_close(prepared, nava[:, : 30 * 16000], atol=1e-6, rtol=0)


def test_16k_mono_passes_through_unchanged():
    waveform = _noise(1, 2.5, 16000)
    assert torch.equal(prepare_reference(waveform, 16000), torch.from_numpy(waveform))


def test_too_short_reference_names_its_length():
    with pytest.raises(MediaError, match=r"0\.50 s long") as err:
        prepare_reference(_noise(1, 0.5, 16000), 16000)
    assert err.value.hint


@pytest.mark.parametrize("level", [0.0, 1e-5])
def test_silent_reference_is_an_error(level):
    quiet = np.full((2, 48000), level, dtype=np.float32)
    with pytest.raises(MediaError, match="silent") as err:
        prepare_reference(quiet, 48000)
    assert err.value.hint


def test_non_finite_reference_is_an_error():
    waveform = _noise(1, 2, 16000)
    waveform[0, 100] = np.nan
    with pytest.raises(MediaError, match="NaN"):
        prepare_reference(waveform, 16000)


def test_embed_reference_matches_fixture(model, io):
    # The fixture input is already NAVA's preprocessed form: 3 s, 16 kHz, mono.
    embedding = embed_reference(model, io["waveform"].numpy(), 16000)
    assert embedding.shape == (192,)
    torch.testing.assert_close(embedding, io["embedding"][0], atol=1e-5, rtol=0)


def _span(index, speaker):
    return Span(start_s=index, end_s=index + 1, text=f"line {index}", speaker=speaker)


def test_one_embedding_per_span_any_number_of_speakers(model, io):
    clip = io["waveform"].numpy()
    references = {
        "A": Reference(clip[:, :16000], 16000),
        "B": Reference(clip[:, 24000:40000], 16000),
        "C": Reference(np.repeat(clip[:, :16000], 2, axis=0), 16000),   # A's audio as a stereo file
    }
    spans = [_span(0, "A"), _span(1, "B"), _span(2, "A"), _span(3, "C"), _span(4, "B")]
    embeddings = embed_spans(model, spans, references)
    assert embeddings.shape == (5, 192)
    assert torch.equal(embeddings[0], embeddings[2]) and torch.equal(embeddings[1], embeddings[4])
    assert not torch.allclose(embeddings[0], embeddings[1])
    assert torch.equal(embeddings[3], embeddings[0])      # two equal channels average to the mono clip


def test_span_without_reference_is_named(model, io):
    references = {"A": Reference(io["waveform"].numpy(), 16000)}
    with pytest.raises(TranscriptError, match="span 0 .* 'B'"):
        embed_spans(model, [_span(0, "B"), _span(1, "A")], references)
    with pytest.raises(TranscriptError, match="span 0 .* None"):
        embed_spans(model, [_span(0, None)], references)


def test_bad_reference_error_names_the_speaker(model):
    with pytest.raises(MediaError, match="speaker 'A'.*silent"):
        embed_spans(model, [_span(0, "A")], {"A": Reference(np.zeros((1, 32000), np.float32), 16000)})


def test_no_spans_gives_no_rows(model):
    assert embed_spans(model, [], {}).shape == (0, 192)
