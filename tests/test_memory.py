"""The memory planner: exact weight bytes, mode choice from the free memory, and its estimates' order."""

import subprocess
import sys

import pytest
import torch

from nava_dub.errors import UsageError
from nava_dub.memory import (
    GenerationShape,
    plan_memory,
    transformer_parameter_count,
    transformer_weight_bytes,
)
from nava_dub.model.fp8 import FP8_DTYPE, convert_to_fp8
from nava_dub.model.transformer import PRESETS, NavaTransformer

RELEASE = PRESETS["release"]
WINDOW = GenerationShape(704, 1280, 37)
GB = 10**9


@pytest.mark.parametrize("size", ["release", "tiny"])
def test_weight_bytes_equal_the_built_model_in_every_dtype(size):
    with torch.device("meta"):
        model = NavaTransformer(PRESETS[size])
    n_params = sum(p.numel() for p in model.parameters())
    assert transformer_parameter_count(PRESETS[size]) == n_params
    assert transformer_weight_bytes(PRESETS[size], "bf16").total == 2 * n_params
    blocks = [*model.double_blocks, *model.single_blocks]
    assert transformer_weight_bytes(PRESETS[size], "fp32").blocks == tuple(
        4 * sum(p.numel() for p in b.parameters()) for b in blocks)
    convert_to_fp8(model)
    fp8_bytes = sum(v.numel() * (1 if v.dtype == FP8_DTYPE else 2) for v in model.state_dict().values())
    assert transformer_weight_bytes(PRESETS[size], "fp8").total == fp8_bytes


def test_release_numbers():
    assert transformer_parameter_count(RELEASE) == 6_296_995_520
    assert WINDOW.n_audio_tokens == 152 and WINDOW.n_tokens(RELEASE) == 37 * 22 * 40 + 152


def test_auto_picks_the_most_resident_mode_that_fits():
    peaks = {m: plan_memory(RELEASE, WINDOW, m, weights_dtype="bf16").estimate.peak_bytes for m in
             ("max", "balanced", "low")}
    assert peaks["max"] > peaks["balanced"] > peaks["low"]
    assert plan_memory(RELEASE, WINDOW, "auto", 141 * GB).mode == "max"
    balanced = plan_memory(RELEASE, WINDOW, "auto", int(peaks["balanced"] / 0.92) + 1)
    assert balanced.mode == "balanced" and balanced.fits and not balanced.keep_text_encoder
    low = plan_memory(RELEASE, WINDOW, "auto", 24 * GB, "fp8")
    assert low.mode == "low" and low.fits and low.max_batch == 1 and low.vae_tiles is not None
    assert low.estimate.peak_bytes <= 24 * GB * 0.92


def test_low_mode_streams_the_largest_block_group_that_fits():
    roomy = plan_memory(RELEASE, WINDOW, "low", 40 * GB, "bf16")
    tight = plan_memory(RELEASE, WINDOW, "low", 20 * GB, "bf16")
    assert roomy.offload_group_size == 30 // 4 and tight.fits and 1 <= tight.offload_group_size < 30 // 4
    assert roomy.transformer_resident_bytes > tight.transformer_resident_bytes
    assert plan_memory(RELEASE, WINDOW, "low", 20 * GB, "bf16") == tight   # pure: same inputs, same plan
    weights, k = transformer_weight_bytes(RELEASE), tight.offload_group_size
    one_block_more = 2 * (weights.largest_group(k + 1) - weights.largest_group(k))
    assert tight.estimate.peak_bytes <= 20 * GB * 0.92 < tight.estimate.peak_bytes + one_block_more
    # umT5 is encoded beside everything else that is placed: it counts in the text phase
    assert tight.text_encoder_on_gpu and tight.estimate.text_bytes > tight.transformer_resident_bytes + 11 * GB


def test_low_mode_runs_the_text_encoder_on_the_cpu_only_when_it_cannot_fit_beside_the_rest():
    cpu_text = plan_memory(RELEASE, WINDOW, "low", 17 * GB, "bf16")
    assert cpu_text.fits and not cpu_text.text_encoder_on_gpu and cpu_text.estimate.text_bytes == 0
    assert "text encoder run on the CPU" in cpu_text.summary()
    # with umT5 off the GPU, the blocks get the room back: a larger group than one block
    assert cpu_text.offload_group_size > 1
    small = plan_memory(RELEASE, WINDOW, "auto", 12 * GB, "fp8")
    assert small.mode == "low" and not small.text_encoder_on_gpu
    hopeless = plan_memory(RELEASE, WINDOW, "auto", 4 * GB, "bf16")
    assert hopeless.mode == "low" and hopeless.offload_group_size == 1 and not hopeless.fits


def test_fp8_and_fewer_passes_need_less():
    bf16 = plan_memory(RELEASE, WINDOW, "balanced", weights_dtype="bf16")
    fp8 = plan_memory(RELEASE, WINDOW, "balanced", weights_dtype="fp8")
    assert bf16.transformer_resident_bytes - fp8.transformer_resident_bytes > 5 * GB
    four = plan_memory(RELEASE, GenerationShape(704, 1280, 37, n_passes=4), "balanced")
    assert four.estimate.denoise_bytes > bf16.estimate.denoise_bytes


def test_bad_requests_are_usage_errors_and_the_summary_says_what_was_chosen():
    with pytest.raises(UsageError, match="free GPU memory"):
        plan_memory(RELEASE, WINDOW, "auto")
    with pytest.raises(UsageError, match="unknown memory mode"):
        plan_memory(RELEASE, WINDOW, "huge", 10 * GB)
    with pytest.raises(UsageError, match="unknown weights dtype"):
        plan_memory(RELEASE, WINDOW, "max", weights_dtype="int4")
    line = plan_memory(RELEASE, WINDOW, "auto", 24 * GB, "fp8").summary()
    assert line.startswith("memory low (fp8)") and "of 24.0 GB free" in line and "streamed" in line


def test_the_planner_does_not_import_torch():
    code = "import sys, nava_dub.memory; print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True).stdout.strip() == "False"
