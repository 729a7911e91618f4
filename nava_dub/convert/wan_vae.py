"""Wan's VAE file (`Wan2.2_VAE.pth`) <-> diffusers' `AutoencoderKLWan` keys.

Wan names modules by position (`encoder.downsamples.1.downsamples.2.time_conv.weight`, `head.2`,
`residual.6`); diffusers by role (`encoder.down_blocks.1.downsampler.time_conv.weight`, `conv_out`,
`conv2`). Every one of the 196 keys is renamed, none is reshaped. In each Wan level the resampler sits
after the residual blocks, at index n_res_blocks (encoder) or n_res_blocks + 1 (decoder); diffusers
drops that index, so the inverse recovers it by counting the level's residual blocks.
Nothing here touches files: state dicts in, state dicts out.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

from nava_dub.convert import rename_all

T = TypeVar("T")

_HINT = "check that the file is Wan2.2-TI2V-5B/Wan2.2_VAE.pth (the 48-channel Wan2.2 VAE)"

# Inside a residual block: Wan's nn.Sequential positions -> diffusers names.
_RESIDUAL = {
    "residual.0.gamma": "norm1.gamma",
    "residual.2.weight": "conv1.weight",
    "residual.2.bias": "conv1.bias",
    "residual.3.gamma": "norm2.gamma",
    "residual.6.weight": "conv2.weight",
    "residual.6.bias": "conv2.bias",
    "shortcut.weight": "conv_shortcut.weight",
    "shortcut.bias": "conv_shortcut.bias",
}
_RESAMPLE = {"resample.1.weight", "resample.1.bias", "time_conv.weight", "time_conv.bias"}
_ATTENTION = {"norm.gamma", "to_qkv.weight", "to_qkv.bias", "proj.weight", "proj.bias"}
_FIXED = {
    "conv1.weight": "quant_conv.weight",
    "conv1.bias": "quant_conv.bias",
    "conv2.weight": "post_quant_conv.weight",
    "conv2.bias": "post_quant_conv.bias",
    **{f"{side}.{wan}": f"{side}.{hf}" for side in ("encoder", "decoder") for wan, hf in (
        ("conv1.weight", "conv_in.weight"), ("conv1.bias", "conv_in.bias"),
        ("head.0.gamma", "norm_out.gamma"), ("head.2.weight", "conv_out.weight"), ("head.2.bias", "conv_out.bias"))},
}
_INVERSE_FIXED = {hf: wan for wan, hf in _FIXED.items()}
_INVERSE_RESIDUAL = {hf: wan for wan, hf in _RESIDUAL.items()}
# (wan level container, diffusers block list, diffusers resampler name) per side
_LEVELS = {"encoder": ("downsamples", "down_blocks", "downsampler"),
           "decoder": ("upsamples", "up_blocks", "upsampler")}

_WAN_MIDDLE = re.compile(r"(encoder|decoder)\.middle\.([012])\.(.+)")
_WAN_LEVEL = re.compile(r"(encoder|decoder)\.(downsamples|upsamples)\.(\d+)\.\2\.(\d+)\.(.+)")
_HF_MID = re.compile(r"(encoder|decoder)\.mid_block\.(resnets|attentions)\.(\d+)\.(.+)")
_HF_LEVEL = re.compile(r"(encoder|decoder)\.(down_blocks|up_blocks)\.(\d+)\.(?:resnets\.(\d+)|(downsampler|upsampler))\.(.+)")


def wan_to_diffusers_vae(state_dict: Mapping[str, T]) -> dict[str, T]:
    """Rename every key of a Wan2.2 VAE state dict to AutoencoderKLWan's; an unknown key is an error."""
    return rename_all(state_dict, _wan_key_to_hf, "Wan2.2 VAE (Wan2.2_VAE.pth)", _HINT)


def diffusers_to_wan_vae(state_dict: Mapping[str, T]) -> dict[str, T]:
    """The inverse of wan_to_diffusers_vae."""
    n_resnets = _resnets_per_level(state_dict)
    return rename_all(state_dict, lambda key: _hf_key_to_wan(key, n_resnets), "diffusers AutoencoderKLWan", _HINT)


def _wan_key_to_hf(key: str) -> str | None:
    if key in _FIXED:
        return _FIXED[key]
    if m := _WAN_MIDDLE.fullmatch(key):
        side, index, rest = m.groups()
        if index == "1":   # Wan's middle is [resblock, attention, resblock]
            return f"{side}.mid_block.attentions.0.{rest}" if rest in _ATTENTION else None
        return f"{side}.mid_block.resnets.{int(index) // 2}.{_RESIDUAL[rest]}" if rest in _RESIDUAL else None
    if m := _WAN_LEVEL.fullmatch(key):
        side, container, level, index, rest = m.groups()
        if container != _LEVELS[side][0]:
            return None
        _, blocks, sampler = _LEVELS[side]
        if rest in _RESIDUAL:
            return f"{side}.{blocks}.{level}.resnets.{index}.{_RESIDUAL[rest]}"
        if rest in _RESAMPLE:
            return f"{side}.{blocks}.{level}.{sampler}.{rest}"
    return None


def _hf_key_to_wan(key: str, n_resnets: dict[tuple[str, str], int]) -> str | None:
    if key in _INVERSE_FIXED:
        return _INVERSE_FIXED[key]
    if m := _HF_MID.fullmatch(key):
        side, kind, index, rest = m.groups()
        if kind == "attentions":
            return f"{side}.middle.1.{rest}" if index == "0" and rest in _ATTENTION else None
        return f"{side}.middle.{int(index) * 2}.{_INVERSE_RESIDUAL[rest]}" if rest in _INVERSE_RESIDUAL else None
    if m := _HF_LEVEL.fullmatch(key):
        side, blocks, level, resnet, sampler, rest = m.groups()
        container, want_blocks, want_sampler = _LEVELS[side]
        if blocks != want_blocks or (sampler and sampler != want_sampler):
            return None
        if resnet is not None and rest in _INVERSE_RESIDUAL:
            return f"{side}.{container}.{level}.{container}.{resnet}.{_INVERSE_RESIDUAL[rest]}"
        if sampler and rest in _RESAMPLE and (side, level) in n_resnets:
            return f"{side}.{container}.{level}.{container}.{n_resnets[(side, level)]}.{rest}"
    return None


def _resnets_per_level(state_dict: Mapping[str, object]) -> dict[tuple[str, str], int]:
    """(side, level) -> residual blocks in that level: the Wan index of the level's resampler."""
    counts: dict[tuple[str, str], int] = {}
    for key in state_dict:
        m = _HF_LEVEL.fullmatch(key)
        if m and m.group(4) is not None:
            slot = (m.group(1), m.group(3))
            counts[slot] = max(counts.get(slot, 0), int(m.group(4)) + 1)
    return counts
