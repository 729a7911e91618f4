"""NAVA's text encoder: the umT5-xxl encoder, run through transformers' `UMT5EncoderModel`.

Wan's own `t5.py` computes the same thing (bit-exact on random weights, components.md §2.1) but
calls `torch.cuda.current_device()` at import time, so we use transformers with a config built
here, never fetched from the hub. Keys of the official file convert with nava_dub.convert.umt5.
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import UMT5Config, UMT5EncoderModel


def umt5_xxl_config() -> UMT5Config:
    """The released encoder (Wan2.2 `umt5_xxl`): 24 layers, 64 heads of 64, gated tanh-GELU."""
    return umt5_config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24, num_heads=64)


def tiny_umt5_config() -> UMT5Config:
    """The random-weight parity fixture's size (fixtures/umt5/config.json)."""
    return umt5_config(vocab_size=896, d_model=64, d_kv=32, d_ff=160, num_layers=2, num_heads=2)


def umt5_config(
    vocab_size: int, d_model: int, d_kv: int, d_ff: int, num_layers: int, num_heads: int
) -> UMT5Config:
    """Any umT5 encoder size with the settings Wan's `umt5_xxl` fixes."""
    return UMT5Config(
        vocab_size=vocab_size,
        d_model=d_model,
        d_kv=d_kv,
        d_ff=d_ff,
        num_layers=num_layers,
        num_heads=num_heads,
        relative_attention_num_buckets=32,
        relative_attention_max_distance=128,   # Wan's max_dist
        feed_forward_proj="gated-gelu",        # tanh-approximate GELU, as Wan's T5
        layer_norm_epsilon=1e-6,
        dropout_rate=0.0,
        is_encoder_decoder=False,
        use_cache=False,
    )


class TextEncoder(nn.Module):
    """umT5 encoder: token ids [B, L] + mask [B, L] -> hidden states [B, L, d_model]."""

    def __init__(self, config: UMT5Config) -> None:
        super().__init__()
        self.umt5 = UMT5EncoderModel(config)   # its keys are the converted Wan keys
        self.umt5.eval()

    @property
    def d_model(self) -> int:
        return self.umt5.config.d_model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # input_ids, attention_mask: [B, L] int64 -> [B, L, D]; rows past the mask are garbage
        out = self.umt5(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state
