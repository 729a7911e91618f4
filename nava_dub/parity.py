"""Parity of our transformer (and sampler) with fixtures made by the official NAVA code.

    python -m nava_dub.parity FIXTURE_DIR [--case NAME] [--manifest FILE] [--weights F] [--config F]
                              [--dtype float32|float64|bfloat16] [--device cpu|cuda]

A fixture folder holds `case_*.json` + `case_*.safetensors` pairs in the format of
../shared/fixtures/nava_dit/README.md, the model's config JSON and its weights (or pass
--config/--weights, e.g. for a folder made from the real checkpoint on a GPU). Each case prints
`<case file stem> <max abs error> <tolerance> PASS|FAIL`; the exit code is 1 if any case fails.
Forward cases follow the official `predict_eps` conventions (flat channels-last latents of all
samples concatenated, per-sample contexts, speakers bound sample-major to `spk_pos`); sampling
cases (a `num_steps` key) run the official `AudioVideoPipeline.sample` settings through
`nava_dub.sampler` and `nava_dub.guidance` from the recorded initial noise.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor

from nava_dub.checkpoint import CHECKPOINT_PREFIX, load_transformer
from nava_dub.errors import DubError, UsageError
from nava_dub.model.transformer import PRESETS, NavaInputs, NavaParams, NavaTransformer, first_frame_timesteps

Outputs = dict[str, tuple[Tensor, Tensor]]  # name → (ours, reference)


@dataclass(frozen=True)
class Tolerance:
    """Pass when every |Δ| ≤ atol + rtol·|ref| and ‖Δ‖₂/‖ref‖₂ ≤ max_rel."""

    atol: float
    rtol: float
    max_rel: float

    def passes(self, ours: Tensor, ref: Tensor) -> bool:
        diff = (ours.double() - ref.double()).abs()
        rel = diff.norm() / ref.double().norm().clamp(min=1e-30)
        return bool((diff <= self.atol + self.rtol * ref.double().abs()).all()) and float(rel) <= self.max_rel

    def __str__(self) -> str:
        return f"{self.atol:g}+{self.rtol:g}|ref|,rel<={self.max_rel:g}"


# the fixture README's recommended checks (fp32 proves correctness; bf16 is a smoke test)
TOLERANCES = {
    ("forward", "fp32"): Tolerance(1e-4, 1e-4, 1e-5),
    ("sampling", "fp32"): Tolerance(5e-4, 1e-4, 5e-5),
    ("forward", "bf16"): Tolerance(0.25, 0.0, 0.03),
    ("sampling", "bf16"): Tolerance(1.0, 0.0, 0.08),
}


@dataclass(frozen=True)
class CaseResult:
    name: str
    max_abs_error: float
    tolerance: str
    status: str  # PASS | FAIL

    def line(self) -> str:
        return f"{self.name} {self.max_abs_error:.3e} {self.tolerance} {self.status}"


# --- layout conversions (official flat layout ↔ per-sample tensors) -------------------------------

def split_video(flat: Tensor, grids: list[list[int]]) -> list[Tensor]:
    """[ΣF·H·W, C] (f,h,w row order, channels last) → per sample [C, F, H, W]."""
    sizes = [math.prod(g) for g in grids]
    return [rows.reshape(*g, -1).permute(3, 0, 1, 2) for rows, g in zip(flat.split(sizes), grids, strict=True)]


def join_video(videos: list[Tensor]) -> Tensor:
    """Per sample [C, F, H, W] → [ΣF·H·W, C]."""
    return torch.cat([v.permute(1, 2, 3, 0).reshape(-1, v.shape[0]) for v in videos])


def forward_inputs(case: dict, t: dict[str, Tensor], params: NavaParams, dtype: torch.dtype) -> list[NavaInputs]:
    """The samples of one official `predict_eps` call, with the official context-selection rule:
    given speaker embeddings, every block sees the audio-side context; speakers are injected only
    where positions are given too."""
    videos = split_video(t["in.latents_vid"].to(dtype), case["t_h_w_list"])
    audios = t["in.latents_audio"].to(dtype).split(case["audio_len_list"])
    spk_pos = case.get("spk_pos") or [[] for _ in videos]
    spk_given = "in.spk_embs" in t
    per_sample = t["in.spk_embs"].split([len(p) for p in spk_pos]) if spk_given and case.get("spk_pos") else None
    batch = []
    for i, (video, audio) in enumerate(zip(videos, audios, strict=True)):
        timestep = case["timesteps"][i]
        video_t = None
        if case.get("is_i2v"):
            video[:, 0] = t[f"in.first_frame_{i}"][0].permute(2, 0, 1).to(dtype)  # [1,H,W,C] → [C,H,W]
            video_t = first_frame_timesteps(params, video, timestep)
        context = t[f"in.audio_context_{i}" if spk_given else f"in.vid_context_{i}"].to(dtype)
        batch.append(NavaInputs(
            video_latents=video, audio_latents=audio, context=context, timestep=timestep,
            video_timesteps=video_t, modality_masked=bool(case.get("masking_modality")),
            speaker_embeddings=per_sample[i] if per_sample else None,
            speaker_positions=tuple(spk_pos[i]) if per_sample else ()))
    return batch


def run_forward_case(model: NavaTransformer, case: dict, t: dict[str, Tensor]) -> Outputs:
    batch = forward_inputs(case, t, model.params, model.dtype)
    with torch.no_grad():
        outs = model(batch)
    result = {
        "velocity_vid": (join_video([o.video_velocity for o in outs]), t["out.velocity_vid"]),
        "velocity_audio": (torch.cat([o.audio_velocity for o in outs]), t["out.velocity_audio"]),
    }
    if "out.latents_vid_after_call" in t:  # the official call writes frame 0 into the caller's buffer
        result["latents_vid_after_call"] = (join_video([s.video_latents for s in batch]), t["out.latents_vid_after_call"])
    return result


def run_sampling_case(model: NavaTransformer, case: dict, t: dict[str, Tensor]) -> Outputs:
    """The official `AudioVideoPipeline.sample` of one clip, from its recorded noise, through our
    sampler and guidance; compares the schedule, every step's latents and the result."""
    from nava_dub.guidance import Conditioning, GuidanceScales, nava_velocity
    from nava_dub.sampler import Keep, StepInfo, sample, schedule

    (grid,) = case["t_h_w_list"]
    video_noise = split_video(t["in.noise_latents_vid"], [grid])[0]
    positions = tuple(case["spk_pos"][0]) if case.get("spk_pos") else ()
    cond = Conditioning(context=t["in.pos_context"], negative_context=t["in.vneg_context"],
                        speaker_embeddings=t["in.spk_embs"] if positions else None, speaker_positions=positions)
    scales = GuidanceScales(
        video=case["video_guidance_scale"], audio=case["audio_guidance_scale"],
        video_align=case["video_align_guidance_scale"], audio_align=case["audio_align_guidance_scale"],
        timbre=case["timbre_align_guidance_scale"], align_3d=case["align_3d_cfg"], timbre_cfg=case["timbre_cfg"])
    keeps: list[Keep | None] = [None, None]
    clean_tokens = None
    if case.get("is_i2v"):  # first frame: held clean, its tokens at t = 0
        mask = torch.zeros(1, grid[0], 1, 1, dtype=torch.bool)
        mask[:, 0] = True
        keeps[0] = Keep(mask, t["in.first_frame"][0].permute(2, 0, 1).unsqueeze(1), "clean")  # [C, 1, H, W]
        clean_tokens = torch.zeros(model.params.token_grid(*grid), dtype=torch.bool)
        clean_tokens[0] = True
    steps: list[StepInfo] = []
    final = sample(nava_velocity(model, cond, scales, clean_video_tokens=clean_tokens),
                   [video_noise, t["in.noise_latents_audio"]], n_steps=case["num_steps"], shift=case["shift"],
                   keeps=keeps, on_step=steps.append)
    timesteps, sigmas = schedule(case["num_steps"], case["shift"])
    result = {"timesteps": (torch.tensor(timesteps, dtype=torch.float64), t["timesteps"].double()),
              "sigmas": (torch.tensor(sigmas), t["sigmas"]),
              "final_latents_vid": (join_video([final[0]]), t["out.final_latents_vid"]),
              "final_latents_audio": (final[1], t["out.final_latents_audio"])}
    for s in steps:
        result[f"step{s.step}.latents_vid_out"] = (join_video([s.latents[0]]), t[f"step{s.step}.latents_vid_out"])
        result[f"step{s.step}.latents_audio_out"] = (s.latents[1], t[f"step{s.step}.latents_audio_out"])
    return result


# --- folder, manifest, CLI --------------------------------------------------------------------

def case_files(folder: Path, case: str | None = None) -> list[Path]:
    """The case JSON files of a fixture folder (trace files are debugging aids, not cases)."""
    files = sorted(p for p in folder.glob("*.json") if p.with_suffix(".safetensors").is_file())
    if case is not None:
        files = [p for p in files if p.stem == case or p.stem == f"case_{case}" or p.stem.startswith(f"case_{case}_")]
        if not files:
            raise UsageError(f"no case {case!r} in {folder}", "pass a case file stem such as case_a_t2av")
    return files


def run_case(model: NavaTransformer, path: Path, precision: str) -> CaseResult:
    case = json.loads(path.read_text())
    kind = "sampling" if "num_steps" in case else "forward"
    tolerance = TOLERANCES[(kind, precision)]
    runner = run_forward_case if kind == "forward" else run_sampling_case
    outputs = runner(model, case, load_file(str(path.with_suffix(".safetensors"))))
    max_abs = max(float((ours.double().cpu() - ref.double()).abs().max()) for ours, ref in outputs.values())
    ok = all(tolerance.passes(ours.float().cpu(), ref) for ours, ref in outputs.values())
    return CaseResult(path.stem, max_abs, str(tolerance), "PASS" if ok else "FAIL")


def _find_one(folder: Path, pattern: str, exclude_prefix: str, what: str) -> Path:
    found = [p for p in sorted(folder.glob(pattern)) if not p.name.startswith(exclude_prefix)]
    if len(found) != 1:
        raise UsageError(f"expected one {what} in {folder}, found {[p.name for p in found]}",
                         f"pass --{what} FILE")
    return found[0]


def run_folder(folder: Path, *, case: str | None = None, weights: Path | None = None, config: Path | None = None,
               dtype: torch.dtype = torch.float32, device: str = "cpu") -> list[CaseResult]:
    """Run every case of a fixture folder (or one) through the model its weights and config describe."""
    config = config or _find_one(folder, "*config*.json", "case_", "config")
    weights = weights or _find_one(folder, "*.safetensors", "case_", "weights")
    params = NavaParams.from_config_dict(json.loads(config.read_text()))
    model = load_transformer(weights, params=params, dtype=dtype, device=device)
    precision = "bf16" if dtype.itemsize < 4 else "fp32"
    return [run_case(model, path, precision) for path in case_files(folder, case)]


@dataclass(frozen=True)
class ManifestResult:
    n_matching: int      # manifest keys present in the model with the same shape
    n_expected: int      # keys in the manifest
    n_extra: int         # model keys the manifest lacks

    @property
    def ok(self) -> bool:
        return self.n_matching == self.n_expected and self.n_extra == 0


def check_manifest(path: Path) -> ManifestResult:
    """Compare the state_dict keys and shapes of a meta-device build with a manifest JSON.

    The architecture comes from the manifest's own `config` (+ `extra_constructor_args`) when it has
    one, else the release preset.
    """
    manifest = json.loads(path.read_text())
    params = PRESETS["release"]
    if "config" in manifest:
        params = NavaParams.from_config_dict({**manifest["config"], **manifest.get("extra_constructor_args", {})})
    with torch.device("meta"):
        model = NavaTransformer(params)
    actual = {CHECKPOINT_PREFIX + k: list(v.shape) for k, v in model.state_dict().items()}
    expected = manifest["keys"]
    matching = sum(actual.get(k) == list(shape) for k, shape in expected.items())
    return ManifestResult(matching, len(expected), len(set(actual) - set(expected)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nava_dub.parity", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", nargs="?", type=Path, help="fixture folder (case_*.json + case_*.safetensors)")
    parser.add_argument("--case", help="run one case (file stem, e.g. case_a_t2av)")
    parser.add_argument("--manifest", type=Path, help="compare a meta-device build with a key/shape manifest")
    parser.add_argument("--weights", type=Path, help="checkpoint to test (default: the folder's weights file)")
    parser.add_argument("--config", type=Path, help="model config JSON (default: the folder's *config*.json)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    if args.folder is None and args.manifest is None:
        parser.error("pass a fixture folder, --manifest FILE, or both")
    failed = False
    try:
        if args.manifest is not None:
            m = check_manifest(args.manifest)
            failed |= not m.ok
            extra = f" (+{m.n_extra} keys not in the manifest)" if m.n_extra else ""
            print(f"manifest {m.n_matching}/{m.n_expected}{extra} {'PASS' if m.ok else 'FAIL'}")
        if args.folder is not None:
            if args.device.startswith("cuda"):  # TF32 would cost ~1e-3 relative error
                torch.backends.cuda.matmul.allow_tf32 = False
                torch.backends.cudnn.allow_tf32 = False
            for result in run_folder(args.folder, case=args.case, weights=args.weights, config=args.config,
                                     dtype=getattr(torch, args.dtype), device=args.device):
                failed |= result.status == "FAIL"
                print(result.line(), flush=True)
    except DubError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2 if isinstance(err, UsageError) else 1
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
