"""The bench scripts run at the tiny size on the CPU and write the fields the notes rely on (no timings checked)."""

import json
import math

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from bench import components, quality, step
from nava_dub.memory import GenerationShape
from nava_dub.model.transformer import PRESETS, TIME_MLP_MIN_ROWS, NavaInputs

pytestmark = pytest.mark.usefixtures("one_torch_thread")   # see tests/conftest.py


@pytest.mark.parametrize("masked", [False, True])
def test_flop_formula_equals_torchs_count_of_a_pass(masked):
    params = PRESETS["tiny"]
    model = step.build_model(params, torch.device("cpu"), torch.float32)
    model.attention_backends = ("math",)   # the math kernel is made of matmuls FlopCounterMode counts
    g = torch.Generator().manual_seed(0)
    sample = NavaInputs(torch.randn(48, 3, 5, 6, generator=g), torch.randn(10, 128, generator=g),
                        torch.randn(30, 4096, generator=g), 500, speaker_embeddings=torch.randn(1, 192, generator=g),
                        speaker_positions=(3,), modality_masked=masked)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model([sample])
    n_video = math.prod(params.token_grid(3, 5, 6))
    assert counter.get_total_flops() == step.pass_flops(params, n_video, 10, masked=masked, include_context=True,
                                                        n_speakers=1, n_time_levels=TIME_MLP_MIN_ROWS)


def test_release_pass_is_the_documented_size():
    params = PRESETS["release"]
    flops = step.pass_flops(params, 37 * 22 * 40, 152)
    attention = params.n_double_blocks + params.n_single_blocks
    self_attention = 4 * params.dim * (37 * 22 * 40 + 152) ** 2 * attention
    assert 0.68e15 < flops < 0.70e15 and 0.56 < self_attention / flops < 0.58
    assert step.step_flops(params, GenerationShape(704, 1280, 37), speakers=True)[1] == 4


def test_step_bench_writes_its_fields(tmp_path):
    out = tmp_path / "step.json"
    assert step.main(["--shapes", "32x32x2", "--warmup", "1", "--repeats", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and result["mode"] == "bf16" and result["memory"] == "balanced"
    (row,) = result["shapes"]
    assert row["shape"] == "32x32x2" and row["n_passes"] == 3 and len(row["seconds_all_steps"]) == 1
    assert row["flops_per_step"] == step.step_flops(PRESETS["tiny"], GenerationShape(32, 32, 2), False)[0]
    assert row["seconds_per_step"] > 0 and row["tflops_per_s"] > 0 and row["peak_gpu_bytes"] is None
    assert row["estimated_transformer_bytes"] > 0 and row["memory_plan"].startswith("memory balanced")


def test_step_bench_fp8_low_memory_with_speakers(tmp_path):
    out = tmp_path / "step.json"
    assert step.main(["--shapes", "32x32x2", "--mode", "fp8", "--memory", "low", "--speakers",
                      "--attention", "auto", "--warmup", "1", "--repeats", "1", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["shapes"][0]["n_passes"] == 4 and result["fp8_matmul"] == "dequantise"
    assert 0 < result["fp8_relative_error"]["video"] < 0.2 and 0 < result["fp8_relative_error"]["audio"] < 0.2
    assert result["offload_group_size"] == 1 and result["offload_buffer_bytes"] > 0
    assert result["attention_backends"] and "math" not in result["attention_backends"]


def test_components_bench_writes_every_component(tmp_path):
    out = tmp_path / "components.json"
    assert components.main(["--shape", "32x32x2", "--repeats", "1", "--flops", "--json", str(out)]) == 0
    rows = json.loads(out.read_text())["components"]
    assert [r["component"] for r in rows] == list(components.WORKLOADS)
    assert all(r["seconds"] > 0 and r["flops"] > 0 and r["peak_gpu_bytes"] is None for r in rows)


def test_quality_bench_reports_passes_saved_and_distances(tmp_path):
    out = tmp_path / "quality.json"
    assert quality.main(["--shape", "32x32x2", "--steps", "6", "--variants", "reuse_1,guide_sigma_0-0.95",
                         "--json", str(out)]) == 0
    rows = {r["variant"]: r for r in json.loads(out.read_text())["variants"]}
    assert rows["full"]["n_passes"] == 18 and rows["full"]["video_distance"] == 0.0
    assert rows["reuse_1"]["n_passes"] == 3 * 3 + 3 and rows["reuse_1"]["passes_saved"] == pytest.approx(1 / 3)
    assert rows["reuse_1"]["video_distance"] > 0 and rows["guide_sigma_0-0.95"]["n_passes"] < 18


def test_load_bench_reads_every_byte_with_and_without_block_streaming(tmp_path):
    from bench import load
    runs = {}
    for name, extra in (("plain", []), ("offload", ["--offload", "1"])):
        load.main(["--size", "tiny", "--dir", str(tmp_path), "--json", str(tmp_path / f"{name}.json"), *extra])
        runs[name] = json.loads((tmp_path / f"{name}.json").read_text())
    n_params = sum(p.numel() for p in step.build_model(PRESETS["tiny"], torch.device("cpu"), torch.float32).parameters())
    for result in runs.values():
        assert result["n_parameters"] == n_params and result["file_gib"] * 2**30 > 2 * n_params
        assert result["peak_rss_after_touch_gib"] >= result["peak_rss_after_load_gib"] > 0
    # the packed host buffers hold the file's bytes, each once: the same checksum over every parameter
    assert runs["offload"]["byte_checksum"] == runs["plain"]["byte_checksum"]
    assert runs["offload"]["offload_group"] == 1 and list(tmp_path.glob("*.safetensors")) == []
