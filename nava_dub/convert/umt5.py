"""Wan's umT5 encoder file (`models_t5_umt5-xxl-enc-bf16.pth`) <-> transformers' `UMT5EncoderModel` keys.

Wan names the encoder its own way (`blocks.N.attn.q.weight`); transformers nests the same tensors as
`encoder.block.N.layer.0.SelfAttention.q.weight`. The map is one-to-one except the token embedding,
which transformers exposes twice (`shared.weight` and its tied alias `encoder.embed_tokens.weight`).
Nothing here touches files: state dicts in, state dicts out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, TypeVar

from nava_dub.convert import rename_all
from nava_dub.errors import WeightsError

T = TypeVar("T")

# Per-block Wan suffix -> HF suffix. Wan's ffn.gate.0 is the GELU branch (wi_0), ffn.fc1 the linear one (wi_1).
_BLOCK_KEYS = {
    "norm1.weight": "layer.0.layer_norm.weight",
    "attn.q.weight": "layer.0.SelfAttention.q.weight",
    "attn.k.weight": "layer.0.SelfAttention.k.weight",
    "attn.v.weight": "layer.0.SelfAttention.v.weight",
    "attn.o.weight": "layer.0.SelfAttention.o.weight",
    "pos_embedding.embedding.weight": "layer.0.SelfAttention.relative_attention_bias.weight",
    "norm2.weight": "layer.1.layer_norm.weight",
    "ffn.gate.0.weight": "layer.1.DenseReluDense.wi_0.weight",
    "ffn.fc1.weight": "layer.1.DenseReluDense.wi_1.weight",
    "ffn.fc2.weight": "layer.1.DenseReluDense.wo.weight",
}
_GLOBAL_KEYS = {"token_embedding.weight": "shared.weight", "norm.weight": "encoder.final_layer_norm.weight"}
_TIED_ALIAS = "encoder.embed_tokens.weight"
_INVERSE_BLOCK_KEYS = {hf: wan for wan, hf in _BLOCK_KEYS.items()}
_INVERSE_GLOBAL_KEYS = {hf: wan for wan, hf in _GLOBAL_KEYS.items()}
_HINT = "check that the file is the umT5-xxl encoder from Wan2.2-TI2V-5B"

_WAN_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_HF_BLOCK = re.compile(r"encoder\.block\.(\d+)\.(.+)")


def wan_to_hf_umt5(state_dict: Mapping[str, T]) -> dict[str, T]:
    """Rename Wan's 2 + 10·n_layers keys to UMT5EncoderModel's, adding the tied embedding alias."""
    out = rename_all(state_dict, _wan_key_to_hf, "Wan umT5 encoder", _HINT)
    if "shared.weight" not in out:
        raise WeightsError(
            "umT5 state dict has no `token_embedding.weight`",
            "point to Wan's models_t5_umt5-xxl-enc-bf16.pth (the encoder-only file)",
        )
    out[_TIED_ALIAS] = out["shared.weight"]
    return out


def wan_umt5_sizes(state_dict: Mapping[str, Any]) -> dict[str, int]:
    """The encoder sizes (UMT5Config fields) a Wan-format state dict implies, read from shapes."""
    try:
        pos = state_dict["blocks.0.pos_embedding.embedding.weight"]     # [n_buckets, n_heads]
        q = state_dict["blocks.0.attn.q.weight"]                        # [n_heads·d_kv, d_model]
        embedding = state_dict["token_embedding.weight"]                # [vocab, d_model]
        ffn = state_dict["blocks.0.ffn.fc1.weight"]                     # [d_ff, d_model]
    except KeyError as err:
        raise WeightsError(f"umT5 state dict lacks {err}", "use Wan's umT5 encoder file") from err
    n_layers = len({m.group(1) for k in state_dict if (m := _WAN_BLOCK.fullmatch(k))})
    n_heads = int(pos.shape[1])
    return {
        "vocab_size": int(embedding.shape[0]),
        "d_model": int(embedding.shape[1]),
        "d_kv": int(q.shape[0]) // n_heads,
        "d_ff": int(ffn.shape[0]),
        "num_layers": n_layers,
        "num_heads": n_heads,
    }


def hf_to_wan_umt5(state_dict: Mapping[str, T]) -> dict[str, T]:
    """The inverse of wan_to_hf_umt5: drops the tied alias and restores Wan's names."""
    untied = {k: v for k, v in state_dict.items() if k != _TIED_ALIAS}
    return rename_all(untied, _hf_key_to_wan, "transformers UMT5EncoderModel", _HINT)


def _wan_key_to_hf(key: str) -> str | None:
    if key in _GLOBAL_KEYS:
        return _GLOBAL_KEYS[key]
    match = _WAN_BLOCK.fullmatch(key)
    if match and match.group(2) in _BLOCK_KEYS:
        return f"encoder.block.{match.group(1)}.{_BLOCK_KEYS[match.group(2)]}"
    return None


def _hf_key_to_wan(key: str) -> str | None:
    if key in _INVERSE_GLOBAL_KEYS:
        return _INVERSE_GLOBAL_KEYS[key]
    match = _HF_BLOCK.fullmatch(key)
    if match and match.group(2) in _INVERSE_BLOCK_KEYS:
        return f"blocks.{match.group(1)}.{_INVERSE_BLOCK_KEYS[match.group(2)]}"
    return None
