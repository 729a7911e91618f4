import json

import pytest

from nava_dub.errors import TranscriptError
from nava_dub.timeline import Span, Word
from nava_dub.transcript import read_transcript, transcript_to_json, write_transcript

SPANS = [
    Span(0.5, 2.0, "Hello there.", "SPEAKER_00", (Word(0.5, 0.9, "Hello"), Word(1.0, 2.0, "there."))),
    Span(2.5, 4.25, "Nice to meet you, Anna.", "SPEAKER_01"),
]


@pytest.mark.parametrize("suffix", [".json", ".srt"])
def test_round_trip(tmp_path, suffix):
    path = tmp_path / f"spans{suffix}"
    write_transcript(path, SPANS)
    got = read_transcript(path, duration_s=5.0)
    assert [(s.start_s, s.end_s, s.text, s.speaker) for s in got.spans] == \
           [(s.start_s, s.end_s, s.text, s.speaker) for s in SPANS]
    assert got.speakers == ("SPEAKER_00", "SPEAKER_01")
    if suffix == ".json":
        assert got.spans[0].words == SPANS[0].words


def test_srt_written_by_an_editor(tmp_path):
    path = tmp_path / "edited.srt"
    path.write_text("1\n00:00:01,000 --> 00:00:02,500\nAnna: Bonjour à tous.\n\n"
                    "2\n00:00:03,000 --> 00:00:04,000\nSans locuteur,\nsur deux lignes.\n", encoding="utf-8")
    spans = read_transcript(path).spans
    assert spans[0] == Span(1.0, 2.5, "Bonjour à tous.", "Anna")
    assert spans[1].text == "Sans locuteur, sur deux lignes." and spans[1].speaker is None


def _json_file(tmp_path, spans, **extra):
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"spans": spans, **extra}, indent=2))
    return path


@pytest.mark.parametrize("spans, extra, message", [
    ([{"start_s": 1, "end_s": 2, "text": "a"}, {"start_s": 3, "end_s": 2.5, "text": "b"}], {}, "reversed"),
    ([{"start_s": 1, "end_s": 3, "text": "a"}, {"start_s": 2, "end_s": 4, "text": "b"}], {}, "before the previous"),
    ([{"start_s": 1, "end_s": 99, "text": "a"}], {}, "past the end"),
    ([{"start_s": 1, "end_s": 2, "text": "a", "speaker": "BOB"}], {"speakers": ["ANNA"]}, "unknown speaker 'BOB'"),
    ([{"start_s": 1, "end_s": 2, "text": "  "}], {}, "no text"),
    ([{"start_s": "soon", "end_s": 2, "text": "a"}], {}, "numeric"),
])
def test_bad_spans_name_the_line(tmp_path, spans, extra, message):
    path = _json_file(tmp_path, spans, **extra)
    with pytest.raises(TranscriptError, match=message) as info:
        read_transcript(path, duration_s=10.0)
    # the offending span is the last one; its object starts on the line the error names
    bad_line = int(str(info.value.message).split(":")[1])
    lines = path.read_text().splitlines()
    assert lines[bad_line - 1].strip() == "{"
    assert sum(1 for line in lines[1:bad_line] if line.strip() == "{") == len(spans)
    assert info.value.hint


def test_broken_json_names_the_line(tmp_path):
    path = tmp_path / "t.json"
    path.write_text('{"spans": [\n  {"start_s": 1, "end_s": 2, "text": "a"},\n  {"start_s": 3 "end_s": 4}\n]}')
    with pytest.raises(TranscriptError, match=r"t\.json:3: broken JSON"):
        read_transcript(path)


def test_bad_srt_timing_names_the_line(tmp_path):
    path = tmp_path / "t.srt"
    path.write_text("1\n00:00:01,000 --> 00:00:02,000\nok\n\n2\n00:00:03 -> 4\nbad\n")
    with pytest.raises(TranscriptError, match=r"t\.srt:6: expected a timing line"):
        read_transcript(path)


def test_missing_and_unknown_format(tmp_path):
    with pytest.raises(TranscriptError, match="not found"):
        read_transcript(tmp_path / "nope.json")
    (tmp_path / "t.txt").write_text("hello")
    with pytest.raises(TranscriptError, match="unknown transcript format"):
        read_transcript(tmp_path / "t.txt")


def test_json_is_documented_shape():
    doc = json.loads(transcript_to_json(SPANS))
    assert doc["version"] == 1 and doc["speakers"] == ["SPEAKER_00", "SPEAKER_01"]
    assert set(doc["spans"][0]) == {"start_s", "end_s", "speaker", "text", "words"}
