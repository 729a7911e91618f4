"""The order of things: the only module that knows it. Entry points call these; nothing else does.

analyse(): probe → (transcript file | ASR + diarization) → spans with speakers.
plan_input(): analyse() → generation windows.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path

from nava_dub import media
from nava_dub.errors import DubError
from nava_dub.options import DubOptions, PlanOptions
from nava_dub.plan import plan_windows, window_summary
from nava_dub.progress import ProgressFn, silent
from nava_dub.timeline import Span, Window
from nava_dub.transcribe import SAMPLE_RATE_HZ, SpeechOptions


@dataclass(frozen=True)
class Analysis:
    info: media.MediaInfo
    spans: tuple[Span, ...]
    speakers: tuple[str, ...]
    turns: tuple = ()           # diarization turns (empty when the transcript came from a file)


@dataclass(frozen=True)
class PlanResult:
    analysis: Analysis
    windows: tuple[Window, ...]


class SpeechStack:
    """The ASR and diarization models: loaded on first use, then kept for every later input."""

    def __init__(self, weights_dir: Path, options: SpeechOptions = SpeechOptions()) -> None:
        self.weights_dir, self.options = weights_dir, options
        self._models: tuple | None = None

    def models(self, progress: ProgressFn = silent) -> tuple:
        if self._models is None:
            from nava_dub.diarize import load_diarizer
            from nava_dub.transcribe import load_transcriber
            progress("load speech models", 0, 2)
            transcriber = load_transcriber(self.weights_dir, self.options)
            progress("load speech models", 1, 2)
            self._models = transcriber, load_diarizer(self.weights_dir, self.options.device)
            progress("load speech models", 2, 2)
        return self._models


def analyse(input_path: Path, *, transcript_path: Path | None, speech: SpeechStack,
            n_speakers: int | None = None, progress: ProgressFn = silent) -> Analysis:
    """The input's spans with speakers: from a transcript file, or recognised from its speech."""
    info = media.probe(input_path)
    media.require_audio(info)
    if transcript_path is not None:
        from nava_dub.transcript import read_transcript
        transcript = read_transcript(transcript_path, duration_s=info.duration_s)
        return Analysis(info, transcript.spans, transcript.speakers)
    from nava_dub.diarize import assign_speakers
    transcriber, diarizer = speech.models(progress)   # a missing model fails before minutes of decoding
    progress("decode audio", 0, 1)
    waveform = media.read_audio(info, SAMPLE_RATE_HZ, 1)[0]
    progress("decode audio", 1, 1)
    progress("transcribe", 0, 1)
    spans = transcriber(waveform)
    progress("transcribe", 1, 1)
    if not spans:
        raise DubError(f"no speech found in {input_path}",
                       "check that the audio has speech, or pass --transcript with the lines to speak")
    progress("find speakers", 0, 1)
    turns = diarizer(waveform, n_speakers=n_speakers)
    spans = assign_speakers(spans, turns)
    progress("find speakers", 1, 1)
    speakers = tuple(sorted({s.speaker for s in spans if s.speaker}))
    return Analysis(info, tuple(spans), speakers, tuple(turns))


def plan_input(input_path: Path, *, transcript_path: Path | None, speech: SpeechStack,
               plan_options: PlanOptions = PlanOptions(),
               n_speakers: int | None = None, progress: ProgressFn = silent) -> PlanResult:
    plan_options.validate()
    analysis = analyse(input_path, transcript_path=transcript_path, speech=speech,
                       n_speakers=n_speakers, progress=progress)
    windows = plan_windows(analysis.spans, analysis.info.duration_s, plan_options)
    return PlanResult(analysis, windows)


def plan_summary(result: PlanResult) -> dict:
    """The plan as JSON (documented in the README)."""
    info = result.analysis.info
    return {
        "input": str(info.path),
        "duration_s": round(info.duration_s, 4),
        "fps": str(info.video.fps) if info.video else None,
        "speakers": list(result.analysis.speakers),
        "spans": [{"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "speaker": s.speaker,
                   "text": s.text} for s in result.analysis.spans],
        "windows": [window_summary(w) for w in result.windows],
    }



# --- dub -------------------------------------------------------------------------------------------

NAVA_COMPONENTS = {"transformer", "video_vae", "text_encoder", "tokenizer", "audio_vae", "speaker_encoder"}
UNNAMED_SPEAKER = "UNNAMED"   # the speaker of transcript lines that name none


@dataclass(frozen=True)
class DubReport:
    output: Path
    record: Path
    n_windows: int
    n_cached: int
    references: dict        # speaker -> where the voice came from (a --ref file or a cut written beside the output)
    notes: tuple[str, ...]
    timings_s: dict


class _Timer:
    """Seconds per stage, summed over the run (for the run record and the issue's time split)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start


def dub(input_path: Path, options: DubOptions, *, speech: SpeechStack | None = None, models=None,
        progress: ProgressFn = silent) -> DubReport:
    """Re-voice input_path into options.output. Everything is checked before any model loads."""
    from nava_dub import assemble, dub_window
    from nava_dub.cache import WindowCache, cache_dir_for
    from nava_dub.references import check_ref_speakers, parse_refs
    from nava_dub.weights import require_weights

    timer = _Timer()
    options.validate(input_path)
    with timer("probe"):
        info = media.probe(input_path)
        media.require_video(info)
        media.require_audio(info)
    media.check_output_path(info, options.output)
    refs = parse_refs(list(options.refs))
    if options.face_hint:
        from nava_dub.face import parse_face_hint
        parse_face_hint(options.face_hint)
    weight_paths = require_weights(options.weights_dir, NAVA_COMPONENTS)
    speech = speech or SpeechStack(options.weights_dir)
    with timer("front end"):
        analysis = _named(analyse(input_path, transcript_path=options.transcript, speech=speech, progress=progress))
        windows = plan_windows(analysis.spans, info.duration_s, PlanOptions(speakers=options.speakers))
    revoiced = sorted({s.speaker for w in windows for s in w.spans})
    check_ref_speakers(refs, list(analysis.speakers))
    with timer("references"):
        voices, origins = dub_window.reference_voices(info, analysis, revoiced, refs, options)
    cache = WindowCache(cache_dir_for(options.output), enabled=options.use_cache)
    loaded: dict = {"models": models}

    def nava():   # models and voice embeddings load on the first window the cache does not hold
        if loaded["models"] is None:
            with timer("load models"):
                loaded["models"] = dub_window.load_dub_models(options, weight_paths, progress)
        if "embeddings" not in loaded:
            loaded["embeddings"] = dub_window.embed_voices(loaded["models"], voices)
        return loaded["models"], loaded["embeddings"]

    results, notes, window_log = [], [], []
    for window in windows:
        key = dub_window.cache_key(info, window, options, voices, weight_paths)
        started = time.perf_counter()
        with timer("model"):
            result = cache.load(key)
            cached = result is not None
            if result is None:
                result = dub_window.generate_window(*nava(), info, window, options, progress)
                cache.store(key, result)
        results.append(result)
        window_log.append({"index": window.index, "seconds": round(time.perf_counter() - started, 3),
                           "cached": cached, "note": result.note})
        if result.note:
            notes.append(f"window {window.index}: {result.note}")
    n_cached = sum(entry["cached"] for entry in window_log)
    geometry = dub_window.window_geometry(info, options)
    with timer("decode source audio"):
        source_audio = media.read_audio(info, info.audio.sample_rate_hz, None)
    with timer("compositing audio"):
        new_audio = assemble.assemble_audio(info, source_audio, windows, results, options.audio_mode,
                                            options.margin_s)
    picture = assemble.composited_frames(info, windows, results, geometry) if assemble.picture_changed(results) else None
    n_frames = info.video.n_frames_at(info.video.fps)
    with timer("compositing and encode"):
        media.write_output(info, options.output, video=picture,
                           audio=media.AudioTrack(new_audio, info.audio.sample_rate_hz), codec=options.codec,
                           on_progress=lambda done: progress("encode", done, n_frames))
    from nava_dub.record import write_run_record
    record = write_run_record(options.output, {
        "input": str(input_path), "output": str(options.output), "options": options,
        "weights": {c: {"path": str(p), "size_bytes": p.stat().st_size if p.is_file() else None}
                    for c, p in weight_paths.items()},
        "seed": options.seed, "references": origins, "plan": plan_summary(PlanResult(analysis, windows)),
        "windows": window_log,
        "timings_s": {k: round(v, 3) for k, v in timer.seconds.items()}, "notes": notes})
    return DubReport(options.output, record, len(windows), n_cached, origins, tuple(notes), timer.seconds)


def _named(analysis: Analysis) -> Analysis:
    """Lines without a speaker belong to one unnamed speaker, who needs a voice like any other."""
    if all(s.speaker for s in analysis.spans):
        return analysis
    from dataclasses import replace
    spans = tuple(s if s.speaker else replace(s, speaker=UNNAMED_SPEAKER) for s in analysis.spans)
    return replace(analysis, spans=spans, speakers=tuple(sorted({s.speaker for s in spans})))
