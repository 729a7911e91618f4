"""The order of things: the only module that knows it. Entry points call these; nothing else does.

analyse(): probe → (transcript file | ASR + diarization) → spans with speakers.
plan_input(): analyse() → generation windows.
dub(): checks → analyse → windows → voices → per window (cache | NAVA) → assembly → output and run record;
       with a selection, the same over the selected windows and an excerpt of the input (a preview).
dry_run(), estimate_for(): the same checks and plan, and what the windows would cost, loading nothing.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from nava_dub import media, resources
from nava_dub.errors import DubError, MediaError, ModelError
from nava_dub.options import DubOptions, PlanOptions
from nava_dub.plan import plan_windows, window_summary
from nava_dub.progress import ProgressFn, silent
from nava_dub.selection import Selection, excerpt_start, select_windows, shift_window
from nava_dub.timeline import NAVA_FPS, Span, Window, speakers_of
from nava_dub.transcribe import SAMPLE_RATE_HZ, SpeechOptions

if TYPE_CHECKING:
    from nava_dub.estimate import RunEstimate


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
            n_speakers: int | None = None, progress: ProgressFn = silent,
            info: media.MediaInfo | None = None) -> Analysis:
    """The input's spans with speakers: from a transcript file, or recognised from its speech.

    info: the input already probed and found to have sound (spares probing it again).
    """
    if info is None:
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
    speakers = speakers_of(spans)
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
    preview: dict | None = None   # a preview's selection and excerpt (None: the whole input)


@dataclass(frozen=True)
class DryRun:
    """What `dub --dry-run` shows: the plan, the windows a run would generate and what they would cost."""

    plan: PlanResult
    windows: tuple[Window, ...]
    estimate: RunEstimate


class NavaStack:
    """The NAVA models: loaded on the first window no cache holds, placed by that input's memory plan,
    then kept, with that plan, for every later input (preloaded models are used as they are)."""

    def __init__(self, models=None) -> None:
        self._models = models
        self.plan = None                 # the memory.MemoryPlan the models were placed by (None: preloaded)

    @property
    def loaded(self) -> bool:
        return self._models is not None

    def get(self, options: DubOptions, plan, progress: ProgressFn = silent):   # plan: memory.MemoryPlan
        if self._models is None:
            from nava_dub.dub_window import load_dub_models
            self._models, self.plan = load_dub_models(options, plan, progress), plan
        return self._models


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


@dataclass(frozen=True)
class _Checked:
    """An input and options that passed every check a dub makes before reading voices or loading models."""

    info: media.MediaInfo
    refs: object                     # references.RefChoice
    weight_paths: dict
    analysis: Analysis
    windows: tuple[Window, ...]


@dataclass(frozen=True)
class _Job:
    input_path: Path
    options: DubOptions
    checked: _Checked
    voices: dict
    origins: dict
    cuts: dict                       # {path beside the output: ReferenceClip cut from the input}
    stack: NavaStack
    progress: ProgressFn
    timer: _Timer


def dub(input_path: Path, options: DubOptions, *, speech: SpeechStack | None = None, models=None,
        progress: ProgressFn = silent, selection: Selection | None = None) -> DubReport:
    """Re-voice input_path into options.output; with a selection, only its windows, into an excerpt.

    Everything is checked before any model loads. `models` (loaded Models, or a NavaStack to share
    between inputs) spares loading them.
    """
    from nava_dub import dub_window
    timer = _Timer()
    checked = _check(input_path, options, speech, progress, timer)
    chosen = None if selection is None else select_windows(checked.windows, checked.analysis.spans, selection)
    revoiced = sorted({s.speaker for w in checked.windows for s in w.spans})   # a preview's voices are the run's
    with timer("references"):
        progress("read voices", 0, 1)
        voices, origins, cuts = dub_window.reference_voices(checked.info, checked.analysis, revoiced, checked.refs,
                                                            options)
        progress("read voices", 1, 1)
    stack = models if isinstance(models, NavaStack) else NavaStack(models)
    job = _Job(input_path, options, checked, voices, origins, cuts, stack, progress, timer)
    if selection is None:
        return _render(job, checked.info, checked.windows)
    return _preview(job, selection, chosen)


def dry_run(input_path: Path, options: DubOptions, *, speech: SpeechStack | None = None,
            progress: ProgressFn = silent, selection: Selection | None = None) -> DryRun:
    """Every check a dub makes, its plan and its cost, without cutting voices or loading a model."""
    checked = _check(input_path, options, speech, progress, _Timer())
    _check_reference_files(checked.refs)
    windows = checked.windows if selection is None else select_windows(checked.windows, checked.analysis.spans,
                                                                        selection)
    estimate = resources.estimate_dub(checked.info, windows, options)
    return DryRun(PlanResult(checked.analysis, checked.windows), windows, estimate)


def check_settings(options: DubOptions) -> tuple:
    """The checks of a dub's settings that no input changes, in this order: --ref files, --face, the weights.

    Returns (the parsed references.RefChoice, {component: weight path}).
    """
    from nava_dub.references import parse_refs
    from nava_dub.weights import require_weights

    refs = parse_refs(list(options.refs))
    if options.face_hint:
        from nava_dub.face import parse_face_hint
        parse_face_hint(options.face_hint)
    return refs, require_weights(options.weights_dir, NAVA_COMPONENTS)


def _check(input_path: Path, options: DubOptions, speech: SpeechStack | None, progress: ProgressFn,
           timer: _Timer) -> _Checked:
    from nava_dub.references import check_ref_speakers

    options.validate(input_path)
    with timer("probe"):
        info = media.probe(input_path)
        media.require_video(info)
        media.require_audio(info)
    media.check_output_path(info, options.output)
    refs, weight_paths = check_settings(options)
    speech = speech or SpeechStack(options.weights_dir)
    with timer("front end"):
        analysis = _named(analyse(input_path, transcript_path=options.transcript, speech=speech,
                                  n_speakers=options.n_speakers, progress=progress, info=info))
        windows = plan_windows(analysis.spans, info.duration_s, PlanOptions(speakers=options.speakers))
    check_ref_speakers(refs, list(analysis.speakers))
    return _Checked(info, refs, weight_paths, analysis, windows)


def _check_reference_files(refs) -> None:
    from nava_dub.dub_window import REFERENCE_RATE_HZ
    from nava_dub.references import check_reference_audio
    for path in {p for p in (refs.default, *(p for _, p in refs.per_speaker)) if p is not None}:
        check_reference_audio(path, media.read_audio(media.probe(path), REFERENCE_RATE_HZ, 1), REFERENCE_RATE_HZ)


def _preview(job: _Job, selection: Selection, windows: tuple[Window, ...]) -> DubReport:
    """Dub the selected windows into an excerpt of the input: cut losslessly, read where the full run reads."""
    info = job.checked.info
    start_s, exact = excerpt_start(windows[0].start_s, media.require_video(info).fps, info.audio.sample_rate_hz)
    end_s = windows[-1].end_s
    with _scratch_path(job.options.output, media.EXCERPT_SUFFIX) as path:
        with job.timer("cut excerpt"):
            job.progress("cut excerpt", 0, 1)
            excerpt = media.cut_excerpt(info, path, start_s, end_s - start_s)
            job.progress("cut excerpt", 1, 1)
        preview = {"selection": selection.describe(), "excerpt_start_s": float(start_s), "excerpt_end_s": float(end_s),
                   "exact": exact, "windows": [w.index for w in windows]}
        return _render(job, excerpt, windows, int(start_s * NAVA_FPS), preview)


@contextlib.contextmanager
def _scratch_path(output: Path, suffix: str):
    """A hidden path beside the output, removed afterwards whatever happens."""
    import tempfile
    try:
        fd, name = tempfile.mkstemp(prefix=f".{output.name}.", suffix=f".excerpt{suffix}", dir=output.parent)
    except OSError as e:
        raise MediaError(f"cannot write to the output folder {output.parent}: {e.strerror}",
                         "choose a folder you can write to") from None
    os.close(fd)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def _render(job: _Job, source: media.MediaInfo, windows: tuple[Window, ...], offset_frames: int = 0,
            preview: dict | None = None) -> DubReport:
    """Generate (or take from the cache) each window, put them back into `source`, write the output and its record.

    source is the input, or a preview's excerpt starting offset_frames (24 fps) into it; windows keep the
    input's timeline, so seeds and cache keys are the full run's.
    """
    from nava_dub import dub_window
    options, timer = job.options, job.timer
    # an excerpt off the shared grid reads its picture a fraction of a frame away: keep it out of the cache
    results, window_log, memory = _window_results(job, source, windows, offset_frames,
                                                  use_cache=options.use_cache and (preview is None or preview["exact"]))
    notes = [f"window {entry['index']}: {entry['note']}" for entry in window_log if entry["note"]]
    placed = tuple(shift_window(w, offset_frames) for w in windows)
    _write(job, source, placed, results, reencode_picture=preview is not None)
    dub_window.write_cut_references(job.cuts)
    from nava_dub.record import write_run_record
    record = write_run_record(options.output, {
        "input": str(job.input_path), "output": str(options.output), "options": options,
        "weights": {c: {"path": str(p), "size_bytes": p.stat().st_size if p.is_file() else None}
                    for c, p in job.checked.weight_paths.items()},
        "seed": options.seed, "references": job.origins,
        "plan": plan_summary(PlanResult(job.checked.analysis, job.checked.windows)), "windows": window_log,
        "timings_s": {k: round(v, 3) for k, v in timer.seconds.items()}, "notes": notes,
        **({"memory": memory} if memory else {}), **({"preview": preview} if preview else {})})
    n_cached = sum(entry["cached"] for entry in window_log)
    return DubReport(options.output, record, len(windows), n_cached, job.origins, tuple(notes), timer.seconds, preview)


def _window_results(job: _Job, source: media.MediaInfo, windows: tuple[Window, ...], offset_frames: int,
                    use_cache: bool) -> tuple[list, list[dict], str | None]:
    """(each window's result, its log entry, the memory plan's summary if models ran): from the cache, or
    generated after every missing window's prompt is encoded (the plan may park umT5 before the first sample)."""
    from nava_dub import dub_window
    from nava_dub.cache import WindowCache, cache_dir_for

    cache = WindowCache(cache_dir_for(job.options.output), enabled=use_cache)
    keys = {w.index: dub_window.cache_key(job.checked.info, w, job.options, job.voices, job.checked.weight_paths)
            for w in windows}
    with job.timer("model"):
        results = {w.index: cache.load(keys[w.index]) for w in windows}
    missing = [w for w in windows if results[w.index] is None]
    nava = _Nava(job, windows) if missing else None
    conditions = nava.conditions(missing) if nava else {}
    window_log = []
    for window in windows:
        started = time.perf_counter()
        cached = results[window.index] is not None
        if not cached:
            with job.timer("model"):
                results[window.index] = dub_window.generate_window(
                    nava.models, nava.embeddings, source, window, job.options, job.progress,
                    conditioning=conditions[window.index], memory=nava.plan, source_offset_frames=offset_frames)
                cache.store(keys[window.index], results[window.index])
        window_log.append({"index": window.index, "seconds": round(time.perf_counter() - started, 3),
                           "cached": cached, "note": results[window.index].note})
    return [results[w.index] for w in windows], window_log, nava.plan.summary() if nava else None


class _Nava:
    """The models placed by the run's memory plan, the voices' embeddings and the windows' prompt conditions."""

    def __init__(self, job: _Job, windows: tuple[Window, ...]) -> None:
        from nava_dub import dub_window
        self.job = job
        own = resources.estimate_dub(job.checked.info, windows, job.options)
        if not job.stack.loaded:
            check_memory(own)
        with job.timer("load models"):
            self.models = job.stack.get(job.options, own.memory, job.progress)
        # a later input of a batch runs as the first one placed the models (a new plan could not move them)
        self.plan = job.stack.plan or own.memory
        self.embeddings = dub_window.embed_voices(self.models, job.voices)

    def conditions(self, windows: list[Window]) -> dict:
        """Every window's prompt encoded before any samples, so the plan can park umT5 first."""
        from nava_dub import dub_window
        with self.job.timer("encode prompts"):
            return dub_window.window_conditions(self.models, self.embeddings, windows, self.plan, self.job.progress)


def check_memory(estimate: RunEstimate) -> None:
    """Say before loading, not after minutes of it, that the GPU cannot hold the model in the chosen mode."""
    if not estimate.fits:
        raise ModelError(estimate.problem(), "use --memory low, a smaller --resolution, or a GPU with more free memory")


def _write(job: _Job, source: media.MediaInfo, windows: tuple[Window, ...], results: list,
           reencode_picture: bool) -> None:
    from nava_dub import assemble, dub_window

    options, progress, timer = job.options, job.progress, job.timer
    with timer("decode source audio"):
        progress("decode source audio", 0, 1)
        source_audio = media.read_audio(source, source.audio.sample_rate_hz, None)
        progress("decode source audio", 1, 1)
    with timer("compositing audio"):
        new_audio = assemble.assemble_audio(source, source_audio, windows, results, options.audio_mode,
                                            options.margin_s)
    if assemble.picture_changed(results):
        picture = assemble.composited_frames(source, windows, results, dub_window.window_geometry(source, options))
    else:   # an excerpt's lossless picture is re-encoded, the input's stream-copied
        picture = source.path if reencode_picture else None
    target = _sounding_like(source, job.checked.info) if reencode_picture else source
    n_frames = source.video.n_frames_at(source.video.fps)
    with timer("compositing and encode"):
        progress("encode", 0, n_frames)
        media.write_output(target, options.output, video=picture,
                           audio=media.AudioTrack(new_audio, source.audio.sample_rate_hz), codec=options.codec,
                           on_progress=lambda done: progress("encode", min(done, n_frames - 1), n_frames))
        progress("encode", n_frames, n_frames)


def _sounding_like(excerpt: media.MediaInfo, source: media.MediaInfo) -> media.MediaInfo:
    """The excerpt described with the source's sound codec, so a preview's sound is encoded as the full
    dub's would be (AAC stays AAC) rather than as the excerpt's lossless PCM."""
    sound = replace(excerpt.audio, codec=source.audio.codec, sample_fmt=source.audio.sample_fmt)
    return replace(excerpt, audio_streams=(sound,))


def _named(analysis: Analysis) -> Analysis:
    """Lines without a speaker belong to one unnamed speaker, who needs a voice like any other."""
    if all(s.speaker for s in analysis.spans):
        return analysis
    spans = tuple(s if s.speaker else replace(s, speaker=UNNAMED_SPEAKER) for s in analysis.spans)
    return replace(analysis, spans=spans, speakers=tuple(sorted({s.speaker for s in spans})))
