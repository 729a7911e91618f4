"""The whisperx adapter: pure span building, and a real offline run over tiny models on an
espeak dialogue whose utterance times are known."""

import numpy as np
import pytest

from nava_dub.errors import WeightsError
from nava_dub.timeline import Word
from nava_dub.transcribe import (
    SpeechModels,
    SpeechOptions,
    Transcriber,
    merge_close_regions,
    punkt_data_dir,
    spans_from_regions,
    spread_words,
    words_in_chunk,
)
from tests.speech_models import (
    session_dialogue,
    session_dialogue_analysis,
    session_speech_models,
    session_transcriber,
    torch_threads,
)

# --- pure -------------------------------------------------------------------------------------------


def test_regions_closer_than_the_gap_merge():
    regions = [(0.0, 1.0), (1.3, 2.0), (3.0, 4.0), (4.6, 5.0)]
    assert merge_close_regions(regions, 0.5) == [(0.0, 2.0), (3.0, 4.0), (4.6, 5.0)]
    assert merge_close_regions(regions, 0.0) == regions


def test_spread_words_fill_the_segment_by_character_count():
    words = spread_words(" ab abcd ", 1.0, 4.0)
    assert [w.text for w in words] == ["ab", "abcd"]
    assert words[0].start_s == 1.0 and words[-1].end_s == pytest.approx(4.0)
    assert words[0].end_s == pytest.approx(2.0) == words[1].start_s      # 2 of 6 characters


def test_each_word_goes_to_the_region_it_overlaps_most():
    words = [Word(0.1, 0.5, "a"), Word(0.9, 1.3, "b"), Word(2.1, 2.4, "c")]   # b: 0.1 s in r1, 0.3 s in r2
    spans = spans_from_regions([(0.0, 1.0), (1.0, 1.8), (2.0, 3.0)], words)
    assert [(s.start_s, s.end_s, s.text) for s in spans] == [(0.0, 1.0, "a"), (1.0, 1.8, "b"), (2.0, 3.0, "c")]
    assert spans[1].words == (Word(1.0, 1.3, "b"),)        # clipped into its region


def test_regions_without_words_are_not_spans():
    spans = spans_from_regions([(0.0, 1.0), (5.0, 6.0)], [Word(0.2, 0.6, "only")])
    assert [s.text for s in spans] == ["only"]


def test_words_between_regions_go_to_the_nearest():
    spans = spans_from_regions([(0.0, 1.0), (3.0, 4.0)], [Word(2.6, 2.8, "near")])
    assert (spans[0].start_s, spans[0].words[0]) == (3.0, Word(3.0, 3.0, "near"))


def test_placed_words_are_ordered_and_do_not_overlap():
    words = [Word(0.0, 0.6, "a"), Word(0.4, 0.8, "b"), Word(0.7, 2.5, "c")]
    [span] = spans_from_regions([(0.1, 2.0)], words)
    assert span.words == (Word(0.1, 0.6, "a"), Word(0.6, 0.8, "b"), Word(0.8, 2.0, "c"))


def test_chunk_words_fall_back_to_the_text_when_alignment_failed():
    aligned = [{"start": 0.5, "end": 2.5, "text": "hello there", "words": []},          # alignment failed
               {"start": 6.0, "end": 7.0, "text": "later", "words": [{"word": "later", "start": 6.1, "end": 6.9}]}]
    decoded = [{"start": 0.5, "end": 2.5, "text": "hello there"}, {"start": 6.0, "end": 7.0, "text": "later"}]
    words = words_in_chunk(aligned, decoded, 0.5, 2.5)
    assert [w.text for w in words] == ["hello", "there"] and words[-1].end_s == pytest.approx(2.5)
    assert words_in_chunk(aligned, decoded, 6.0, 7.0) == [Word(6.1, 6.9, "later")]


def test_punkt_files_are_created_offline(tmp_path):
    root = punkt_data_dir("english", tmp_path)
    folder = root / "tokenizers" / "punkt_tab" / "english"
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        ["collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"])


# --- missing models -----------------------------------------------------------------------------------

def test_missing_whisper_folder_names_the_folder(tmp_path):
    models = SpeechModels.from_weights_dir(tmp_path)
    with pytest.raises(WeightsError) as info:
        Transcriber(models, SpeechOptions(language="en"))
    assert str(tmp_path / "speech" / "whisper-ct2") in info.value.message
    assert "weights/README.md" in info.value.hint


@pytest.mark.slow
def test_missing_alignment_folder_names_the_language_folder(tmp_path_factory):
    paths = session_speech_models(tmp_path_factory)
    with pytest.raises(WeightsError) as info:
        Transcriber(SpeechModels.from_weights_dir(paths.weights_dir), SpeechOptions(language="fr"))
    assert str(paths.weights_dir / "speech" / "wav2vec2-fr") in info.value.message


# --- the real thing on tiny models --------------------------------------------------------------------

@pytest.mark.slow
def test_spans_sit_on_the_spoken_utterances(tmp_path_factory):
    dialogue = session_dialogue(tmp_path_factory)
    spans, _ = session_dialogue_analysis(tmp_path_factory)
    assert len(spans) == len(dialogue.utterances)
    for span, utt in zip(spans, dialogue.utterances, strict=True):
        assert abs(span.start_s - utt.start_s) < 0.3, (span, utt)     # VAD onset
        assert -0.1 < span.end_s - utt.end_s < 0.6, (span, utt)       # VAD offset runs a little long
        assert span.speaker is None


@pytest.mark.slow
def test_words_are_inside_their_span_and_in_order(tmp_path_factory):
    spans, _ = session_dialogue_analysis(tmp_path_factory)
    for span in spans:
        assert span.words and span.text.strip()
        assert span.start_s <= span.words[0].start_s and span.words[-1].end_s <= span.end_s
        for before, after in zip(span.words, span.words[1:], strict=False):
            assert before.start_s <= before.end_s <= after.start_s <= after.end_s
        assert span.text == " ".join(w.text for w in span.words)


@pytest.mark.slow
def test_silence_gives_no_spans_and_nothing_is_printed(tmp_path_factory, capfd):
    transcriber = session_transcriber(tmp_path_factory)
    capfd.readouterr()
    with torch_threads(1):
        spans = transcriber(np.zeros(16000 * 2, dtype=np.float32))   # whisperx logs "No active speech"
    assert spans == []
    assert capfd.readouterr().out == ""      # whisperx's own handler would write to stdout



@pytest.mark.slow
def test_unloadable_whisper_folder_is_a_weights_error(tmp_path):
    folder = tmp_path / "speech" / "whisper-ct2"
    folder.mkdir(parents=True)
    (folder / "model.bin").write_bytes(b"not a model")
    (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(WeightsError, match="could not be loaded"):
        Transcriber(SpeechModels.from_weights_dir(tmp_path), SpeechOptions())
