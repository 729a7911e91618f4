"""Which latents of a window NAVA regenerates and which follow the source (issue 5 §1). Pure.

Video masks live on the Wan2.2 latent grid [n_latent_frames, h, w] (16 px cells, latent frame 0
= frame 0, latent frame k = frames 4k-3..4k); audio masks on NAVA's audio tokens (25 per second).
True means "keep the source", as sampler.Keep wants it.
"""

from __future__ import annotations

import math

import numpy as np

from nava_dub.timeline import AUDIO_TOKENS_PER_S, NAVA_FPS, Window

VIDEO_MODES = ("face", "keep", "full")
AUDIO_MODES = ("speech", "full")


def active_frames(window: Window, margin_s: float) -> np.ndarray:
    """bool [n_frames]: frames (24 fps, window-relative) on which a span of the window is voiced (± margin)."""
    times_s = float(window.start_s) + (np.arange(window.n_frames) + 0.5) / float(NAVA_FPS)
    active = np.zeros(window.n_frames, dtype=bool)
    for span in window.spans:
        active |= (times_s >= span.start_s - margin_s) & (times_s < span.end_s + margin_s)
    return active


def audio_keep_mask(window: Window, audio_mode: str, margin_s: float) -> np.ndarray:
    """bool [n_audio_tokens]: the tokens outside the re-voiced spans (± margin) keep the source."""
    n_tokens = window.n_audio_tokens
    if audio_mode == "full":
        return np.zeros(n_tokens, dtype=bool)
    keep = np.ones(n_tokens, dtype=bool)
    for span in window.spans:   # 1e-6: times like 0.8 * 25 must not land a token off
        first = math.floor((span.start_s - margin_s - float(window.start_s)) * AUDIO_TOKENS_PER_S + 1e-6)
        last = math.ceil((span.end_s + margin_s - float(window.start_s)) * AUDIO_TOKENS_PER_S - 1e-6)
        keep[max(0, first):max(0, min(n_tokens, last))] = False
    return keep


def video_keep_mask(video_mode: str, n_latent_frames: int, latent_h: int, latent_w: int,
                    regenerated: np.ndarray | None = None) -> np.ndarray:
    """bool [n_latent_frames, latent_h, latent_w].

    keep: every latent follows the source (NAVA voices the speech while seeing the source lips);
    full: NAVA's own first-frame mode, only latent frame 0 is the source's;
    face: everything but `regenerated` (the face cells from face.latent_token_mask).
    """
    shape = (n_latent_frames, latent_h, latent_w)
    if video_mode == "keep":
        return np.ones(shape, dtype=bool)
    if video_mode == "full":
        keep = np.zeros(shape, dtype=bool)
        keep[0] = True
        return keep
    if regenerated is None or regenerated.shape != shape:
        raise ValueError(f"face mode needs a regenerated-cells mask of shape {shape}")
    return ~regenerated
