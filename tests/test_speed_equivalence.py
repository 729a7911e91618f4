"""Every speed-up of the transformer and the guidance loop leaves the sampled latents unchanged.

Stated tolerance where not bitwise: the fixtures' fp32 sampling tolerance (5e-4 + 1e-4·|ref|, relative
L2 ≤ 5e-5) for whole sampling runs, 1e-5 absolute for one velocity (another SDPA kernel or compiled
code sums in another order, and guidance amplifies that by up to 7×). The reference of the always-on changes (time MLP
per distinct timestep, complex RoPE, sliced grouped attention, stems once per shared latent) is
also the official code itself: tests/test_parity.py runs all fixture cases through them.
"""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from nava_dub.checkpoint import load_transformer
from nava_dub.guidance import Conditioning, GuidanceScales, guided_velocity, nava_velocity
from nava_dub.model.layers import (
    apply_rope,
    grouped_attention,
    rope_rotations,
    timestep_sinusoid,
    token_groups,
)
from nava_dub.model.transformer import PRESETS, NavaInputs
from nava_dub.options import Shortcuts
from nava_dub.parity import TOLERANCES
from nava_dub.sampler import draw_nava_noise, sample

DATA = Path(__file__).parent / "data" / "nava_dit"
N_STEPS = 4
TOLERANCE = {"atol": 1e-5, "rtol": 0.0}             # one velocity
SAMPLING = TOLERANCES[("sampling", "fp32")]          # a sampling run


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # see tests/conftest.py


@pytest.fixture(scope="module")
def tiny():
    return load_transformer(DATA / "tiny_weights.safetensors", params=PRESETS["tiny"], dtype=torch.float32)


@pytest.fixture(scope="module")
def window():
    g = torch.Generator().manual_seed(3)
    cond = Conditioning(torch.randn(14, 4096, generator=g), torch.randn(9, 4096, generator=g),
                        torch.randn(1, 192, generator=g), (2,))
    noise = list(draw_nava_noise((48, 2, 4, 4), 6, torch.Generator().manual_seed(4)))
    return cond, noise


def _sample(velocity, noise):
    with torch.no_grad():
        return sample(velocity, noise, n_steps=N_STEPS)


def _plain_velocity(model, cond):
    """Every step from scratch: no window contexts, no shortcuts (the behaviour before the speed-ups)."""
    def velocity(latents, timestep):
        base = NavaInputs(latents[0], latents[1], cond.context, timestep)
        with torch.no_grad():
            return list(guided_velocity(model, base, cond, GuidanceScales()))
    return velocity


def _count_calls(module: torch.nn.Module) -> list:
    calls: list = []
    module.register_forward_hook(lambda m, args, out: calls.append(args[0].shape))
    return calls


def test_branches_run_as_one_batched_pass_per_step(window):
    model = load_transformer(DATA / "tiny_weights.safetensors", params=PRESETS["tiny"], dtype=torch.float32)
    cond, noise = window
    heads = _count_calls(model.head)
    _sample(nava_velocity(model, cond), noise)
    assert [shape[0] for shape in heads] == [4] * N_STEPS   # cond, uncond, timbre, mmask together


def test_text_contexts_are_computed_once_per_window_and_change_nothing(tiny, window):
    cond, noise = window
    calls = _count_calls(tiny.text_embedding)
    cached = _sample(nava_velocity(tiny, cond), noise)
    assert len(calls) == 1
    plain = _sample(_plain_velocity(tiny, cond), noise)
    assert len(calls) == 1 + N_STEPS
    for a, b in zip(cached, plain, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_rope_tables_are_cached_per_layout_and_equal_fresh_ones(tiny, window, monkeypatch):
    cond, noise = window
    tiny._rope_cache.clear()
    first = _sample(nava_velocity(tiny, cond), noise)
    assert len(tiny._rope_cache) == 1   # one layout for all steps and branches
    built = []
    build = type(tiny)._rope_table
    monkeypatch.setattr(type(tiny), "_rope_table", lambda self, *args: built.append(args) or build(self, *args))
    again = _sample(nava_velocity(tiny, cond), noise)
    assert not built
    monkeypatch.undo()
    tiny._rope_cache.clear()
    fresh = _sample(nava_velocity(tiny, cond), noise)
    for a, b, c in zip(first, again, fresh, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)
        torch.testing.assert_close(a, c, atol=0, rtol=0)


def test_time_mlp_per_distinct_timestep_equals_the_per_token_computation(tiny):
    t = torch.tensor([[0.0, 0.0, 937.0, 937.0, 937.0], [500.0] * 5], dtype=torch.float64)
    time = tiny._time(t)
    assert time.e.shape[0] == 3 and time.index.shape == (2, 5)
    with torch.no_grad():
        e = tiny.time_embedding(timestep_sinusoid(t, tiny.params.freq_dim).float())          # [2, 5, D]
        e0 = tiny.time_projection(e).unflatten(-1, (6, tiny.params.dim))
    torch.testing.assert_close(time.embedding(), e, atol=1e-6, rtol=0)
    rows = tiny.double_blocks[0].modulation(time)
    expected = tiny.double_blocks[0].modulation.modulation.unsqueeze(0) + e0
    for i in range(6):
        torch.testing.assert_close(rows[i], expected[:, :, i], atol=1e-6, rtol=0)
    assert tiny._time(torch.full((3, 7), 600.0, dtype=torch.float64)).index.shape == (3, 1)  # broadcast


def test_complex_rope_equals_the_pairwise_rotation():
    g = torch.Generator().manual_seed(0)
    angles = torch.rand(2, 9, 1, 32, generator=g, dtype=torch.float64) * 50
    for dtype in (torch.float32, torch.bfloat16):
        x = torch.randn(2, 9, 3, 64, generator=g).to(dtype)
        x0, x1 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
        cos, sin = angles.cos().float(), angles.sin().float()
        expected = torch.stack([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1).flatten(-2).to(dtype)
        out = apply_rope(x, rope_rotations(angles, dtype))
        torch.testing.assert_close(out.float(), expected.float(), atol=1e-6 if dtype == torch.float32 else 0.0,
                                   rtol=1e-6 if dtype == torch.float32 else 2**-8)


def test_sliced_grouped_attention_equals_masked_dense_attention():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(4, 11, 2, 8, generator=g) for _ in range(3))
    groups = [token_groups(7, 4, 7, False), token_groups(7, 4, 7, False), token_groups(7, 4, 7, True),
              token_groups(5, 3, 7, False)]   # joint, joint, modality-masked, padded video
    out = grouped_attention(q, k, v, groups)
    for b, sample_groups in enumerate(groups):
        allowed = torch.zeros(11, 11, dtype=torch.bool)
        for ranges in sample_groups:
            idx = torch.cat([torch.arange(a, z) for a, z in ranges])
            allowed[idx[:, None], idx[None, :]] = True
        rows = allowed.any(1)
        dense = F.scaled_dot_product_attention(q[b:b + 1].transpose(1, 2), k[b:b + 1].transpose(1, 2),
                                               v[b:b + 1].transpose(1, 2), attn_mask=allowed | ~rows[:, None])
        expected = torch.where(rows[:, None, None], dense.transpose(1, 2)[0], 0.0)
        torch.testing.assert_close(out[b], expected, atol=1e-6, rtol=1e-6)


def test_shared_latents_go_through_the_stems_once(tiny, window):
    cond, noise = window
    calls = _count_calls(tiny.patch_embedding)
    with torch.no_grad():
        nava_velocity(tiny, cond)(noise, 900)
    assert len(calls) == 1


@pytest.mark.parametrize("backends", [("math",), ("flash", "math")])
def test_attention_backend_choice_leaves_latents_unchanged(window, backends):
    model = load_transformer(DATA / "tiny_weights.safetensors", params=PRESETS["tiny"], dtype=torch.float32)
    cond, noise = window
    default = _sample(nava_velocity(model, cond), noise)
    model.attention_backends = backends
    chosen = _sample(nava_velocity(model, cond), noise)
    for a, b in zip(default, chosen, strict=True):
        assert SAMPLING.passes(b, a)
    model.attention_backends = ("cudnn",)   # no such kernel on the CPU: SDPA refuses rather than falls back
    with pytest.raises(RuntimeError):
        nava_velocity(model, cond)(noise, 900)


def test_compiled_blocks_trace_whole_and_leave_latents_unchanged(window):
    # the "eager" backend checks that dynamo captures each block as one graph (fullgraph) without
    # paying for code generation; inductor runs the same graphs on a GPU
    model = load_transformer(DATA / "tiny_weights.safetensors", params=PRESETS["tiny"], dtype=torch.float32)
    cond, noise = window
    reference = _sample(nava_velocity(model, cond), noise)
    torch._dynamo.reset()
    model.compile_blocks(backend="eager", fullgraph=True)
    try:
        compiled = _sample(nava_velocity(model, cond), noise)
    finally:
        torch._dynamo.reset()
    for a, b in zip(reference, compiled, strict=True):
        assert SAMPLING.passes(b, a)


# --- fewer passes ---------------------------------------------------------------------------------

def test_shortcuts_off_by_default_and_neutral_settings_change_nothing(tiny, window):
    cond, noise = window
    plain = nava_velocity(tiny, cond)
    reference = _sample(plain, noise)
    neutral = nava_velocity(tiny, cond, shortcuts=Shortcuts(guidance_sigmas=(0.0, 1.0), reuse_steps=0))
    same = _sample(neutral, noise)
    assert plain.n_passes == neutral.n_passes == 4 * N_STEPS
    for a, b in zip(reference, same, strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_outside_the_guidance_interval_the_velocity_is_the_cond_pass_alone(tiny, window):
    cond, noise = window
    velocity = nava_velocity(tiny, cond, shortcuts=Shortcuts(guidance_sigmas=(0.0, 0.5)))
    with torch.no_grad():
        video, audio = velocity(noise, 900)
        (expected,) = tiny([NavaInputs(noise[0], noise[1], cond.context, 900, speaker_embeddings=cond.speaker_embeddings,
                                       speaker_positions=cond.speaker_positions)])
        guided = velocity(noise, 400)
    assert velocity.n_passes == 1 + 4
    torch.testing.assert_close(video, expected.video_velocity, **TOLERANCE)
    torch.testing.assert_close(audio, expected.audio_velocity, **TOLERANCE)
    assert (guided[0] - video).abs().max() > 1e-3


def test_reused_guidance_adds_the_last_full_steps_correction_to_the_cond_pass(tiny, window):
    cond, noise = window
    velocity = nava_velocity(tiny, cond, shortcuts=Shortcuts(reuse_steps=2))
    full_step = nava_velocity(tiny, cond)
    with torch.no_grad():
        first = velocity(noise, 999)
        correction = [f - c for f, c in zip(first, _cond_only(tiny, cond, noise, 999), strict=True)]
        reused = [velocity(noise, t) for t in (937, 833)]
        fresh = velocity(noise, 624)
        reference = full_step(noise, 624)
    assert velocity.n_passes == 4 + 1 + 1 + 4
    for t, out in zip((937, 833), reused, strict=True):
        for o, c, d in zip(out, _cond_only(tiny, cond, noise, t), correction, strict=True):
            torch.testing.assert_close(o, c + d, **TOLERANCE)
    for a, b in zip(fresh, reference, strict=True):
        torch.testing.assert_close(a, b, **TOLERANCE)


def _cond_only(model, cond, noise, timestep):
    with torch.no_grad():
        (out,) = model([NavaInputs(noise[0], noise[1], cond.context, timestep,
                                   speaker_embeddings=cond.speaker_embeddings, speaker_positions=cond.speaker_positions)])
    return [out.video_velocity, out.audio_velocity]


def test_a_new_sampling_run_does_not_reuse_a_stale_correction(tiny, window):
    cond, noise = window
    velocity = nava_velocity(tiny, cond, shortcuts=Shortcuts(reuse_steps=5))
    with torch.no_grad():
        velocity(noise, 999)
        velocity(noise, 937)
        restarted = velocity(noise, 999)   # t went up: a new run
    assert velocity.n_passes == 4 + 1 + 4
    torch.testing.assert_close(restarted[0], nava_velocity(tiny, cond)(noise, 999)[0], **TOLERANCE)


@pytest.mark.parametrize("shortcuts", [Shortcuts(), Shortcuts(guidance_sigmas=(0.0, 0.9)),
                                       Shortcuts(guidance_sigmas=(0.7, 1.0), reuse_steps=1), Shortcuts(reuse_steps=2)],
                         ids=["off", "sigma-0-0.9", "sigma-0.7-1-reuse-1", "reuse-2"])
def test_the_pass_count_the_estimate_predicts_is_what_sampling_runs(tiny, window, shortcuts):
    from nava_dub.estimate import model_timesteps
    cond, noise = window
    n_steps = 10
    velocity = nava_velocity(tiny, cond, shortcuts=shortcuts)
    with torch.no_grad():
        sample(velocity, noise, n_steps=n_steps)
    assert velocity.n_passes == sum(shortcuts.passes_per_step(model_timesteps(n_steps), 4))
