"""The command line: parses options, draws progress and tables, renders errors, maps them to exit codes.

Nothing heavy is imported at module level, so `nava-dub --help` stays fast; each command imports
the pipeline when it runs. Results (and --json) go to stdout, everything else to stderr.
"""

from __future__ import annotations

import json
import signal
import sys
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape

from nava_dub import __version__
from nava_dub.errors import DubError, UsageError
from nava_dub.options import GuidanceOptions

out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)

app = typer.Typer(
    name="nava-dub",
    help="Re-voice the speech in a video with a reference voice, lips in sync, using the NAVA model.\n\n"
         "[bold]nava-dub INPUT --ref VOICE.wav -o OUT.mp4[/bold] runs the whole dub; the commands below "
         "run its parts.",
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
)
COMMANDS = ("dub", "plan", "transcribe", "check", "generate", "batch", "clear-cache", "weights")
ADVANCED = "Advanced"

Verbose = Annotated[bool, typer.Option("--verbose", "-v", help="Show debug details and tracebacks.")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="Show no progress, only results and errors.")]
WeightsDir = Annotated[Path, typer.Option("--weights", envvar="NAVA_DUB_WEIGHTS",
                                          help="Folder holding the model files (see weights/README.md).")]
TranscriptOpt = Annotated[Path | None, typer.Option(
    "--transcript", "-t", help="Use this transcript (.json or .srt, e.g. edited or translated) instead of recognising speech.")]
SpeakersOpt = Annotated[str | None, typer.Option(
    "--speakers", help="Comma-separated speakers to re-voice (default: all).")]
LanguageOpt = Annotated[str | None, typer.Option("--language", help="Spoken language code (default: detect).")]
NumSpeakersOpt = Annotated[int | None, typer.Option("--num-speakers", min=1, help="How many speakers (default: detect).",
                                                     rich_help_panel=ADVANCED)]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu, cuda, cuda:N or auto.", rich_help_panel=ADVANCED)]


def main(argv: list[str] | None = None) -> None:
    """Console entry point: `nava-dub INPUT ...` without a command means `nava-dub dub INPUT ...`."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and not args[0].startswith("-") and args[0] not in COMMANDS:
        args.insert(0, "dub")
    signal.signal(signal.SIGTERM, _interrupt)   # a scheduler's kill cleans up like Ctrl-C: no temporary files, no locks
    if not {"-v", "--verbose"} & set(args):
        # torchaudio, whisperx and transformers warn about their own internals; stderr is for our progress
        warnings.filterwarnings("ignore")
    app(args=args, prog_name="nava-dub")


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


@app.callback(invoke_without_command=True)
def _root(version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False) -> None:
    if version:
        out.print(f"nava-dub {__version__}")
        raise typer.Exit(0)


# --- rendering ---------------------------------------------------------------------------------

@contextmanager
def reporting(verbose: bool, resumable: bool = False):
    """Turn failures into one `error:` line (and a `help:` line), with the right exit code.

    Messages are escaped: they hold paths and values, and "[1]" in a file name is no markup."""
    try:
        yield
    except DubError as e:
        err.print(f"[bold red]error:[/] {escape(e.message)}", highlight=False, markup=True)
        if e.hint:
            err.print(f"[bold cyan]help:[/] {escape(e.hint)}", highlight=False)
        if verbose:
            err.print("".join(traceback.format_exception(e)), markup=False, highlight=False)
        raise typer.Exit(e.exit_code) from None
    except typer.Exit:
        raise
    except KeyboardInterrupt:
        err.print("[bold red]error:[/] interrupted; nothing was written to the output path")
        if resumable:
            err.print("[bold cyan]help:[/] finished windows are kept: run the same command again to resume")
        raise typer.Exit(130) from None
    except Exception as e:  # a bug: say so, show the cause, ask for a report
        err.print(f"[bold red]error:[/] nava-dub failed unexpectedly: {type(e).__name__}: {escape(str(e))}",
                  markup=True, highlight=False)
        cause = e.__cause__ or e.__context__
        while cause is not None:
            err.print(f"  cause: {type(cause).__name__}: {cause}", markup=False, highlight=False)
            cause = cause.__cause__ or cause.__context__
        if verbose:
            err.print("".join(traceback.format_exception(e)), markup=False, highlight=False)
        else:
            err.print("[bold cyan]help:[/] run again with -v and report the output as an issue")
        raise typer.Exit(1) from None


def progress_reporter(quiet: bool):
    from nava_dub.render import make_reporter
    return make_reporter(err, quiet)


def _speech_options(language: str | None, device: str):
    from nava_dub.transcribe import SpeechOptions
    if device == "auto":
        import torch
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return SpeechOptions(language=language, device=device)


def _speakers(value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    names = tuple(s.strip() for s in value.split(",") if s.strip())
    if not names:
        raise UsageError(f"--speakers {value!r} names no speaker", "e.g. --speakers SPEAKER_00,SPEAKER_01")
    return names


# --- the options of the commands that dub (dub, batch) ------------------------------------------------

RefOpt = Annotated[list[str] | None, typer.Option(
    "--ref", help="Voice to use: FILE for every re-voiced speaker, or SPEAKER=FILE (repeatable). "
                  "Without it, a clean clip of each speaker is cut from the input.")]
VideoModeOpt = Annotated[str, typer.Option("--video", help="face: regenerate the speaker's face only; keep: "
                                          "never touch the picture; full: regenerate each window from its first frame.")]
AudioModeOpt = Annotated[str, typer.Option("--audio", help="speech: regenerate only the re-voiced spans; "
                                          "full: regenerate each window's whole sound.")]
FaceOpt = Annotated[str | None, typer.Option("--face", help="X,Y,W,H: the speaker's face box in source pixels, "
                                                            "when several faces are in the picture.")]
StepsOpt = Annotated[int, typer.Option("--steps", help="Sampling steps (NAVA uses 50).")]
SeedOpt = Annotated[int, typer.Option("--seed", help="Same seed and options, same output.")]
CodecOpt = Annotated[str, typer.Option("--codec", help="Video codec when the picture changes: libx264, libx265, "
                                                      "prores_ks, ffv1.")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Regenerate every window; keep no cache.")]
GUIDANCE = GuidanceOptions()   # NAVA's scales: the defaults of every guidance option
CfgVideo = Annotated[float, typer.Option("--cfg-video", rich_help_panel=ADVANCED)]
CfgAudio = Annotated[float, typer.Option("--cfg-audio", rich_help_panel=ADVANCED)]
CfgVideoAlign = Annotated[float, typer.Option("--cfg-video-align", rich_help_panel=ADVANCED)]
CfgAudioAlign = Annotated[float, typer.Option("--cfg-audio-align", rich_help_panel=ADVANCED)]
CfgTimbre = Annotated[float, typer.Option("--cfg-timbre", rich_help_panel=ADVANCED)]
HoldOpt = Annotated[str, typer.Option("--hold", help="How kept latents follow the source: clean (t=0 tokens) "
                                                    "or noised.", rich_help_panel=ADVANCED)]
ResolutionOpt = Annotated[int, typer.Option("--resolution", help="NAVA's size table: 960 (NAVA's); 640, 512, 256, "
                                                                 "128 scale it down for previews.",
                                            rich_help_panel=ADVANCED)]
Audio48kOpt = Annotated[bool, typer.Option("--audio-48k", help="Use the vocoder's 48 kHz output.",
                                           rich_help_panel=ADVANCED)]
MemoryOpt = Annotated[str, typer.Option("--memory", help="GPU memory mode: auto (from the free memory), max, "
                                                         "balanced or low.", rich_help_panel=ADVANCED)]
GuidanceSigmasOpt = Annotated[str | None, typer.Option(
    "--guidance-sigmas", metavar="LO,HI", help="Fewer passes: guide only at noise levels LO..HI (0..1); other steps "
    "run one pass. Off by default; `python -m bench.quality` shows what it changes.", rich_help_panel=ADVANCED)]
ReuseGuidanceOpt = Annotated[int, typer.Option(
    "--reuse-guidance", metavar="N", help="Fewer passes: after a fully guided step, N steps reuse its guidance "
    "correction with one pass each. 0 (off) by default.", rich_help_panel=ADVANCED)]


def _dub_options(values: dict, output: Path, transcript: Path | None):
    """DubOptions from the parameters every dubbing command shares (`values`: the command's locals())."""
    from nava_dub.options import DubOptions, Shortcuts
    v = values
    return DubOptions(
        output=output, refs=tuple(v["ref"] or ()), transcript=transcript, speakers=_speakers(v["speakers"]),
        n_speakers=v["num_speakers"],
        video_mode=v["video"], audio_mode=v["audio"], face_hint=v["face"], steps=v["steps"], seed=v["seed"],
        hold=v["hold"], guidance=GuidanceOptions(v["guidance_video"], v["guidance_audio"], v["guidance_video_align"],
                                                 v["guidance_audio_align"], v["guidance_timbre"]),
        resolution_px=v["resolution"], codec=v["codec"], weights_dir=v["weights"], device=v["device"],
        use_cache=not v["no_cache"], vocoder_48k=v["audio_48k"], memory=v["memory"],
        shortcuts=Shortcuts.parse(v["guidance_sigmas"], v["reuse_guidance"]))


# --- commands ----------------------------------------------------------------------------------


@app.command()
def dub(
    input: Annotated[Path, typer.Argument(help="The video to re-voice.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the dubbed video.",
                                         show_default=False)],
    ref: RefOpt = None,
    transcript: TranscriptOpt = None,
    speakers: SpeakersOpt = None,
    only: Annotated[str | None, typer.Option("--only", help="Preview: dub only START-END (seconds or timecodes, "
                                                            "e.g. 12.5-20), into an excerpt of the input.")] = None,
    span: Annotated[int | None, typer.Option("--span", help="Preview: dub only transcript line N (from 1), "
                                                            "into an excerpt of the input.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything and show the plan, the model "
                                                            "passes, memory and time; load and write nothing.")] = False,
    video: VideoModeOpt = "face",
    audio: AudioModeOpt = "speech",
    face: FaceOpt = None,
    steps: StepsOpt = 50,
    seed: SeedOpt = 0,
    codec: CodecOpt = "libx264",
    no_cache: NoCacheOpt = False,
    language: LanguageOpt = None,
    num_speakers: NumSpeakersOpt = None,
    guidance_video: CfgVideo = GUIDANCE.video,
    guidance_audio: CfgAudio = GUIDANCE.audio,
    guidance_video_align: CfgVideoAlign = GUIDANCE.video_align,
    guidance_audio_align: CfgAudioAlign = GUIDANCE.audio_align,
    guidance_timbre: CfgTimbre = GUIDANCE.timbre,
    hold: HoldOpt = "clean",
    resolution: ResolutionOpt = 960,
    audio_48k: Audio48kOpt = False,
    memory: MemoryOpt = "auto",
    guidance_sigmas: GuidanceSigmasOpt = None,
    reuse_guidance: ReuseGuidanceOpt = 0,
    weights: WeightsDir = Path("weights"),
    device: DeviceOpt = "auto",
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Re-voice INPUT with the reference voice(s), lips in sync, and write the result to -o."""
    with reporting(verbose, resumable=True):
        from nava_dub import pipeline
        from nava_dub.selection import parse_selection
        options = _dub_options(locals(), output, transcript)
        selection = parse_selection(only, span)
        speech = pipeline.SpeechStack(weights, _speech_options(language, device))
        if dry_run:
            _show_dry_run(pipeline.dry_run(input, options, speech=speech, progress=progress_reporter(quiet),
                                           selection=selection))
            return
        report = pipeline.dub(input, options, speech=speech, progress=progress_reporter(quiet), selection=selection)
        excerpt = (f" (preview of {report.preview['excerpt_start_s']:.2f}-{report.preview['excerpt_end_s']:.2f} s)"
                   if report.preview else "")
        out.print(f"{report.output}{excerpt}: {report.n_windows} windows ({report.n_cached} from the cache); "
                  f"run record {report.record}", highlight=False)
        for note in report.notes:
            err.print(f"note: {note}", highlight=False, markup=False)


def _show_dry_run(result) -> None:
    from nava_dub.pipeline import check_memory
    from nava_dub.render import render_estimate, render_plan
    render_plan(out, result.plan)
    if len(result.windows) != len(result.plan.windows):
        out.print(f"preview: windows {', '.join(str(w.index) for w in result.windows)}", highlight=False)
    render_estimate(out, result.estimate)
    check_memory(result.estimate)


@app.command()
def plan(
    input: Annotated[Path, typer.Argument(help="The video to dub.", show_default=False)],
    transcript: TranscriptOpt = None,
    speakers: SpeakersOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON (see README).")] = False,
    steps: StepsOpt = 50,
    resolution: ResolutionOpt = 960,
    memory: MemoryOpt = "auto",
    language: LanguageOpt = None,
    num_speakers: NumSpeakersOpt = None,
    weights: WeightsDir = Path("weights"),
    device: DeviceOpt = "auto",
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Show the transcript, the speakers, the generation windows and their cost, without loading NAVA."""
    with reporting(verbose):
        from nava_dub import pipeline, resources
        from nava_dub.estimate import estimate_summary
        from nava_dub.options import PlanOptions
        result = pipeline.plan_input(
            input, transcript_path=transcript,
            speech=pipeline.SpeechStack(weights, _speech_options(language, device)), n_speakers=num_speakers,
            plan_options=PlanOptions(speakers=_speakers(speakers)), progress=progress_reporter(quiet or as_json))
        estimate = resources.estimate_for(result.analysis.info, result.windows, weights_dir=weights, steps=steps,
                                          resolution_px=resolution, device=device, memory_mode=memory)
        if as_json:
            out.print_json(json.dumps({**pipeline.plan_summary(result), "estimate": estimate_summary(estimate)}),
                           indent=2)
        else:
            from nava_dub.render import render_estimate, render_plan
            render_plan(out, result)
            render_estimate(out, estimate)


@app.command()
def batch(
    source: Annotated[Path, typer.Argument(help="A folder of videos, or a text file listing one video a line.",
                                           show_default=False)],
    output_dir: Annotated[Path, typer.Option("--output", "-o", help="Folder for the dubbed videos (same names).",
                                             show_default=False)],
    transcripts: Annotated[Path | None, typer.Option(
        "--transcripts", help="Folder of transcripts named like the videos (NAME.json or NAME.srt); videos "
                              "without one have their speech recognised.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Dub again the videos whose output is complete.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON line per video on stdout, then a summary line.")
                       ] = False,
    ref: RefOpt = None,
    speakers: SpeakersOpt = None,
    video: VideoModeOpt = "face",
    audio: AudioModeOpt = "speech",
    face: FaceOpt = None,
    steps: StepsOpt = 50,
    seed: SeedOpt = 0,
    codec: CodecOpt = "libx264",
    no_cache: NoCacheOpt = False,
    language: LanguageOpt = None,
    num_speakers: NumSpeakersOpt = None,
    guidance_video: CfgVideo = GUIDANCE.video,
    guidance_audio: CfgAudio = GUIDANCE.audio,
    guidance_video_align: CfgVideoAlign = GUIDANCE.video_align,
    guidance_audio_align: CfgAudioAlign = GUIDANCE.audio_align,
    guidance_timbre: CfgTimbre = GUIDANCE.timbre,
    hold: HoldOpt = "clean",
    resolution: ResolutionOpt = 960,
    audio_48k: Audio48kOpt = False,
    memory: MemoryOpt = "auto",
    guidance_sigmas: GuidanceSigmasOpt = None,
    reuse_guidance: ReuseGuidanceOpt = 0,
    weights: WeightsDir = Path("weights"),
    device: DeviceOpt = "auto",
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Dub every video of a folder (or list) into -o, loading the models once; skip the finished ones."""
    with reporting(verbose, resumable=True):
        import time

        from nava_dub import batch as batching
        from nava_dub import pipeline
        values = locals()
        items = batching.batch_items(batching.read_inputs(source), output_dir, transcripts)
        batching.preflight(_dub_options(values, items[0].output, items[0].transcript), items[0].input)
        _make_folder(output_dir)
        started = time.perf_counter()

        def progress_for(number: int, item):
            if not quiet:
                err.print(f"[{number}/{len(items)}] {item.input}", highlight=False, markup=False)
            return progress_reporter(quiet)

        def on_result(result) -> None:
            if as_json:
                out.print(json.dumps(result.as_json(), ensure_ascii=False), highlight=False, markup=False,
                          soft_wrap=True)

        results = batching.run_batch(
            items, lambda item: _dub_options(values, item.output, item.transcript), force=force,
            speech=pipeline.SpeechStack(weights, _speech_options(language, device)), progress_for=progress_for,
            on_result=on_result)
        summary = batching.summary(results, time.perf_counter() - started)
        if as_json:
            out.print(json.dumps(summary), highlight=False, markup=False, soft_wrap=True)
        else:
            from nava_dub.render import render_batch
            render_batch(out, results, summary)
        if summary["summary"]["failed"]:
            raise typer.Exit(1)


def _make_folder(folder: Path) -> None:
    from nava_dub.errors import MediaError
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise MediaError(f"cannot create the output folder {folder}: {e.strerror}",
                         "choose a folder you can write to") from None


@app.command()
def transcribe(
    input: Annotated[Path, typer.Argument(help="The video (or audio) to transcribe.", show_default=False)],
    output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the transcript (.json or .srt).")],
    language: LanguageOpt = None,
    num_speakers: NumSpeakersOpt = None,
    weights: WeightsDir = Path("weights"),
    device: DeviceOpt = "auto",
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Recognise the speech and the speakers, and write a transcript an editor can change and feed back."""
    with reporting(verbose):
        from nava_dub import pipeline
        from nava_dub.transcript import write_transcript
        if output.suffix.lower() not in (".json", ".srt"):
            raise UsageError(f"unknown transcript format {output.suffix!r}: {output}", "name the output .json or .srt")
        analysis = pipeline.analyse(
            input, transcript_path=None,
            speech=pipeline.SpeechStack(weights, _speech_options(language, device)), n_speakers=num_speakers,
            progress=progress_reporter(quiet))
        write_transcript(output, analysis.spans)
        out.print(f"{output}: {len(analysis.spans)} spans, speakers {', '.join(analysis.speakers) or '-'}",
                  highlight=False)


@app.command()
def check(
    weights: WeightsDir = Path("weights"),
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    verbose: Verbose = False,
) -> None:
    """Check ffmpeg, the GPU and every weight file (found, missing or wrong), before anything is loaded."""
    with reporting(verbose):
        from nava_dub.resources import default_window_plans
        from nava_dub.system import system_report
        from nava_dub.weights import check_weights
        statuses = check_weights(weights)
        system = system_report()
        plans = default_window_plans(weights, system.gpus)
        problems = [s for s in statuses if s.state in ("missing", "wrong")] + \
                   [name for name, ok, _ in system.tools if not ok]
        if as_json:
            out.print_json(json.dumps({
                "weights_dir": str(weights),
                "files": [{"component": s.file.component, "path": str(s.path), "state": s.state,
                           "size_bytes": s.size_bytes, "detail": s.detail} for s in statuses],
                "tools": [{"name": n, "ok": ok, "detail": d} for n, ok, d in system.tools],
                "gpus": [{**g.__dict__, "default_window_memory": {"mode": p.mode, "fits": p.fits,
                                                                  "peak_bytes": p.estimate.peak_bytes,
                                                                  "summary": p.summary()}}
                         for g, p in zip(system.gpus, plans, strict=True)],
                "ok": not problems}))
        else:
            from nava_dub.render import render_check
            render_check(out, weights, statuses, system, plans)
        if problems:
            raise typer.Exit(1)


@app.command()
def generate(
    jobs: Annotated[Path, typer.Argument(help="NAVA's JSONL: one {\"prompt\", \"image_path\"?, \"spk_wavs\"?, "
                                              "\"task\"?} per line.", show_default=False)],
    output_dir: Annotated[Path, typer.Option("--output", "-o", help="Folder for the outputs (.mp4, or .wav for t2a).",
                                             show_default=False)],
    frames: Annotated[int, typer.Option("--frames", help="Latent frames: 37 = 6.04 s, 61 = 10.04 s.")] = 37,
    size: Annotated[str | None, typer.Option("--size", help="WxH in pixels (default: 1280x704, or the image's "
                                                            "bucket).")] = None,
    steps: StepsOpt = 50,
    seed: Annotated[int, typer.Option("--seed", help="Line i uses seed + i.")] = 100,
    audio_48k: Annotated[bool, typer.Option("--audio-48k", help="Write the vocoder's 48 kHz sound.",
                                            rich_help_panel=ADVANCED)] = False,
    memory: MemoryOpt = "auto",
    guidance_sigmas: GuidanceSigmasOpt = None,
    reuse_guidance: ReuseGuidanceOpt = 0,
    weights: WeightsDir = Path("weights"),
    device: DeviceOpt = "auto",
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Run NAVA's own tasks (text or first image to audio+video, text to audio) from a JSONL file."""
    with reporting(verbose):
        from nava_dub.jobs import JobOptions, run_jobs
        from nava_dub.options import Shortcuts
        width_px, height_px = _size(size)
        results = run_jobs(jobs, output_dir, weights_dir=weights, progress=progress_reporter(quiet),
                           options=JobOptions(n_latent_frames=frames, height_px=height_px, width_px=width_px,
                                              steps=steps, seed=seed, device=device, vocoder_48k=audio_48k,
                                              memory=memory, shortcuts=Shortcuts.parse(guidance_sigmas,
                                                                                       reuse_guidance)))
        for result in results:
            out.print(f"{result.status}: {result.path}", highlight=False)


def _size(value: str | None) -> tuple[int | None, int | None]:
    if value is None:
        return None, None
    try:
        width, height = (int(v) for v in value.lower().split("x"))
    except ValueError:
        raise UsageError(f"--size {value!r} is not WxH", "e.g. --size 1280x704") from None
    return width, height


@app.command("clear-cache")
def clear_cache(
    outputs: Annotated[list[Path], typer.Argument(help="Outputs whose finished-window cache to delete.",
                                                  show_default=False)],
    verbose: Verbose = False,
) -> None:
    """Delete the cache of finished windows that a dub keeps beside its output (for resuming)."""
    with reporting(verbose):
        from nava_dub.cache import WindowCache, cache_dir_for
        for output in outputs:
            n = WindowCache(cache_dir_for(output)).clear()
            out.print(f"{output}: {n} cached windows removed", highlight=False)


weights_app = typer.Typer(help="Work on weight files.", no_args_is_help=True)
app.add_typer(weights_app, name="weights")


@weights_app.command("fp8")
def weights_fp8(
    src: Annotated[Path, typer.Argument(help="A bf16 or fp32 NAVA.safetensors.", show_default=False)],
    dst: Annotated[Path, typer.Argument(help="Where to write the fp8 copy (the official NAVA_fp8 layout).",
                                        show_default=False)],
    verbose: Verbose = False,
    quiet: Quiet = False,
) -> None:
    """Convert a NAVA checkpoint to fp8 (per-row e4m3 + scale), tensor by tensor, in little memory."""
    with reporting(verbose):
        from nava_dub.quantize import quantize_checkpoint
        report_progress = progress_reporter(quiet)
        report = quantize_checkpoint(src, dst, on_progress=lambda done, total: report_progress("convert", done, total))
        out.print(f"{dst}: {report.n_quantised} of {report.n_input_tensors} tensors quantised, "
                  f"{report.input_bytes / 1e9:.2f} GB -> {report.output_bytes / 1e9:.2f} GB, worst relative error "
                  f"{report.worst_relative_error:.2%} ({report.worst_key})", highlight=False)
