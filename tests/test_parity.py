"""Every fixture case made by the official NAVA code, through `python -m nava_dub.parity`."""

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from nava_dub.parity import check_manifest, main, run_folder

DATA = Path(__file__).parent / "data" / "nava_dit"
FORWARD_CASES = ["case_a_t2av", "case_b_speakers", "case_c2_masked_spk_no_pos", "case_c_masked", "case_d_i2v",
                 "case_e_odd_grid", "case_g_batch2"]
SAMPLING_CASES = ["case_f2_sampling_ti2av", "case_f_sampling_t2av"]


@pytest.fixture(scope="module")
def results() -> dict:
    return {r.name: r for r in run_folder(DATA)}


@pytest.mark.parametrize("case", FORWARD_CASES + SAMPLING_CASES)
def test_fixture_case_passes_in_fp32(results, case):
    result = results[case]
    assert result.status == "PASS", result.line()
    limit = 1e-4 if case in FORWARD_CASES else 5e-4
    assert result.max_abs_error < limit


def test_every_case_file_was_run(results):
    assert sorted(results) == sorted(FORWARD_CASES + SAMPLING_CASES)


def test_manifest_matches_1052_of_1052():
    result = check_manifest(DATA / "manifest_6b.json")
    assert (result.n_matching, result.n_expected, result.n_extra, result.ok) == (1052, 1052, 0, True)


def test_cli_prints_one_line_per_case_and_fails_on_a_wrong_reference(tmp_path, capsys):
    folder = tmp_path / "fixture"
    folder.mkdir()
    for name in ("tiny_config.json", "tiny_weights.safetensors", "case_a_t2av.json", "case_a_t2av.safetensors"):
        shutil.copy(DATA / name, folder / name)
    manifest = json.loads((DATA / "manifest_6b.json").read_text())
    manifest["keys"]["backbone.head.head.bias"] = [191]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))

    assert main([str(folder), "--case", "case_a_t2av"]) == 0
    stem, error, tolerance, status = capsys.readouterr().out.split()
    assert (stem, status) == ("case_a_t2av", "PASS") and float(error) < 1e-4 and "|ref|" in tolerance

    tensors = load_file(str(folder / "case_a_t2av.safetensors"))
    tensors["out.velocity_audio"][3, 5] += 2e-3  # one element off by more than the fp32 tolerance
    save_file(tensors, str(folder / "case_a_t2av.safetensors"))
    assert main([str(folder), "--manifest", str(tmp_path / "manifest.json")]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "manifest 1051/1052 FAIL"
    assert lines[1].startswith("case_a_t2av ") and lines[1].endswith(" FAIL")


def test_bf16_run_passes_the_smoke_tolerance():
    (result,) = run_folder(DATA, case="case_g_batch2", dtype=torch.bfloat16)
    assert result.status == "PASS" and 1e-3 < result.max_abs_error < 0.25, result.line()
