"""`nava-dub weights fp8`: the converted file is the official fp8 layout and loads through the real loader."""

import shutil

import torch
from typer.testing import CliRunner

from nava_dub.checkpoint import load_transformer, read_header
from nava_dub.cli import app
from tests import tiny_nava


def test_fp8_conversion_loads(tmp_path):
    folder = tmp_path / "w"
    folder.mkdir()
    shutil.copy(tiny_nava.weights_dir() / "NAVA.safetensors", folder)
    shutil.copy(tiny_nava.weights_dir() / "config.json", folder)
    result = CliRunner().invoke(app, ["weights", "fp8", str(folder / "NAVA.safetensors"),
                                      str(folder / "NAVA_fp8.safetensors"), "-q"])
    assert result.exit_code == 0, result.output
    header = read_header(folder / "NAVA_fp8.safetensors")
    scales = [k for k in header if k.endswith(".weight_scale")]
    assert scales and all(k[: -len("_scale")] in header for k in scales)
    model = load_transformer(folder / "NAVA_fp8.safetensors", dtype=torch.float32)
    assert any(p.dtype == torch.float8_e4m3fn for p in model.parameters())


def test_fp8_conversion_refuses_a_missing_file(tmp_path):
    result = CliRunner().invoke(app, ["weights", "fp8", str(tmp_path / "nope.safetensors"), str(tmp_path / "o")])
    assert result.exit_code == 1 and "error:" in result.stderr and "Traceback" not in result.stderr
