"""What the pass-saving shortcuts cost: final latents with each `options.Shortcuts` against the full run.

    python -m bench.quality [--size tiny|release] [--weights NAVA.safetensors] [--shape 64x96x3]
                            [--steps 50] [--speakers] [--variants a,b] [--json F]

Samples one window from the same noise with every guidance branch at every step (the reference),
then with each shortcut variant, and reports the passes run, the share saved, the seconds, and the
relative L2 distance ‖x − x_ref‖ / ‖x_ref‖ of the final video and audio latents. With random
weights (the default) the distances show how far a shortcut moves the sampler, not whether the
result looks or sounds worse: pass --weights (the real checkpoint, on a GPU) for numbers that mean
something for quality, and judge decoded outputs before turning a shortcut on by default.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from bench.measure import compute_dtype, environment, pick_device, synchronize, write_json
from bench.step import build_model, parse_shape, window_inputs
from nava_dub.guidance import GuidanceScales, nava_velocity
from nava_dub.model.transformer import PRESETS, NavaTransformer
from nava_dub.options import Shortcuts
from nava_dub.sampler import sample

VARIANTS: dict[str, Shortcuts] = {
    "guide_sigma_0.3-1": Shortcuts(guidance_sigmas=(0.3, 1.0)),     # no guidance over the last 4 of 50 steps
    "guide_sigma_0-0.95": Shortcuts(guidance_sigmas=(0.0, 0.95)),   # none over the first 11 of 50 (noisiest)
    "guide_sigma_0.3-0.95": Shortcuts(guidance_sigmas=(0.3, 0.95)),
    "reuse_1": Shortcuts(reuse_steps=1),                             # full branches every other step
    "reuse_2": Shortcuts(reuse_steps=2),
    "reuse_3": Shortcuts(reuse_steps=3),
}


def run(model: NavaTransformer, cond, noise: list[torch.Tensor], n_steps: int, shortcuts: Shortcuts,
        device: torch.device) -> tuple[list[torch.Tensor], int, float]:
    """(final latents, transformer passes, seconds) of one sampling run."""
    velocity = nava_velocity(model, cond, GuidanceScales(), shortcuts=shortcuts)
    synchronize(device)
    start = time.perf_counter()
    with torch.no_grad():
        latents = sample(velocity, noise, n_steps=n_steps)
    synchronize(device)
    return latents, velocity.n_passes, time.perf_counter() - start


def relative_distance(x: torch.Tensor, reference: torch.Tensor) -> float:
    return float((x - reference).norm() / reference.norm().clamp(min=1e-30))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=sorted(PRESETS), default="tiny")
    parser.add_argument("--weights", type=Path, help="a real checkpoint instead of random weights")
    parser.add_argument("--shape", help="HEIGHTxWIDTHxLATENT_FRAMES (default: 64x96x3 tiny, 704x1280x37 release)")
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--speakers", action="store_true")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"subset of {', '.join(VARIANTS)}")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    device = pick_device(args.size)
    params = PRESETS[args.size]
    if args.weights is not None:
        from nava_dub.checkpoint import load_transformer
        model = load_transformer(args.weights, params=params, dtype=compute_dtype(device), device=device)
    else:
        model = build_model(params, device, compute_dtype(device))
    shape = parse_shape(args.shape or ("64x96x3" if args.size == "tiny" else "704x1280x37"))
    cond, noise = window_inputs(params, shape, device, args.speakers)
    run(model, cond, noise, 2, Shortcuts(), device)  # warm-up, so the reference's seconds compare
    reference, full_passes, full_s = run(model, cond, noise, args.steps, Shortcuts(), device)
    rows = [{"variant": "full", "n_passes": full_passes, "passes_saved": 0.0, "seconds": full_s,
             "video_distance": 0.0, "audio_distance": 0.0}]
    for name in args.variants.split(","):
        latents, n_passes, seconds = run(model, cond, noise, args.steps, VARIANTS[name], device)
        rows.append({"variant": name, "n_passes": n_passes, "passes_saved": 1 - n_passes / full_passes,
                     "seconds": seconds, "video_distance": relative_distance(latents[0], reference[0]),
                     "audio_distance": relative_distance(latents[1], reference[1])})
    for row in rows:
        print(f"{row['variant']}: {row['n_passes']} passes ({row['passes_saved']:.0%} saved), {row['seconds']:.2f} s, "
              f"video {row['video_distance']:.4f}, audio {row['audio_distance']:.4f}")
    write_json(args.json, {"size": args.size, **environment(device), "weights": str(args.weights or "random"),
                           "shape": f"{shape.height_px}x{shape.width_px}x{shape.n_latent_frames}",
                           "n_steps": args.steps, "variants": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
