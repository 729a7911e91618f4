"""Reference voices: choosing clean speech per speaker, writing it, and the --ref values."""

import numpy as np
import pytest

from nava_dub.diarize import Turn
from nava_dub.errors import MediaError, UsageError
from nava_dub.references import (
    RefChoice,
    ReferenceClip,
    ReferenceRules,
    check_ref_speakers,
    check_reference_audio,
    parse_refs,
    reference_path,
    rms_dbfs,
    select_references,
    write_reference,
)
from nava_dub.timeline import Span
from tests.speech_models import decode_mono_16k, session_dialogue, session_dialogue_analysis

SR = 16000
A, B = "SPEAKER_00", "SPEAKER_01"


def tone(duration_s: float, amplitude: float, hz: float = 220.0) -> np.ndarray:
    t = np.arange(round(duration_s * SR)) / SR
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def timeline_audio(total_s: float, parts: list[tuple[float, np.ndarray]]) -> np.ndarray:
    wave = np.zeros(round(total_s * SR), dtype=np.float32)
    for start_s, piece in parts:
        i = round(start_s * SR)
        wave[i:i + piece.size] = piece
    return wave


@pytest.fixture
def messy_scene():
    """Speaker A: one clean 4 s span, one overlapped by B, one clipped, one too quiet."""
    spans = [Span(0.0, 4.0, "clean", A), Span(5.0, 9.0, "overlapped", A), Span(10.0, 14.0, "clipped", A),
             Span(15.0, 19.0, "quiet", A), Span(20.0, 24.0, "b speaks", B)]
    turns = [Turn(0.0, 4.0, A), Turn(5.0, 9.0, A), Turn(8.0, 9.5, B), Turn(10.0, 14.0, A), Turn(15.0, 19.0, A),
             Turn(20.0, 24.0, B)]
    wave = timeline_audio(25.0, [(0.0, tone(4, 0.3)), (5.0, tone(4, 0.3)),
                                 (10.0, np.clip(tone(4, 3.0), -1, 1)), (15.0, tone(4, 0.003)),
                                 (20.0, tone(4, 0.3, 330.0))])
    return spans, turns, wave


# --- selection ------------------------------------------------------------------------------------

def test_only_the_clean_span_is_used(messy_scene):
    spans, turns, wave = messy_scene
    clips = select_references(spans, turns, wave, SR, rules=ReferenceRules(min_s=3.0))
    assert clips[A].pieces == ((0.0, 4.0),)
    assert clips[B].pieces == ((20.0, 24.0),)
    assert clips[A].waveform.shape == (1, 4 * SR) and clips[A].waveform.dtype == np.float32
    # the middle of the piece is the input itself (the edges fade in and out)
    np.testing.assert_array_equal(clips[A].waveform[0, SR:3 * SR], wave[SR:3 * SR])


def test_each_rejection_reason_on_its_own(messy_scene):
    spans, turns, wave = messy_scene
    rules = ReferenceRules(min_s=3.0)
    for name in ("overlapped", "clipped", "quiet"):
        only = [s for s in spans if s.text == name]
        with pytest.raises(MediaError, match=f"speaker {A} has only 0.0 s"):
            select_references(only, turns, wave, SR, rules=rules)


def test_not_enough_clean_speech_asks_for_a_ref():
    spans = [Span(0.0, 2.0, "short", A)]
    with pytest.raises(MediaError) as info:
        select_references(spans, [Turn(0.0, 2.0, A)], tone(2, 0.3), SR)
    assert "2.0 s" in info.value.message and f"--ref {A}=FILE" in info.value.hint


def test_longest_spans_first_until_the_target_then_time_order():
    starts_s = [0.0, 10.0, 20.0, 30.0, 40.0]
    lengths_s = [2.0, 6.0, 5.0, 7.0, 3.0]
    spans = [Span(s, s + d, "x", A) for s, d in zip(starts_s, lengths_s, strict=True)]
    wave = timeline_audio(50.0, [(s, tone(d, 0.3)) for s, d in zip(starts_s, lengths_s, strict=True)])
    clip = select_references(spans, [], wave, SR, rules=ReferenceRules(target_s=15.0))[A]
    assert clip.pieces == ((10.0, 16.0), (20.0, 25.0), (30.0, 37.0))    # 7 + 6 + 5 = 18 s >= 15
    gap_samples = round(0.2 * SR)
    assert clip.waveform.shape[1] == 18 * SR + 2 * gap_samples


def test_reference_never_exceeds_the_maximum():
    spans = [Span(0.0, 40.0, "long", A), Span(41.0, 45.0, "more", A)]
    wave = tone(46.0, 0.3)
    rules = ReferenceRules(target_s=60.0, max_s=30.0)
    clip = select_references(spans, [], wave, SR, rules=rules)[A]
    assert clip.pieces == ((0.0, 30.0),)
    assert clip.duration_s <= 30.0


def test_stereo_input_is_mixed_to_mono():
    wave = np.stack([tone(5, 0.4), tone(5, 0.2)])
    clip = select_references([Span(0.0, 5.0, "x", A)], [], wave, SR)[A]
    assert clip.waveform.shape == (1, 5 * SR)
    np.testing.assert_allclose(clip.waveform[0, SR:2 * SR], (wave[0, SR:2 * SR] + wave[1, SR:2 * SR]) / 2)


def test_only_the_requested_speakers(messy_scene):
    spans, turns, wave = messy_scene
    assert set(select_references(spans, turns, wave, SR, speakers=[B])) == {B}


def test_rms_dbfs_of_a_full_scale_sine():
    assert rms_dbfs(tone(1, 1.0)) == pytest.approx(-3.01, abs=0.01)
    assert rms_dbfs(np.zeros(10)) == -np.inf


# --- writing --------------------------------------------------------------------------------------------

def test_reference_written_next_to_the_output(tmp_path):
    clip = ReferenceClip(A, ((0.0, 3.0),), tone(3, 0.5)[None, :], SR)
    out = reference_path(tmp_path / "dubbed.mp4", "SPEAKER 00/x")
    assert out == tmp_path / "dubbed.ref-SPEAKER_00_x.wav"
    write_reference(clip, out)
    back = decode_mono_16k(out)
    assert back.shape == (3 * SR,)
    np.testing.assert_allclose(back, clip.waveform[0], atol=1e-3)     # 16-bit PCM


# --- --ref values ----------------------------------------------------------------------------------------

@pytest.fixture
def voices(tmp_path):
    for name in ("anna.wav", "bob.wav", "odd=name.wav"):
        (tmp_path / name).write_bytes(b"RIFF")
    return tmp_path


def test_one_file_for_everyone_and_one_per_speaker(voices):
    choice = parse_refs([str(voices / "anna.wav"), f"{B}={voices / 'bob.wav'}"])
    assert choice == RefChoice(voices / "anna.wav", ((B, voices / "bob.wav"),))
    assert choice.for_speaker(A) == voices / "anna.wav"
    assert choice.for_speaker(B) == voices / "bob.wav"
    assert RefChoice().for_speaker(A) is None


def test_existing_file_with_equals_sign_is_a_file(voices):
    assert parse_refs([str(voices / "odd=name.wav")]).default == voices / "odd=name.wav"


def test_missing_reference_file_is_named(voices):
    with pytest.raises(MediaError) as info:
        parse_refs([f"{A}={voices / 'nobody.wav'}"])
    assert str(voices / "nobody.wav") in info.value.message and info.value.hint


def test_reference_that_is_a_folder(voices):
    with pytest.raises(MediaError, match="is not a file"):
        parse_refs([str(voices)])


@pytest.mark.parametrize("values", [["anna.wav", "bob.wav"], ["X=anna.wav", "X=bob.wav"], ["=anna.wav"]])
def test_ambiguous_ref_values_are_usage_errors(voices, values, monkeypatch):
    monkeypatch.chdir(voices)
    with pytest.raises(UsageError):
        parse_refs(values)


def test_ref_for_an_unknown_speaker(voices):
    choice = parse_refs([f"SPEAKER_07={voices / 'bob.wav'}"])
    check_ref_speakers(RefChoice(), [A])
    with pytest.raises(UsageError) as info:
        check_ref_speakers(choice, [A, B])
    assert "SPEAKER_07" in info.value.message and f"{A}, {B}" in info.value.message


def test_user_reference_too_short_or_silent(tmp_path):
    path = tmp_path / "v.wav"
    check_reference_audio(path, tone(4, 0.3), SR)
    with pytest.raises(MediaError, match="1.0 s long"):
        check_reference_audio(path, tone(1, 0.3), SR)
    with pytest.raises(MediaError, match="silent"):
        check_reference_audio(path, np.zeros(4 * SR, dtype=np.float32), SR)


# --- on the real front end --------------------------------------------------------------------------

@pytest.mark.slow
def test_references_from_the_transcribed_dialogue(tmp_path_factory):
    from nava_dub.diarize import assign_speakers

    dialogue = session_dialogue(tmp_path_factory)
    spans, turns = session_dialogue_analysis(tmp_path_factory)
    clips = select_references(assign_speakers(spans, turns), turns, dialogue.waveform, SR)
    assert len(clips) == 2
    for speaker, clip in clips.items():
        assert 3.0 <= clip.duration_s <= 30.0
        for start_s, end_s in clip.pieces:   # nobody else speaks in a piece
            assert not [t for t in turns if t.speaker != speaker and min(t.end_s, end_s) > max(t.start_s, start_s)]
