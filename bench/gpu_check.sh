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
