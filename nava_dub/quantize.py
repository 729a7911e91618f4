"""Convert a bf16/fp32 NAVA transformer checkpoint to the official fp8 layout, tensor by tensor.

The output is what NAVA_FP8's converter writes (nava_dit.md §6.1): every 2-D Linear weight of the
blocks' self_attn, cross_attn and ffn (380 tensors at release size) becomes float8_e4m3fn with a
bfloat16 per-row `<key>_scale`; every other tensor is stored as bfloat16. The header is known
before any data is read, so the file is written in one pass: each tensor is read with plain file
reads (no memory map that would pile file pages up in RSS) straight into its storage, quantised a
block of rows at a time and written from its own memory, so the host holds about one input tensor
and its converted copy (the largest is the audio stem's [8192, 3072, 7] convolution, 0.35 GB in bf16).
The output appears atomically: it is written next to DST and renamed over it once complete.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from nava_dub.checkpoint import (
    CHECKPOINT_PREFIX,
    CONFIG_NAME,
    SAFETENSORS_DTYPES,
    TensorInfo,
    check_tensors,
    read_header,
    read_params,
)
from nava_dub.errors import WeightsError
from nava_dub.model.fp8 import FP8_DTYPE, SCALE_DTYPE, SCALE_SUFFIX, is_fp8_weight_key, quantise_weight
from nava_dub.model.transformer import NavaParams, NavaTransformer

HEADER_ALIGNMENT = 8        # safetensors pads its JSON header to a multiple of 8 bytes
DISK_MARGIN = 1.02          # free space asked for beyond the output size
ROWS_PER_BLOCK = 1024       # weight rows quantised at a time (12 MB of fp32 temporaries at D = 3072)
_SAFETENSORS_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}

Progress = Callable[[int, int], None]   # (tensors done, tensors in all)


@dataclass(frozen=True)
class TensorSpec:
    """One output tensor: its key, dtype and shape, and the input key it comes from."""

    key: str
    dtype: torch.dtype
    shape: tuple[int, ...]
    source: str

    @property
    def n_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


@dataclass(frozen=True)
class QuantizeReport:
    n_input_tensors: int
    n_output_tensors: int
    n_quantised: int
    input_bytes: int
    output_bytes: int
    worst_relative_error: float     # max over quantised weights of ‖W − Ŵ‖₂ / ‖W‖₂
    worst_key: str


def fp8_layout(header: dict[str, TensorInfo]) -> list[TensorSpec]:
    """The output tensors of a float checkpoint, in the input's data order, each scale after its weight."""
    specs = []
    for key, info in sorted(header.items(), key=lambda item: item[1].start):
        if is_fp8_weight_key(key):
            specs.append(TensorSpec(key, FP8_DTYPE, info.shape, key))
            specs.append(TensorSpec(key + SCALE_SUFFIX, SCALE_DTYPE, info.shape[:1], key))
        else:
            specs.append(TensorSpec(key, SCALE_DTYPE, info.shape, key))
    return specs


def quantize_checkpoint(src: str | Path, dst: str | Path, *, params: NavaParams | None = None,
                        on_progress: Progress | None = None) -> QuantizeReport:
    """Write the fp8 conversion of the float checkpoint `src` to `dst` (replaced atomically).

    params: the architecture; default: `config.json` next to `src` if present, else the release preset.
    The input is checked as strictly as the loader checks it, so a converted file always loads.
    """
    src, dst = Path(src), Path(dst)
    header = _read_float_header(src)
    params = params or read_params(src.parent / CONFIG_NAME)
    check_tensors(src, header, _expected_shapes(params), params)
    specs = fp8_layout(header)
    _check_destination(src, dst, sum(s.n_bytes for s in specs))
    partial = dst.with_name(f".{dst.name}.{os.getpid()}.partial")
    try:
        worst = _write(src, header, specs, partial, on_progress)
        os.replace(partial, dst)
    finally:
        partial.unlink(missing_ok=True)
    return QuantizeReport(
        n_input_tensors=len(header), n_output_tensors=len(specs),
        n_quantised=sum(s.dtype == FP8_DTYPE for s in specs), input_bytes=src.stat().st_size,
        output_bytes=dst.stat().st_size, worst_relative_error=worst[0], worst_key=worst[1])


def _read_float_header(src: Path) -> dict[str, TensorInfo]:
    if not src.is_file():
        raise WeightsError(f"checkpoint to convert not found: {src}", "pass the path of NAVA.safetensors")
    header = read_header(src)
    if any(info.dtype == FP8_DTYPE for info in header.values()):
        raise WeightsError(f"{src} is already an fp8 checkpoint", "convert the bf16/fp32 NAVA.safetensors instead")
    return header


def _expected_shapes(params: NavaParams) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):
        model = NavaTransformer(params)
    return {CHECKPOINT_PREFIX + k: tuple(v.shape) for k, v in model.state_dict().items()}


def _check_destination(src: Path, dst: Path, n_bytes: int) -> None:
    if dst.resolve() == src.resolve():
        raise WeightsError(f"the fp8 output {dst} would overwrite its input", "choose another output path")
    if not dst.parent.is_dir():
        raise WeightsError(f"output folder {dst.parent} does not exist", "create it or choose another output path")
    free = shutil.disk_usage(dst.parent).free
    if free < n_bytes * DISK_MARGIN:
        raise WeightsError(f"{dst.parent} has {free / 2**30:.1f} GiB free, the fp8 file needs {n_bytes / 2**30:.1f} GiB",
                           "free some disk space or write the file elsewhere")


def _write(src: Path, header: dict[str, TensorInfo], specs: list[TensorSpec], out: Path,
           on_progress: Progress | None) -> tuple[float, str]:
    """Stream the converted tensors into `out`; returns the worst relative quantisation error and its key."""
    blob = _header_bytes(specs)
    data_start = _data_start(src)
    worst, n_done = (0.0, ""), 0
    with src.open("rb") as fin, out.open("wb") as fout:
        fout.write(len(blob).to_bytes(8, "little"))
        fout.write(blob)
        for spec in specs:
            if spec.source != spec.key:
                continue  # a scale: written right after its weight
            tensor = _read_tensor(fin, data_start, header[spec.source])
            if spec.dtype == FP8_DTYPE:
                quantised, scale, error = _quantise_in_rows(tensor)
                outputs: tuple[torch.Tensor, ...] = (quantised, scale)
                worst = max(worst, (error, spec.key))
            else:
                outputs = (tensor.to(SCALE_DTYPE),)
            for converted in outputs:  # written from the tensor's own memory, no bytes copy
                fout.write(converted.contiguous().view(torch.uint8).numpy().data)
            n_done += len(outputs)
            if on_progress is not None:
                on_progress(n_done, len(specs))
        fout.flush()
        os.fsync(fout.fileno())
    return worst


def _quantise_in_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """quantise_weight in blocks of rows (it is per row, so the result is the same) with the fp32
    temporaries of one block only; also returns ‖W − Ŵ‖₂ / ‖W‖₂."""
    quantised = torch.empty(weight.shape, dtype=FP8_DTYPE)
    scale = torch.empty(weight.shape[0], dtype=SCALE_DTYPE)
    error_sq = norm_sq = 0.0
    for start in range(0, weight.shape[0], ROWS_PER_BLOCK):
        rows = slice(start, start + ROWS_PER_BLOCK)
        quantised[rows], scale[rows] = quantise_weight(weight[rows])
        w = weight[rows].float()
        error_sq += float((quantised[rows].float() * scale[rows].float().unsqueeze(1) - w).pow(2).sum())
        norm_sq += float(w.pow(2).sum())
    return quantised, scale, (error_sq / max(norm_sq, 1e-60)) ** 0.5


def _header_bytes(specs: list[TensorSpec]) -> bytes:
    entries: dict[str, object] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for spec in specs:
        entries[spec.key] = {"dtype": _SAFETENSORS_NAMES[spec.dtype], "shape": list(spec.shape),
                             "data_offsets": [offset, offset + spec.n_bytes]}
        offset += spec.n_bytes
    blob = json.dumps(entries, separators=(",", ":")).encode()
    return blob + b" " * (-len(blob) % HEADER_ALIGNMENT)


def _data_start(path: Path) -> int:
    with path.open("rb") as fh:
        return 8 + int.from_bytes(fh.read(8), "little")


def _read_tensor(fh, data_start: int, info: TensorInfo) -> torch.Tensor:
    n_bytes = math.prod(info.shape) * info.dtype.itemsize
    if n_bytes == 0:
        return torch.empty(info.shape, dtype=info.dtype)
    raw = bytearray(n_bytes)   # read straight into the tensor's storage: one copy of the tensor in memory
    view, n_read = memoryview(raw), 0
    fh.seek(data_start + info.start)
    while n_read < n_bytes:
        n = fh.readinto(view[n_read:])
        if not n:
            raise WeightsError(f"checkpoint ended while reading a tensor at byte {data_start + info.start}",
                               "download the file again")
        n_read += n
    return torch.frombuffer(raw, dtype=info.dtype).reshape(info.shape)
