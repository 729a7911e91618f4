"""Dry-run estimates: passes per window, FLOP against the bench notes, memory verdicts and time, the weights read."""

import json
import struct

import pytest
import torch

from nava_dub.errors import UsageError
from nava_dub.estimate import (
    ASSUMED_EFFICIENCY,
    CPU_FLOPS_PER_S,
    DeviceInfo,
    estimate_run,
    estimate_summary,
    model_timesteps,
    pass_flops,
)
from nava_dub.model.transformer import PRESETS
from nava_dub.options import Shortcuts
from nava_dub.resources import device_info, transformer_facts
from nava_dub.tiny_weights import nava_config, tiny_transformer_params
from tests.fake_nava import fake_weights

RELEASE = PRESETS["release"]
GB = 10**9
H200 = DeviceInfo("cuda", "NVIDIA H200", 150 * GB, 140 * GB)


def test_the_default_window_costs_what_the_bench_readme_says():
    # bench/README.md: at 704x1280x37 (Lv = 32,560, La = 152) one joint pass is 0.69 PFLOP
    estimate = estimate_run(RELEASE, [(0, 37)], height_px=704, width_px=1280, steps=50, with_voices=True, device=H200)
    window = estimate.windows[0]
    assert (window.n_video_tokens, window.n_audio_tokens) == (32_560, 152)
    assert 0.685e15 < pass_flops(RELEASE, 32_560, 152) < 0.695e15
    assert window.n_model_passes == 200                       # 50 steps x (cond, uncond, align-3D, timbre)
    assert window.seconds == pytest.approx(window.flops / (ASSUMED_EFFICIENCY * 989e12))


def test_passes_without_voices_and_windows_of_other_lengths():
    estimate = estimate_run(RELEASE, [(0, 10), (1, 61)], height_px=704, width_px=1280, steps=30,
                            with_voices=False, device=H200)
    assert [w.n_model_passes for w in estimate.windows] == [90, 90]
    assert estimate.windows[0].flops < estimate.windows[1].flops
    assert estimate.memory.estimate.peak_bytes > 0 and estimate.total_seconds == pytest.approx(
        sum(w.seconds for w in estimate.windows))


def test_a_small_gpu_cannot_hold_the_model_and_says_so():
    small = DeviceInfo("cuda", "NVIDIA GeForce RTX 3090", 24 * GB, 8 * GB)
    estimate = estimate_run(RELEASE, [(0, 37)], height_px=704, width_px=1280, steps=50, with_voices=True,
                            device=small, memory_mode="max")
    assert not estimate.fits
    assert "RTX 3090" in estimate.problem() and "max" in estimate.problem()
    roomy = estimate_run(RELEASE, [(0, 37)], height_px=704, width_px=1280, steps=50, with_voices=True,
                         device=H200, memory_mode="auto")
    assert roomy.fits and roomy.problem() is None and roomy.memory.mode == "max"
    assert estimate_summary(estimate)["fits"] is False


def test_unknown_gpus_get_no_time_and_cpus_a_rough_one():
    odd = estimate_run(RELEASE, [(0, 7)], height_px=256, width_px=256, steps=2, with_voices=True,
                       device=DeviceInfo("cuda", "Some Future GPU", 200 * GB, 200 * GB))
    assert odd.windows[0].seconds is None and odd.total_seconds is None
    cpu = estimate_run(PRESETS["tiny"], [(0, 7)], height_px=96, width_px=160, steps=2, with_voices=True,
                       device=DeviceInfo("cpu", "cpu"))
    assert cpu.fits and cpu.memory.free_bytes is None
    assert cpu.windows[0].seconds == pytest.approx(cpu.windows[0].flops / CPU_FLOPS_PER_S)


def test_the_transformer_file_decides_the_architecture_and_dtype(tmp_path):
    folder = fake_weights(tmp_path / "w")
    params, label, dtype = transformer_facts(folder, on_gpu=True)
    assert params == RELEASE and dtype == "bf16" and "tiny test weights" in label
    (folder / "config.json").write_text(json.dumps(nava_config(tiny_transformer_params())))
    params, _, dtype = transformer_facts(folder, on_gpu=False)
    assert params == tiny_transformer_params() and dtype == "fp32"
    header = json.dumps({"w": {"dtype": "F8_E4M3", "shape": [2], "data_offsets": [0, 2]}}).encode()
    (folder / "NAVA.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + b"\0\0")
    assert transformer_facts(folder, on_gpu=True)[2] == "fp8"
    params, label, _ = transformer_facts(tmp_path / "nothing-here", on_gpu=True)
    assert params == RELEASE and "none found" in label


@pytest.mark.parametrize("device", ["mps", "cuda:x", "auto:1"])
def test_unknown_devices_are_usage_errors(device):
    with pytest.raises(UsageError, match="not a device"):
        device_info(device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
def test_asking_for_a_gpu_on_a_machine_without_one_is_a_usage_error():
    assert device_info("auto").kind == "cpu" and device_info("cpu").kind == "cpu"
    with pytest.raises(UsageError, match="0 CUDA GPU"):
        device_info("cuda")


@pytest.mark.parametrize("n_steps", [4, 10, 50])
def test_the_timestep_grid_is_the_samplers(n_steps):
    from nava_dub.sampler import schedule
    assert model_timesteps(n_steps) == schedule(n_steps)[0]


def test_pass_shortcuts_cut_the_passes_and_flop_the_estimate_reports():
    full = estimate_run(RELEASE, [(0, 37)], height_px=704, width_px=1280, steps=50, with_voices=True, device=H200)
    reuse = estimate_run(RELEASE, [(0, 37)], height_px=704, width_px=1280, steps=50, with_voices=True, device=H200,
                         shortcuts=Shortcuts(reuse_steps=1))
    assert full.n_passes_per_window == full.windows[0].n_model_passes == 200
    assert reuse.n_passes_per_window == 25 * 4 + 25 * 1       # every other step reuses: one pass
    joint = pass_flops(RELEASE, 32_560, 152)
    assert full.windows[0].flops - reuse.windows[0].flops == pytest.approx(25 * (full.windows[0].flops / 50 - joint))
    assert estimate_summary(reuse)["passes_per_window"] == 125


def test_the_guidance_interval_counts_one_pass_outside_it():
    timesteps = model_timesteps(50)
    passes = Shortcuts(guidance_sigmas=(0.0, 0.95)).passes_per_step(timesteps, 4)
    assert passes == [1 if t > 950 else 4 for t in timesteps] and passes.count(1) == 11   # bench/README.md's 11
