"""fp8: the streaming checkpoint conversion, in-memory quantisation, and the scaled-matmul path."""

from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

import nava_dub.quantize as quantize
from nava_dub.checkpoint import CHECKPOINT_PREFIX, TensorInfo, load_transformer, read_header
from nava_dub.errors import WeightsError
from nava_dub.model.fp8 import (
    FP8_DTYPE,
    FP8Linear,
    convert_to_fp8,
    fp8_matmul_granularity,
    quantise_model,
    quantise_state_dict,
    set_fp8_matmul,
)
from nava_dub.model.transformer import PRESETS, NavaInputs, NavaTransformer
from nava_dub.quantize import fp8_layout, quantize_checkpoint

DATA = Path(__file__).parent / "data" / "nava_dit"
TINY = DATA / "tiny_weights.safetensors"


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    dst = tmp_path_factory.mktemp("fp8") / "tiny_fp8.safetensors"
    progress: list[tuple[int, int]] = []
    report = quantize_checkpoint(TINY, dst, params=PRESETS["tiny"], on_progress=lambda *a: progress.append(a))
    return dst, report, progress


def test_conversion_writes_the_official_layout_and_values(converted):
    dst, report, progress = converted
    source, out = load_file(str(TINY)), load_file(str(dst))
    assert out.keys() == quantise_state_dict(source).keys()
    for key, value in quantise_state_dict(source).items():
        assert out[key].dtype == value.dtype and torch.equal(out[key].view(torch.uint8), value.view(torch.uint8)), key
    assert (report.n_input_tensors, report.n_quantised, report.n_output_tensors) == (182, 56, 238)  # 2·18 + 2·10
    assert report.output_bytes == dst.stat().st_size and 0 < report.worst_relative_error < 0.05
    assert progress[-1] == (238, 238) and [p[0] for p in progress] == sorted(p[0] for p in progress)
    with safe_open(str(dst), "pt") as f:
        assert f.metadata() == {"format": "pt"}


def test_converted_file_loads_and_equals_quantising_in_memory(converted):
    dst, _, _ = converted
    from_file = load_transformer(dst, params=PRESETS["tiny"], dtype=torch.bfloat16)
    in_memory = load_transformer(TINY, params=PRESETS["tiny"], dtype=torch.bfloat16)
    assert quantise_model(in_memory) == 56
    assert isinstance(from_file.single_blocks[1].ffn[2], FP8Linear)
    g = torch.Generator().manual_seed(0)
    sample = NavaInputs(torch.randn(48, 2, 4, 4, generator=g), torch.randn(5, 128, generator=g),
                        torch.randn(7, 4096, generator=g), 700)
    with torch.no_grad():
        a, b = from_file([sample])[0], in_memory([sample])[0]
    torch.testing.assert_close(a.video_velocity, b.video_velocity, atol=0, rtol=0)


def test_release_layout_has_380_quantised_tensors_and_loads_strictly():
    with torch.device("meta"):
        model = NavaTransformer(PRESETS["release"])
    header, offset = {}, 0
    for key, value in model.state_dict().items():   # a float32 header, no data needed
        header[CHECKPOINT_PREFIX + key] = TensorInfo(torch.float32, tuple(value.shape), offset)
        offset += value.numel() * 4
    specs = fp8_layout(header)
    assert sum(s.dtype == FP8_DTYPE for s in specs) == 380 and len(specs) == 1052 + 380
    convert_to_fp8(model)
    assert {s.key: s.shape for s in specs} == {CHECKPOINT_PREFIX + k: tuple(v.shape)
                                              for k, v in model.state_dict().items()}
    assert {s.key for s in specs if s.dtype == FP8_DTYPE} == {CHECKPOINT_PREFIX + k for k, v in
                                                              model.state_dict().items() if v.dtype == FP8_DTYPE}


def test_a_failed_conversion_leaves_no_file(tmp_path, monkeypatch):
    dst = tmp_path / "out.safetensors"
    calls, original = [], quantize.quantise_weight

    def failing(weight):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk gone")
        return original(weight)

    monkeypatch.setattr(quantize, "quantise_weight", failing)
    with pytest.raises(OSError, match="disk gone"):
        quantize_checkpoint(TINY, dst, params=PRESETS["tiny"])
    assert list(tmp_path.iterdir()) == []


def test_conversion_refuses_fp8_input_wrong_models_and_overwriting(converted, tmp_path):
    dst, _, _ = converted
    with pytest.raises(WeightsError, match="already an fp8 checkpoint"):
        quantize_checkpoint(dst, tmp_path / "again.safetensors", params=PRESETS["tiny"])
    with pytest.raises(WeightsError, match="another size of model"):
        quantize_checkpoint(TINY, tmp_path / "x.safetensors", params=PRESETS["release"])
    with pytest.raises(WeightsError, match="overwrite its input"):
        quantize_checkpoint(TINY, TINY, params=PRESETS["tiny"])
    with pytest.raises(WeightsError, match="not found"):
        quantize_checkpoint(tmp_path / "missing.safetensors", tmp_path / "y.safetensors")
    assert read_header(TINY)  # the input is untouched and still valid


def _linear(seed: int = 0) -> tuple[torch.nn.Linear, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    linear = torch.nn.Linear(256, 96)
    with torch.no_grad():
        linear.weight.copy_(torch.randn(96, 256, generator=g) / 16)
        linear.bias.copy_(torch.randn(96, generator=g) / 10)
    return linear, torch.randn(3, 20, 256, generator=g)


def test_auto_matmul_dequantises_on_the_cpu_exactly_like_the_official_fp8linear():
    linear, x = _linear()
    fp8 = FP8Linear.from_linear(linear)
    assert fp8_matmul_granularity(torch.device("cpu")) is None and fp8.matmul == "auto"
    expected = torch.nn.functional.linear(x, fp8.weight.float() * fp8.weight_scale.float().unsqueeze(1), linear.bias)
    torch.testing.assert_close(fp8(x), expected, atol=0, rtol=0)


def test_scaled_mm_path_stays_within_the_stated_error_of_the_dequantised_one():
    linear, x = _linear(1)
    fp8 = FP8Linear.from_linear(linear)
    with torch.no_grad():
        dequantised = fp8(x)
        assert set_fp8_matmul(torch.nn.Sequential(fp8), "scaled_mm") == 1
        scaled = fp8(x)   # on the CPU: one activation scale per call (torch supports no row scales there)
        reference = linear(x)
    # e4m3 keeps 3 mantissa bits: each activation is off by ≤ 2⁻⁴ relative, and over 256 products
    # the errors average out to a few percent of the output's norm
    assert float((scaled - dequantised).norm() / dequantised.norm()) < 0.05
    assert float((scaled - reference).norm() / reference.norm()) < 0.08
    assert not torch.equal(scaled, dequantised)
    with pytest.raises(ValueError, match="fp8 matmul"):
        set_fp8_matmul(fp8, "int4")
