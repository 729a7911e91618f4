"""whisperx adapter: a 16 kHz mono waveform -> list[Span] with word timings.

Speech regions come from whisperx's pyannote VAD (real segmentation weights shipped in its wheel),
text from faster-whisper (CTranslate2), word timings from wav2vec2 forced alignment. A span is one
VAD speech region (regions closer than `merge_gap_s` joined), so its bounds are where the speech
is, not where a possibly shaky alignment put the first and last letters; words are placed inside.

Every model loads from a local folder under weights/speech/ (weights/README.md); nothing is
downloaded (speech_setup.py, shared with diarize.py, switches the hub offline and silences whisperx's
stdout logger). whisperx's other quirks stay in this file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nava_dub.speech_setup import SAMPLE_RATE_HZ as SAMPLE_RATE_HZ  # re-exported: callers read the rate here
from nava_dub.speech_setup import go_offline, loading, quiet_library_logs, require_model_folder
from nava_dub.timeline import Span, Word

LANGUAGES_WITHOUT_SPACES = ("ja", "zh")    # whisperx aligns these per character
PUNKT_FILES = ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab")


@dataclass(frozen=True)
class SpeechModels:
    """Where the ASR models live: <weights>/speech/{whisper-ct2, wav2vec2-<lang>}."""

    speech_dir: Path

    @classmethod
    def from_weights_dir(cls, weights_dir: Path | str) -> SpeechModels:
        return cls(Path(weights_dir) / "speech")

    @property
    def whisper_dir(self) -> Path:
        return self.speech_dir / "whisper-ct2"

    def align_dir(self, language: str) -> Path:
        return self.speech_dir / f"wav2vec2-{language}"


@dataclass(frozen=True)
class SpeechOptions:
    language: str | None = None        # ISO 639-1 code; None: whisper detects it
    device: str = "cpu"                # "cpu", "cuda" or "cuda:N"
    compute_type: str | None = None    # CTranslate2 type; None: int8 on CPU, float16 on CUDA
    batch_size: int = 8
    n_threads: int = 4                 # CPU threads for CTranslate2
    chunk_s: float = 30.0              # longest audio whisper decodes at once (VAD regions are merged up to it)
    merge_gap_s: float = 0.5           # VAD regions closer than this form one span
    vad_onset: float = 0.5
    vad_offset: float = 0.363
    max_decode_tokens: int | None = None   # cap per chunk (None: whisper's 448); tests use random weights
    cache_dir: Path | None = None      # for generated helper data; None: $XDG_CACHE_HOME/nava-dub


def punkt_data_dir(punkt_language: str, cache_dir: Path | None = None) -> Path:
    """whisperx.align() splits sentences with NLTK's punkt_tab and would download it; empty
    parameter files (default Punkt) are enough, since spans come from VAD regions, not sentences."""
    cache_dir = cache_dir or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "nava-dub"
    root = cache_dir / "nltk_data"
    folder = root / "tokenizers" / "punkt_tab" / punkt_language
    folder.mkdir(parents=True, exist_ok=True)
    for name in PUNKT_FILES:
        (folder / name).touch(exist_ok=True)
    return root


class _RecordingVad:
    """Passes whisperx's pyannote VAD through and keeps its frame scores: whisperx returns only
    the merged chunks it decoded, and we want the speech regions inside them. Not a whisperx
    `Vad` subclass on purpose, so whisperx applies the pyannote preprocessing and merging itself."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.scores = None

    def __call__(self, audio, **kwargs):
        self.scores = self.inner(audio, **kwargs)
        return self.scores


class Transcriber:
    """Loaded ASR + alignment models; call it on a waveform. Load once, reuse for many files."""

    def __init__(self, models: SpeechModels, options: SpeechOptions) -> None:
        go_offline()
        quiet_library_logs()
        require_model_folder(models.whisper_dir, ("model.bin", "tokenizer.json"), "whisper (CTranslate2)")
        if options.language is not None:
            require_model_folder(models.align_dir(options.language), ("config.json",),
                                 f"alignment ({options.language})")
        import whisperx

        device, device_index = _split_device(options.device)
        compute_type = options.compute_type or ("int8" if device == "cpu" else "float16")
        self.models, self.options = models, options
        with loading(models.whisper_dir, "whisper"):
            self.asr = whisperx.load_model(
                str(models.whisper_dir), device, device_index=device_index, compute_type=compute_type,
                language=options.language, vad_method="pyannote", threads=options.n_threads,
                vad_options={"vad_onset": options.vad_onset, "vad_offset": options.vad_offset,
                             "chunk_size": options.chunk_s})
        if options.max_decode_tokens is not None:
            # whisperx's batched decode ignores asr_options["max_new_tokens"]; this is what it reads.
            self.asr.model.max_length = options.max_decode_tokens
        self.vad = _RecordingVad(self.asr.vad_model)
        self.asr.vad_model = self.vad
        self._aligners: dict[str, tuple] = {}

    def __call__(self, waveform: np.ndarray) -> list[Span]:
        if waveform.ndim != 1:
            raise ValueError(f"waveform must be mono [S], got shape {waveform.shape}")
        import whisperx

        audio = np.ascontiguousarray(waveform, dtype=np.float32)
        result = self.asr.transcribe(audio, batch_size=self.options.batch_size, chunk_size=self.options.chunk_s)
        if not result["segments"]:
            return []
        language = result["language"]
        model, metadata = self._aligner(language)
        aligned = whisperx.align(result["segments"], model, metadata, audio, self.options.device)
        chunks = self._chunks()
        joiner = "" if language in LANGUAGES_WITHOUT_SPACES else " "
        spans: list[Span] = []
        for chunk in chunks:
            words = words_in_chunk(aligned["segments"], result["segments"], chunk["start"], chunk["end"])
            regions = merge_close_regions(chunk["segments"], self.options.merge_gap_s)
            spans += spans_from_regions(regions, words, joiner)
        return spans

    def _chunks(self) -> list[dict]:
        """The chunks whisperx decoded, with their VAD regions (same call whisperx made)."""
        from whisperx.vads.pyannote import Pyannote

        return Pyannote.merge_chunks(self.vad.scores, self.options.chunk_s,
                                     onset=self.options.vad_onset, offset=self.options.vad_offset)

    def _aligner(self, language: str) -> tuple:
        if language not in self._aligners:
            import nltk
            import whisperx
            from whisperx.utils import PUNKT_LANGUAGES

            folder = require_model_folder(self.models.align_dir(language), ("config.json",),
                                          f"alignment ({language})")
            nltk_root = str(punkt_data_dir(PUNKT_LANGUAGES.get(language, "english"), self.options.cache_dir))
            if nltk_root not in nltk.data.path:
                nltk.data.path.insert(0, nltk_root)
            with loading(folder, f"alignment ({language})"):
                self._aligners[language] = whisperx.load_align_model(
                    language, self.options.device, model_name=str(folder), model_cache_only=True)
        return self._aligners[language]


def load_transcriber(weights_dir: Path | str, options: SpeechOptions | None = None) -> Transcriber:
    return Transcriber(SpeechModels.from_weights_dir(weights_dir), options or SpeechOptions())


def _split_device(device: str) -> tuple[str, int]:
    kind, _, index = device.partition(":")
    return kind, int(index or 0)


# --- pure: whisperx segments -> spans ---------------------------------------------------------

def words_in_chunk(aligned: list[dict], decoded: list[dict], start_s: float, end_s: float) -> list[Word]:
    """The words of one decoded chunk, each with a time. Aligned segments belong to the chunk that
    contains their start; a segment alignment failed on (no timed words) gets its words spread
    over the segment by character count, so no recognised text is lost."""
    eps_s = 1e-3                                   # whisperx rounds chunk bounds to the millisecond
    inside = [s for s in aligned if start_s - eps_s <= float(s["start"]) <= end_s + eps_s]
    words: list[Word] = []
    for segment in inside:
        timed = [w for w in segment.get("words", []) if "start" in w and "end" in w]
        if timed:
            words += [Word(float(w["start"]), float(w["end"]), w["word"].strip()) for w in timed]
        else:
            words += spread_words(segment["text"], float(segment["start"]), float(segment["end"]))
    if not inside:   # alignment dropped the chunk entirely: fall back to the decoded text
        for segment in decoded:
            if start_s - eps_s <= float(segment["start"]) <= end_s + eps_s:
                words += spread_words(segment["text"], float(segment["start"]), float(segment["end"]))
    return sorted((w for w in words if w.text), key=lambda w: (w.start_s, w.end_s))


def spread_words(text: str, start_s: float, end_s: float) -> list[Word]:
    """Words laid end to end over [start_s, end_s], each as long as its share of the characters."""
    tokens = text.split()
    n_chars = sum(len(t) for t in tokens)
    words, t_s = [], start_s
    for token in tokens:
        d_s = (end_s - start_s) * len(token) / n_chars
        words.append(Word(t_s, t_s + d_s, token))
        t_s += d_s
    return words


def merge_close_regions(regions: list[tuple[float, float]], gap_s: float) -> list[tuple[float, float]]:
    """Join speech regions separated by less than gap_s (a breath is not the end of an utterance)."""
    merged: list[tuple[float, float]] = []
    for start_s, end_s in sorted(regions):
        if merged and start_s - merged[-1][1] < gap_s:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end_s))
        else:
            merged.append((start_s, end_s))
    return merged


def spans_from_regions(regions: list[tuple[float, float]], words: list[Word], joiner: str = " ") -> list[Span]:
    """One span per region that holds words: each word goes to the region it overlaps most (the
    nearest if none), is clipped into it and kept in order without overlapping its neighbour.
    Regions without words (a cough, music) are not speech to re-voice and are dropped."""
    if not regions:
        return []
    owned: list[list[Word]] = [[] for _ in regions]
    for word in words:
        owned[_best_region(regions, word)].append(word)
    spans = []
    for (start_s, end_s), mine in zip(regions, owned, strict=True):
        if mine:
            placed = _place_words(mine, start_s, end_s)
            spans.append(Span(round(start_s, 3), round(end_s, 3), joiner.join(w.text for w in placed),
                              words=tuple(placed)))
    return spans


def _best_region(regions: list[tuple[float, float]], word: Word) -> int:
    overlaps = [min(end_s, word.end_s) - max(start_s, word.start_s) for start_s, end_s in regions]
    best = int(np.argmax(overlaps))
    if overlaps[best] > 0:
        return best
    mid_s = (word.start_s + word.end_s) / 2
    return int(np.argmin([max(start_s - mid_s, mid_s - end_s) for start_s, end_s in regions]))


def _place_words(words: list[Word], start_s: float, end_s: float) -> list[Word]:
    """Clip into [start_s, end_s] (rounded like the span) and make the words non-overlapping."""
    start_s, end_s = round(start_s, 3), round(end_s, 3)
    placed: list[Word] = []
    floor_s = start_s
    for word in words:
        w_start = min(max(word.start_s, floor_s), end_s)
        w_end = min(max(word.end_s, w_start), end_s)
        placed.append(Word(round(w_start, 3), round(w_end, 3), word.text))
        floor_s = placed[-1].end_s
    return placed
