"""The glue between media and NAVA's codecs: pixel and sample conversions exactly as NAVA makes them.

Pure functions on arrays and tensors, no files: uint8 frames <-> the video VAE's [-1, 1] input,
NAVA's resolution buckets and first-image resize, waveforms <-> the audio VAE's stereo 16 kHz input,
and the final peak normalisation NAVA applies before writing audio.
"""

from __future__ import annotations

import numpy as np
import torch
import torchaudio.functional as AF
from PIL import Image

from nava_dub.geometry import CoverCrop

AUDIO_VAE_RATE_HZ = 16000
OUTPUT_PEAK = 0.95             # NAVA's _toWav: every clip peaks here, all channels together
_SQRT_HALF = 2 ** -0.5         # ITU-R BS.775 downmix gain for centre and surrounds

# NAVA's 960 bucket table (local_video_vae.py, scale 15): aspect ratio -> (short, long) side in 16-px cells.
# A source picks the nearest ratio, with thresholds at the midpoints between neighbours.
BUCKETS_960: tuple[tuple[float, tuple[int, int]], ...] = (
    (1 / 1, (60, 60)),
    (4 / 5, (54, 66)),
    (3 / 4, (52, 68)),
    (2 / 3, (46, 74)),
    (9 / 16, (44, 80)),
    (1 / 2, (42, 84)),
    (2 / 5, (38, 96)),
)
_CELL_PX = 16


# --- pictures ---------------------------------------------------------------------------------

def bucket_for(width: int, height: int) -> tuple[int, int]:
    """NAVA's output size (height, width) for a source of width x height: 1920x1080 -> (704, 1280)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"frame size must be positive, got {width}x{height}")
    ratio = min(width, height) / max(width, height)      # in (0, 1]: portrait and landscape alike
    cells = BUCKETS_960[-1][1]
    for (upper, upper_cells), (lower, _) in zip(BUCKETS_960, BUCKETS_960[1:], strict=False):
        if ratio >= (upper + lower) / 2:
            cells = upper_cells
            break
    short_px, long_px = cells[0] * _CELL_PX, cells[1] * _CELL_PX
    return (long_px, short_px) if height > width else (short_px, long_px)


def cover_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """NAVA's first-image preprocessing: LANCZOS-resize to cover height x width, then centre-crop.

    image: uint8 [H, W, 3] -> uint8 [height, width, 3]. The path for the first image only: PIL's
    LANCZOS is what NAVA resizes it with. Video frames go through geometry.CoverCrop.to_target
    (cv2); both take the cover size and crop offsets from geometry.CoverCrop.for_sizes.
    """
    src_h, src_w = image.shape[:2]
    crop = CoverCrop.for_sizes(src_w, src_h, width, height)
    pil = Image.fromarray(np.ascontiguousarray(image)).resize((crop.scaled_w, crop.scaled_h), Image.LANCZOS)
    return np.asarray(pil.crop((crop.crop_x, crop.crop_y, crop.crop_x + width, crop.crop_y + height)))


def frames_to_vae_input(frames: np.ndarray | torch.Tensor, device: torch.device | str | None = None) -> torch.Tensor:
    """uint8 frames [T, H, W, 3] -> the video VAE's input [1, 3, T, H, W], float32 in [-1, 1].

    The uint8 frames move to `device` before widening: a 6 s clip at 704x1280 is 0.4 GB as bytes, 1.6 GB as floats.
    """
    pixels = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames, device=device)
    if pixels.ndim != 4 or pixels.shape[-1] != 3:
        raise ValueError(f"frames must be [T, H, W, 3], got shape {tuple(pixels.shape)}")
    video = pixels.float() / 255.0 * 2.0 - 1.0          # NAVA's x/255*2-1
    return video.permute(3, 0, 1, 2).unsqueeze(0)


def image_to_vae_input(image: np.ndarray, height: int | None = None, width: int | None = None) -> torch.Tensor:
    """A first image uint8 [H, W, 3] -> [1, 3, height, width] in [-1, 1], for the VAE's encode_image.

    Without a size, the image's own bucket: NAVA's image-to-video path sizes the clip from the image.
    """
    if height is None or width is None:
        height, width = bucket_for(image.shape[1], image.shape[0])
    return frames_to_vae_input(cover_resize(image, height, width)[None])[:, :, 0]


def vae_output_to_frames(video: torch.Tensor) -> np.ndarray:
    """Decoded video [1, 3, T, H, W] or [3, T, H, W] in [-1, 1] -> uint8 frames [T, H, W, 3].

    NAVA's rounding: clamp((x+1)/2, 0, 1) * 255, then truncation to uint8.
    """
    if video.ndim == 5:
        if video.shape[0] != 1:
            raise ValueError(f"one video at a time, got a batch of {video.shape[0]}")
        video = video[0]
    unit = torch.clamp((video.float() + 1.0) / 2.0, 0.0, 1.0)
    frames = (unit * 255).clamp(0, 255).to(torch.uint8)
    return frames.permute(1, 2, 3, 0).cpu().numpy()


# --- sound ------------------------------------------------------------------------------------

def to_stereo(waveform: torch.Tensor) -> torch.Tensor:
    """NAVA's channel adaptation for the stereo audio VAE: [C, S] -> [2, S].

    Mono is duplicated; 5.0 (L R C Ls Rs), 5.1 (L R C LFE Ls Rs) and 7.1 (L R C LFE Ls Rs SL SR) get
    the ITU-R BS.775 downmix (centre and surrounds at -3 dB, LFE dropped); any other layout becomes
    the channel mean on both sides.
    """
    n_channels = waveform.shape[0]
    if n_channels == 2:
        return waveform
    if n_channels == 1:
        return waveform.expand(2, -1)
    surrounds = {5: ((3,), (4,)), 6: ((4,), (5,)), 8: ((4, 6), (5, 7))}.get(n_channels)
    if surrounds is None:
        return waveform.mean(dim=0, keepdim=True).expand(2, -1)
    centre = _SQRT_HALF * waveform[2]
    left = waveform[0] + centre + sum(_SQRT_HALF * waveform[i] for i in surrounds[0])
    right = waveform[1] + centre + sum(_SQRT_HALF * waveform[i] for i in surrounds[1])
    return torch.stack([left, right])


def waveform_to_vae_input(waveform: np.ndarray | torch.Tensor, sample_rate_hz: int) -> torch.Tensor:
    """A waveform [C, S] (or mono [S]) at any rate -> the audio VAE's input [1, 2, S'] at 16 kHz.

    Resampled with torchaudio's defaults, as NAVA's adapter loads audio, then made stereo.
    """
    audio = torch.as_tensor(np.asarray(waveform) if not isinstance(waveform, torch.Tensor) else waveform)
    audio = audio.float()
    if audio.ndim == 1:
        audio = audio.unsqueeze(0)
    if audio.ndim != 2:
        raise ValueError(f"waveform must be [C, S] or [S], got shape {tuple(audio.shape)}")
    if sample_rate_hz != AUDIO_VAE_RATE_HZ:
        audio = AF.resample(audio, orig_freq=sample_rate_hz, new_freq=AUDIO_VAE_RATE_HZ)
    return to_stereo(audio).unsqueeze(0)


def normalize_output_audio(waveform: torch.Tensor) -> np.ndarray:
    """NAVA's last step before writing: scale so the peak over all channels is 0.95.

    waveform [C, S] or [1, C, S] -> float32 [C, S]. Silence stays silence (the peak floor is 1e-12).
    """
    if waveform.ndim == 3:
        waveform = waveform[0]
    peak = waveform.float().abs().max().clamp(min=1e-12)
    return (waveform.float() * (OUTPUT_PEAK / peak)).clamp(-1.0, 1.0).cpu().numpy()
