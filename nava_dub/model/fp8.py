"""Weight-only fp8 Linear layers in the format of `NAVA_fp8.safetensors`.

Each quantised weight `W` [out, in] is stored as float8_e4m3fn `W_q` plus a per-row bfloat16
`weight_scale` [out]: W ≈ W_q · scale[:, None]. The fp8 weights stay resident; each forward
dequantises one layer at a time into the activation dtype and runs an ordinary linear (no fp8
matmul, no activation quantisation), as the official FP8Linear does.

Which layers: every 2-D Linear of the transformer blocks' self_attn, cross_attn and ffn
(q, k, v, o, their *_audio twins, ffn.0, ffn.2): 18 per double block, 10 per single block.
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FP8_DTYPE = torch.float8_e4m3fn
FP8_MAX = 448.0             # largest finite e4m3fn value
SCALE_DTYPE = torch.bfloat16
SCALE_SUFFIX = "_scale"      # `<layer>.weight` → `<layer>.weight_scale`

# module names (relative to the transformer) of the quantised Linear layers: q/k/v/o (+ _audio) and ffn.0/2
_FP8_MODULE = r"(?:double|single|double_final)_blocks\.\d+\.(?:(?:self_attn|cross_attn)\.[qkvo](?:_audio)?|ffn\.\d+)"
FP8_MODULE_PATTERN = re.compile(_FP8_MODULE)
_FP8_KEY_PATTERN = re.compile(rf"(?:^|\.){_FP8_MODULE}\.weight$")


class FP8Linear(nn.Module):
    """Linear with an fp8 e4m3 weight and per-output-row scale; parameters `weight`, `weight_scale`, `bias`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 bias_dtype: torch.dtype = torch.bfloat16, device: torch.device | str | None = None) -> None:
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.zeros(out_features, in_features, dtype=FP8_DTYPE, device=device),
                                   requires_grad=False)
        self.weight_scale = nn.Parameter(torch.ones(out_features, dtype=SCALE_DTYPE, device=device),
                                         requires_grad=False)
        self.bias = (nn.Parameter(torch.zeros(out_features, dtype=bias_dtype, device=device), requires_grad=False)
                     if bias else None)

    def dequantised_weight(self, dtype: torch.dtype) -> Tensor:
        """[out, in] in `dtype`: round(W_q) · round(scale), both first cast to `dtype`."""
        return self.weight.to(dtype) * self.weight_scale.to(dtype).unsqueeze(1)

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantised_weight(x.dtype), bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def quantise_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """[out, in] float weight → (float8_e4m3fn [out, in], bfloat16 scale [out]), per-row symmetric.

    scale = max|W_row| / 448 in fp32 (amax clamped at 1e-12); W_q = clamp(W / scale, ±448).
    """
    w = weight.float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / FP8_MAX
    quantised = (w / scale.unsqueeze(1)).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return quantised, scale.to(SCALE_DTYPE)


def fp8_module_names(model: nn.Module) -> list[str]:
    """Names of the Linear layers that the fp8 checkpoint quantises."""
    return [name for name, m in model.named_modules()
            if isinstance(m, (nn.Linear, FP8Linear)) and FP8_MODULE_PATTERN.fullmatch(name)]


def is_fp8_weight_key(key: str) -> bool:
    """Whether a state_dict key (optionally prefixed, e.g. `backbone.`) is quantised in the fp8 format."""
    return _FP8_KEY_PATTERN.search(key) is not None


def convert_to_fp8(model: nn.Module, bias_dtype: torch.dtype = torch.bfloat16) -> int:
    """Swap the quantisable nn.Linear layers of `model` for empty FP8Linear layers on the same device.

    Use on a meta-device model before loading an fp8 checkpoint. Returns how many layers were swapped.
    """
    names = [n for n in fp8_module_names(model) if isinstance(model.get_submodule(n), nn.Linear)]
    for name in names:
        linear = model.get_submodule(name)
        parent_name, _, child = name.rpartition(".")
        fp8 = FP8Linear(linear.in_features, linear.out_features, linear.bias is not None, bias_dtype,
                        device=linear.weight.device)
        model.get_submodule(parent_name).add_module(child, fp8)
    return len(names)


def quantise_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A float state_dict → the fp8 checkpoint layout: quantised weights + `_scale`, the rest in bf16."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if is_fp8_weight_key(key):
            out[key], out[key + SCALE_SUFFIX] = quantise_weight(value)
        else:
            out[key] = value.to(SCALE_DTYPE)
    return out
