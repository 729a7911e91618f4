"""The window-planning rules of issue 2 §8, as one checker shared by the pure and the clip tests."""

from __future__ import annotations

from nava_dub.options import PlanOptions
from nava_dub.plan import estimate_words
from nava_dub.timeline import MAX_FRAMES, NAVA_FPS, Span, Window, latent_frames_to_frames

FRAME_S = 1 / float(NAVA_FPS)
EPS = 1e-6


def check_plan_rules(windows: tuple[Window, ...], spans: list[Span], duration_s: float,
                     options: PlanOptions = PlanOptions()) -> None:
    revoiced = [s for s in spans if options.speakers is None or s.speaker in options.speakers]
    assert windows, "no windows planned"
    min_frames = latent_frames_to_frames(options.min_latent_frames)
    for w in windows:
        # 4k+1 frames at 24 fps, at most 10.04 s
        assert (w.n_frames - 1) % 4 == 0 and 1 <= w.n_frames <= MAX_FRAMES, w
        assert w.n_latent_frames == (w.n_frames + 3) // 4
        assert w.start_frame >= 0
        assert float(w.end_s) <= max(duration_s, float(w.n_frames) * FRAME_S) + EPS, "window past the end"
        # its spans lie inside it, in order, and its prompt carries each line in <S>...<E>
        assert w.spans, f"window {w.index} has no speech"
        for s in w.spans:
            assert float(w.start_s) - EPS <= s.start_s and s.end_s <= float(w.end_s) + EPS, (w, s)
        assert w.prompt.count("<S>") == w.prompt.count("<E>") == len(w.spans)
        position = 0
        for s in w.spans:
            position = w.prompt.index(f"<S>{s.text}<E>", position)
        # no window over silence: beyond its speech only margins, 4k+1 rounding and the minimum length
        if w.n_frames > min_frames:
            slack_s = options.margin_s + 4 * FRAME_S
            assert float(w.start_s) >= w.spans[0].start_s - slack_s - EPS, w
            assert float(w.end_s) <= w.spans[-1].end_s + slack_s + EPS, w
        for a, b in zip(w.spans, w.spans[1:], strict=False):
            assert b.start_s - a.end_s <= options.max_gap_s + EPS, "a long pause inside a window"
    # windows in order; touching spans can make neighbours overlap, by one 4-frame step at most
    for a, b in zip(windows, windows[1:], strict=False):
        assert b.start_frame >= a.start_frame + a.n_frames - 4, (a, b)
    # every re-voiced word lies whole inside one window (never cut inside a word), and nothing else is voiced
    planned = [s for w in windows for s in w.spans]
    for span in revoiced:
        for word in span.words or estimate_words(span):
            if span.words:   # timed words travel with their piece of the span
                holders = [w for w in windows if any(word in p.words for p in w.spans)]
            else:
                holders = [w for w in windows if any(p.start_s - EPS <= word.start_s and word.end_s <= p.end_s + EPS
                                                     for p in w.spans)]
            assert len(holders) == 1, f"word {word} is in {len(holders)} windows"
            w = holders[0]
            assert float(w.start_s) - EPS <= word.start_s and word.end_s <= float(w.end_s) + EPS
    assert all(p.speaker in {s.speaker for s in revoiced} for p in planned)
    assert abs(sum(p.end_s - p.start_s for p in planned)) <= sum(s.end_s - s.start_s for s in revoiced) + EPS
