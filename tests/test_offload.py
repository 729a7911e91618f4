"""Block offload on the CPU code path: same outputs, two groups resident at most, weights back home after."""

from pathlib import Path

import pytest
import torch

from nava_dub.checkpoint import load_transformer
from nava_dub.guidance import Conditioning, nava_velocity
from nava_dub.model.offload import offload_blocks
from nava_dub.model.transformer import PRESETS, NavaInputs
from nava_dub.sampler import draw_nava_noise, sample

DATA = Path(__file__).parent / "data" / "nava_dit"
N_BLOCKS = 4   # tiny: 2 alignment + 2 fusion blocks


pytestmark = pytest.mark.usefixtures("one_torch_thread")   # see tests/conftest.py


def _model():
    return load_transformer(DATA / "tiny_weights.safetensors", params=PRESETS["tiny"], dtype=torch.float32)


def _sample_input(seed=0) -> NavaInputs:
    g = torch.Generator().manual_seed(seed)
    return NavaInputs(torch.randn(48, 2, 4, 6, generator=g), torch.randn(6, 128, generator=g),
                      torch.randn(9, 4096, generator=g), 700)


def _block_weights(model) -> list[torch.Tensor]:
    return [p.detach().clone() for name in ("double_blocks", "single_blocks")
            for b in getattr(model, name) for p in b.parameters()]


@pytest.mark.parametrize("group_size", [1, 3])
def test_outputs_are_unchanged_and_at_most_two_groups_are_resident(group_size):
    model = _model()
    weights = _block_weights(model)
    with torch.no_grad():
        reference = model([_sample_input()])[0]
        offload = offload_blocks(model, group_size, "cpu")
        resident: list[list[int]] = []
        for block in (*model.double_blocks, *model.single_blocks):
            block.register_forward_pre_hook(lambda m, a: resident.append(offload.resident_groups()))
        outputs = [model([_sample_input()])[0] for _ in range(2)]
    n_groups = -(-N_BLOCKS // group_size)
    assert len(resident) == 2 * N_BLOCKS and all(1 <= len(r) <= 2 for r in resident)
    for out in outputs:
        torch.testing.assert_close(out.video_velocity, reference.video_velocity, atol=0, rtol=0)
        torch.testing.assert_close(out.audio_velocity, reference.audio_velocity, atol=0, rtol=0)
    # every group was copied once per call, plus group 0 fetched ahead for the next call
    assert len(offload.group_bytes) == n_groups
    assert offload.n_bytes_copied == 2 * sum(offload.group_bytes) + offload.group_bytes[0]
    assert offload.buffer_bytes == max(offload.group_bytes) >= max(
        4 * sum(p.numel() for b in group for p in b.parameters()) for group in offload.groups)
    assert all(torch.equal(a, b) for a, b in zip(weights, _block_weights(model), strict=True))


def test_guided_sampling_with_offload_matches_resident_sampling():
    g = torch.Generator().manual_seed(1)
    cond = Conditioning(torch.randn(12, 4096, generator=g), torch.randn(8, 4096, generator=g))
    noise = list(draw_nava_noise((48, 2, 4, 4), 6, torch.Generator().manual_seed(2)))
    model = _model()
    with torch.no_grad():
        resident = sample(nava_velocity(model, cond), noise, n_steps=3)
        offload = offload_blocks(model, 1, "cpu")
        streamed = sample(nava_velocity(model, cond, max_batch=1), noise, n_steps=3)
    for a, b in zip(resident, streamed, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)   # max_batch=1 changes only the GEMM row blocking
    assert offload.n_bytes_copied > 3 * 3 * offload.buffer_bytes   # 3 steps × 3 passes, each streaming all blocks


def test_remove_makes_blocks_resident_again_and_one_group_never_streams():
    model = _model()
    with torch.no_grad():
        reference = model([_sample_input(3)])[0]
        offload = offload_blocks(model, 2, "cpu")
        model([_sample_input(3)])
        offload.remove()
        copied = offload.n_bytes_copied
        after = model([_sample_input(3)])[0]
        assert offload.n_bytes_copied == copied and not offload.resident_groups()
        whole = offload_blocks(model, N_BLOCKS + 5, "cpu")   # one group: loaded once, then stays
        model([_sample_input(3)])
        model([_sample_input(3)])
    torch.testing.assert_close(after.audio_velocity, reference.audio_velocity, atol=0, rtol=0)
    assert whole.resident_groups() == [0] and whole.n_bytes_copied == whole.buffer_bytes
    with pytest.raises(ValueError, match="group size"):
        offload_blocks(model, 0, "cpu")
