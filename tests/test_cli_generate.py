"""`nava-dub generate` from a clean checkout with tiny weights: one line of each task, playable outputs."""

import json

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from nava_dub import media
from nava_dub.cli import app
from tests import tiny_nava
from tests.speech_models import torch_threads


def test_generate_one_line_of_each_task(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(tmp_path / "first.png")
    jobs = tmp_path / "jobs.jsonl"
    jobs.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in [
        {"prompt": "一个人对着镜头说话。<S>Hello there.<E>"},
        {"prompt": "画面中的人微笑着说：<S>Nice to meet you.<E>", "image_path": "first.png"},
        {"prompt": "海浪拍打着岸边。", "task": "t2a"},
    ]) + "\n", encoding="utf-8")
    args = ["generate", str(jobs), "-o", str(tmp_path / "out"), "--weights", str(tiny_nava.weights_dir()),
            "--frames", "3", "--size", "64x64", "--steps", "2", "--device", "cpu", "-q"]
    with torch_threads(1):
        result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    outputs = sorted((tmp_path / "out").iterdir())
    assert [p.suffix for p in outputs] == [".mp4", ".mp4", ".wav"]
    for path in outputs:                                  # 3 latent frames = 9 frames = 0.375 s at 24 fps
        info = media.probe(path)
        assert abs(info.audio.duration_s - 0.375) < 0.05
        if path.suffix == ".mp4":
            assert info.video.fps == 24 and info.video.codec == "h264" and info.audio.codec == "aac"
            assert abs(info.video.duration_s - 0.375) < 1 / 24 + 1e-6
    again = CliRunner().invoke(app, args)                  # outputs that exist are skipped
    assert again.exit_code == 0 and again.stdout.count("skipped") == 3
