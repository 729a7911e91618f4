"""NAVA's guidance branches and combination formulas."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from nava_dub.checkpoint import load_transformer
from nava_dub.guidance import (
    Branch,
    Conditioning,
    GuidanceScales,
    branch_inputs,
    branches,
    combine,
    guide_audio,
    guide_video,
    guided_velocity,
)
from nava_dub.model.transformer import PRESETS, NavaInputs
from nava_dub.parity import TOLERANCES, join_video, split_video

DATA = Path(__file__).parent / "data" / "nava_dit"


@pytest.fixture(scope="module")
def tiny():
    return load_transformer(DATA / "tiny_weights.safetensors", params=PRESETS["tiny"], dtype=torch.float32)


def _velocities(shape=(48, 2, 3, 5)) -> dict[Branch, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {b: torch.randn(shape, generator=g) for b in Branch}


def test_formulas_with_every_branch_on_every_channel():
    v, s = _velocities(), GuidanceScales(video=3.0, audio=2.0, video_align=1.5, audio_align=0.5, timbre=4.0)
    c, u, m, tau = v[Branch.COND], v[Branch.UNCOND], v[Branch.MMASK], v[Branch.TIMBRE]
    torch.testing.assert_close(guide_video(v, s), c + 3.0 * (c - u) + 1.5 * (c - m))  # timbre never touches video
    torch.testing.assert_close(guide_audio(v, s), c + 2.0 * (c - u) + 0.5 * (c - m) + 4.0 * (c - tau))


def test_without_extra_branches_the_formula_is_classic_cfg():
    v = _velocities()
    c, u = v[Branch.COND], v[Branch.UNCOND]
    only = {Branch.COND: c, Branch.UNCOND: u}
    torch.testing.assert_close(guide_video(only, GuidanceScales()), u + 3.0 * (c - u))
    torch.testing.assert_close(guide_audio({**only, Branch.TIMBRE: v[Branch.TIMBRE]}, GuidanceScales()),
                               c + 2.0 * (c - u) + 3.0 * (c - v[Branch.TIMBRE]))
    torch.testing.assert_close(combine(c, u, 1.0), c)


def test_branch_list():
    assert branches(GuidanceScales(), has_speakers=True) == (Branch.COND, Branch.UNCOND, Branch.MMASK, Branch.TIMBRE)
    assert branches(GuidanceScales(), has_speakers=False) == (Branch.COND, Branch.UNCOND, Branch.MMASK)
    assert branches(GuidanceScales(align_3d=False, timbre_cfg=False), True) == (Branch.COND, Branch.UNCOND)


def test_branch_inputs_follow_the_official_passes():
    pos, neg, spk = torch.zeros(5, 4096), torch.ones(7, 4096), torch.ones(1, 192)
    cond = Conditioning(pos, neg, spk, (2,))
    base = NavaInputs(torch.zeros(48, 1, 2, 2), torch.zeros(3, 128), pos, 500)
    c, u, m, tau = (branch_inputs(base, cond, b) for b in Branch)
    assert c.speaker_embeddings is spk and c.speaker_positions == (2,) and c.context is pos and not c.modality_masked
    assert u.context is neg and u.speaker_embeddings is None and u.speaker_positions == ()
    assert m.modality_masked and m.context is pos and m.speaker_positions == ()
    assert tau.context is pos and tau.speaker_embeddings is None and not tau.modality_masked


def test_batched_branches_reproduce_the_official_step(tiny):
    """Step 0 of the official T2AV sampling run: each branch and the guided velocities."""
    case = json.loads((DATA / "case_f_sampling_t2av.json").read_text())
    t = load_file(str(DATA / "case_f_sampling_t2av.safetensors"))
    cond = Conditioning(t["in.pos_context"], t["in.vneg_context"], t["in.spk_embs"], tuple(case["spk_pos"][0]))
    video = split_video(t["step0.scheduler_sample_in.vid"], case["t_h_w_list"])[0]
    base = NavaInputs(video, t["step0.scheduler_sample_in.audio"], cond.context, case["timesteps"][0])
    with torch.no_grad():
        outs = tiny([branch_inputs(base, cond, b) for b in Branch])
        guided = guided_velocity(tiny, base, cond, GuidanceScales())
        one_by_one = guided_velocity(tiny, base, cond, GuidanceScales(), max_batch=1)
    forward, sampling = TOLERANCES[("forward", "fp32")], TOLERANCES[("sampling", "fp32")]
    for branch, out in zip(Branch, outs, strict=True):
        assert forward.passes(join_video([out.video_velocity]), t[f"step0.{branch.value}.vid"]), branch
        assert forward.passes(out.audio_velocity, t[f"step0.{branch.value}.audio"]), branch
    assert sampling.passes(join_video([guided[0]]), t["step0.guided.vid"])
    assert sampling.passes(guided[1], t["step0.guided.audio"])
    torch.testing.assert_close(one_by_one[0], guided[0], atol=1e-5, rtol=1e-5)
