import pytest

from nava_dub.errors import DubError, UsageError
from nava_dub.options import PlanOptions
from nava_dub.plan import plan_windows, window_summary
from nava_dub.timeline import Span, Word
from tests.plan_rules import check_plan_rules


def _span(start_s, n_words, speaker="A", word_s=0.35, gap_s=0.1, wide_gap_after=None):
    words, t = [], start_s
    for i in range(n_words):
        words.append(Word(round(t, 3), round(t + word_s, 3), f"w{i}"))
        t += word_s + (0.6 if i == wide_gap_after else gap_s)
    return Span(words[0].start_s, words[-1].end_s, " ".join(w.text for w in words), speaker, tuple(words))


def test_dialogue_is_grouped_and_cut_in_pauses():
    spans = [_span(0.4, 5, "A"), _span(2.7, 6, "B"), _span(6.0, 4, "A"), _span(13.0, 3, "B")]
    windows = plan_windows(spans, duration_s=16.0)
    check_plan_rules(windows, spans, 16.0)
    assert [len(w.spans) for w in windows] == [3, 1]          # the 4.5 s pause starts a new window
    assert "说话人A说：<S>w0 w1 w2 w3 w4<E>说话人B说：<S>" in windows[0].prompt


def test_long_utterance_is_cut_at_the_widest_word_gap():
    span = _span(0.5, 36, wide_gap_after=15)                    # 16.7 s, one pause of 0.6 s after word 15
    windows = plan_windows([span], duration_s=20.0)
    check_plan_rules(windows, [span], 20.0)
    assert len(windows) == 2
    assert windows[0].spans[0].words[-1].text == "w15" and windows[1].spans[0].words[0].text == "w16"


def test_very_long_utterance_without_word_timings():
    span = Span(1.0, 31.0, " ".join(f"word{i}" for i in range(90)), "A")
    windows = plan_windows([span], duration_s=32.0)
    check_plan_rules(windows, [span], 32.0)
    assert len(windows) >= 4
    assert " ".join(p.text for w in windows for p in w.spans) == span.text


def test_tight_word_gaps_still_cover_every_word():
    span = _span(0.0, 60, word_s=0.3, gap_s=0.05)               # gaps far below one 4-frame step
    windows = plan_windows([span], duration_s=span.end_s + 0.02)
    check_plan_rules(windows, [span], span.end_s + 0.02)


def test_short_word_gets_the_minimum_window_and_stays_in_the_clip():
    spans = [Span(0.05, 0.3, "Hi", "A")]
    windows = plan_windows(spans, duration_s=0.9)
    assert windows[0].n_frames == 21 and windows[0].start_frame == 0   # 0.9 s holds 21 frames, not 25
    check_plan_rules(windows, spans, 0.9, PlanOptions(min_latent_frames=6))


def test_only_chosen_speakers_are_planned():
    spans = [_span(0.4, 5, "A"), _span(2.7, 6, "B"), _span(6.0, 4, "A")]
    options = PlanOptions(speakers=("B",))
    windows = plan_windows(spans, 10.0, options)
    check_plan_rules(windows, spans, 10.0, options)
    assert {s.speaker for w in windows for s in w.spans} == {"B"}
    with pytest.raises(DubError, match="unknown speaker"):
        plan_windows(spans, 10.0, PlanOptions(speakers=("C",)))


def test_no_speech_and_bad_options():
    with pytest.raises(DubError, match="no speech"):
        plan_windows([], 10.0)
    with pytest.raises(UsageError, match="out of range"):
        plan_windows([_span(0, 3)], 10.0, PlanOptions(max_latent_frames=80))


def test_literal_markers_in_text_cannot_shift_the_voice_binding():
    windows = plan_windows([Span(1.0, 2.0, "say <S> twice <E>", "A")], 4.0)
    assert windows[0].prompt.count("<S>") == 1 and "<S>say twice<E>" in windows[0].prompt


def test_summary_fields():
    window = plan_windows([_span(0.4, 5)], 5.0)[0]
    summary = window_summary(window)
    assert set(summary) >= {"start_s", "end_s", "n_frames", "n_latent_frames", "n_audio_tokens", "spans", "prompt"}
    assert set(summary["spans"][0]) == {"start_s", "end_s", "text", "speaker"}
    assert summary["n_audio_tokens"] == window.n_audio_tokens
