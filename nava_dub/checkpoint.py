"""The one loader of the NAVA transformer checkpoint (`NAVA.safetensors`, `NAVA_fp8.safetensors`).

The model is built on the meta device and the file's tensors are assigned to it, strictly: a
missing, unexpected or mis-shaped key is an error naming the first offenders (the official loader
is non-strict and silently runs a half-loaded model). Tensors are read memory-mapped and cast and
moved one at a time, so the host never holds a second full copy: a file already in the requested
dtype, loaded on the CPU, stays file-backed (peak RSS ≈ file size once every page was read); a
cast or a load onto a GPU copies tensor by tensor and releases the file mapping every
READ_CHUNK_BYTES (peak RSS ≈ the loaded model on the host, or ≈ 0.5 GiB of file pages for a GPU).

Dtypes: fp32, bf16, fp16 and fp64 files are cast to the requested dtype, except the affine
LayerNorm parameters, which stay in at least fp32 (the only parameters whose bf16 rounding
changes the official numerics). An fp8 file (any float8_e4m3fn tensor) keeps its quantised
weights in fp8 with their bf16 `<key>_scale`, dequantised per layer at run time.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from torch import nn

from nava_dub.errors import WeightsError
from nava_dub.model.fp8 import FP8_DTYPE, SCALE_SUFFIX, convert_to_fp8
from nava_dub.model.transformer import PRESETS, NavaParams, NavaTransformer
from nava_dub.weights import first_keys, key_mismatch

CHECKPOINT_PREFIX = "backbone."     # the official file is the state_dict of a wrapper holding `backbone`
CONFIG_NAME = "config.json"         # optional architecture file next to the checkpoint
READ_CHUNK_BYTES = 2**29            # file bytes read per memory mapping when copying

# safetensors dtype names → torch dtypes this loader accepts
SAFETENSORS_DTYPES = {
    "F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
    "F8_E4M3": FP8_DTYPE,
}


@dataclass(frozen=True)
class TensorInfo:
    """One entry of a safetensors header."""

    dtype: torch.dtype
    shape: tuple[int, ...]
    start: int          # byte offset of the data (after the header)


class _Root(nn.Module):
    """Gives the model the checkpoint's `backbone.` prefix, so keys load without any remapping."""

    def __init__(self, backbone: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone


def load_transformer(path: str | Path, *, params: NavaParams | None = None, dtype: torch.dtype = torch.bfloat16,
                     device: str | torch.device = "cpu") -> NavaTransformer:
    """Load a NAVA transformer checkpoint strictly, in eval mode without gradients.

    params: the architecture; default: `config.json` next to the file if present, else the release preset.
    dtype: compute dtype of the weights (fp8 files keep fp8 weights and compute in this dtype).
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"transformer checkpoint not found: {path}",
                           "download NAVA.safetensors (or NAVA_fp8.safetensors) into the weights folder")
    params = params or read_params(path.parent / CONFIG_NAME)
    header = read_header(path)
    is_fp8 = any(info.dtype == FP8_DTYPE for info in header.values())
    with torch.device("meta"):
        model = NavaTransformer(params)
    if is_fp8:
        convert_to_fp8(model, bias_dtype=dtype)
    root = _Root(model)
    check_tensors(path, header, {k: tuple(v.shape) for k, v in root.state_dict().items()}, params)
    keep_fp32 = _layernorm_param_names(root)
    targets = {key: _target_dtype(key, info.dtype, dtype, keep_fp32) for key, info in header.items()}
    state = _read_state(path, header, targets, torch.device(device))
    root.load_state_dict(state, strict=True, assign=True)
    return model.requires_grad_(False).eval()


def _read_state(path: Path, header: dict[str, TensorInfo], targets: dict[str, torch.dtype],
                device: torch.device) -> dict[str, torch.Tensor]:
    """Every tensor of the file in its target dtype on `device`, read through memory maps."""
    # Either the weights stay file-backed (CPU, no cast of any large tensor), or every tensor is
    # copied and each chunk's mapping is dropped once read, so file pages do not pile up in RSS.
    mapped = device.type == "cpu" and all(
        targets[k] == i.dtype for k, i in header.items() if math.prod(i.shape) * i.dtype.itemsize >= 2**20)
    state = {}
    for keys in _chunks(header, READ_CHUNK_BYTES):
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for key in keys:
                raw = f.get_tensor(key)
                tensor = raw.to(device=device, dtype=targets[key])
                state[key] = tensor.clone() if tensor is raw and not mapped else tensor
    return state


def read_params(config_path: Path) -> NavaParams:
    """The architecture from an official config.json, or the release preset when there is none."""
    if not config_path.is_file():
        return PRESETS["release"]
    try:
        return NavaParams.from_config_dict(json.loads(config_path.read_text()))
    except (ValueError, TypeError) as err:  # JSONDecodeError is a ValueError
        raise WeightsError(f"transformer config {config_path} is invalid: {err}",
                           "use the config.json shipped with the checkpoint, or remove it to use the release preset"
                           ) from err


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Parse and check a safetensors header against the file: a corrupted or truncated file raises."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        prefix = fh.read(8)
        n_header = int.from_bytes(prefix, "little") if len(prefix) == 8 else -1
        if not 0 < n_header <= size - 8:
            raise _corrupted(path, f"its header length field ({n_header}) does not fit the {size}-byte file")
        try:
            raw = json.loads(fh.read(n_header))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise _corrupted(path, f"its header is not valid JSON ({err})") from err
    if not isinstance(raw, dict):
        raise _corrupted(path, "its header is not a JSON object")
    raw.pop("__metadata__", None)
    header, data_end = {}, 0
    for key, entry in raw.items():
        header[key], end = _parse_entry(path, key, entry)
        data_end = max(data_end, end)
    if 8 + n_header + data_end != size:
        problem = "truncated" if 8 + n_header + data_end > size else "longer than its header says"
        raise WeightsError(
            f"{path} is {problem}: its header describes {8 + n_header + data_end} bytes, the file has {size}",
            "download the file again (an interrupted download leaves a short file)")
    return header


def _parse_entry(path: Path, key: str, entry: object) -> tuple[TensorInfo, int]:
    try:
        dtype_name, shape, (start, end) = entry["dtype"], entry["shape"], entry["data_offsets"]  # type: ignore[index]
    except (TypeError, KeyError, ValueError) as err:
        raise _corrupted(path, f"header entry {key!r} is malformed") from err
    if dtype_name not in SAFETENSORS_DTYPES:
        raise WeightsError(f"{path}: tensor {key} has dtype {dtype_name}, which a NAVA checkpoint never uses",
                           f"use a file with {', '.join(SAFETENSORS_DTYPES)} tensors")
    dtype = SAFETENSORS_DTYPES[dtype_name]
    if end - start != math.prod(shape) * dtype.itemsize or start < 0:
        raise _corrupted(path, f"tensor {key} has offsets {start}..{end} that do not fit its shape {shape}")
    return TensorInfo(dtype, tuple(shape), start), end


def _corrupted(path: Path, why: str) -> WeightsError:
    return WeightsError(f"{path} is not a readable safetensors file: {why}", "download the file again")


def check_tensors(path: Path, header: dict[str, TensorInfo], expected: dict[str, tuple[int, ...]],
                  params: NavaParams) -> None:
    """Key set, shapes and fp8 layout of the file must equal the model's exactly."""
    if not any(k.startswith(CHECKPOINT_PREFIX) for k in header):
        raise WeightsError(f"{path} is not a NAVA transformer checkpoint: no key starts with {CHECKPOINT_PREFIX!r} "
                           f"(first keys: {first_keys(header)})", "pass NAVA.safetensors or NAVA_fp8.safetensors")
    stem = CHECKPOINT_PREFIX + "patch_embedding.weight"
    found = _architecture(header[stem].shape[0], header) if stem in header else None
    wanted = _architecture(params.dim, expected)
    if found is not None and found != wanted:
        raise WeightsError(f"{path} holds another size of model ({found}) than the one built ({wanted})",
                           "pass the config.json of the file's model (or the matching preset)")
    missing_scales = [k for k in expected if k not in header and k.endswith(SCALE_SUFFIX)]
    if missing_scales:
        raise WeightsError(f"{path}: fp8 checkpoint lacks the scales of {len(missing_scales)} quantised weights "
                           f"({first_keys(missing_scales)})", "re-run the fp8 conversion or use the bf16/fp32 checkpoint")
    problem = key_mismatch(expected, {k: i.shape for k, i in header.items()})
    if problem:
        raise WeightsError(f"{path} does not match the NAVA transformer: {problem}",
                           "pass the official NAVA checkpoint, or the config.json of the model it holds")
    bad_fp8 = [k for k, i in header.items() if (i.dtype == FP8_DTYPE) != (k + SCALE_SUFFIX in expected)]
    if bad_fp8:
        raise WeightsError(f"{path}: fp8 and non-fp8 tensors are mixed up ({first_keys(bad_fp8)})",
                           "use an fp8 file made by the official conversion")


def _architecture(dim: int, keys: Iterable[str]) -> str:
    """'dim D, A alignment + F fusion blocks' of a checkpoint key set."""
    blocks = {kind: len({k.split(".")[2] for k in keys if k.startswith(f"{CHECKPOINT_PREFIX}{kind}_blocks.")})
              for kind in ("double", "single")}
    return f"dim {dim}, {blocks['double']} alignment + {blocks['single']} fusion blocks"


def _chunks(header: dict[str, TensorInfo], max_bytes: int) -> list[list[str]]:
    """Keys in data order, grouped into runs of at most max_bytes (at least one key each)."""
    chunks: list[list[str]] = [[]]
    n_bytes = 0
    for key, info in sorted(header.items(), key=lambda item: item[1].start):
        size = math.prod(info.shape) * info.dtype.itemsize
        if chunks[-1] and n_bytes + size > max_bytes:
            chunks.append([])
            n_bytes = 0
        chunks[-1].append(key)
        n_bytes += size
    return chunks


def _layernorm_param_names(root: nn.Module) -> frozenset[str]:
    return frozenset(f"{name}.{leaf}" for name, m in root.named_modules()
                     if isinstance(m, nn.LayerNorm) and m.elementwise_affine for leaf in ("weight", "bias"))


def _target_dtype(key: str, file_dtype: torch.dtype, dtype: torch.dtype, keep_fp32: frozenset[str]) -> torch.dtype:
    if file_dtype == FP8_DTYPE or key.endswith(SCALE_SUFFIX):
        return file_dtype
    if key in keep_fp32 and dtype.itemsize < 4:
        return torch.float32
    return dtype
