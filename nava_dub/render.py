"""How results and progress look in a terminal (rich). Only the CLI imports this."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from nava_dub.progress import ProgressFn, silent


def make_reporter(console: Console, quiet: bool) -> ProgressFn:
    """Progress bars on a terminal, plain lines when stderr is a file or pipe, nothing under -q."""
    if quiet:
        return silent
    if console.is_terminal:
        return _BarReporter(console)
    return _LineReporter(console)


class _BarReporter:
    def __init__(self, console: Console) -> None:
        self.bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=console, transient=False)
        self.tasks: dict[str, int] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if not self.bars.live.is_started:
            self.bars.start()
        if stage not in self.tasks:
            self.tasks[stage] = self.bars.add_task(stage, total=total)
        self.bars.update(self.tasks[stage], completed=done, total=total)
        if total is not None and done >= total:
            self.bars.refresh()

    def __del__(self) -> None:
        if self.bars.live.is_started:
            self.bars.stop()


class _LineReporter:
    """One line when a stage starts and one when it ends (a log file stays readable)."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started: dict[str, float] = {}

    def __call__(self, stage: str, done: int, total: int | None) -> None:
        if stage not in self.started:
            self.started[stage] = time.monotonic()
            self.console.print(f"{stage} ...", highlight=False, markup=False)
        if total is not None and done >= total:
            seconds = time.monotonic() - self.started[stage]
            self.console.print(f"{stage} done ({done}/{total}, {seconds:.1f} s)", highlight=False, markup=False)


def render_estimate(console: Console, estimate) -> None:
    """What the windows cost (nava_dub.estimate.RunEstimate): passes, memory and time."""
    device = estimate.device
    where = device.name if device.kind == "cpu" else (
        f"{device.name}, {(device.free_bytes or 0) / 1e9:.1f} of {(device.total_bytes or 0) / 1e9:.1f} GB free")
    console.print(f"estimate for {estimate.weights} on {where}:", highlight=False, markup=False)
    full = estimate.steps * estimate.n_passes_per_step
    shortcut = "" if estimate.n_passes_per_window == full else f", {estimate.n_passes_per_window} with the shortcuts"
    console.print(f"  {estimate.steps} steps x {estimate.n_passes_per_step} passes = {full} model passes per "
                  f"window{shortcut}, at {estimate.height_px}x{estimate.width_px} px", highlight=False, markup=False)
    verdict = "" if device.kind != "cuda" else ("; fits" if estimate.fits else "; DOES NOT FIT")
    console.print(f"  {estimate.memory.summary()}{verdict}", highlight=False, markup=False)
    for w in estimate.windows:
        time_s = "time unknown for this GPU" if w.seconds is None else f"about {_duration(w.seconds)}"
        console.print(f"  window {w.index}: {w.n_latent_frames} latent frames, {w.n_video_tokens + w.n_audio_tokens} "
                      f"tokens, {_flop(w.flops)}, {time_s}", highlight=False, markup=False)
    if estimate.total_seconds is not None:
        console.print(f"  total about {_duration(estimate.total_seconds)} of sampling (the transformer only, "
                      f"at an assumed {_flop(estimate.flops_per_s or 0)}/s)", highlight=False, markup=False)


def _flop(n: float) -> str:
    for unit, size in (("PFLOP", 1e15), ("TFLOP", 1e12), ("GFLOP", 1e9)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n:.3g} FLOP"


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def render_batch(console: Console, results, summary: dict) -> None:
    """One row per input (nava_dub.batch.ItemResult), then the counts."""
    colours = {"done": "green", "skipped": "dim", "failed": "red"}
    table = Table(title="Batch", title_justify="left")
    for column in ("input", "status", "seconds", "output or error"):   # fold: a path is never cut short
        table.add_column(column, justify="right" if column == "seconds" else "left", overflow="fold")
    for r in results:
        detail = r.error if r.status == "failed" else (f"{r.output} ({r.reason})" if r.reason else str(r.output))
        table.add_row(escape(str(r.input)), f"[{colours[r.status]}]{r.status}[/]", f"{r.seconds:.1f}", escape(detail))
    console.print(table)
    counts = summary["summary"]
    console.print(f"{counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed "
                  f"in {counts['seconds']:.1f} s", highlight=False)


def render_plan(console: Console, result) -> None:
    """The transcript, the speakers and the windows of a plan, as tables."""
    spans = Table(title="Transcript (dub --span N previews line N)", title_justify="left")
    for column in ("#", "start", "end", "speaker", "text"):
        spans.add_column(column, justify="right" if column in ("#", "start", "end") else "left")
    for number, s in enumerate(result.analysis.spans, 1):
        spans.add_row(str(number), f"{s.start_s:.2f}", f"{s.end_s:.2f}", escape(s.speaker or "-"), escape(s.text))
    console.print(spans)
    console.print(f"speakers: {', '.join(result.analysis.speakers) or '-'}", highlight=False)
    windows = Table(title="Generation windows (24 fps)", title_justify="left")
    for column in ("#", "start", "end", "frames", "latent", "audio tokens", "spans", "speakers"):
        windows.add_column(column, justify="right" if column != "speakers" else "left")
    for w in result.windows:
        windows.add_row(str(w.index), f"{float(w.start_s):.2f}", f"{float(w.end_s):.2f}", str(w.n_frames),
                        str(w.n_latent_frames), str(w.n_audio_tokens), str(len(w.spans)),
                        escape(", ".join(dict.fromkeys(s.speaker or "-" for s in w.spans))))
    console.print(windows)


def render_check(console: Console, root, statuses, system, plans) -> None:
    colours = {"found": "green", "missing": "red", "wrong": "red", "optional": "dim"}
    table = Table(title=f"Weights in {root}", title_justify="left")
    for column in ("component", "file", "state", "size", "detail"):
        table.add_column(column, justify="right" if column == "size" else "left")
    for s in statuses:
        size = f"{s.size_bytes / 1e9:.2f} GB" if s.size_bytes is not None else "-"
        table.add_row(s.file.component, s.file.relpath, f"[{colours[s.state]}]{s.state}[/]", size, s.detail)
    console.print(table)
    for name, ok, detail in system.tools:
        console.print(f"{name}: {'[green]ok[/]' if ok else '[red]missing[/]'} {detail}", highlight=False)
    if not system.gpus:
        console.print("gpu: none found (NAVA needs a CUDA GPU; CPU runs only suit tiny test weights)")
    for g, plan in zip(system.gpus, plans, strict=True):
        console.print(f"gpu {g.index}: {g.name} (sm {g.compute_capability}), "
                      f"{g.free_bytes / 2**30:.1f} of {g.total_bytes / 2**30:.1f} GiB free", highlight=False)
        verdict = "" if plan.fits else " [red]DOES NOT FIT[/]"
        console.print(f"  a 704x1280 window: {escape(plan.summary())}{verdict}", highlight=False)
