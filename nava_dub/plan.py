"""Cut the timeline into NAVA generation windows: pure, no I/O, no models.

Rules (issue 2 §8): every window is 4k+1 frames at 24 fps and at most 241 frames (10.04 s);
windows cover every re-voiced span and nothing else (no windows over silence); cuts fall in
pauses between spans, and a span too long for one window is cut at its widest gap between
words, never inside a word; windows never overlap.
"""

from __future__ import annotations

import re
import string
from dataclasses import replace

from nava_dub.errors import DubError, UsageError
from nava_dub.options import PlanOptions
from nava_dub.timeline import (
    NAVA_FPS,
    Span,
    Window,
    Word,
    latent_frames_to_frames,
    seconds_to_frames_ceil,
    seconds_to_frames_floor,
    snap_frames_down,
    snap_frames_up,
    speakers_of,
)


def plan_windows(spans: list[Span] | tuple[Span, ...], duration_s: float,
                 options: PlanOptions = PlanOptions()) -> tuple[Window, ...]:
    """Windows over the re-voiced spans of a source of duration_s seconds."""
    options.validate()
    chosen = _revoiced(spans, options.speakers)
    total_frames = seconds_to_frames_floor(duration_s)
    max_frames = latent_frames_to_frames(options.max_latent_frames)
    pieces = [piece for span in chosen for piece in _fit(span, max_frames, options.margin_s)]
    groups = _group(pieces, max_frames, options)
    labels = speaker_labels(spans)
    windows, previous_end = [], 0
    for i, group in enumerate(groups):
        upper = seconds_to_frames_floor(groups[i + 1][0].start_s) if i + 1 < len(groups) else total_frames
        start, n_frames = _place(group, previous_end, upper, total_frames, max_frames, options)
        windows.append(Window(i, start, n_frames, tuple(group), window_prompt(group, labels, options)))
        previous_end = start + n_frames
    return tuple(windows)


def _revoiced(spans, speakers: tuple[str, ...] | None) -> list[Span]:
    if not spans:
        raise DubError("no speech found in the input", "check the input has spoken words, or pass --transcript")
    if speakers is None:
        return sorted(spans, key=lambda s: s.start_s)
    known = speakers_of(spans)
    unknown = [s for s in speakers if s not in known]
    if unknown:
        raise UsageError(f"unknown speaker(s) {', '.join(unknown)} (found: {', '.join(known) or 'none'})",
                         "pass --speakers with names from `nava-dub plan` or `nava-dub transcribe`")
    return sorted((s for s in spans if s.speaker in speakers), key=lambda s: s.start_s)


def _frames_needed(start_s: float, end_s: float, margin_s: float) -> int:
    return seconds_to_frames_ceil(end_s + margin_s) - seconds_to_frames_floor(max(0.0, start_s - margin_s))


# --- long spans: cut at the widest gap between words ----------------------------------------

def _fit(span: Span, max_frames: int, margin_s: float) -> list[Span]:
    """Split span into pieces that each fit one window with margins, cutting only between words."""
    if _frames_needed(span.start_s, span.end_s, margin_s) <= max_frames:
        return [span]
    words = span.words or estimate_words(span)
    fits = [i for i in range(len(words) - 1)
            if _frames_needed(span.start_s, words[i].end_s, margin_s) <= max_frames]
    if not fits:
        raise DubError(f"the word {words[0].text!r} at {words[0].start_s:.2f} s is longer than one window "
                       f"({max_frames} frames)", "fix the word timings in the transcript")
    half_s = max_frames / (2 * NAVA_FPS)
    roomy = [i for i in fits if words[i].end_s - span.start_s >= half_s] or fits
    cut = max(roomy, key=lambda i: (words[i + 1].start_s - words[i].end_s, i))
    left, right = words[: cut + 1], words[cut + 1:]
    head = replace(span, end_s=left[-1].end_s, text=_join(left), words=tuple(left))
    tail = replace(span, start_s=right[0].start_s, text=_join(right), words=tuple(right))
    return [head, *_fit(tail, max_frames, margin_s)]


def estimate_words(span: Span) -> tuple[Word, ...]:
    """Word times for a span without them (an SRT line): time shared out by character count."""
    tokens = span.text.split() if len(span.text.split()) > 1 else list(span.text.replace(" ", ""))
    weights = [len(t) + 1 for t in tokens]
    per_weight_s = (span.end_s - span.start_s) / sum(weights)
    words, t = [], span.start_s
    for token, weight in zip(tokens, weights, strict=True):
        words.append(Word(t, t + (weight - 1) * per_weight_s, token))
        t += weight * per_weight_s
    return tuple(words)


def _join(words: list[Word]) -> str:
    text = " ".join(w.text.strip() for w in words)
    return re.sub(rf"\s+([{re.escape(string.punctuation)}])", r"\1", text)


# --- grouping spans into windows, and placing each window --------------------------------------

def _group(pieces: list[Span], max_frames: int, options: PlanOptions) -> list[list[Span]]:
    groups: list[list[Span]] = []
    for piece in pieces:
        if (groups and piece.start_s - groups[-1][-1].end_s <= options.max_gap_s
                and _frames_needed(groups[-1][0].start_s, piece.end_s, options.margin_s) <= max_frames):
            groups[-1].append(piece)
        else:
            groups.append([piece])
    return groups


def _place(group: list[Span], lower: int, upper: int, total_frames: int, max_frames: int,
           options: PlanOptions) -> tuple[int, int]:
    """(start frame, 4k+1 frame count) covering the group; margins stay inside [lower, upper).

    Only the margins yield to the neighbours, never the speech itself: when two spans are closer
    than the 4-frame step of window lengths, the window reaches a few frames past the bound and
    the neighbours overlap by at most 4 frames (the stitcher crossfades there).
    """
    core_start = seconds_to_frames_floor(group[0].start_s)
    core_end = min(seconds_to_frames_ceil(group[-1].end_s), max(total_frames, core_start + 1))
    start = min(max(lower, seconds_to_frames_floor(max(0.0, group[0].start_s - options.margin_s))), core_start)
    end = max(min(upper, seconds_to_frames_ceil(group[-1].end_s + options.margin_s)), core_end)
    want = max(snap_frames_up(end - start), latent_frames_to_frames(options.min_latent_frames))
    want = min(want, max_frames)
    end += max(0, min(want - (end - start), upper - end))
    start -= max(0, min(want - (end - start), start - lower))
    if end - start >= want:
        return start, want
    n_frames = snap_frames_down(end - start)
    if n_frames >= core_end - core_start:   # shrink the margins to the 4k+1 below
        return min(max(start, core_end - n_frames), core_start), n_frames
    n_frames = snap_frames_up(end - start)
    return max(0, min(start, total_frames - n_frames)), n_frames   # rather overlap a neighbour than the end


# --- prompts -----------------------------------------------------------------------------------

def speaker_labels(spans) -> dict[str | None, str]:
    """Names for the prompt: speakers in order of first appearance, 说话人A (speaker A), 说话人B, ..."""
    order = list(dict.fromkeys(s.speaker for s in sorted(spans, key=lambda s: s.start_s) if s.speaker))
    labels: dict[str | None, str] = {None: "画面中的人"}   # "the person in the picture"
    for i, name in enumerate(order):
        labels[name] = "说话人" + (string.ascii_uppercase[i] if i < 26 else str(i + 1))
    return labels


def window_prompt(spans: list[Span], labels: dict[str | None, str], options: PlanOptions) -> str:
    """NAVA's prompt: a scene caption, then each line verbatim inside <S>...<E> (nava_pipeline.md §1, §8)."""
    lines = "".join(options.line_intro.format(speaker=labels.get(s.speaker, labels[None]))
                    + f"<S>{_speech_text(s.text)}<E>" for s in spans)
    return f"{options.caption}{lines}"


def _speech_text(text: str) -> str:
    # A literal <S> or <E> inside a line would open or close a span and shift the voice binding.
    return re.sub(r"\s+", " ", text.replace("<S>", " ").replace("<E>", " ")).strip()


def window_summary(window: Window) -> dict:
    """The JSON form of a window (documented in the README)."""
    return {
        "index": window.index,
        "start_s": round(float(window.start_s), 4),
        "end_s": round(float(window.end_s), 4),
        "n_frames": window.n_frames,
        "n_latent_frames": window.n_latent_frames,
        "n_audio_tokens": window.n_audio_tokens,
        "spans": [{"start_s": round(s.start_s, 3), "end_s": round(s.end_s, 3), "text": s.text,
                   "speaker": s.speaker} for s in window.spans],
        "prompt": window.prompt,
    }


