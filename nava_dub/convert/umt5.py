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

_WAN_BLOCK = re.compile(r"blocks\.(\d+)\.(.+)")
_HF_BLOCK = re.compile(r"encoder\.block\.(\d+)\.(.+)")


def wan_to_hf_umt5(state_dict: Mapping[str, T]) -> dict[str, T]:
    """Rename Wan's 2 + 10·n_layers keys to UMT5EncoderModel's, adding the tied embedding alias."""
    hf_suffix = _BLOCK_KEYS
    out: dict[str, T] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        match = _WAN_BLOCK.fullmatch(key)
        if key in _GLOBAL_KEYS:
            out[_GLOBAL_KEYS[key]] = tensor
        elif match and match.group(2) in hf_suffix:
            out[f"encoder.block.{match.group(1)}.{hf_suffix[match.group(2)]}"] = tensor
        else:
            unknown.append(key)
    _raise_if_unknown(unknown, "Wan umT5 encoder")
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
    wan_suffix = {hf: wan for wan, hf in _BLOCK_KEYS.items()}
    wan_global = {hf: wan for wan, hf in _GLOBAL_KEYS.items()}
    out: dict[str, T] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        match = _HF_BLOCK.fullmatch(key)
        if key == _TIED_ALIAS:
            continue
        if key in wan_global:
            out[wan_global[key]] = tensor
        elif match and match.group(2) in wan_suffix:
            out[f"blocks.{match.group(1)}.{wan_suffix[match.group(2)]}"] = tensor
        else:
            unknown.append(key)
    _raise_if_unknown(unknown, "transformers UMT5EncoderModel")
    return out


def _raise_if_unknown(keys: list[str], source: str) -> None:
    if keys:
        shown = ", ".join(sorted(keys)[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        raise WeightsError(
            f"{len(keys)} key(s) are not {source} keys: {shown}",
            "check that the file is the umT5-xxl encoder from Wan2.2-TI2V-5B",
        )
