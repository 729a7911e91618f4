"""Previews: `--only START-END` and `--span N` pick windows of the plan, and the excerpt that holds them. Pure.

A preview dubs an excerpt of the input that starts at a time E on the grid NAVA's 24 fps, the
source's frame rate and its sample rate share (for 25 fps and 16 kHz: whole seconds). Then the
excerpt's frames and samples fall exactly where the source's do, each window reads the picture
and the sound it reads in the full run, and with the same seed and prompt it generates the same.
When that grid is coarser than MAX_LEAD_IN_S (NTSC rates: 1001/24 s), the excerpt starts at the
first window itself and the picture may sit up to a source frame away from the full run's.

Time parsing and the grid live here rather than in timeline.py: only previews need them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from fractions import Fraction

from nava_dub.errors import UsageError
from nava_dub.timeline import NAVA_FPS, Span, Window, Word

MAX_LEAD_IN_S = Fraction(2)      # how far before the first window an exact excerpt may start
_NUMBER = r"\d+(?:\.\d+)?"
_TIME = re.compile(rf"^(?:(?:(\d+):)?(\d+):)?({_NUMBER})$")


@dataclass(frozen=True)
class Selection:
    """What a preview renders: the windows meeting [start_s, end_s), or those voicing line span_number."""

    start_s: Fraction | None = None
    end_s: Fraction | None = None
    span_number: int | None = None   # 1-based, in transcript order

    def describe(self) -> str:
        if self.span_number is not None:
            return f"--span {self.span_number}"
        return f"--only {float(self.start_s or 0):g}-{float(self.end_s or 0):g}"


def parse_time(text: str) -> Fraction:
    """Seconds ("12.5") or a timecode ("01:02.5", "00:01:02.5") as exact seconds."""
    match = _TIME.match(text.strip())
    if not match:
        raise UsageError(f"{text!r} is not a time", "write seconds (12.5) or a timecode (00:01:02.5)")
    hours, minutes, seconds = match.groups()
    if (minutes is not None and Fraction(seconds) >= 60) or (hours is not None and int(minutes) >= 60):
        raise UsageError(f"{text!r} is not a time: minutes and seconds run to 59", "e.g. 00:01:02.5")
    return int(hours or 0) * 3600 + int(minutes or 0) * 60 + Fraction(seconds)


def parse_selection(only: str | None, span: int | None) -> Selection | None:
    """--only START-END and --span N (at most one of them); None when neither is given."""
    if only is not None and span is not None:
        raise UsageError("--only and --span both given", "preview either a time range or one line")
    if span is not None:
        if span < 1:
            raise UsageError(f"--span {span}: lines are numbered from 1", "see the numbers with `nava-dub plan`")
        return Selection(span_number=span)
    if only is None:
        return None
    parts = only.split("-")
    if len(parts) != 2:
        raise UsageError(f"--only {only!r} is not START-END", "e.g. --only 12.5-20 or --only 00:01:02-00:01:10")
    start_s, end_s = (parse_time(p) for p in parts)
    if end_s <= start_s:
        raise UsageError(f"--only {only!r} ends before it starts", "give the earlier time first")
    return Selection(start_s=start_s, end_s=end_s)


def select_windows(windows: tuple[Window, ...], spans: tuple[Span, ...], selection: Selection) -> tuple[Window, ...]:
    """The planned windows the selection covers (windows keep their index, times and prompt)."""
    if selection.span_number is not None:
        return _windows_of_line(windows, spans, selection.span_number)
    chosen = tuple(w for w in windows if w.start_s < selection.end_s and w.end_s > selection.start_s)
    if not chosen:
        raise UsageError(f"no re-voiced speech between {float(selection.start_s):g} s and "
                         f"{float(selection.end_s):g} s", "see where the windows lie with `nava-dub plan`")
    return chosen


def _windows_of_line(windows: tuple[Window, ...], spans: tuple[Span, ...], number: int) -> tuple[Window, ...]:
    if number > len(spans):
        raise UsageError(f"--span {number}: the transcript has {len(spans)} lines",
                         "see the numbered lines with `nava-dub plan`")
    line = spans[number - 1]
    # a long line may be cut into pieces over several windows: take every window voicing a piece of it
    chosen = tuple(w for w in windows if any(s.speaker == line.speaker and s.start_s < line.end_s
                                             and s.end_s > line.start_s for s in w.spans))
    if not chosen:
        raise UsageError(f"--span {number}: line {number} ({line.speaker or 'no speaker'}) is not re-voiced",
                         "pick a line of a re-voiced speaker, or name its speaker in --speakers")
    return chosen


# --- the excerpt ------------------------------------------------------------------------------------

def excerpt_grid_s(fps: Fraction, sample_rate_hz: int) -> Fraction:
    """The shortest time that is a whole number of 24 fps frames, source frames and samples."""
    periods = [1 / Fraction(NAVA_FPS), 1 / Fraction(fps), Fraction(1, sample_rate_hz)]
    numerator = math.lcm(*(p.numerator for p in periods))
    return Fraction(numerator, math.gcd(*(p.denominator for p in periods)))


def excerpt_start(first_start_s: Fraction, fps: Fraction, sample_rate_hz: int) -> tuple[Fraction, bool]:
    """(where the excerpt starts, whether it reads exactly as the source) for a first window at first_start_s."""
    grid_s = excerpt_grid_s(fps, sample_rate_hz)
    start_s = math.floor(first_start_s / grid_s) * grid_s
    if first_start_s - start_s <= MAX_LEAD_IN_S:
        return start_s, True
    return first_start_s, False


def shift_window(window: Window, offset_frames: int) -> Window:
    """The window on a timeline that starts offset_frames (24 fps) later: the excerpt's."""
    offset_s = float(Fraction(offset_frames) / NAVA_FPS)
    spans = tuple(replace(s, start_s=s.start_s - offset_s, end_s=s.end_s - offset_s,
                          words=tuple(Word(w.start_s - offset_s, w.end_s - offset_s, w.text) for w in s.words))
                  for s in window.spans)
    return replace(window, start_frame=window.start_frame - offset_frames, spans=spans)
