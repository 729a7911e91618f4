#!/usr/bin/env bash
# The GPU rows of bench/README.md in one run (about 10 minutes on an H200); JSON files land in $OUT.
set -uo pipefail
OUT="${OUT:-bench-out}"
PY="${PY:-python}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,clocks.max.sm --format=csv | tee "$OUT/gpu.txt"
run() { local name=$1; shift; echo "== $name"; "$PY" -m "$@" --json "$OUT/$name.json" 2>&1 | tail -20; }
run step_bf16 bench.step --size release --attention auto
run step_bf16_compiled bench.step --size release --attention auto --compile --shapes 704x1280x37 --warmup 2
run step_fp8 bench.step --size release --mode fp8 --attention auto --shapes 704x1280x37
run step_fp8_low_22gb bench.step --size release --mode fp8 --memory low --cap-gb 22 --shapes 704x1280x37
run step_bf16_balanced_48gb bench.step --size release --memory balanced --cap-gb 48 --shapes 704x1280x37
run components bench.components --size release --flops
run quality bench.quality --size release --steps 10 --variants reuse_1,guide_sigma_0-0.95
# the memory plans on CUDA, end to end with tiny weights: block streaming, umT5 parking, one pass a call
for mode in max low; do
  echo "== dub_tiny_cuda_$mode"
  "$PY" -m samples.demo --device cuda --memory "$mode" --no-cache -q -o "$OUT/dub_tiny_$mode.mp4" 2>&1 | tail -5
done
"$PY" - "$OUT" <<'PY' 2>&1 | tee "$OUT/dub_tiny_compare.txt"
import json, sys
from pathlib import Path
import numpy as np
from nava_dub import media
out = Path(sys.argv[1])
sound = {m: media.read_audio(out / f"dub_tiny_{m}.mp4", 16000, 1) for m in ("max", "low")}
plans = {m: json.loads((out / f"dub_tiny_{m}.mp4.run.json").read_text()).get("memory") for m in ("max", "low")}
print("plans:", plans)
print("max |low - max| of the dubbed sound:", float(np.abs(sound["low"] - sound["max"]).max()))
PY
