"""The flow-matching UniPC loop: NAVA's schedule, exactness on a straight flow, held tokens, callbacks, noise."""

import json
from pathlib import Path

import pytest
import torch

from nava_dub.sampler import Keep, StepInfo, draw_nava_noise, sample, schedule, wan_sigma_max

DATA = Path(__file__).parent / "data" / "nava_dit"


def _straight_flow(x0: torch.Tensor):
    """The exact velocity of x_σ = (1−σ)·x0 + σ·n is n − x0 = (x − x0)/σ (for 8-step runs)."""
    _, sigmas = schedule(8)

    def model(latents, timestep):
        i = len(seen)
        seen.append((timestep, [x.clone() for x in latents]))
        return [(x - x0) / sigmas[i] for x in latents]

    seen: list = []
    model.seen = seen  # type: ignore[attr-defined]
    return model


def test_schedule_matches_the_official_run():
    case = json.loads((DATA / "case_f_sampling_t2av.json").read_text())
    timesteps, sigmas = schedule(case["num_steps"], case["shift"])
    assert timesteps == case["timesteps"] == [999, 937, 833, 624]
    assert sigmas == pytest.approx(case["sigmas"], abs=1e-7)


def test_fifty_step_schedule_is_wans_grid_shifted_once():
    timesteps, sigmas = schedule(50, 5.0)
    top = wan_sigma_max(5.0)
    assert top == pytest.approx(0.99980, abs=1e-5)
    expected = [5 * u / (1 + 4 * u) for u in (top * (1 - i / 50) for i in range(50))] + [0.0]
    assert sigmas == pytest.approx(expected, abs=1e-6)
    assert timesteps == [int(s * 1000) for s in torch.tensor(expected[:-1], dtype=torch.float64).tolist()]


def test_straight_flow_lands_exactly_on_its_endpoint():
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    (final,) = sample(_straight_flow(x0), [noise], n_steps=8)
    torch.testing.assert_close(final, x0, atol=1e-5, rtol=1e-5)


def test_progress_callback_sees_every_step():
    infos: list[StepInfo] = []
    x0 = torch.zeros(2, 2)
    sample(_straight_flow(x0), [torch.ones(2, 2)], n_steps=8, on_step=infos.append)
    assert [i.step for i in infos] == list(range(8)) and {i.n_steps for i in infos} == {8}
    assert [i.timestep for i in infos] == schedule(8)[0]


def test_noised_keep_feeds_the_source_on_the_noise_path_and_ends_on_the_source():
    g = torch.Generator().manual_seed(1)
    target, source, noise = (torch.randn(4, 6, generator=g) for _ in range(3))
    mask = torch.zeros(4, 6, dtype=torch.bool)
    mask[1:3] = True
    model = _straight_flow(target)
    (final,) = sample(model, [noise], n_steps=8, keeps=[Keep(mask, source, "noised")])
    _, sigmas = schedule(8)
    for (_, (x,)), sigma in zip(model.seen, sigmas, strict=False):
        torch.testing.assert_close(x[mask], ((1 - sigma) * source + sigma * noise)[mask])
    torch.testing.assert_close(final[mask], source[mask], atol=0, rtol=0)
    torch.testing.assert_close(final[~mask], target[~mask], atol=1e-4, rtol=1e-4)


def test_clean_keep_is_imposed_before_every_call_but_not_after_the_last_step():
    g = torch.Generator().manual_seed(2)
    target, noise = torch.randn(2, 3, 4, generator=g), torch.randn(2, 3, 4, generator=g)
    source = torch.full((2, 1, 4), 7.0)  # broadcast over the middle axis, like a first frame
    mask = torch.zeros(1, 3, 1, dtype=torch.bool)
    mask[:, 0] = True
    model = _straight_flow(target)
    (final,) = sample(model, [noise], n_steps=8, keeps=[Keep(mask, source, "clean")])
    assert all(torch.equal(x[:, 0], source[:, 0]) for _, (x,) in model.seen)
    assert not torch.equal(final[:, 0], source[:, 0])  # NAVA does not re-impose the frame at the end


def test_nava_noise_uses_the_official_draw_order_and_layout():
    video, audio = draw_nava_noise((48, 2, 3, 4), 5, torch.Generator().manual_seed(100))
    g = torch.Generator().manual_seed(100)
    flat_video, flat_audio = torch.randn(2 * 3 * 4, 48, generator=g), torch.randn(5, 128, generator=g)
    assert video.shape == (48, 2, 3, 4) and audio.shape == (5, 128)
    assert torch.equal(video.permute(1, 2, 3, 0).reshape(-1, 48), flat_video) and torch.equal(audio, flat_audio)
