"""Time NAVA's other components at one window shape: text encoding, video VAE encode/decode, audio path.

    python -m bench.components [--size tiny|release] [--shape 704x1280x37] [--parts text_encode,...]
                               [--flops] [--repeats N] [--json F]

Random weights. Text: the umT5 encoder on two prompts of 512 tokens (positive and negative), bf16
on a GPU. Video: the Wan2.2 VAE (fp32) encoding the window's 4F−3 frames, then decoding the latent
untiled and in NAVA's default tiles. Audio: the LTX-2.3 audio VAE encoding the window's stereo
16 kHz waveform, and decoding its tokens through the vocoder. Each prints seconds, peak GPU memory
(the peak of that call alone) and, with --flops, the FLOP torch's FlopCounterMode counts in one
extra call (convolutions and matmuls) with the achieved TFLOP/s. On the CPU the vocoder is slow even
at the tiny size (seconds per call): leave audio_decode out of --parts there.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.measure import (
    compute_dtype,
    environment,
    gigabytes,
    median,
    peak_gpu_bytes,
    pick_device,
    reset_peak,
    timed,
    write_json,
)
from bench.step import parse_shape
from nava_dub.memory import GenerationShape
from nava_dub.timeline import latent_frames_to_frames

if TYPE_CHECKING:
    from nava_dub.model.audio_vae import LtxAudioVAE
    from nava_dub.model.text_encoder import TextEncoder
    from nava_dub.model.video_vae import WanVideoVAE
    from nava_dub.model.vocoder import LtxVocoder

DEFAULT_SHAPE = {"release": "704x1280x37", "tiny": "64x64x2"}
N_TEXT_TOKENS = 512
AUDIO_RATE_HZ = 16000


@dataclass(frozen=True, eq=False)
class Components:
    text: TextEncoder
    video: WanVideoVAE
    audio: LtxAudioVAE
    vocoder: LtxVocoder


def build_components(size: str, device: torch.device) -> Components:
    """The text encoder, video VAE, audio VAE and vocoder of a size, random weights, on `device`."""
    from nava_dub.model.audio_vae import LTX23_AUDIO_VAE, LTX23_AUDIO_VAE_TINY, LtxAudioVAE
    from nava_dub.model.text_encoder import TextEncoder, tiny_umt5_config, umt5_xxl_config
    from nava_dub.model.video_vae import WAN22_RELEASE, WAN22_TINY, WanVideoVAE
    from nava_dub.model.vocoder import LTX23_VOCODER, LTX23_VOCODER_TINY, LtxVocoder

    tiny = size == "tiny"
    text_dtype = compute_dtype(device)
    # built where they run on a GPU: no host copy of the 11 GB text encoder (slow to build on the CPU)
    with torch.device(device) if device.type == "cuda" else contextlib.nullcontext():
        parts = Components(TextEncoder(tiny_umt5_config() if tiny else umt5_xxl_config()).to(text_dtype),
                           WanVideoVAE(WAN22_TINY if tiny else WAN22_RELEASE),
                           LtxAudioVAE(LTX23_AUDIO_VAE_TINY if tiny else LTX23_AUDIO_VAE),
                           LtxVocoder(LTX23_VOCODER_TINY if tiny else LTX23_VOCODER))
    for module in (parts.text, parts.video, parts.audio, parts.vocoder):
        module.to(device).eval().requires_grad_(False)
    return parts


WORKLOADS = ("text_encode", "video_encode", "video_decode", "video_decode_tiled", "audio_encode", "audio_decode")


def workloads(parts: Components, shape: GenerationShape, device: torch.device,
              names: list[str]) -> dict[str, Callable[[], object]]:
    """name → a call to time, for the names asked for, with its inputs made once."""
    from nava_dub.model.audio_vae import decode_audio
    from nava_dub.model.video_vae import VaeTiling

    g = torch.Generator(device=device).manual_seed(0)
    n_frames = latent_frames_to_frames(shape.n_latent_frames)
    calls: dict[str, Callable[[], object]] = {}
    if "text_encode" in names:
        ids = torch.randint(0, parts.text.umt5.config.vocab_size, (2, N_TEXT_TOKENS), generator=g, device=device)
        calls["text_encode"] = lambda: parts.text(ids, torch.ones_like(ids))
    if any(n.startswith("video") for n in names):
        frames = torch.rand(1, 3, n_frames, shape.height_px, shape.width_px, generator=g, device=device) * 2 - 1
        latent = parts.video.encode(frames)
        calls.update(video_encode=lambda: parts.video.encode(frames),
                     video_decode=lambda: parts.video.decode(latent),
                     video_decode_tiled=lambda: parts.video.decode(latent, VaeTiling()))
    if any(n.startswith("audio") for n in names):
        waveform = torch.rand(1, 2, n_frames * AUDIO_RATE_HZ // 24, generator=g, device=device) * 0.2 - 0.1
        tokens = parts.audio.encode(waveform)
        calls.update(audio_encode=lambda: parts.audio.encode(waveform),
                     audio_decode=lambda: decode_audio(parts.audio, parts.vocoder, tokens))
    return {name: calls[name] for name in names}


def measure(name: str, call: Callable[[], object], device: torch.device, count_flops: bool,
            n_repeats: int) -> dict[str, object]:
    reset_peak(device)
    with torch.no_grad():
        seconds = timed(call, device, n_warmup=1, n_repeats=n_repeats)
    row: dict[str, object] = {"component": name, "seconds": median(seconds), "seconds_all": seconds,
                              "peak_gpu_bytes": peak_gpu_bytes(device)}
    if count_flops:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            call()
        flops = counter.get_total_flops()
        row.update(flops=flops, tflops_per_s=flops / median(seconds) / 1e12)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.components", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=["tiny", "release"], default="tiny")
    parser.add_argument("--shape", help="HEIGHTxWIDTHxLATENT_FRAMES")
    parser.add_argument("--flops", action="store_true", help="count FLOP in one extra call per component")
    parser.add_argument("--parts", default=",".join(WORKLOADS),
                        help=f"comma-separated subset of {', '.join(WORKLOADS)}")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    names = args.parts.split(",")
    unknown = sorted(set(names) - set(WORKLOADS))
    if unknown:
        parser.error(f"unknown parts {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    device = pick_device(args.size)
    shape = parse_shape(args.shape or DEFAULT_SHAPE[args.size])
    parts = build_components(args.size, device)
    rows = [measure(name, call, device, args.flops, args.repeats)
            for name, call in workloads(parts, shape, device, names).items()]
    for row in rows:
        rate = f", {row['tflops_per_s']:.1f} TFLOP/s" if "flops" in row else ""
        print(f"{row['component']} {shape.height_px}x{shape.width_px}x{shape.n_latent_frames}: "
              f"{row['seconds']:.3f} s, peak {gigabytes(row['peak_gpu_bytes'])}{rate}")
    write_json(args.json, {"size": args.size, **environment(device), "shape": args.shape or DEFAULT_SHAPE[args.size],
                           "components": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
