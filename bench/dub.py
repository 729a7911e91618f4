"""Time a whole dub and split it by stage, against a plain ffmpeg re-encode of the same clip.

    python -m bench.dub [--seconds 60] [--size 1920x1080] [--fps 30] [--resolution 256] [--steps 10]
                        [--video face] [--weights DIR] [--json F]

Builds a talking clip (espeak-ng lines over a moving face on a gradient, stereo 48 kHz AAC), the
tiny offline speech models and (without --weights) tiny NAVA weights, runs `pipeline.dub` with
the real front end (ASR, alignment, diarization), and reads the stage split from the run
record. Then re-encodes the same clip with ffmpeg at the settings the dub writes with (libx264
CRF 17 preset medium, AAC) and prints the ratio of the two totals.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FACE = Path(__file__).resolve().parents[1] / "samples" / "face.jpg"
LINES = ("Good morning everyone, today we talk about the weather in the mountains.",
         "That sounds wonderful, I love the mountains in the spring.",
         "Then let us begin with the northern valleys and the long rivers.")


def make_clip(folder: Path, seconds: float, size: str, fps: str) -> Path:
    parts = []
    for i in range(64):
        wav = folder / f"line{i}.wav"
        voice = ("en-us", "en-gb+f3")[i % 2]
        subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), LINES[i % 3]], check=True)
        parts += ["-i", str(wav)]
    n = 64
    pads = "".join(f"[{i}:a]apad=pad_dur=0.8[p{i}];" for i in range(n))
    concat = "".join(f"[p{i}]" for i in range(n))
    speech = folder / "speech.wav"
    subprocess.run(["ffmpeg", "-v", "error", "-y", *parts, "-filter_complex",
                    f"{pads}{concat}concat=n={n}:v=0:a=1,aresample=48000[a]", "-map", "[a]", "-t", str(seconds),
                    str(speech)], check=True)
    width, height = size.split("x")
    clip = folder / "talk.mp4"
    face_px = int(height) * 5 // 6
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-f", "lavfi", "-i",
                    f"gradients=size={size}:rate={fps}:speed=0.002:duration={seconds}", "-loop", "1", "-i", str(FACE),
                    "-i", str(speech), "-filter_complex",
                    f"[1:v]scale={face_px}:{face_px}[f];[0:v][f]overlay=x='(W-w)/2+40*sin(t/2)':y='(H-h)/2':shortest=1[v]",
                    "-map", "[v]", "-map", "2:a", "-t", str(seconds), "-c:v", "libx264", "-preset", "veryfast",
                    "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac", "-ac", "2", str(clip)], check=True)
    return clip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--size", default="1920x1080")
    parser.add_argument("--fps", default="30")
    parser.add_argument("--resolution", type=int, default=256)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--video", default="face")
    parser.add_argument("--weights", type=Path)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)

    from nava_dub.options import DubOptions
    from nava_dub.pipeline import SpeechStack, dub
    from nava_dub.tiny_weights import write_tiny_weights
    from nava_dub.transcribe import SpeechOptions
    from tests.speech_models import TEST_SPEECH_OPTIONS, build_speech_models

    work = Path(tempfile.mkdtemp(prefix="bench-dub-"))
    clip = make_clip(work, args.seconds, args.size, args.fps)
    weights = args.weights or write_tiny_weights(work / "weights")
    build_speech_models(weights)                      # tiny offline ASR, alignment and diarization
    speech = SpeechStack(weights, SpeechOptions(**{**TEST_SPEECH_OPTIONS, "n_threads": 2}))
    started = time.perf_counter()
    report = dub(clip, DubOptions(output=work / "dub.mp4", weights_dir=weights, steps=args.steps,
                                  resolution_px=args.resolution, video_mode=args.video, device="cpu"),
                 speech=speech)
    total_s = time.perf_counter() - started
    started = time.perf_counter()
    subprocess.run(["ffmpeg", "-v", "error", "-y", "-i", str(clip), "-c:v", "libx264", "-crf", "17", "-preset",
                    "medium", "-c:a", "aac", str(work / "plain.mp4")], check=True)
    ffmpeg_s = time.perf_counter() - started
    record = json.loads(report.record.read_text())
    result = {"clip": f"{args.seconds:g} s {args.size} {args.fps} fps", "resolution_px": args.resolution,
              "steps": args.steps, "video_mode": args.video, "windows": report.n_windows,
              "total_s": round(total_s, 1), "stages_s": record["timings_s"], "ffmpeg_reencode_s": round(ffmpeg_s, 1),
              "ratio_to_ffmpeg": round(total_s / ffmpeg_s, 1), "notes": list(report.notes)}
    print(json.dumps(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
