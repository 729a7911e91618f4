"""Time loading a random-weight transformer checkpoint and measure the host memory it takes.

    python -m bench.load [--size tiny|release] [--dtype bf16|fp8] [--offload N [--device cuda]]
                         [--json FILE] [--dir DIR] [--keep]

Writes a checkpoint with the release key set (or the tiny one) tensor by tensor, never holding it
all in memory, then loads it with `nava_dub.checkpoint.load_transformer` in a fresh process and
reports: load seconds and peak RSS right after loading (the tensors are memory-mapped, so pages are
read lazily), then the seconds and peak RSS after touching every parameter byte once (what a first
forward pass costs in page-ins). Peak RSS is the child's VmHWM, file-backed pages included.
With `--offload N` the second phase is instead what `--memory low` does after loading: the blocks
packed into (pinned, on a GPU) host buffers N blocks a group, the rest of the model on `--device`.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import torch

from bench.measure import proc_status_bytes, write_json
from nava_dub.checkpoint import CHECKPOINT_PREFIX, SAFETENSORS_DTYPES, load_transformer
from nava_dub.model.fp8 import FP8_DTYPE, SCALE_SUFFIX, convert_to_fp8, quantise_weight
from nava_dub.model.offload import offload_blocks
from nava_dub.model.transformer import PRESETS, NavaTransformer

GIB = 2**30
DTYPE_NAMES = {dtype: name for name, dtype in SAFETENSORS_DTYPES.items()}


def tensor_specs(size: str, fp8: bool) -> dict[str, tuple[torch.dtype, tuple[int, ...]]]:
    """key → (file dtype, shape) of the checkpoint of a preset: bf16, or the fp8 layout."""
    with torch.device("meta"):
        model = NavaTransformer(PRESETS[size])
    if fp8:
        convert_to_fp8(model)
    return {CHECKPOINT_PREFIX + k: (v.dtype if v.dtype in (FP8_DTYPE, torch.bfloat16) else torch.bfloat16,
                                   tuple(v.shape)) for k, v in model.state_dict().items()}


def random_tensors(specs: dict[str, tuple[torch.dtype, tuple[int, ...]]], seed: int = 0) -> Iterator[torch.Tensor]:
    """One random tensor per spec, in order (fp8 weights come with the scale that follows them)."""
    g = torch.Generator().manual_seed(seed)
    pending_scale = None
    for key, (dtype, shape) in specs.items():
        if key.endswith(SCALE_SUFFIX):
            yield pending_scale
            continue
        values = torch.randn(shape, generator=g) * (1 / math.sqrt(shape[-1]) if len(shape) > 1 else 0.1)
        if dtype == FP8_DTYPE:
            values, pending_scale = quantise_weight(values)
            yield values
        else:
            yield values.to(dtype)


def write_streaming(path: Path, specs: dict[str, tuple[torch.dtype, tuple[int, ...]]],
                    tensors: Iterator[torch.Tensor]) -> int:
    """Write a safetensors file one tensor at a time (the header is known from the specs). Returns bytes."""
    header, offset = {}, 0
    for key, (dtype, shape) in specs.items():
        n_bytes = math.prod(shape) * dtype.itemsize
        header[key] = {"dtype": DTYPE_NAMES[dtype], "shape": list(shape), "data_offsets": [offset, offset + n_bytes]}
        offset += n_bytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # safetensors pads the header to 8 bytes
    with path.open("wb") as fh:
        fh.write(len(blob).to_bytes(8, "little"))
        fh.write(blob)
        for (key, (dtype, shape)), tensor in zip(specs.items(), tensors, strict=True):
            if tensor.dtype != dtype or tuple(tensor.shape) != shape:
                raise RuntimeError(f"generated {key} as {tensor.dtype} {list(tensor.shape)}")
            fh.write(tensor.contiguous().view(torch.uint8).numpy().tobytes())
    return 8 + len(blob) + offset


def _status_gib(field: str) -> float:
    n_bytes = proc_status_bytes(field)
    return math.nan if n_bytes is None else n_bytes / GIB


def measure(path: Path, size: str, offload_group: int | None = None, device: str = "cpu") -> dict[str, float]:
    """Load `path` in this process and report time and memory (run in a fresh process)."""
    rss_before = _status_gib("VmRSS")
    start = time.perf_counter()
    model = load_transformer(path, params=PRESETS[size], dtype=torch.bfloat16)
    load_s = time.perf_counter() - start
    peak_after_load = _status_gib("VmHWM")
    start = time.perf_counter()
    if offload_group is not None:
        offload_blocks(model, offload_group, device)     # copies every block byte into its group's buffer
    checksum = sum(_byte_sum(p) for p in model.parameters())
    touch_s = time.perf_counter() - start
    result = {"load_s": load_s, "rss_before_load_gib": rss_before, "peak_rss_after_load_gib": peak_after_load,
              "touch_all_s": touch_s, "peak_rss_after_touch_gib": _status_gib("VmHWM"),
              "n_parameters": sum(p.numel() for p in model.parameters()), "byte_checksum": checksum}
    if device.startswith("cuda"):
        result["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / GIB
    return result


def _byte_sum(tensor: torch.Tensor, chunk: int = 2**24) -> int:
    """The sum of a tensor's bytes, read once, in slices: a whole-tensor uint8 sum makes an int64 copy
    (8 bytes a byte: 2.8 GB for the audio stem), which would count in the peak as if loading cost it."""
    flat = tensor.detach().reshape(-1).view(torch.uint8)
    return sum(int(piece.sum()) for piece in flat.split(chunk))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--dtype", choices=["bf16", "fp8"], default="bf16")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--dir", type=Path, default=Path("/tmp"), help="where the checkpoint is written")
    parser.add_argument("--keep", action="store_true", help="keep the checkpoint file")
    parser.add_argument("--offload", type=int, metavar="N", help="then stream the blocks N a group (--memory low)")
    parser.add_argument("--device", default="cpu", help="where the offloaded model computes (cpu, cuda)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # child mode: load this file
    args = parser.parse_args(argv)
    if args.measure is not None:
        print(json.dumps(measure(args.measure, args.size, args.offload, args.device)))
        return 0

    specs = tensor_specs(args.size, args.dtype == "fp8")
    n_bytes = sum(math.prod(s) * d.itemsize for d, s in specs.values())
    free = shutil.disk_usage(args.dir).free
    if free < 1.1 * n_bytes:
        print(f"error: {n_bytes / GIB:.1f} GiB needed in {args.dir}, {free / GIB:.1f} GiB free", file=sys.stderr)
        return 1
    path = args.dir / f"nava_bench_{args.size}_{args.dtype}.safetensors"
    try:
        start = time.perf_counter()
        file_bytes = write_streaming(path, specs, random_tensors(specs))
        write_s = time.perf_counter() - start
        offload = ["--offload", str(args.offload), "--device", args.device] if args.offload else []
        child = subprocess.run([sys.executable, "-m", "bench.load", "--size", args.size, "--measure", str(path),
                                *offload], capture_output=True, text=True, check=True)
    finally:
        if not args.keep:
            path.unlink(missing_ok=True)
    result = {"size": args.size, "dtype": args.dtype, "offload_group": args.offload, "n_tensors": len(specs),
              "file_gib": file_bytes / GIB,
              "write_s": write_s, **json.loads(child.stdout.splitlines()[-1])}
    write_json(args.json, result)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
