"""Pixel and sample glue around NAVA's codecs: buckets, first-image resize, value ranges, channels."""

import numpy as np
import pytest
import torch

from nava_dub.codecs import (
    bucket_for,
    cover_resize,
    frames_to_vae_input,
    image_to_vae_input,
    normalize_output_audio,
    to_stereo,
    vae_output_to_frames,
    waveform_to_vae_input,
)
from nava_dub.geometry import CoverCrop

# --- resolution buckets (nava_pipeline.md §4: ratio -> landscape H x W) -------------------------


def test_full_hd_landscape_goes_to_704x1280():
    assert bucket_for(1920, 1080) == (704, 1280)


def test_portrait_swaps_the_sides():
    assert bucket_for(1080, 1920) == (1280, 704)


def test_square_is_960():
    assert bucket_for(720, 720) == (960, 960)


@pytest.mark.parametrize(("width", "height", "bucket"), [
    (1000, 800, (864, 1056)),     # 4/5
    (1024, 768, (832, 1088)),     # 3/4
    (1200, 800, (736, 1184)),     # 2/3
    (1280, 720, (704, 1280)),     # 9/16
    (1400, 700, (672, 1344)),     # 1/2
    (2500, 1000, (608, 1536)),    # 2/5
    (4000, 1000, (608, 1536)),    # narrower than 2/5 still takes the last bucket
    (1000, 950, (960, 960)),      # near-square
])
def test_nearest_ratio_picks_the_table_entry(width, height, bucket):
    assert bucket_for(width, height) == bucket
    assert bucket_for(height, width) == bucket[::-1]


def test_a_ratio_on_a_midpoint_takes_the_squarer_bucket():
    # (9/16 + 1/2) / 2 = 17/32: NAVA compares with >=
    assert bucket_for(3200, 1700) == (704, 1280)
    assert bucket_for(3200, 1699) == (672, 1344)


def test_buckets_are_multiples_of_16():
    for width, height in [(1920, 1080), (1000, 800), (640, 480), (500, 1200)]:
        assert all(side % 16 == 0 for side in bucket_for(width, height))


def test_an_empty_frame_size_is_an_error():
    with pytest.raises(ValueError):
        bucket_for(0, 1080)


# --- first image -----------------------------------------------------------------------------------

def test_cover_resize_crops_the_centre():
    # 100x300 grey image with 50-px red bands on both sides: covering 200x200 scales by 2 and keeps the middle
    image = np.full((100, 300, 3), 128, np.uint8)
    image[:, :50] = image[:, -50:] = (255, 0, 0)
    out = cover_resize(image, 200, 200)
    assert out.shape == (200, 200, 3) and out.dtype == np.uint8
    assert np.array_equal(out, np.full((200, 200, 3), 128, np.uint8))


def test_cover_resize_fills_the_target_even_when_shrinking():
    image = np.random.default_rng(0).integers(0, 256, (1080, 1920, 3), dtype=np.uint8)
    assert cover_resize(image, 704, 1280).shape == (704, 1280, 3)
    assert cover_resize(image, 960, 960).shape == (960, 960, 3)


@pytest.mark.parametrize("src,dst", [((1920, 1080), (1280, 704)), ((640, 360), (1280, 704)),
                                     ((1080, 1920), (960, 960)), ((1000, 1000), (704, 1280))])
def test_cover_resize_crops_where_the_video_frame_path_crops(src, dst):
    # the first image (PIL) and the video frames (cv2) must show the same part of the source
    width, height = src
    image = np.full((height, width, 3), 60, np.uint8)
    image[height // 3:height // 2, width // 2:width * 2 // 3] = (240, 240, 240)
    first = cover_resize(image, dst[1], dst[0])
    frame = CoverCrop.for_sizes(width, height, *dst).to_target(image)
    assert first.shape == frame.shape == (dst[1], dst[0], 3)
    first_bright, frame_bright = np.argwhere(first[..., 0] > 150), np.argwhere(frame[..., 0] > 150)
    assert np.abs(first_bright.min(0) - frame_bright.min(0)).max() <= 1
    assert np.abs(first_bright.max(0) - frame_bright.max(0)).max() <= 1


def test_first_image_defaults_to_its_own_bucket():
    image = np.zeros((90, 160, 3), np.uint8)
    tensor = image_to_vae_input(image)
    assert tensor.shape == (1, 3, 704, 1280)
    assert float(tensor.min()) == float(tensor.max()) == -1.0
    assert image_to_vae_input(image, 64, 96).shape == (1, 3, 64, 96)


# --- pixel values ----------------------------------------------------------------------------------

def test_frames_become_channel_first_in_minus_one_to_one():
    frames = np.zeros((5, 2, 3, 3), np.uint8)
    frames[..., 0] = 255            # red channel full on
    video = frames_to_vae_input(frames)
    assert video.shape == (1, 3, 5, 2, 3) and video.dtype == torch.float32
    assert torch.all(video[0, 0] == 1.0) and torch.all(video[0, 1:] == -1.0)


def test_decoded_video_becomes_uint8_frames_with_navas_truncation():
    video = torch.tensor([-1.0, 1.0, 0.0, 2.0, -3.0]).view(1, 1, 5, 1, 1).expand(1, 3, 5, 1, 1)
    frames = vae_output_to_frames(video)
    assert frames.shape == (5, 1, 1, 3) and frames.dtype == np.uint8
    # 0.0 -> 127.5 truncates to 127; out-of-range values clamp
    assert frames[:, 0, 0, 0].tolist() == [0, 255, 127, 255, 0]


def test_pixels_survive_a_round_trip_within_one_level():
    frames = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    back = vae_output_to_frames(frames_to_vae_input(frames))
    assert np.abs(back.astype(int) - frames.astype(int)).max() <= 1


# --- sound -----------------------------------------------------------------------------------------

def _impulses(n_channels: int) -> torch.Tensor:
    """Channel i holds the value 1 at sample i: the downmix gains can be read off."""
    return torch.eye(n_channels)


def test_mono_is_duplicated_and_stereo_kept():
    mono = torch.randn(1, 100)
    assert torch.equal(to_stereo(mono), mono.expand(2, 100))
    stereo = torch.randn(2, 100)
    assert torch.equal(to_stereo(stereo), stereo)


def test_five_one_downmix_follows_bs775():
    left, right = to_stereo(_impulses(6))           # L R C LFE Ls Rs
    g = 2 ** -0.5
    assert left.tolist() == pytest.approx([1, 0, g, 0, g, 0])
    assert right.tolist() == pytest.approx([0, 1, g, 0, 0, g])


def test_seven_one_downmix_adds_the_side_channels():
    left, right = to_stereo(_impulses(8))           # L R C LFE Ls Rs SL SR
    g = 2 ** -0.5
    assert left.tolist() == pytest.approx([1, 0, g, 0, g, 0, g, 0])
    assert right.tolist() == pytest.approx([0, 1, g, 0, 0, g, 0, g])


def test_unknown_layouts_become_the_mean_on_both_sides():
    three = torch.tensor([[3.0, 0.0], [0.0, 3.0], [3.0, 3.0]])
    assert torch.equal(to_stereo(three), torch.tensor([[2.0, 2.0], [2.0, 2.0]]))


def test_a_mono_array_becomes_a_stereo_batch():
    out = waveform_to_vae_input(np.zeros(16000, np.float32), 16000)
    assert out.shape == (1, 2, 16000) and out.dtype == torch.float32


def test_output_audio_peaks_at_0_95_over_all_channels():
    waveform = torch.tensor([[0.1, -0.5], [0.2, 0.25]])
    out = normalize_output_audio(waveform[None])
    assert out.shape == (2, 2) and out.dtype == np.float32
    assert np.abs(out).max() == pytest.approx(0.95)
    assert np.allclose(out, [[0.19, -0.95], [0.38, 0.475]])   # one gain for both channels


def test_silence_stays_silent():
    assert np.array_equal(normalize_output_audio(torch.zeros(2, 10)), np.zeros((2, 10), np.float32))
