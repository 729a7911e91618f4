"""What a user can set, as frozen dataclasses, validated before anything heavy runs."""

from __future__ import annotations

from dataclasses import dataclass

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
