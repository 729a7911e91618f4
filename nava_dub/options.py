"""What a user can set, as frozen dataclasses, validated before anything heavy runs."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nava_dub.errors import UsageError
from nava_dub.timeline import MAX_LATENT_FRAMES, MIN_LATENT_FRAMES

# NAVA was trained on Chinese dense captions with the speech kept verbatim inside <S>...<E>
# (nava_pipeline.md §8), so the default scene caption is Chinese. In English: "Realistic video,
# close shot. The person in the picture speaks to the camera, lip movements synced with the
# lines. The sound is mainly a clear near-field voice, no background music, quiet background."
DEFAULT_CAPTION = (
    "写实风格视频，近景。画面中的人物面对镜头说话，口型与台词同步。"
    "音频主要是清晰的近场人声，没有背景音乐，背景安静。"
)
# How each line is introduced: "{speaker} says:" (说话人 = speaker).
DEFAULT_LINE_INTRO = "{speaker}说："


@dataclass(frozen=True)
class PlanOptions:
    """How the timeline is cut into NAVA generation windows."""

    max_latent_frames: int = MAX_LATENT_FRAMES   # 61 = 241 frames = 10.04 s, NAVA's recommended maximum
    min_latent_frames: int = 7                   # 25 frames = 1.04 s: enough context for a short word
    margin_s: float = 0.25                       # room before and after each span for breath and lip onset
    max_gap_s: float = 1.0                       # a longer pause between spans starts a new window
    caption: str = DEFAULT_CAPTION
    line_intro: str = DEFAULT_LINE_INTRO
    speakers: tuple[str, ...] | None = None      # re-voiced speakers; None = all

    def validate(self) -> PlanOptions:
        if not MIN_LATENT_FRAMES <= self.min_latent_frames <= self.max_latent_frames <= MAX_LATENT_FRAMES:
            raise UsageError(
                f"window sizes out of range: min {self.min_latent_frames}, max {self.max_latent_frames} latent frames",
                f"use {MIN_LATENT_FRAMES} <= min <= max <= {MAX_LATENT_FRAMES}")
        if not 0 <= self.margin_s <= 2:
            raise UsageError(f"margin {self.margin_s} s is out of range", "use a margin between 0 and 2 s")
        if self.max_gap_s < 0:
            raise UsageError(f"max gap {self.max_gap_s} s is negative", "use 0 or more")
        return self


RESOLUTIONS_PX = (960, 640, 512, 256, 128)   # 960 is NAVA's table; the others scale it (previews, CPU tests)
OUTPUT_SUFFIXES = (".mp4", ".mov", ".mkv", ".m4v")   # the containers a dub writes (a batch writes others as Matroska)


@dataclass(frozen=True)
class GuidanceOptions:
    """NAVA's guidance scales (configs/nava.yaml defaults); plain floats so options need no torch."""

    video: float = 3.0
    audio: float = 2.0
    video_align: float = 3.0
    audio_align: float = 2.0
    timbre: float = 3.0


@dataclass(frozen=True)
class Shortcuts:
    """Ways to run fewer transformer passes per step; all off by default (NAVA runs every branch every
    step). What they change in the result is measured by `python -m bench.quality`.

    guidance_sigmas: guide only while lo <= σ <= hi (σ = t/1000); at other steps the cond pass alone
        gives the velocity (guidance scale 1, as in guidance-interval sampling).
    reuse_steps: a step that runs every branch keeps its guidance correction (guided − cond); the
        next `reuse_steps` steps run the cond pass only and add that correction to it.
    """

    guidance_sigmas: tuple[float, float] | None = None
    reuse_steps: int = 0

    def __post_init__(self) -> None:
        if self.guidance_sigmas is not None and not 0 <= self.guidance_sigmas[0] <= self.guidance_sigmas[1] <= 1:
            lo, hi = self.guidance_sigmas
            raise UsageError(f"--guidance-sigmas {lo:g},{hi:g} is not an interval of noise levels",
                             "give LO,HI with 0 <= LO <= HI <= 1, e.g. 0,0.95")
        if not 0 <= self.reuse_steps <= 10:
            raise UsageError(f"--reuse-guidance {self.reuse_steps} is out of range", "use 0 (off) to 10 steps")

    @classmethod
    def parse(cls, guidance_sigmas: str | None, reuse_steps: int) -> Shortcuts:
        """From the command line's `--guidance-sigmas LO,HI` and `--reuse-guidance N`."""
        if guidance_sigmas is None:
            return cls(None, reuse_steps)
        try:
            lo, hi = (float(part) for part in guidance_sigmas.split(","))
        except ValueError:
            raise UsageError(f"--guidance-sigmas {guidance_sigmas!r} is not LO,HI",
                             "give two noise levels, e.g. 0,0.95") from None
        return cls((lo, hi), reuse_steps)

    def guides_at(self, sigma: float) -> bool:
        lo, hi = self.guidance_sigmas or (0.0, math.inf)
        return lo <= sigma <= hi

    def passes_per_step(self, timesteps: Sequence[int], n_branches: int) -> list[int]:
        """Transformer passes at each step of a schedule (model timesteps, σ = t/1000): n_branches on a
        guided step, 1 on a step outside the interval or reusing the last correction (guidance.NavaVelocity)."""
        passes, reused, has_correction = [], 0, False
        for timestep in timesteps:
            if not self.guides_at(timestep / 1000):
                passes.append(1)
                has_correction = False
            elif has_correction and reused < self.reuse_steps:
                passes.append(1)
                reused += 1
            else:
                passes.append(n_branches)
                has_correction, reused = self.reuse_steps > 0, 0
        return passes


@dataclass(frozen=True)
class DubOptions:
    """Everything a dub run takes besides the input, validated before anything heavy runs."""

    output: Path
    refs: tuple[str, ...] = ()                   # --ref FILE or SPEAKER=FILE, as typed
    transcript: Path | None = None
    speakers: tuple[str, ...] | None = None
    n_speakers: int | None = None                # --num-speakers for diarization; None = detect
    video_mode: str = "face"                     # face | keep | full
    audio_mode: str = "speech"                   # speech | full
    face_hint: str | None = None                 # --face X,Y,W,H in source pixels
    steps: int = 50
    seed: int = 0
    hold: str = "clean"                          # how kept latents follow the source: clean | noised
    guidance: GuidanceOptions = GuidanceOptions()
    shortcuts: Shortcuts = Shortcuts()           # fewer passes per step (off: NAVA's sampling)
    resolution_px: int = 960                     # NAVA's bucket table; smaller is faster, for previews and tests
    codec: str = "libx264"
    weights_dir: Path = Path("weights")
    device: str = "auto"
    use_cache: bool = True
    margin_s: float = 0.2                        # sound and picture regenerated around each span
    vocoder_48k: bool = False                    # take the vocoder's 48 kHz output instead of NAVA's 16 kHz
    force: bool = False                          # overwrite an existing output
    memory: str = "auto"                         # GPU memory mode (nava_dub.memory): auto | max | balanced | low

    def validate(self, input_path: Path) -> DubOptions:
        from nava_dub.masks import AUDIO_MODES, VIDEO_MODES
        from nava_dub.memory import check_mode
        _require(self.video_mode in VIDEO_MODES, f"--video {self.video_mode!r} is not a mode",
                 f"use one of {', '.join(VIDEO_MODES)}")
        _require(self.audio_mode in AUDIO_MODES, f"--audio {self.audio_mode!r} is not a mode",
                 f"use one of {', '.join(AUDIO_MODES)}")
        _require(self.hold in ("clean", "noised"), f"--hold {self.hold!r} is not a mode", "use clean or noised")
        check_mode(self.memory)
        _require(1 <= self.steps <= 1000, f"--steps {self.steps} is out of range", "use 1 to 1000 (NAVA uses 50)")
        _require(self.resolution_px in RESOLUTIONS_PX, f"--resolution {self.resolution_px} is not a size table",
                 "use 960 (NAVA's), 640, 512, 256 or 128")
        _require(self.output.suffix.lower() in OUTPUT_SUFFIXES, f"output {self.output} is not a video file",
                 "name the output .mp4, .mov, .mkv or .m4v")
        _require(self.output.resolve() != Path(input_path).resolve(), f"the output {self.output} is the input",
                 "write the dub to another file")
        return self


def _require(ok: bool, message: str, hint: str) -> None:
    if not ok:
        raise UsageError(message, hint)
