"""Tiny offline speech models and synthetic dialogue for the tests (no network, no real weights).

`build_speech_models(root)` writes the `weights/speech/` layout of weights/README.md under `root`:
  speech/whisper-ct2/     tiny random multilingual Whisper, converted to CTranslate2 (int8)
  speech/wav2vec2-en/     tiny random Wav2Vec2ForCTC with a character vocabulary
  speech/diarization/     pyannote pipeline folder: whisperx's bundled REAL segmentation weights
                          (so speech turns are real), a hand-set MFCC x-vector, random PLDA
The Whisper tokenizer comes from openai-whisper's multilingual.tiktoken (MIT, tests/data/whisper/).
The recipes follow ../shared/docs/env.md §4.

`synth_dialogue(folder)` makes a two-voice espeak-ng dialogue with known utterance times.

Run the models under `torch_threads(1)`: on a shared 2-core machine torch's default 2 threads
make pyannote's LSTM up to 40x slower (measured), and one thread is as fast when alone.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).parent / "data"
TIKTOKEN_PATH = DATA_DIR / "whisper" / "multilingual.tiktoken"
SAMPLE_RATE_HZ = 16000

# Whisper's language tokens, in the order of their ids (<|en|> = 50259 ...).
WHISPER_LANGS = (
    "en zh de es ru ko fr ja pt tr pl ca nl ar sv it id hi fi vi he uk el ms cs ro da hu ta no th ur hr "
    "bg lt la mi ml cy sk te fa lv bn sr az sl kn et mk br eu is hy ne mn bs kk sq sw gl mr pa si km "
    "sn yo so af oc ka be tg sd gu am yi lo uz fo ht ps tk nn mt sa lb my bo tl mg as tt haw ln ha ba "
    "jw su"
).split()
WHISPER_VOCAB_SIZE = 51865


@dataclass(frozen=True)
class SpeechModelPaths:
    weights_dir: Path          # pass this to nava_dub.transcribe.SpeechModels.from_weights_dir
    whisper_ct2: Path
    wav2vec2: Path
    diarization: Path


# --- Whisper tokenizer from tiktoken ranks ----------------------------------------------------

def _byte_level_merges(ranks: dict[bytes, int], enc) -> list[tuple[str, str]]:
    """Recover BPE merges from tiktoken ranks: replaying BPE with lower ranks leaves two parts."""
    merges = []
    for token, rank in ranks.items():
        if len(token) <= 1:          # single bytes, and b"" (rank 50256, an unused slot)
            continue
        parts = [bytes([b]) for b in token]
        while len(parts) > 2:
            pairs = [(ranks.get(parts[i] + parts[i + 1]), i) for i in range(len(parts) - 1)]
            best_rank, i = min((r, i) for r, i in pairs if r is not None and r < rank)
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        merges.append((rank, enc(parts[0]), enc(parts[1])))
    return [(a, b) for _, a, b in sorted(merges)]


def whisper_special_tokens() -> list[str]:
    return (["<|endoftext|>", "<|startoftranscript|>"] + [f"<|{lang}|>" for lang in WHISPER_LANGS]
            + ["<|translate|>", "<|transcribe|>", "<|startoflm|>", "<|startofprev|>", "<|nospeech|>",
               "<|notimestamps|>"]
            + [f"<|{i * 0.02:.2f}|>" for i in range(1501)])


def build_whisper_tokenizer(out_path: Path) -> None:
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode

    ranks = {}
    for line in TIKTOKEN_PATH.read_text().splitlines():
        if line.strip():
            token_b64, rank = line.split()
            ranks[base64.b64decode(token_b64)] = int(rank)
    byte_to_char = bytes_to_unicode()

    def enc(token: bytes) -> str:
        return "".join(byte_to_char[b] for b in token)

    vocab = {enc(t): r for t, r in ranks.items()}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=_byte_level_merges(ranks, enc)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in whisper_special_tokens()])
    assert tok.get_vocab_size() == WHISPER_VOCAB_SIZE and tok.token_to_id("<|en|>") == 50259
    tok.save(str(out_path))


# --- the three models -----------------------------------------------------------------------

def build_tiny_whisper(ct2_dir: Path, work_dir: Path) -> None:
    """Random 2+2-layer Whisper (d_model 64) with the real multilingual vocabulary -> CTranslate2."""
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
    )

    hf_dir = work_dir / "whisper-hf"
    hf_dir.mkdir(parents=True, exist_ok=True)
    build_whisper_tokenizer(hf_dir / "tokenizer.json")
    torch.manual_seed(0)
    eot, sot = 50257, 50258
    cfg = WhisperConfig(vocab_size=WHISPER_VOCAB_SIZE, num_mel_bins=80, d_model=64, encoder_layers=2,
                        decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                        encoder_ffn_dim=128, decoder_ffn_dim=128, max_source_positions=1500,
                        max_target_positions=448, pad_token_id=eot, bos_token_id=eot, eos_token_id=eot,
                        decoder_start_token_id=sot, begin_suppress_tokens=[220, eot], suppress_tokens=[])
    model = WhisperForConditionalGeneration(cfg).eval()
    # CTranslate2 reads lang_to_id (-> is_multilingual) and alignment_heads from the generation config.
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot, eos_token_id=eot, pad_token_id=eot, bos_token_id=eot,
        begin_suppress_tokens=[220, eot], suppress_tokens=[], max_length=448, no_timestamps_token_id=50363,
        is_multilingual=True, lang_to_id={f"<|{lang}|>": 50259 + i for i, lang in enumerate(WHISPER_LANGS)},
        task_to_id={"transcribe": 50359, "translate": 50358}, alignment_heads=[[1, 0], [1, 1]])
    model.save_pretrained(hf_dir)
    WhisperFeatureExtractor(feature_size=80).save_pretrained(hf_dir)
    TransformersConverter(str(hf_dir), copy_files=["tokenizer.json", "preprocessor_config.json"]).convert(
        str(ct2_dir), quantization="int8", force=True)


def build_tiny_wav2vec2(out_dir: Path) -> None:
    """Random Wav2Vec2ForCTC (hidden 32, 2 layers) with a wav2vec2-base-960h style character vocab."""
    import torch
    from transformers import (
        Wav2Vec2Config,
        Wav2Vec2CTCTokenizer,
        Wav2Vec2FeatureExtractor,
        Wav2Vec2ForCTC,
        Wav2Vec2Processor,
    )

    out_dir.mkdir(parents=True, exist_ok=True)
    chars = ["<pad>", "<s>", "</s>", "<unk>", "|"] + list("ETAONIHSRDLUMWCFGYPBVK'XJQZ")
    (out_dir / "vocab.json").write_text(json.dumps({c: i for i, c in enumerate(chars)}))
    tokenizer = Wav2Vec2CTCTokenizer(str(out_dir / "vocab.json"), unk_token="<unk>", pad_token="<pad>",
                                     word_delimiter_token="|")
    features = Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=SAMPLE_RATE_HZ, padding_value=0.0,
                                        do_normalize=True, return_attention_mask=False)
    Wav2Vec2Processor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(out_dir)
    torch.manual_seed(0)
    cfg = Wav2Vec2Config(vocab_size=len(chars), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, conv_dim=(32,) * 7, num_conv_pos_embeddings=16,
                         num_conv_pos_embedding_groups=2, pad_token_id=0, feat_extract_norm="group",
                         do_stable_layer_norm=False)
    Wav2Vec2ForCTC(cfg).save_pretrained(out_dir)


def _save_pyannote_checkpoint(model, path: Path) -> None:
    import lightning
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                  "hparams_name": "kwargs", "pytorch-lightning_version": lightning.__version__}
    model.on_save_checkpoint(checkpoint)       # adds the pyannote.audio block (architecture, specifications)
    torch.save(checkpoint, path)


_DIARIZATION_CONFIG = """\
pipeline:
  name: pyannote.audio.pipelines.SpeakerDiarization
  params:
    segmentation: $model/segmentation
    embedding: $model/embedding
    plda: $model/plda
    clustering: VBxClustering
    segmentation_step: 0.5    # 50 % overlap: 5x fewer windows than pyannote's 0.1
    embedding_batch_size: 8
    segmentation_batch_size: 8
params:
  segmentation:
    threshold: 0.5
    min_duration_off: 0.0
  clustering:
    threshold: 0.6
    Fa: 0.07
    Fb: 0.8
"""


def build_timbre_xvector():
    """An XVectorMFCC whose weights are set by hand, not trained: every TDNN layer passes the 40
    MFCCs through (as +x/-x channel pairs, which survive LeakyReLU: lrelu(x) - lrelu(-x) = 1.01 x)
    and the embedding is the mean of MFCC 1..39 over the speech (the spectral envelope). Random
    weights cluster by chance; this one separates voices recorded through different channels,
    so the diarization test can check who speaks when."""
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import XVectorMFCC

    model = XVectorMFCC(dimension=64)
    convs = [m for m in model.tdnns if isinstance(m, torch.nn.Conv1d)]
    n_mfcc = model.hparams.mfcc["n_mfcc"]
    with torch.no_grad():
        for i, conv in enumerate(convs):
            conv.weight.zero_()
            conv.bias.zero_()
            mid = conv.kernel_size[0] // 2          # centre tap only: no mixing across time
            for k in range(n_mfcc):
                if i == 0:
                    conv.weight[2 * k, k, mid], conv.weight[2 * k + 1, k, mid] = 1.0, -1.0
                else:
                    conv.weight[2 * k, 2 * k, mid], conv.weight[2 * k, 2 * k + 1, mid] = 1.0, -1.0
                    conv.weight[2 * k + 1, 2 * k, mid], conv.weight[2 * k + 1, 2 * k + 1, mid] = -1.0, 1.0
        model.embedding.weight.zero_()
        model.embedding.bias.zero_()
        for j, k in enumerate(range(1, n_mfcc)):    # skip MFCC 0 (loudness is not timbre)
            model.embedding.weight[j, 2 * k], model.embedding.weight[j, 2 * k + 1] = 1.0, -1.0
    model.specifications = Specifications(problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK,
                                          duration=5.0)
    return model


def build_tiny_diarization(out_dir: Path) -> None:
    """Pipeline folder like pyannote/speaker-diarization-community-1: the REAL segmentation weights
    bundled in the whisperx wheel (multilabel, hence the threshold), the hand-set MFCC x-vector
    and a random PLDA (VBx needs one; with n_speakers given, k-means does the final split)."""
    import whisperx

    rng = np.random.default_rng(0)
    seg_path = out_dir / "segmentation" / "pytorch_model.bin"
    seg_path.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(Path(whisperx.__file__).parent / "assets" / "pytorch_model.bin", seg_path)
    _save_pyannote_checkpoint(build_timbre_xvector(), out_dir / "embedding" / "pytorch_model.bin")
    dim_xvec, dim_lda = 64, 32
    (out_dir / "plda").mkdir(exist_ok=True)
    lda, _ = np.linalg.qr(rng.standard_normal((dim_xvec, dim_xvec)))
    np.savez(out_dir / "plda" / "xvec_transform.npz", mean1=np.zeros(dim_xvec), mean2=np.zeros(dim_lda),
             lda=lda[:, :dim_lda])
    rotation, _ = np.linalg.qr(rng.standard_normal((dim_lda, dim_lda)))
    np.savez(out_dir / "plda" / "plda.npz", mu=np.zeros(dim_lda), tr=rotation, psi=np.linspace(5.0, 0.1, dim_lda))
    (out_dir / "config.yaml").write_text(_DIARIZATION_CONFIG)


def build_speech_models(root: Path) -> SpeechModelPaths:
    """Write all three tiny models under root/speech/ (the weights-dir layout) and return their paths."""
    os.environ["PYANNOTE_METRICS_ENABLED"] = "false"
    os.environ["HF_HUB_OFFLINE"] = "1"
    speech = root / "speech"
    paths = SpeechModelPaths(weights_dir=root, whisper_ct2=speech / "whisper-ct2",
                             wav2vec2=speech / "wav2vec2-en", diarization=speech / "diarization")
    build_tiny_whisper(paths.whisper_ct2, root / "work")
    build_tiny_wav2vec2(paths.wav2vec2)
    build_tiny_diarization(paths.diarization)
    shutil.rmtree(root / "work")
    return paths


_SESSION_MODELS: dict = {}      # built once per pytest process


def session_speech_models(tmp_path_factory) -> SpeechModelPaths:
    """One model set per pytest process, whichever fixture asks first (modules and conftest alike)."""
    if "paths" not in _SESSION_MODELS:
        _SESSION_MODELS["paths"] = build_speech_models(tmp_path_factory.mktemp("speech-weights"))
    return _SESSION_MODELS["paths"]


@contextmanager
def torch_threads(n_threads: int) -> Iterator[None]:
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n_threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# --- synthetic two-voice dialogue -----------------------------------------------------------

@dataclass(frozen=True)
class Voice:
    espeak_name: str
    words_per_minute: int
    pitch: int
    lowpass_hz: int | None = None     # a band-limited channel (another microphone, a phone)


# A and B differ in espeak voice, pitch and channel: B is heard through a 1 kHz low-pass, which
# the hand-set MFCC embedding of build_timbre_xvector tells apart reliably.
VOICE_A = Voice("en-us", 150, 50)
VOICE_B = Voice("en-gb+f3", 140, 70, lowpass_hz=1000)
DIALOGUE = (
    (VOICE_A, "Good morning everyone. Today we will talk about the weather and the mountains."),
    (VOICE_B, "That sounds wonderful. I love the mountains in the spring."),
    (VOICE_A, "Then let us begin with the clouds over the northern valley."),
)


@dataclass(frozen=True)
class Utterance:
    start_s: float
    end_s: float
    voice: str
    text: str


@dataclass(frozen=True)
class Dialogue:
    path: Path                          # 16 kHz mono wav
    waveform: np.ndarray                # [S] float32
    sample_rate_hz: int
    utterances: tuple[Utterance, ...]


def _espeak(voice: Voice, text: str, path: Path) -> np.ndarray:
    subprocess.run(["espeak-ng", "-v", voice.espeak_name, "-s", str(voice.words_per_minute), "-p",
                    str(voice.pitch), "-w", str(path), text], check=True)
    # four cascaded 2-pole low-passes: a steep band limit
    band = ",".join([f"lowpass=f={voice.lowpass_hz}"] * 4) if voice.lowpass_hz else None
    return decode_mono_16k(path, band)


def decode_mono_16k(path: Path, audio_filter: str | None = None) -> np.ndarray:
    """Any audio file -> [S] float32 at 16 kHz mono, through the ffmpeg CLI."""
    filters = ["-af", audio_filter] if audio_filter else []
    raw = subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-i", str(path), *filters, "-f", "f32le",
                          "-ac", "1", "-ar", str(SAMPLE_RATE_HZ), "-"], check=True, capture_output=True).stdout
    return np.frombuffer(raw, dtype=np.float32).copy()


def _speech_bounds(wave: np.ndarray) -> tuple[int, int]:
    """First and last sample above -40 dBFS: espeak pads its files with a little silence."""
    loud = np.flatnonzero(np.abs(wave) > 0.01)
    return int(loud[0]), int(loud[-1]) + 1


def synth_dialogue(folder: Path, gap_s: float = 0.8, lines=DIALOGUE) -> Dialogue:
    """Concatenate espeak utterances with gap_s of silence between them; utterance times are the
    speech bounds inside each piece, so they are exact to the sample."""
    folder.mkdir(parents=True, exist_ok=True)
    gap = np.zeros(round(gap_s * SAMPLE_RATE_HZ), dtype=np.float32)
    pieces, utterances, offset = [], [], 0
    for i, (voice, text) in enumerate(lines):
        wave = _espeak(voice, text, folder / f"line{i}.wav")
        first, last = _speech_bounds(wave)
        utterances.append(Utterance((offset + first) / SAMPLE_RATE_HZ, (offset + last) / SAMPLE_RATE_HZ,
                                    voice.espeak_name, text))
        pieces += [wave, gap]
        offset += len(wave) + len(gap)
    waveform = np.concatenate(pieces[:-1])
    path = folder / "dialogue16k.wav"
    _write_wav_mono(path, waveform)
    return Dialogue(path, waveform, SAMPLE_RATE_HZ, tuple(utterances))


TEST_SPEECH_OPTIONS = dict(language="en", n_threads=1, batch_size=4, max_decode_tokens=24,
                           chunk_s=6.0)   # random alignment packs a chunk's words at its start: one region per chunk


def session_speech_stack(tmp_path_factory):
    """One nava_dub SpeechStack per pytest process over the session's tiny models: the conftest
    fixture returns it and the transcriber and diarizer below are its models, so they load once."""
    if "stack" not in _SESSION_MODELS:
        from nava_dub.pipeline import SpeechStack
        from nava_dub.transcribe import SpeechOptions

        paths = session_speech_models(tmp_path_factory)
        options = SpeechOptions(**TEST_SPEECH_OPTIONS, cache_dir=tmp_path_factory.mktemp("speech-cache"))
        _SESSION_MODELS["stack"] = SpeechStack(paths.weights_dir, options)
    return _SESSION_MODELS["stack"]


def session_transcriber(tmp_path_factory):
    """A loaded nava_dub Transcriber over the session's tiny models."""
    transcriber, _ = session_speech_stack(tmp_path_factory).models()
    return transcriber


def session_diarizer(tmp_path_factory):
    _, diarizer = session_speech_stack(tmp_path_factory).models()
    return diarizer


def session_dialogue_analysis(tmp_path_factory):
    """(spans, turns) of the session dialogue: transcribed, and diarized with n_speakers=2."""
    if "analysis" not in _SESSION_MODELS:
        dialogue = session_dialogue(tmp_path_factory)
        with torch_threads(1):
            spans = session_transcriber(tmp_path_factory)(dialogue.waveform)
            turns = session_diarizer(tmp_path_factory)(dialogue.waveform, n_speakers=2)
        _SESSION_MODELS["analysis"] = (spans, turns)
    return _SESSION_MODELS["analysis"]


def session_dialogue(tmp_path_factory) -> Dialogue:
    if "dialogue" not in _SESSION_MODELS:
        _SESSION_MODELS["dialogue"] = synth_dialogue(tmp_path_factory.mktemp("dialogue"))
    return _SESSION_MODELS["dialogue"]


def _write_wav_mono(path: Path, waveform: np.ndarray) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-f", "f32le", "-ac", "1", "-ar",
                    str(SAMPLE_RATE_HZ), "-i", "-", "-c:a", "pcm_s16le", str(path)],
                   input=waveform.astype(np.float32).tobytes(), check=True)


__all__ = ["SpeechModelPaths", "build_speech_models", "session_speech_models", "synth_dialogue",
           "session_dialogue", "session_speech_stack", "session_transcriber", "session_diarizer", "session_dialogue_analysis",
           "torch_threads", "Dialogue",
           "Utterance", "Voice",
           "decode_mono_16k"]
