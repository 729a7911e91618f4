"""NAVA's prompt handling: Wan's cleaning, speaker slots, umT5 tokenization and the 512-token cap."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nava_dub.errors import ModelError, WeightsError
from nava_dub.text import (
    TEXT_LEN,
    clean_prompt,
    load_tokenizer,
    mark_speaker_slots,
    n_prompt_tokens,
    prepare_prompt,
    tokenize_prompts,
)

DATA = Path(__file__).parent / "data" / "umt5"
FIXTURE = json.loads((DATA / "prompts.json").read_text())
PROMPTS = FIXTURE["prompts"]
FITTING = [p for p in PROMPTS if p["seq_len"] < TEXT_LEN]          # prompt 7 is the truncated one
LONG = next(p for p in PROMPTS if p["seq_len"] == TEXT_LEN)


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer(DATA / "tokenizer")


@pytest.fixture(scope="module")
def io():
    return load_file(str(DATA / "io.safetensors"))


@pytest.mark.parametrize("case", PROMPTS, ids=lambda p: str(p["index"]))
def test_clean_prompt_matches_wan(case):
    assert clean_prompt(case["prompt"]) == case["cleaned"]


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("“Stop,” she said, ‘now’.", "\"Stop,\" she said, 'now'."),   # ftfy uncurls quotes
        ("Ｈｅｌｌｏ\u3000ｗｏｒｌｄ！", "Hello world!"),               # and folds full width
        ("ﬁne  ﬂow", "fine flow"),                                        # and latin ligatures
        ("a &amp;amp;amp;amp;amp; b", "a & b"),                           # ftfy unescapes to a fixed point
        ("<S>a &amp;amp;amp; b<E>", "<S>a &amp; b<E>"),                   # '<' turns ftfy's off: Wan's two only
        ("a &amp;amp;amp; b\n<S>c<E>", "a & b <S>c<E>"),                  # ... from its line on
        ("bell\x07 and \x1b[31mred\x1b[0m", "bell and red"),             # controls, terminal escapes
        ("cafe\u0301", "café"),                                           # NFC
    ],
)
def test_clean_prompt_ftfy_steps(raw, cleaned):
    assert clean_prompt(raw) == cleaned


def test_mark_speaker_slots_rewrites_each_span_once():
    assert mark_speaker_slots("a <S>hi<E> b <S>yo<E>") == "a <S><extra_id_2>hi<E> b <S><extra_id_2>yo<E>"
    once = mark_speaker_slots("<S>hi<E>")
    assert mark_speaker_slots(once) == once


def test_stray_speaker_slot_is_an_error():
    with pytest.raises(ModelError, match="1 `<extra_id_2>`"):
        mark_speaker_slots("a <extra_id_2> b <S>hi<E>")


def test_entity_encoded_span_gets_its_slot():
    assert prepare_prompt("say &lt;S&gt;hi&lt;E&gt;") == "say <S><extra_id_2>hi<E>"


def test_tokenize_rewrites_spans_and_matches_fixture(tokenizer, io):
    rows = [p["index"] for p in FITTING]
    # The fixture prompts carry the slot already; strip it so our rewrite has to put it back.
    raw = [p["prompt"].replace("<extra_id_2>", "") for p in FITTING]
    batch = tokenize_prompts(tokenizer, raw)
    assert batch.input_ids.shape == (len(rows), TEXT_LEN)
    assert torch.equal(batch.input_ids, io["input_ids"][rows])
    assert torch.equal(batch.attention_mask, io["attention_mask"][rows])
    assert batch.n_tokens == tuple(p["seq_len"] for p in FITTING)
    assert batch.speaker_slot_positions == tuple(tuple(p["spk_pos"]) for p in FITTING)


def test_speaker_slot_is_one_token(tokenizer):
    assert tokenizer.convert_tokens_to_ids("<extra_id_2>") == FIXTURE["spk_token_id"]


def test_prompt_over_512_tokens_is_an_error_naming_the_excess(tokenizer):
    n_tokens = n_prompt_tokens(tokenizer, LONG["prompt"])
    assert n_tokens > TEXT_LEN
    # What NAVA keeps of it is our tokenization cut at 511 + </s>.
    full_ids = tokenizer(clean_prompt(LONG["prompt"])).input_ids
    assert full_ids[: TEXT_LEN - 1] == LONG["ids"][: TEXT_LEN - 1]
    with pytest.raises(ModelError, match=f"{n_tokens} umT5 tokens, {n_tokens - TEXT_LEN} over"):
        tokenize_prompts(tokenizer, [FITTING[0]["prompt"], LONG["prompt"]])


def test_tokenizer_folder_without_tokenizer_json(tmp_path):
    with pytest.raises(WeightsError, match="tokenizer.json"):
        load_tokenizer(tmp_path)
