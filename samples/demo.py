"""`make demo`: dub the sample clip end to end on the CPU, with tiny random weights.

The weights are random, so the new voice is noise shaped like speech and the face region is
noise shaped like a face: the demo shows the whole path working (plan, voices, masked joint
denoising, compositing, muxing, run record), not NAVA's quality. With the real weights in
weights/, the same command without --weights/--resolution/--steps is the real dub.
"""

from __future__ import annotations

import sys
from pathlib import Path

from nava_dub.cli import main
from nava_dub.tiny_weights import write_tiny_weights
from nava_dub.weights import is_tiny_folder

HERE = Path(__file__).parent
OUT = HERE.parent / "out" / "demo"


def run() -> None:
    weights = OUT / "tiny-weights"
    if not is_tiny_folder(weights):
        write_tiny_weights(weights)
    args = [str(HERE / "two_voices.mp4"), "--transcript", str(HERE / "two_voices.json"),
            "-o", str(OUT / "two_voices.dub.mp4"), "--weights", str(weights),
            "--resolution", "256", "--steps", "4", "--device", "cpu", *sys.argv[1:]]
    print("nava-dub " + " ".join(args), file=sys.stderr)
    main(args)


if __name__ == "__main__":
    run()
