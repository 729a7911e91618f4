"""Many inputs, one model load: `nava-dub batch IN_DIR|LIST_FILE -o OUT_DIR`.

An input whose output is complete (the output exists and its run record names it; atomic writes
mean a half-written output cannot exist) is skipped unless forced. Each input is dubbed under a
lock file beside its output, created with O_CREAT|O_EXCL and holding the pid and host, so several
processes on one folder (one per GPU) never dub the same input; a lock left by a dead process of
this host is taken over. A failing input is recorded and the batch goes on; Ctrl-C stops it, after
the lock is released.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from nava_dub.errors import DubError, MediaError, UsageError
from nava_dub.options import OUTPUT_SUFFIXES, DubOptions
from nava_dub.progress import ProgressFn, silent
from nava_dub.record import record_path

VIDEO_SUFFIXES = frozenset({".mp4", ".mov", ".mkv", ".m4v", ".avi", ".webm", ".mts", ".m2ts", ".ts", ".mpg",
                            ".mpeg", ".wmv", ".flv", ".3gp", ".mxf"})
TRANSCRIPT_SUFFIXES = (".json", ".srt")
UNREADABLE_LOCK_GRACE_S = 30   # a lock still empty after this long was left by a crash between create and write


@dataclass(frozen=True)
class BatchItem:
    input: Path
    output: Path
    transcript: Path | None      # None: the speech is recognised


@dataclass(frozen=True)
class ItemResult:
    input: Path
    output: Path
    status: str                  # done | skipped | failed
    seconds: float
    error: str | None = None     # why it failed, one line
    hint: str | None = None      # one fix for that
    reason: str | None = None    # why it was skipped: "complete", or who holds the lock

    def as_json(self) -> dict:
        return {"input": str(self.input), "output": str(self.output), "status": self.status, "error": self.error,
                "hint": self.hint, "reason": self.reason, "seconds": round(self.seconds, 3)}


# --- what to dub --------------------------------------------------------------------------------------

def read_inputs(source: Path) -> tuple[Path, ...]:
    """The videos of a folder (not its subfolders; hidden files left out), or the paths of a list file
    (one per line, blank lines and # comments skipped, relative paths taken from the list's folder)."""
    if source.is_dir():
        found = sorted(p for p in source.iterdir()
                       if p.suffix.lower() in VIDEO_SUFFIXES and not p.name.startswith(".") and p.is_file())
        if not found:
            raise UsageError(f"no videos in {source}", f"put {', '.join(sorted(OUTPUT_SUFFIXES))}... files there")
        return tuple(found)
    if not source.exists():
        raise UsageError(f"{source} not found", "give a folder of videos, or a text file listing them")
    if source.suffix.lower() in VIDEO_SUFFIXES:
        raise UsageError(f"{source} is a video, not a folder or a list", f"dub it alone: nava-dub dub {source} -o OUT")
    try:
        lines = source.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"cannot read the list {source}: {e}", "give a UTF-8 text file, one video path a line") from None
    paths = tuple(source.parent / line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#"))
    if not paths:
        raise UsageError(f"the list {source} names no video", "write one video path a line")
    return paths


def batch_items(inputs: Sequence[Path], out_dir: Path, transcripts_dir: Path | None = None) -> tuple[BatchItem, ...]:
    """Each input with its output in out_dir (same name; Matroska for containers a dub cannot write) and its
    transcript (transcripts_dir/<stem>.json or .srt, when there is one)."""
    if transcripts_dir is not None and not transcripts_dir.is_dir():
        raise UsageError(f"transcripts folder not found: {transcripts_dir}", "give the folder holding <name>.json files")
    items, stems = [], {}
    for path in inputs:
        suffix = path.suffix.lower() if path.suffix.lower() in OUTPUT_SUFFIXES else ".mkv"
        output = out_dir / f"{path.stem}{suffix}"
        if path.stem in stems:   # outputs, caches and reference clips are named by the stem
            raise UsageError(f"{stems[path.stem]} and {path} would both be dubbed to {out_dir}/{path.stem}.*",
                             "rename one of them, or dub them in two batches")
        if output.resolve() == path.resolve():
            raise UsageError(f"the output folder holds the inputs: {path} would be overwritten",
                             "choose another output folder with -o")
        stems[path.stem] = path
        items.append(BatchItem(path, output, _transcript_for(path, transcripts_dir)))
    return tuple(items)


def _transcript_for(path: Path, transcripts_dir: Path | None) -> Path | None:
    if transcripts_dir is None:
        return None
    return next((p for s in TRANSCRIPT_SUFFIXES if (p := transcripts_dir / f"{path.stem}{s}").is_file()), None)


def is_complete(output: Path) -> bool:
    """The output exists and its run record names it (a preview's record does not count)."""
    record = record_path(output)
    if not (output.is_file() and record.is_file()):
        return False
    try:
        body = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(body, dict) and Path(str(body.get("output", ""))).name == output.name and not body.get("preview")


# --- one process per input -----------------------------------------------------------------------------

class InputLock:
    """`.<output name>.lock` beside the output: {"pid", "host", "started"}, made with O_CREAT|O_EXCL."""

    def __init__(self, output: Path) -> None:
        self.path = output.with_name(f".{output.name}.lock")
        self.held = False

    def acquire(self) -> str | None:
        """None once this process holds the lock; else who holds it ("pid 123 on host gpu-2")."""
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._take_over_if_stale():
                    return _describe(_read_holder(self.path))
                continue
            except OSError as e:
                raise MediaError(f"cannot create the lock {self.path}: {e.strerror}",
                                 "check that the output folder is writable") from None
            with os.fdopen(fd, "w") as f:
                json.dump({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}, f)
            self.held = True
            return None
        return _describe(_read_holder(self.path))

    def release(self) -> None:
        if self.held and (_read_holder(self.path) or {}).get("pid") == os.getpid():
            self.path.unlink(missing_ok=True)
        self.held = False

    def _take_over_if_stale(self) -> bool:
        """Remove a lock whose holder is dead; True when the caller should try again.

        Takers hold flock on the lock's inode and check the path still names that inode, so two
        processes taking over the same stale lock never remove the fresh lock one of them made.
        """
        try:
            fd = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.stat(self.path).st_ino != os.fstat(fd).st_ino:
                    return True
            except FileNotFoundError:
                return True
            holder = _parse_holder(os.read(fd, 4096))
            if not _is_stale(holder, os.fstat(fd).st_mtime):
                return False
            self.path.unlink(missing_ok=True)
            return True
        finally:
            os.close(fd)


def _read_holder(path: Path) -> dict | None:
    try:
        return _parse_holder(path.read_bytes())
    except OSError:
        return None


def _parse_holder(data: bytes) -> dict | None:
    try:
        holder = json.loads(data)
    except ValueError:
        return None
    return holder if isinstance(holder, dict) and isinstance(holder.get("pid"), int) else None


def _is_stale(holder: dict | None, mtime: float) -> bool:
    if holder is None:
        return time.time() - mtime > UNREADABLE_LOCK_GRACE_S
    if holder.get("host") != socket.gethostname():
        return False   # another machine's process: only it knows whether it runs
    if holder["pid"] == os.getpid():
        return True    # this pid cannot be dubbing it: a process of a former container, or of a crash
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False   # alive, under another user
    return False


def _describe(holder: dict | None) -> str:
    if holder is None:
        return "another process (its lock file is being written)"
    return f"pid {holder['pid']} on {holder.get('host', '?')}"


def preflight(options: DubOptions, first_input: Path) -> None:
    """The checks that do not depend on the input, once before the batch: options, --ref files, --face, weights."""
    from nava_dub.pipeline import check_settings
    options.validate(first_input)
    check_settings(options)


# --- the run --------------------------------------------------------------------------------------------

def run_batch(items: Sequence[BatchItem], make_options: Callable[[BatchItem], DubOptions], *, force: bool = False,
              speech=None, progress_for: Callable[[int, BatchItem], ProgressFn] | None = None,
              on_result: Callable[[ItemResult], None] | None = None) -> tuple[ItemResult, ...]:
    """Dub every item in turn with one model stack (loaded on the first input that needs it)."""
    from nava_dub import pipeline
    stack = pipeline.NavaStack()
    results = []
    for number, item in enumerate(items, 1):
        progress = progress_for(number, item) if progress_for else silent
        result = _dub_one(item, make_options, force, speech, stack, progress)
        results.append(result)
        if on_result:
            on_result(result)
    return tuple(results)


def _dub_one(item: BatchItem, make_options, force: bool, speech, stack, progress: ProgressFn) -> ItemResult:
    from nava_dub import pipeline
    started = time.perf_counter()

    def result(status: str, **kw) -> ItemResult:
        return ItemResult(item.input, item.output, status, time.perf_counter() - started, **kw)

    if not force and is_complete(item.output):
        return result("skipped", reason="complete")
    lock = InputLock(item.output)
    try:
        holder = lock.acquire()
        if holder is not None:
            return result("skipped", reason=f"locked by {holder}")
        if not force and is_complete(item.output):   # finished by another process meanwhile
            return result("skipped", reason="complete")
        pipeline.dub(item.input, make_options(item), speech=speech, models=stack, progress=progress)
        return result("done")
    except DubError as e:
        return result("failed", error=e.message, hint=e.hint or None)
    except Exception as e:  # a bug or an out-of-memory on one input must not stop the others
        return result("failed", error=f"unexpected {type(e).__name__}: {e}", hint="run it alone with -v")
    finally:
        lock.release()


def summary(results: Sequence[ItemResult], seconds: float) -> dict:
    counts = {status: sum(r.status == status for r in results) for status in ("done", "skipped", "failed")}
    return {"summary": {**counts, "total": len(results), "seconds": round(seconds, 3)}}
