"""Transcript files an editor can change: read and write spans as JSON or SRT, and validate them.

Errors name the file and the line of the offending span, so a fix takes one look.
JSON layout (written by `nava-dub transcribe`, documented in the README):
    {"version": 1, "speakers": ["SPEAKER_00", ...],
     "spans": [{"start_s": 0.5, "end_s": 2.1, "speaker": "SPEAKER_00", "text": "...",
                "words": [{"start_s": 0.5, "end_s": 0.8, "text": "Hello"}, ...]}, ...]}
SRT: one cue per span; a leading "[SPEAKER] " or "SPEAKER: " on the text names the speaker.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from nava_dub.errors import TranscriptError
from nava_dub.timeline import Span, Word, speakers_of

FORMAT_VERSION = 1


@dataclass(frozen=True)
class Transcript:
    spans: tuple[Span, ...]
    speakers: tuple[str, ...]


# --- reading ---------------------------------------------------------------------------------

def read_transcript(path: Path, duration_s: float | None = None) -> Transcript:
    """Read a .json or .srt transcript and validate it (against the media duration when given)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise TranscriptError(f"transcript not found: {path}", "check the path given to --transcript") from None
    except (OSError, UnicodeDecodeError) as e:
        raise TranscriptError(f"cannot read transcript {path}: {e}", "save it as UTF-8 text") from None
    suffix = path.suffix.lower()
    if suffix == ".srt":
        spans, lines, declared = _parse_srt(path, text), None, None
    elif suffix == ".json":
        spans, lines, declared = _parse_json(path, text)
    else:
        raise TranscriptError(f"unknown transcript format {suffix!r}: {path}", "use a .json or .srt file")
    validate_spans(path, spans, lines, declared, duration_s)
    return Transcript(tuple(spans), declared or speakers_of(spans))


def _parse_json(path: Path, text: str) -> tuple[list[Span], list[int], tuple[str, ...] | None]:
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise TranscriptError(f"{path}:{e.lineno}: broken JSON: {e.msg}", "fix the JSON syntax on that line") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("spans"), list):
        raise TranscriptError(f"{path}:1: no \"spans\" list at the top level", 'write {"spans": [...]}')
    lines = _json_element_lines(text, len(doc["spans"]))
    declared = doc.get("speakers")
    if declared is not None and not (isinstance(declared, list) and all(isinstance(s, str) for s in declared)):
        raise TranscriptError(f"{path}: \"speakers\" must be a list of names", 'e.g. "speakers": ["SPEAKER_00"]')
    spans = [_span_from_json(path, line, item) for line, item in zip(lines, doc["spans"], strict=True)]
    return spans, lines, tuple(declared) if declared is not None else None


def _json_element_lines(text: str, n_items: int) -> list[int]:
    """The line on which each element of the top-level "spans" array starts."""
    match = re.search(r'"spans"\s*:\s*\[', text)
    decoder = json.JSONDecoder()
    pos, lines = (match.end() if match else 0), []
    for _ in range(n_items):
        pos = _skip(text, pos, " \t\r\n,")
        lines.append(text.count("\n", 0, pos) + 1)
        _, pos = decoder.raw_decode(text, pos)
    return lines


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _span_from_json(path: Path, line: int, item: object) -> Span:
    where = f"{path}:{line}"
    if not isinstance(item, dict):
        raise TranscriptError(f"{where}: a span must be an object, got {item!r}", "see the README's transcript format")
    try:
        start_s, end_s = float(item["start_s"]), float(item["end_s"])
        text = str(item["text"]).strip()
        words = tuple(Word(float(w["start_s"]), float(w["end_s"]), str(w["text"])) for w in item.get("words", []))
    except (KeyError, TypeError, ValueError) as e:
        raise TranscriptError(f"{where}: span needs numeric start_s/end_s and text ({e})",
                              'e.g. {"start_s": 1.0, "end_s": 2.5, "text": "Hello"}') from None
    speaker = item.get("speaker")
    return Span(start_s, end_s, text, str(speaker) if speaker is not None else None, words)


_SRT_TIME = r"(\d+):(\d{2}):(\d{2})[,.](\d{1,3})"
_SRT_CUE = re.compile(rf"^\s*{_SRT_TIME}\s*-->\s*{_SRT_TIME}")
_SRT_SPEAKER = re.compile(r"^\s*(?:\[([^\]]+)\]|([A-Za-z][\w.-]*):)\s*(.*)$", re.S)


def _parse_srt(path: Path, text: str) -> list[Span]:
    spans, lines = [], text.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].strip():
            i += 1
            continue
        block_start = i
        while i < len(lines) and lines[i].strip():
            i += 1
        spans.append(_srt_block(path, block_start, lines[block_start:i]))
    return spans


def _srt_block(path: Path, first_line: int, block: list[str]) -> Span:
    timing_at = 1 if len(block) > 1 and block[0].strip().isdigit() else 0
    match = _SRT_CUE.match(block[timing_at])
    line_no = first_line + timing_at + 1
    if not match:
        raise TranscriptError(f"{path}:{line_no}: expected a timing line 'HH:MM:SS,mmm --> HH:MM:SS,mmm', "
                              f"got {block[timing_at]!r}", "fix the cue's timing line")
    g = match.groups()
    start_s = int(g[0]) * 3600 + int(g[1]) * 60 + int(g[2]) + int(g[3].ljust(3, "0")) / 1000
    end_s = int(g[4]) * 3600 + int(g[5]) * 60 + int(g[6]) + int(g[7].ljust(3, "0")) / 1000
    body = " ".join(line.strip() for line in block[timing_at + 1:])
    speaker = None
    named = _SRT_SPEAKER.match(body)
    if named:
        speaker, body = named.group(1) or named.group(2), named.group(3)
    return Span(start_s, end_s, body.strip(), speaker)


# --- validation ------------------------------------------------------------------------------

def validate_spans(path: Path, spans: list[Span], lines: list[int] | None,
                   declared: tuple[str, ...] | None, duration_s: float | None) -> None:
    """Reject reversed, overlapping, out-of-range, empty or unknown-speaker spans, naming the line."""
    if not spans:
        raise TranscriptError(f"{path}: the transcript has no spans", "add at least one line of speech")
    previous_end = 0.0
    for i, span in enumerate(spans):
        where = f"{path}:{lines[i]}" if lines else f"{path}: cue {i + 1}"
        if span.start_s < 0 or span.end_s <= span.start_s:
            raise TranscriptError(f"{where}: span times are reversed or empty ({span.start_s} -> {span.end_s})",
                                  "make end_s greater than start_s")
        if span.start_s < previous_end - 1e-6:
            raise TranscriptError(f"{where}: span starts at {span.start_s} s, before the previous one ends "
                                  f"({previous_end} s)", "order the spans by time and remove the overlap")
        if duration_s is not None and span.end_s > duration_s + 1e-3:
            raise TranscriptError(f"{where}: span ends at {span.end_s} s, past the end of the input "
                                  f"({duration_s:.3f} s)", "shorten the span or use the transcript of this input")
        if not span.text.strip():
            raise TranscriptError(f"{where}: span has no text", "write the line to speak or delete the span")
        if declared is not None and span.speaker not in declared:
            raise TranscriptError(f"{where}: unknown speaker {span.speaker!r} (declared: {', '.join(declared)})",
                                  'add it to "speakers" or use a declared name')
        previous_end = span.end_s


# --- writing ---------------------------------------------------------------------------------

def transcript_to_json(spans: list[Span] | tuple[Span, ...]) -> str:
    doc = {
        "version": FORMAT_VERSION,
        "speakers": list(speakers_of(spans)),
        "spans": [_span_to_json(s) for s in spans],
    }
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def _span_to_json(span: Span) -> dict:
    out = {"start_s": round(span.start_s, 3), "end_s": round(span.end_s, 3),
           "speaker": span.speaker, "text": span.text}
    if span.words:
        out["words"] = [{"start_s": round(w.start_s, 3), "end_s": round(w.end_s, 3), "text": w.text}
                        for w in span.words]
    return out


def transcript_to_srt(spans: list[Span] | tuple[Span, ...]) -> str:
    cues = []
    for i, span in enumerate(spans, 1):
        speaker = f"[{span.speaker}] " if span.speaker else ""
        cues.append(f"{i}\n{_srt_time(span.start_s)} --> {_srt_time(span.end_s)}\n{speaker}{span.text}\n")
    return "\n".join(cues)


def _srt_time(t_s: float) -> str:
    ms = round(t_s * 1000)
    return f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d},{ms % 1000:03d}"


def write_transcript(path: Path, spans: list[Span] | tuple[Span, ...]) -> None:
    """Write .json or .srt by the path's suffix, atomically (temporary file, then rename)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".json", ".srt"):
        raise TranscriptError(f"unknown transcript format {suffix!r}: {path}", "name the output .json or .srt")
    body = transcript_to_json(spans) if suffix == ".json" else transcript_to_srt(spans)
    write_text_atomic(path, body)


def write_text_atomic(path: Path, body: str) -> None:
    if not path.parent.is_dir():
        raise TranscriptError(f"output folder does not exist: {path.parent}", "create it first")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    except OSError as e:
        raise TranscriptError(f"cannot write to {path.parent}: {e.strerror}", "choose a folder you can write to") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
        mask = os.umask(0)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)   # mkstemp makes 0600 files; a transcript gets the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
