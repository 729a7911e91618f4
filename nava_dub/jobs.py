"""NAVA's own tasks from its JSONL format: text -> audio+video, first image -> audio+video, text -> audio.

One JSON object per line (blank lines are skipped), NAVA's fields plus one of ours:

    {"prompt": "...", "image_path": "first.png", "spk_wavs": ["voice1.wav", "voice2.wav"], "task": "t2a"}

* `prompt` (or NAVA's legacy `text`): the caption, speech inside `<S>...<E>`.
* `image_path` (optional): the first frame; it makes the line an image-to-audio+video task (TI2AV).
* `spk_wavs` (optional): one reference per `<S>` span, in order (any number; a voice used for several
  spans is listed once per span: NAVA's silent broadcast of one file to every span is an error here).
* `task` (optional, ours): "t2av", "ti2av" or "t2a". Text-to-audio is chosen per line with
  `"task": "t2a"`, so one file can hold every task; without it a line is "ti2av" when it has an
  image, else "t2av". Unknown keys are errors, so a misspelt field is not silently ignored.

Relative paths are looked up beside the JSONL file first, then in the current directory (NAVA's
rule). Every line is checked (fields, files, speaker counts, prompt length in umT5 tokens) before
any model loads; errors name the line. Output `{index:04d}-{slug}.mp4` (H.264 + AAC, 24 fps) or
`.wav` (16 kHz stereo) in the output folder, written atomically; an output that exists is skipped,
so an interrupted run resumes. Line i's seed is `options.seed + i`: a line's result does not depend on
which other lines ran. Models load in two phases (umT5 and ReDimNet, which encode every line and
are released, then the transformer and codecs), so the two largest never share the memory; the
memory plan of the largest line (`--memory`) places them and sets passes per call and VAE tiles.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nava_dub.errors import DubError, UsageError
from nava_dub.options import GuidanceOptions, Shortcuts
from nava_dub.progress import ProgressFn, silent
from nava_dub.text import SPEAKER_SLOT, prepare_prompt
from nava_dub.timeline import DEFAULT_LATENT_FRAMES, MAX_LATENT_FRAMES, NAVA_FPS

TASKS = ("t2av", "ti2av", "t2a")
KEYS = {"prompt", "text", "image_path", "spk_wavs", "task"}
DEFAULT_SIZE_PX = (704, 1280)     # NAVA's default height x width for text-to-video
REFERENCE_RATE_HZ = 16000         # ReDimNet hears 16 kHz
SLUG_CHARS = 32


@dataclass(frozen=True)
class JobOptions:
    """How every line of a jobs file is generated."""

    n_latent_frames: int = DEFAULT_LATENT_FRAMES   # 37 = 145 frames = 6.04 s
    height_px: int | None = None      # None: 704x1280 for t2av, the image's bucket for ti2av (as NAVA)
    width_px: int | None = None
    steps: int = 50
    seed: int = 100                   # NAVA's --seed default; line i uses seed + i
    guidance: GuidanceOptions = field(default_factory=GuidanceOptions)
    device: str = "auto"              # auto, cpu, cuda, cuda:N
    vocoder_48k: bool = False         # write the vocoder's 48 kHz sound instead of NAVA's 16 kHz
    memory: str = "auto"              # GPU memory mode (nava_dub.memory): auto | max | balanced | low
    shortcuts: Shortcuts = Shortcuts()  # fewer passes per step (off: NAVA's sampling)

    def validate(self) -> JobOptions:
        if not 1 <= self.n_latent_frames <= MAX_LATENT_FRAMES:
            raise UsageError(f"--frames {self.n_latent_frames} latent frames is out of range",
                             f"use 1 to {MAX_LATENT_FRAMES} (37 = 6.04 s, NAVA's default)")
        if (self.height_px is None) != (self.width_px is None) or any(
                v is not None and (v <= 0 or v % 16) for v in (self.height_px, self.width_px)):
            raise UsageError(f"size {self.width_px}x{self.height_px} is not two positive multiples of 16",
                             "give both --width and --height, e.g. 1280 and 704, or neither")
        if not 1 <= self.steps <= 1000:
            raise UsageError(f"--steps {self.steps} is out of range", "use 1 to 1000 (NAVA uses 50)")
        from nava_dub.memory import check_mode
        check_mode(self.memory)
        return self


@dataclass(frozen=True)
class Job:
    """One checked line of a jobs file."""

    index: int                        # 0-based among the file's jobs
    line_number: int                  # 1-based line of the file
    task: str                         # t2av | ti2av | t2a
    prompt: str
    image_path: Path | None = None
    speaker_wavs: tuple[Path, ...] = ()

    @property
    def output_name(self) -> str:
        slug = re.sub(r"\W+", "-", self.prompt).strip("-")[:SLUG_CHARS].strip("-") or "clip"
        return f"{self.index:04d}-{slug}.{'wav' if self.task == 't2a' else 'mp4'}"


@dataclass(frozen=True)
class JobResult:
    job: Job
    path: Path
    status: str                       # "written" | "skipped"


# --- reading and checking the file ---------------------------------------------------------------

def read_jobs(jobs_path: str | Path) -> list[Job]:
    """Every job of a JSONL file, each line checked; the first bad line raises, naming its number."""
    jobs_path = Path(jobs_path)
    try:
        lines = jobs_path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise UsageError(f"cannot read the jobs file {jobs_path}: {err}", "give a UTF-8 JSONL file") from err
    jobs: list[Job] = []
    for number, line in enumerate(lines, start=1):
        if line.strip():
            try:
                jobs.append(_parse_line(line, len(jobs), number, jobs_path.parent))
            except DubError as err:
                raise UsageError(f"{jobs_path} line {number}: {err.message}", err.hint) from err
    if not jobs:
        raise UsageError(f"{jobs_path} holds no jobs", 'write one JSON object per line, e.g. {"prompt": "..."}')
    return jobs


def _parse_line(line: str, index: int, number: int, base: Path) -> Job:
    try:
        entry = json.loads(line)
    except json.JSONDecodeError as err:
        raise UsageError(f"not JSON ({err.msg} at column {err.colno})", "write one JSON object per line") from err
    if not isinstance(entry, dict):
        raise UsageError(f"a JSON {type(entry).__name__}, not an object", 'write {"prompt": "..."}')
    unknown = sorted(set(entry) - KEYS)
    if unknown:
        raise UsageError(f"unknown field(s) {', '.join(unknown)}", f"use only {', '.join(sorted(KEYS))}")
    prompt = entry.get("prompt", entry.get("text"))
    if not isinstance(prompt, str) or not prompt.strip():
        raise UsageError("no prompt", 'give the caption as "prompt": "..."')
    image = _path(entry["image_path"], base, "image_path") if entry.get("image_path") is not None else None
    task = entry.get("task", "ti2av" if image else "t2av")
    if task not in TASKS or (task == "ti2av") != (image is not None):
        raise UsageError(f"task {task!r} with{'' if image else 'out'} an image_path",
                         'use "ti2av" with an image_path, "t2av" or "t2a" without one')
    wavs = entry.get("spk_wavs") or []
    if not isinstance(wavs, list) or not all(isinstance(w, str) for w in wavs):
        raise UsageError(f"spk_wavs is {wavs!r}, not a list of paths", 'write "spk_wavs": ["voice.wav"]')
    n_spans = prepare_prompt(prompt).count(SPEAKER_SLOT)
    if wavs and len(wavs) != n_spans:
        raise UsageError(f"{len(wavs)} spk_wavs for {n_spans} `<S>` spans in the prompt",
                         "list one reference per `<S>...<E>` span, in order (repeat a voice for its spans)")
    return Job(index, number, task, prompt, image, tuple(_path(w, base, "spk_wavs") for w in wavs))


def _path(value: Any, base: Path, what: str) -> Path:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{what} {value!r} is not a path", f'write "{what}" as a file path')
    path = Path(value).expanduser()
    candidates = [path] if path.is_absolute() else [base / path, Path.cwd() / path]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise UsageError(f"{what} file not found: {' or '.join(str(c) for c in candidates)}",
                     "give an absolute path, or one relative to the jobs file")


# --- running ---------------------------------------------------------------------------------------

def run_jobs(jobs_path: str | Path, out_dir: str | Path, *, weights_dir: str | Path,
             options: JobOptions = JobOptions(), progress: ProgressFn = silent) -> list[JobResult]:
    """Generate every job of the file whose output is not in out_dir yet; results in file order."""
    from nava_dub.weights import require_weights

    options = options.validate()
    jobs, out_dir, weights_dir = read_jobs(jobs_path), Path(out_dir), Path(weights_dir)
    _check_out_dir(out_dir)
    pending = [j for j in jobs if not (out_dir / j.output_name).exists()]
    if pending:
        require_weights(weights_dir, _components(pending))    # every file checked before any loads
        inputs = [_read_inputs(job) for job in pending]        # unreadable media fail before the models
        plan = _memory_plan(weights_dir, pending, inputs, options)
        prepared = _encode_all(weights_dir, pending, inputs, options, plan, progress)
        _generate_all(weights_dir, pending, prepared, out_dir, options, plan, progress)
    return [JobResult(j, out_dir / j.output_name, "written" if j in pending else "skipped") for j in jobs]


def _components(jobs: list[Job]) -> set[str]:
    needed = {"transformer", "text_encoder", "tokenizer", "audio_vae"}
    needed |= {"video_vae"} if any(j.task != "t2a" for j in jobs) else set()
    return needed | ({"speaker_encoder"} if any(j.speaker_wavs for j in jobs) else set())


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"the output {out_dir} is a file, not a folder", "give a folder with -o")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create the output folder {out_dir}: {err.strerror}",
                         "choose a folder you can write to") from err


@dataclass(frozen=True)
class _Inputs:
    image: Any = None                  # uint8 RGB [H, W, 3]
    references: tuple = ()             # voice.Reference per span


def _read_inputs(job: Job) -> _Inputs:
    from nava_dub import media
    from nava_dub.voice import Reference

    try:
        image = _read_image(job.image_path) if job.image_path else None
        references = tuple(Reference(media.read_audio(path, REFERENCE_RATE_HZ, None), REFERENCE_RATE_HZ)
                           for path in job.speaker_wavs)
        for path, reference in zip(job.speaker_wavs, references, strict=True):
            _check_reference(path, reference)
    except DubError as err:
        raise type(err)(f"line {job.line_number}: {err.message}", err.hint) from err
    return _Inputs(image, references)


def _check_reference(path: Path, reference: Any) -> None:
    """NAVA's reference preprocessing, run once early so a too short or silent file fails before the models."""
    from nava_dub.voice import prepare_reference

    try:
        prepare_reference(reference.waveform, reference.sample_rate_hz)
    except DubError as err:
        raise type(err)(f"{path}: {err.message}", err.hint) from err


def _read_image(path: Path) -> Any:
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.array(image.convert("RGB"))
    except (OSError, UnidentifiedImageError) as err:
        raise UsageError(f"cannot read the image {path}: {err}", "give a PNG or JPEG file") from err


def _memory_plan(weights_dir: Path, jobs: list[Job], inputs: list[_Inputs], options: JobOptions) -> Any:
    """The MemoryPlan of the largest line on the run's device; a GPU too small fails here, before loading."""
    from nava_dub.errors import ModelError
    from nava_dub.estimate import n_passes_per_step
    from nava_dub.memory import GenerationShape, plan_for_device
    from nava_dub.resources import device_info, transformer_facts

    target = device_info(options.device)
    params, _, weights_dtype = transformer_facts(weights_dir, target.kind == "cuda")
    shapes = [GenerationShape(*(_size(job, found, options) if job.task != "t2a" else (0, 0)),
                              options.n_latent_frames, n_passes_per_step(bool(job.speaker_wavs)))
              for job, found in zip(jobs, inputs, strict=True)]
    largest = max(shapes, key=lambda shape: (shape.n_tokens(params), shape.n_passes))
    plan = plan_for_device(params, largest, options.memory, target.kind == "cuda", target.free_bytes, weights_dtype)
    problem = plan.problem(target.name)
    if problem:
        raise ModelError(problem, "use --memory low, a smaller size, or a GPU with more free memory")
    return plan


def _encode_all(weights_dir: Path, jobs: list[Job], inputs: list[_Inputs], options: JobOptions, plan: Any,
                progress: ProgressFn) -> list[tuple[Any, Any]]:
    """(GenerationRequest, Conditioning) per job, with only umT5 (and ReDimNet) loaded."""
    from nava_dub.generate import conditioning_for, speaker_embeddings
    from nava_dub.models import load_models
    from nava_dub.placement import host_components
    from nava_dub.text import tokenize_prompts

    components = {"text_encoder", "tokenizer"} | ({"speaker_encoder"} if any(j.speaker_wavs for j in jobs) else set())
    models = load_models(weights_dir, components=components, device=_device(options.device),
                         on_host=host_components(plan) & components, progress=progress)
    for job in jobs:   # the 512-token limit, for every line before any is encoded
        try:
            tokenize_prompts(models.tokenizer, [job.prompt])
        except DubError as err:
            raise UsageError(f"line {job.line_number}: {err.message}", err.hint) from err
    prepared = []
    for done, (job, found) in enumerate(zip(jobs, inputs, strict=True)):
        progress("encode prompts", done, len(jobs))
        try:
            speakers = speaker_embeddings(models, found.references) if found.references else None
            request = _request(job, found, speakers, options)
            prepared.append((request, conditioning_for(models, request)))
        except DubError as err:
            raise type(err)(f"line {job.line_number}: {err.message}", err.hint) from err
    progress("encode prompts", len(jobs), len(jobs))
    return prepared


def _request(job: Job, found: _Inputs, speakers: Any, options: JobOptions) -> Any:
    from nava_dub.generate import GenerationRequest, scales_from

    size = _size(job, found, options) if job.task != "t2a" else (None, None)
    return GenerationRequest(
        prompt=job.prompt, n_latent_frames=options.n_latent_frames, height_px=size[0], width_px=size[1],
        speaker_embeddings=speakers, first_frame=found.image, steps=options.steps, seed=options.seed + job.index,
        guidance=scales_from(options.guidance), shortcuts=options.shortcuts, vocoder_48k=options.vocoder_48k)


def _size(job: Job, found: _Inputs, options: JobOptions) -> tuple[int, int]:
    """(height, width) of a video line: the options', else the image's bucket (TI2AV), else NAVA's default."""
    from nava_dub.codecs import bucket_for

    if options.height_px and options.width_px:
        return options.height_px, options.width_px
    return bucket_for(found.image.shape[1], found.image.shape[0]) if job.task == "ti2av" else DEFAULT_SIZE_PX


def _generate_all(weights_dir: Path, jobs: list[Job], prepared: list[tuple[Any, Any]], out_dir: Path,
                  options: JobOptions, plan: Any, progress: ProgressFn) -> None:
    from nava_dub.generate import generate
    from nava_dub.placement import load_placed

    components = _components(jobs) - {"text_encoder", "tokenizer", "speaker_encoder"}
    models = load_placed(weights_dir, plan, components=components, device=_device(options.device), progress=progress)
    for job, (request, conditioning) in zip(jobs, prepared, strict=True):
        stage = f"{job.index:04d} {job.task}"
        generated = generate(models, request,
                             lambda s, done, total, stage=stage: progress(f"{stage}: {s}", done, total),
                             conditioning=conditioning, memory=plan)
        _write(out_dir / job.output_name, generated, options)


def _write(path: Path, generated: Any, options: JobOptions) -> None:
    from nava_dub import media

    waveform, rate = ((generated.waveform_48k, generated.sample_rate_48k_hz) if options.vocoder_48k
                      else (generated.waveform_16k, generated.sample_rate_16k_hz))
    if generated.frames is None:
        media.write_wav(path, waveform, rate)
    else:
        media.write_new_video(path, generated.frames, NAVA_FPS, waveform, rate)


def _device(device: str) -> str | None:
    return None if device == "auto" else device
