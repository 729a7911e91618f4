"""Weight-only fp8 Linear layers in the format of `NAVA_fp8.safetensors`.

Each quantised weight `W` [out, in] is stored as float8_e4m3fn `W_q` plus a per-row bfloat16
`weight_scale` [out]: W ≈ W_q · scale[:, None]. The fp8 weights stay resident. Two ways to multiply
(`FP8Linear.matmul`):
  dequantise  W_q · scale into the activation dtype, one layer at a time, then an ordinary linear:
              the official FP8Linear, bit for bit.
  scaled_mm   real fp8 tensor-core matmul (`torch._scaled_mm`): the activations are quantised to
              e4m3 per token (row) on the fly, so results differ from `dequantise` by the e4m3
              rounding of the activations (≈ 2⁻⁴ relative per element, averaging out in the sums).
              Per-row scales on Hopper (sm 9.x, 10.x); one activation scale per call on other fp8 GPUs
              (sm 8.9 and 12.x), where the weight's row scale is applied after the product, and on
              the CPU (what the tests run).
"auto" (the default) takes scaled_mm on CUDA GPUs with fp8 tensor cores, dequantise elsewhere.

Which layers: every 2-D Linear of the transformer blocks' self_attn, cross_attn and ffn
(q, k, v, o, their *_audio twins, ffn.0, ffn.2): 18 per double block, 10 per single block.
"""

from __future__ import annotations

import re
from collections.abc import Callable

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
FP8_MATMULS = ("auto", "scaled_mm", "dequantise")
_SCALED_MM_ALIGNMENT = 16   # _scaled_mm needs in/out features in multiples of 16


class FP8Linear(nn.Module):
    """Linear with an fp8 e4m3 weight and per-output-row scale; parameters `weight`, `weight_scale`, `bias`."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 bias_dtype: torch.dtype = torch.bfloat16, device: torch.device | str | None = None,
                 matmul: str = "auto") -> None:
        super().__init__()
        if matmul not in FP8_MATMULS:
            raise ValueError(f"fp8 matmul must be one of {FP8_MATMULS}, got {matmul!r}")
        self.in_features, self.out_features, self.matmul = in_features, out_features, matmul
        self.weight = nn.Parameter(torch.zeros(out_features, in_features, dtype=FP8_DTYPE, device=device),
                                   requires_grad=False)
        self.weight_scale = nn.Parameter(torch.ones(out_features, dtype=SCALE_DTYPE, device=device),
                                         requires_grad=False)
        self.bias = (nn.Parameter(torch.zeros(out_features, dtype=bias_dtype, device=device), requires_grad=False)
                     if bias else None)

    def dequantised_weight(self, dtype: torch.dtype) -> Tensor:
        """[out, in] in `dtype`: round(W_q) · round(scale), both first cast to `dtype`."""
        return self.weight.to(dtype) * self.weight_scale.to(dtype).unsqueeze(1)

    @classmethod
    def from_linear(cls, linear: nn.Linear, matmul: str = "auto") -> FP8Linear:
        """A quantised copy of a float Linear (bias kept in its dtype), on the same device."""
        weight = linear.weight
        fp8 = cls(linear.in_features, linear.out_features, linear.bias is not None,
                  weight.dtype if linear.bias is None else linear.bias.dtype, weight.device, matmul)
        fp8.weight.data, fp8.weight_scale.data = quantise_weight(weight.detach())
        if linear.bias is not None and fp8.bias is not None:
            fp8.bias.data = linear.bias.detach().clone()
        return fp8

    def forward(self, x: Tensor) -> Tensor:
        granularity = self._scaled_mm_granularity(x)
        if granularity is not None:
            return scaled_linear(x, self.weight, self.weight_scale, self.bias, granularity)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.dequantised_weight(x.dtype), bias)

    def _scaled_mm_granularity(self, x: Tensor) -> str | None:
        """"row" / "tensor" (activation scales) when this call runs on fp8 tensor cores, else None."""
        aligned = self.in_features % _SCALED_MM_ALIGNMENT == 0 and self.out_features % _SCALED_MM_ALIGNMENT == 0
        if self.matmul == "dequantise" or not aligned:
            return None
        granularity = fp8_matmul_granularity(x.device)
        if self.matmul == "auto" and (granularity is None or x.dtype not in (torch.bfloat16, torch.float16)):
            return None
        # per-row scaling has a bf16-output kernel only; anything else scales per call
        return "row" if granularity == "row" and x.dtype == torch.bfloat16 else "tensor"

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def fp8_matmul_granularity(device: torch.device) -> str | None:
    """The activation scaling `_scaled_mm` supports on this device: "row" on CUDA sm 9.x/10.x (Hopper,
    Blackwell datacenter: torch's CUTLASS row-wise kernels), "tensor" on other GPUs from sm 8.9 (Ada,
    consumer Blackwell: cuBLASLt), None where there are no fp8 tensor cores (older GPUs, the CPU)."""
    if device.type != "cuda":
        return None
    major, minor = torch.cuda.get_device_capability(device)
    return "row" if major in (9, 10) else "tensor" if (major, minor) >= (8, 9) else None


def scaled_linear(x: Tensor, weight: Tensor, weight_scale: Tensor, bias: Tensor | None,
                  granularity: str = "row") -> Tensor:
    """x [..., in] · (W_q · scale)ᵀ + bias on fp8 tensor cores → [..., out] in x's dtype.

    x is quantised to e4m3 with one scale per token ("row") or per call ("tensor"); the scale is
    rounded to x's dtype first, so the one that divides x is the one the product is multiplied by.
    """
    x2 = x.reshape(-1, x.shape[-1])                                                   # [M, in]
    amax = x2.abs().amax(dim=1, keepdim=True) if granularity == "row" else x2.abs().amax()
    x_scale = (amax.float().clamp(min=1e-12) / FP8_MAX).to(x.dtype)                   # [M, 1] or []
    x_q = (x2 / x_scale).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    bias = None if bias is None else bias.to(x.dtype)
    if granularity == "row":
        y = torch._scaled_mm(x_q, weight.t(), scale_a=x_scale.float(), bias=bias, out_dtype=x.dtype,
                             scale_b=weight_scale.float().unsqueeze(0))               # [M, out]
    else:
        one = torch.ones((), dtype=torch.float32, device=x.device)
        y = torch._scaled_mm(x_q, weight.t(), scale_a=x_scale.float(), scale_b=one, out_dtype=x.dtype)
        y = y * weight_scale.to(x.dtype)
        y = y if bias is None else y + bias
    return y.reshape(*x.shape[:-1], -1)


def quantise_weight(weight: Tensor) -> tuple[Tensor, Tensor]:
    """[out, in] float weight → (float8_e4m3fn [out, in], bfloat16 scale [out]), per-row symmetric.

    scale = max|W_row| / 448 in fp32 (amax clamped at 1e-12); W_q = clamp(W / scale, ±448).
    """
    w = weight.float()
    scale = w.abs().amax(dim=1).clamp(min=1e-12) / FP8_MAX
    quantised = (w / scale.unsqueeze(1)).clamp(-FP8_MAX, FP8_MAX).to(FP8_DTYPE)
    return quantised, scale.to(SCALE_DTYPE)


def fp8_module_names(model: nn.Module) -> list[str]:
    """Names of the float nn.Linear layers that the fp8 checkpoint quantises (FP8Linear ones excluded)."""
    return [name for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and FP8_MODULE_PATTERN.fullmatch(name)]


def _swap_linears(model: nn.Module, make: Callable[[nn.Linear], FP8Linear]) -> int:
    """Replace each quantisable nn.Linear of `model` by `make(linear)`; returns how many were swapped."""
    names = fp8_module_names(model)
    for name in names:
        parent_name, _, child = name.rpartition(".")
        model.get_submodule(parent_name).add_module(child, make(model.get_submodule(name)))
    return len(names)


def is_fp8_weight_key(key: str) -> bool:
    """Whether a state_dict key (optionally prefixed, e.g. `backbone.`) is quantised in the fp8 format."""
    return _FP8_KEY_PATTERN.search(key) is not None


def convert_to_fp8(model: nn.Module, bias_dtype: torch.dtype = torch.bfloat16) -> int:
    """Swap the quantisable nn.Linear layers of `model` for empty FP8Linear layers on the same device.

    Use on a meta-device model before loading an fp8 checkpoint. Returns how many layers were swapped.
    """
    return _swap_linears(model, lambda linear: FP8Linear(
        linear.in_features, linear.out_features, linear.bias is not None, bias_dtype, device=linear.weight.device))


def quantise_model(model: nn.Module, matmul: str = "auto") -> int:
    """Swap the quantisable nn.Linear layers of a loaded float model for quantised FP8Linear copies.

    The result equals loading the official fp8 conversion of the model's weights. Returns the count.
    """
    return _swap_linears(model, lambda linear: FP8Linear.from_linear(linear, matmul))


def set_fp8_matmul(model: nn.Module, matmul: str) -> int:
    """Choose how every FP8Linear of `model` multiplies ("auto", "scaled_mm", "dequantise"); returns the count."""
    if matmul not in FP8_MATMULS:
        raise ValueError(f"fp8 matmul must be one of {FP8_MATMULS}, got {matmul!r}")
    layers = [m for m in model.modules() if isinstance(m, FP8Linear)]
    for layer in layers:
        layer.matmul = matmul
    return len(layers)


def quantise_state_dict(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """A float state_dict → the fp8 checkpoint layout: quantised weights + `_scale`, the rest in bf16."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        if is_fp8_weight_key(key):
            out[key], out[key + SCALE_SUFFIX] = quantise_weight(value)
        else:
            out[key] = value.to(SCALE_DTYPE)
    return out
