"""umT5 through transformers: Wan key conversion, loading, and parity with Wan's own encoder."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nava_dub.convert.umt5 import hf_to_wan_umt5, wan_to_hf_umt5, wan_umt5_sizes
from nava_dub.errors import WeightsError
from nava_dub.model.text_encoder import TextEncoder, tiny_umt5_config, umt5_xxl_config
from nava_dub.text import TEXT_LEN, encode_prompts, load_text_encoder, load_tokenizer

DATA = Path(__file__).parent / "data" / "umt5"
WEIGHTS = DATA / "tiny_umt5_enc.safetensors"
PROMPTS = json.loads((DATA / "prompts.json").read_text())["prompts"]
FP32_ATOL = 1e-4          # fixture README: fp32 vs float64 differs by 2.8e-5


@pytest.fixture(scope="module")
def io():
    return load_file(str(DATA / "io.safetensors"))


@pytest.fixture(scope="module")
def wan_state():
    return load_file(str(WEIGHTS))


def _crop_and_pack(hidden, seq_lens):
    return torch.cat([h[:n] for h, n in zip(hidden, seq_lens.tolist(), strict=True)])


def _rel_l2(a, b):
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def test_key_conversion_round_trip(wan_state):
    hf = wan_to_hf_umt5(wan_state)
    with torch.device("meta"):
        reference_keys = set(TextEncoder(tiny_umt5_config()).umt5.state_dict())
    assert set(hf) == reference_keys
    assert hf["encoder.embed_tokens.weight"] is hf["shared.weight"]
    back = hf_to_wan_umt5(hf)
    assert set(back) == set(wan_state)
    assert all(back[k] is wan_state[k] for k in wan_state)


def test_release_layout_has_242_wan_keys():
    # components.md §2.3: 24 blocks x 10 tensors + embedding + final norm; HF adds the tied alias.
    with torch.device("meta"):
        hf_keys = TextEncoder(umt5_xxl_config()).umt5.state_dict()
    assert len(hf_keys) == 243
    assert len(hf_to_wan_umt5(hf_keys)) == 242


def test_unknown_key_is_named(wan_state):
    with pytest.raises(WeightsError, match="blocks.0.attn.rope.weight"):
        wan_to_hf_umt5({**wan_state, "blocks.0.attn.rope.weight": torch.zeros(1)})


def test_sizes_read_from_shapes(wan_state):
    config = tiny_umt5_config()
    sizes = wan_umt5_sizes(wan_state)
    assert sizes == {k: getattr(config, k) for k in sizes}


@pytest.fixture(scope="module")
def encoder_fp32():
    return load_text_encoder(WEIGHTS, dtype=torch.float32)


def test_fp32_parity_with_wan(encoder_fp32, io):
    with torch.no_grad():
        hidden = encoder_fp32(io["input_ids"], io["attention_mask"])
    packed = _crop_and_pack(hidden, io["seq_lens"])
    assert packed.shape == io["context_packed"].shape
    torch.testing.assert_close(packed, io["context_packed"], atol=FP32_ATOL, rtol=0)


def test_bf16_parity_with_wan(io):
    encoder = load_text_encoder(WEIGHTS)               # NAVA's dtype is the default
    assert next(encoder.parameters()).dtype == torch.bfloat16
    rows = [1, 4, 7]                                   # bf16 is slow on CPU: a span, two spans, the longest
    with torch.no_grad():
        hidden = encoder(io["input_ids"][rows], io["attention_mask"][rows])
    offsets = torch.cumsum(io["seq_lens"], 0) - io["seq_lens"]
    for out, row in zip(hidden, rows, strict=True):
        start, n = int(offsets[row]), int(io["seq_lens"][row])
        # Fixture README: bf16 kernels other than the fixture machine's are judged against fp32.
        assert _rel_l2(out[:n], io["context_packed"][start : start + n]) < 0.1
        assert _rel_l2(out[:n], io["context_bf16_packed"][start : start + n]) < 0.01


def test_encode_prompts_crops_each_prompt(encoder_fp32, io):
    tokenizer = load_tokenizer(DATA / "tokenizer")
    fitting = [p for p in PROMPTS if p["seq_len"] < TEXT_LEN]
    encoded = encode_prompts(encoder_fp32, tokenizer, [p["prompt"] for p in fitting])
    offsets = torch.cumsum(io["seq_lens"], 0) - io["seq_lens"]
    for case, out in zip(fitting, encoded, strict=True):
        start, n = int(offsets[case["index"]]), case["seq_len"]
        assert out.context.shape == (n, 64)
        assert out.speaker_slot_positions == tuple(case["spk_pos"])
        torch.testing.assert_close(out.context, io["context_packed"][start : start + n], atol=FP32_ATOL, rtol=0)


def test_loads_official_pth_format(tmp_path, wan_state, encoder_fp32, io):
    pth = tmp_path / "models_t5_umt5-xxl-enc-bf16.pth"
    torch.save(wan_state, pth)
    encoder = load_text_encoder(pth, dtype=torch.float32)
    ids, mask = io["input_ids"][:2], io["attention_mask"][:2]
    with torch.no_grad():
        assert torch.equal(encoder(ids, mask), encoder_fp32(ids, mask))


def test_weight_file_errors(tmp_path, wan_state):
    with pytest.raises(WeightsError, match="does not exist"):
        load_text_encoder(tmp_path / "missing.pth")
    broken = tmp_path / "broken.pth"
    broken.write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError, match="cannot read"):
        load_text_encoder(broken)
    wrong_shape = tmp_path / "wrong.pth"
    torch.save({**wan_state, "norm.weight": torch.ones(65, dtype=torch.bfloat16)}, wrong_shape)
    with pytest.raises(WeightsError, match=r"do not fit: 1 of the wrong shape \(encoder.final_layer_norm.weight "
                                           r"\[65\] \(expected \[64\]\)\)"):
        load_text_encoder(wrong_shape)
