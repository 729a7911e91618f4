"""How results and progress look in a terminal (rich). Only the CLI imports this."""

from __future__ import annotations

import time

from rich.console import Console
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


def render_plan(console: Console, result) -> None:
    """The transcript, the speakers and the windows of a plan, as tables."""
    spans = Table(title="Transcript", title_justify="left")
    for column in ("start", "end", "speaker", "text"):
        spans.add_column(column, justify="right" if column in ("start", "end") else "left")
    for s in result.analysis.spans:
        spans.add_row(f"{s.start_s:.2f}", f"{s.end_s:.2f}", s.speaker or "-", s.text)
    console.print(spans)
    console.print(f"speakers: {', '.join(result.analysis.speakers) or '-'}", highlight=False)
    windows = Table(title="Generation windows (24 fps)", title_justify="left")
    for column in ("#", "start", "end", "frames", "latent", "audio tokens", "spans", "speakers"):
        windows.add_column(column, justify="right" if column != "speakers" else "left")
    for w in result.windows:
        windows.add_row(str(w.index), f"{float(w.start_s):.2f}", f"{float(w.end_s):.2f}", str(w.n_frames),
                        str(w.n_latent_frames), str(w.n_audio_tokens), str(len(w.spans)),
                        ", ".join(dict.fromkeys(s.speaker or "-" for s in w.spans)))
    console.print(windows)


def render_check(console: Console, root, statuses, system) -> None:
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
    for g in system.gpus:
        console.print(f"gpu {g.index}: {g.name} (sm {g.compute_capability}), "
                      f"{g.free_bytes / 2**30:.1f} of {g.total_bytes / 2**30:.1f} GiB free", highlight=False)
