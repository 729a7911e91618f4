"""One NAVA generation: a request (prompt, sizes, voices, what to keep) -> decoded frames and sound.

The core of both `nava-dub generate` (NAVA's own tasks, nava_dub.jobs) and dubbing:

    request ─ encode_text ─► Conditioning (cond / uncond / mmask / timbre branches, guidance.py)
            ─ seeded noise (video [F·h·w, C] drawn first, then audio, as NAVA) ─► sampler.sample
              with Keep entries ─► kept latents re-imposed ─► Wan VAE / LTX decode ─► Generated

What is kept, and how:
  * a first frame (TI2AV) is NAVA's clean keep of latent frame 0, its tokens at t = 0;
  * dubbing keeps (`video_source` + `video_keep`, `audio_source` + `audio_keep`) hold source latents
    where their masks are True, "clean" (source as is, and every video token whose latent cells are
    all kept, and every kept audio token, at t = 0), or "noised" (source noised to the current
    sigma, tokens at the current t).
After the last step every kept entry is set to its source, so kept regions decode to the source
(NAVA leaves its first frame to the solver's last update; Wan2.2 re-imposes it, and so do we).

Conditioning follows NAVA (nava_dit.md §4.4): one positive context for both streams, speaker rows
injected at the prompt's `<extra_id_2>` slots when speakers are given; the uncond branch uses the
video negative prompt (the audio artefacts appended), or the audio negative prompt for audio-only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from nava_dub import placement
from nava_dub.codecs import (
    frames_to_vae_input,
    image_to_vae_input,
    normalize_output_audio,
    vae_output_to_frames,
    waveform_to_vae_input,
)
from nava_dub.errors import ModelError, WeightsError
from nava_dub.guidance import Conditioning, GuidanceScales, nava_velocity
from nava_dub.options import GuidanceOptions, Shortcuts
from nava_dub.progress import ProgressFn, silent
from nava_dub.sampler import DEFAULT_STEPS, Keep, draw_nava_noise, sample
from nava_dub.text import SPEAKER_SLOT, EncodedPrompt, encode_prompts, prepare_prompt
from nava_dub.timeline import audio_tokens_for_latent_frames

if TYPE_CHECKING:
    from nava_dub.memory import MemoryPlan
    from nava_dub.model.video_vae import VaeTiling
    from nava_dub.models import Models
    from nava_dub.voice import AudioClip

# NAVA's negative prompts (pipeline_nava.py, MMDiT branch). In English: garish colours, overexposed,
# static, blurry details, subtitles, style, artwork, painting, picture, still, greyish, worst quality,
# low quality, JPEG artefacts, ugly, mutilated, extra fingers, badly drawn hands, badly drawn face,
# deformed, disfigured, malformed limbs, fused fingers, motionless picture, cluttered background,
# three legs, crowded background, walking backwards, + "the audio has" the audio negative:
# mechanical sound, muffled, echo, distortion, electrical hum, pops, noise.
AUDIO_NEGATIVE_PROMPT = "机械音、闷糊、回音、失真、电流声、爆音、杂音"
VIDEO_NEGATIVE_PROMPT = (
    "色调艳丽，过曝，静态，细节模糊不清，字幕，风格，作品，画作，画面，静止，整体发灰，最差质量，低质量，"
    "JPEG压缩残留，丑陋的，残缺的，多余的手指，画得不好的手部，画得不好的脸部，畸形的，毁容的，"
    "形态畸形的肢体，手指融合，静止不动的画面，杂乱的背景，三条腿，背景人很多，倒着走, "
    "音频带有" + AUDIO_NEGATIVE_PROMPT
)
DEFAULT_SEED = 100              # inference_nava.py's --seed default
SPATIAL_FACTOR_PX = 16          # px per latent cell (Wan2.2 VAE)
KeepMode = Literal["clean", "noised"]


@dataclass(frozen=True, eq=False)
class GenerationRequest:
    """Everything one generation needs besides the models. Cheap checks run on construction."""

    prompt: str
    n_latent_frames: int                       # T: 4T-3 video frames at 24 fps, and the audio of that span
    height_px: int | None = None               # None (with width_px) = audio only
    width_px: int | None = None
    speaker_embeddings: Tensor | None = None   # [S, 192], row i for the i-th `<S>` span; None = no voices
    first_frame: np.ndarray | None = None      # uint8 RGB [H, W, 3]; cover-resized to the output size
    video_source: Tensor | None = None         # [C_v, T, h, w] clean Wan latent (encode_video) ...
    video_keep: Tensor | None = None           # ... held where this bool [T, h, w] (per latent cell) is True
    audio_source: Tensor | None = None         # [La, C_a] clean LTX latent (encode_audio) ...
    audio_keep: Tensor | None = None           # ... held where this bool [La] is True
    keep_mode: KeepMode = "clean"
    video_negative_prompt: str = VIDEO_NEGATIVE_PROMPT
    audio_negative_prompt: str = AUDIO_NEGATIVE_PROMPT
    steps: int = DEFAULT_STEPS
    seed: int = DEFAULT_SEED
    guidance: GuidanceScales = field(default_factory=GuidanceScales)
    shortcuts: Shortcuts = Shortcuts()         # fewer passes per step (off: NAVA's sampling)
    vocoder_48k: bool = False                  # also return the vocoder's 48 kHz output
    decode_video: bool = True                  # False when the caller keeps the source picture anyway

    def __post_init__(self) -> None:
        _check_request(self)

    @property
    def has_video(self) -> bool:
        return self.height_px is not None

    @property
    def latent_size(self) -> tuple[int, int] | None:
        """(h, w) latent cells, or None for audio only."""
        if self.height_px is None or self.width_px is None:
            return None
        return self.height_px // SPATIAL_FACTOR_PX, self.width_px // SPATIAL_FACTOR_PX

    @property
    def n_audio_tokens(self) -> int:
        return audio_tokens_for_latent_frames(self.n_latent_frames)

    @property
    def n_speakers(self) -> int:
        return 0 if self.speaker_embeddings is None else int(self.speaker_embeddings.shape[0])


@dataclass(frozen=True, eq=False)
class Generated:
    """A decoded generation. Video is at 24 fps; both waveforms are peak-normalised to 0.95 as NAVA writes."""

    frames: np.ndarray | None                  # uint8 [4T-3, H, W, 3], None for audio only
    waveform_16k: np.ndarray                   # float32 [2, S] at 16 kHz: NAVA's output
    waveform_48k: np.ndarray | None            # float32 [2, 3S] at sample_rate_48k_hz: the vocoder's, if asked for
    video_latent: Tensor | None                # [C_v, T, h, w] final latents (kept entries = source)
    audio_latent: Tensor                       # [La, C_a]
    sample_rate_48k_hz: int = 48000            # the vocoder's rate (48 kHz for LTX-2.3)
    sample_rate_16k_hz: int = 16000


def scales_from(options: GuidanceOptions) -> GuidanceScales:
    """GuidanceScales from the torch-free user options (align-3D and timbre CFG on, as nava.yaml)."""
    return GuidanceScales(**asdict(options))


# --- encoders dubbing calls to build its conditions -------------------------------------------

def encode_text(models: Models, prompts: Sequence[str]) -> list[EncodedPrompt]:
    """umT5 contexts [L_i, D] and speaker slots of prompts (a prompt over 512 tokens is an error)."""
    return encode_prompts(models.require("text_encoder"), models.require("tokenizer"), list(prompts))


def speaker_embeddings(models: Models, references: Sequence[AudioClip]) -> Tensor:
    """One raw ReDimNet embedding per reference, in order: [S, 192] float32 on the models' device."""
    from nava_dub.voice import embed_reference

    encoder = models.require("speaker_encoder")
    rows = [embed_reference(encoder, r.waveform, r.sample_rate_hz) for r in references]
    return torch.stack(rows) if rows else torch.zeros(0, encoder.params.embed_dim, device=models.device)


def encode_video(models: Models, frames: np.ndarray) -> Tensor:
    """uint8 frames [4k+1, H, W, 3] (H, W multiples of 16) -> NAVA's video latent [C_v, k+1, H/16, W/16]."""
    n_frames, height, width = frames.shape[:3]
    if (n_frames - 1) % 4 or height % SPATIAL_FACTOR_PX or width % SPATIAL_FACTOR_PX:
        raise ModelError(f"cannot encode {n_frames} frames of {width}x{height}",
                         "give 4k+1 frames whose width and height are multiples of 16")
    vae = models.require("video_vae")
    with torch.no_grad():
        return vae.encode(frames_to_vae_input(frames, models.device))[0]


def encode_audio(models: Models, waveform: np.ndarray | Tensor, sample_rate_hz: int) -> Tensor:
    """A waveform [C, S] at any rate -> NAVA's audio latent [1 + S16k // 640, C_a] (25 per second)."""
    vae = models.require("audio_vae")
    with torch.no_grad():
        return vae.encode(waveform_to_vae_input(waveform, sample_rate_hz).to(models.device))[0].T.contiguous()


def conditioning_for(models: Models, request: GenerationRequest) -> Conditioning:
    """The text and speaker conditions of a request (needs the text encoder; nothing else)."""
    negative = request.video_negative_prompt if request.has_video else request.audio_negative_prompt
    return encode_conditioning(models, request.prompt, negative,
                               request.speaker_embeddings if request.n_speakers else None)


def encode_conditioning(models: Models, prompt: str, negative_prompt: str,
                        speakers: Tensor | None) -> Conditioning:
    """umT5 contexts of a prompt and its negative, with the speaker rows [S, 192] of its `<S>` spans.
    The contexts stay where umT5 ran (the speaker rows where they were given): the caller moves them."""
    positive, uncond = encode_text(models, [prompt, negative_prompt])
    if speakers is not None and speakers.shape[0] != len(positive.speaker_slot_positions):
        raise ModelError(f"{speakers.shape[0]} speaker embeddings for {len(positive.speaker_slot_positions)} "
                         f"speaker slots in the encoded prompt", "give one embedding per `<S>` span")
    return Conditioning(
        context=positive.context, negative_context=uncond.context,
        speaker_embeddings=None if speakers is None else speakers.float(),
        speaker_positions=positive.speaker_slot_positions if speakers is not None else ())


# --- generation -------------------------------------------------------------------------------

def generate(models: Models, request: GenerationRequest, progress: ProgressFn = silent, *,
             conditioning: Conditioning | None = None, memory: MemoryPlan | None = None) -> Generated:
    """Sample and decode one request. `conditioning` (from conditioning_for) spares the text encoder,
    so it can be parked before sampling; `memory` (placed with nava_dub.placement) sets the passes per
    transformer call and the VAE tiles, and where umT5 encodes."""
    transformer = models.require("transformer")
    with torch.no_grad():
        if conditioning is None:
            progress("encode prompt", 0, 1)
            with placement.text_encoder_ready(models, memory):
                conditioning = conditioning_for(models, request)
            progress("encode prompt", 1, 1)
        conditioning = conditioning.to(models.device)
        if conditioning.context.shape[-1] != transformer.params.text_dim:
            raise WeightsError(f"the text features are {conditioning.context.shape[-1]} wide, the transformer "
                               f"takes {transformer.params.text_dim}", "take umT5 and NAVA from the same release")
        video_shape = _video_shape(models, request)
        audio_shape = (request.n_audio_tokens, transformer.params.audio_in_channels)
        generator = torch.Generator(models.device).manual_seed(request.seed)
        video_noise, audio_noise = draw_nava_noise(video_shape, audio_shape[0], generator, models.device,
                                                   audio_channels=audio_shape[1])
        video_keep, clean_video = _video_hold(models, request, video_shape)
        audio_keep, clean_audio = _audio_hold(models, request, audio_shape)
        noise = [n for n in (video_noise, audio_noise) if n is not None]
        keeps = ([video_keep] if video_shape else []) + [audio_keep]
        velocity = nava_velocity(transformer, conditioning, request.guidance, max_batch=placement.max_batch(memory),
                                 shortcuts=request.shortcuts, clean_video_tokens=clean_video,
                                 clean_audio_tokens=clean_audio)
        progress("sample", 0, request.steps)
        latents = sample(velocity, noise, n_steps=request.steps, keeps=keeps,
                         on_step=lambda step: progress("sample", step.step + 1, step.n_steps))
        latents = [x if k is None else torch.where(k.mask.to(x.device), k.source.to(x), x)
                   for x, k in zip(latents, keeps, strict=True)]
        video_latent = latents[0] if video_shape else None
        return _decode(models, request, video_latent, latents[-1], progress, placement.vae_tiling(memory))


def _decode(models: Models, request: GenerationRequest, video_latent: Tensor | None, audio_latent: Tensor,
            progress: ProgressFn, vae_tiling: VaeTiling | None) -> Generated:
    from nava_dub.model.audio_vae import decode_audio

    frames = None
    if video_latent is not None and request.decode_video:
        progress("decode video", 0, 1)
        frames = vae_output_to_frames(models.require("video_vae").decode(video_latent[None], tiling=vae_tiling))
        progress("decode video", 1, 1)
    progress("decode audio", 0, 1)
    audio = decode_audio(models.require("audio_vae"), models.require("vocoder"), audio_latent.T[None])
    progress("decode audio", 1, 1)
    return Generated(
        frames=frames, waveform_16k=normalize_output_audio(audio.waveform_16k),
        waveform_48k=normalize_output_audio(audio.waveform_vocoder) if request.vocoder_48k else None,
        video_latent=video_latent, audio_latent=audio_latent, sample_rate_48k_hz=audio.vocoder_rate_hz)


def _video_shape(models: Models, request: GenerationRequest) -> tuple[int, int, int, int] | None:
    size = request.latent_size
    if size is None:
        return None
    models.require("video_vae")
    return (models.transformer.params.video_in_channels, request.n_latent_frames, *size)


def _video_hold(models: Models, request: GenerationRequest, shape: tuple[int, ...] | None,
                ) -> tuple[Keep | None, Tensor | None]:
    """(Keep over [C, F, h, w], clean tokens [F, Hp, Wp] or None) from the first frame and the video keep."""
    if shape is None or (request.first_frame is None and request.video_keep is None):
        return None, None
    device = models.device
    cells = torch.zeros(shape[1:], dtype=torch.bool, device=device)
    source = torch.zeros(shape, dtype=torch.float32, device=device)
    if request.video_keep is not None:
        _check_shape("video source latent", request.video_source, shape)
        cells |= request.video_keep.to(device)
        source = request.video_source.to(device, torch.float32).clone()
    if request.first_frame is not None:
        image = image_to_vae_input(request.first_frame, request.height_px, request.width_px).to(device)
        source[:, 0] = models.video_vae.encode_image(image)[0, :, 0]      # [1, C, 1, h, w] -> [C, h, w]
        cells[0] = True
    mode = "clean" if request.video_keep is None else request.keep_mode
    clean = _kept_tokens(cells, models.transformer.params.patch_size) if mode == "clean" else None
    return Keep(cells[None], source, mode), clean


def _audio_hold(models: Models, request: GenerationRequest, shape: tuple[int, int],
                ) -> tuple[Keep | None, Tensor | None]:
    if request.audio_keep is None:
        return None, None
    _check_shape("audio source latent", request.audio_source, shape)
    mask = request.audio_keep.to(models.device)
    return (Keep(mask[:, None], request.audio_source.to(models.device, torch.float32), request.keep_mode),
            mask if request.keep_mode == "clean" else None)


def _kept_tokens(cells: Tensor, patch_size: tuple[int, int, int]) -> Tensor:
    """bool [F, h, w] kept latent cells -> [F', Hp, Wp] tokens all of whose (real) cells are kept."""
    pt, ph, pw = patch_size
    f, h, w = cells.shape
    padded = torch.ones(math.ceil(f / pt) * pt, math.ceil(h / ph) * ph, math.ceil(w / pw) * pw,
                        dtype=torch.bool, device=cells.device)   # padding cells count as kept
    padded[:f, :h, :w] = cells
    grid = padded.reshape(padded.shape[0] // pt, pt, padded.shape[1] // ph, ph, padded.shape[2] // pw, pw)
    return grid.all(dim=5).all(dim=3).all(dim=1)


def _check_shape(what: str, tensor: Tensor | None, shape: tuple[int, ...]) -> None:
    if tensor is None or tuple(tensor.shape) != tuple(shape):
        found = "missing" if tensor is None else f"of shape {list(tensor.shape)}"
        raise ModelError(f"{what} is {found}, the generation needs {list(shape)}",
                         "encode the source at the request's size and length")


# --- cheap checks on construction -------------------------------------------------------------

def _check_request(r: GenerationRequest) -> None:
    if r.n_latent_frames < 1 or r.steps < 1:
        raise ModelError(f"a generation needs >= 1 latent frame and >= 1 step, got {r.n_latent_frames} "
                         f"and {r.steps}", "e.g. 37 latent frames (145 frames, 6.04 s) and 50 steps")
    if (r.height_px is None) != (r.width_px is None):
        raise ModelError(f"height {r.height_px} and width {r.width_px}: give both or neither",
                         "give both for audio+video, neither for audio only")
    if r.height_px is not None and (min(r.height_px, r.width_px) <= 0
                                    or r.height_px % SPATIAL_FACTOR_PX or r.width_px % SPATIAL_FACTOR_PX):
        raise ModelError(f"frame size {r.width_px}x{r.height_px} is not a positive multiple of 16",
                         "pick a NAVA bucket size, e.g. 1280x704")
    if r.keep_mode not in ("clean", "noised"):
        raise ModelError(f"unknown keep mode {r.keep_mode!r}", "use 'clean' or 'noised'")
    _check_speakers(r)
    _check_video_conditions(r)
    _check_mask("audio", r.audio_keep, r.audio_source, (r.n_audio_tokens,))


def _check_mask(what: str, mask: Tensor | None, source: Tensor | None, shape: tuple[int, ...]) -> None:
    if mask is None:
        if source is not None:
            raise ModelError(f"a {what} source latent came without its keep mask", f"pass {what}_keep too")
        return
    if source is None:
        raise ModelError(f"a {what} keep mask came without the source latent it holds", f"pass {what}_source too")
    if mask.dtype != torch.bool or tuple(mask.shape) != shape:
        raise ModelError(f"{what} keep mask is {mask.dtype} {list(mask.shape)}, expected bool {list(shape)}",
                         f"give one flag per {'latent cell' if what == 'video' else 'audio token'}")


def _check_speakers(r: GenerationRequest) -> None:
    s = r.speaker_embeddings
    if s is None:
        return
    if s.ndim != 2 or s.shape[1] != 192:
        raise ModelError(f"speaker embeddings must be [S, 192], got {list(s.shape)}",
                         "pass ReDimNet embeddings (generate.speaker_embeddings)")
    n_spans = prepare_prompt(r.prompt).count(SPEAKER_SLOT)
    if s.shape[0] and s.shape[0] != n_spans:
        raise ModelError(f"{s.shape[0]} speaker embeddings for {n_spans} `<S>` spans in the prompt {r.prompt[:60]!r}",
                         "give exactly one voice per `<S>...<E>` span, in order (repeat a voice for its spans)")


def _check_video_conditions(r: GenerationRequest) -> None:
    if (r.first_frame is not None or r.video_keep is not None or r.video_source is not None) and not r.has_video:
        raise ModelError("a first frame or a video keep needs a video: height and width are not set",
                         "give the output height and width")
    if r.first_frame is not None:
        image = r.first_frame
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ModelError(f"first frame must be uint8 RGB [H, W, 3], got {image.dtype} {list(image.shape)}",
                             "decode the image to RGB bytes first")
        if r.video_keep is not None and r.keep_mode == "noised":
            raise ModelError("a first frame is held clean, so it cannot be combined with a 'noised' video keep",
                             "mark latent frame 0 in the keep mask instead of passing a first frame")
    if r.has_video:
        _check_mask("video", r.video_keep, r.video_source, (r.n_latent_frames, *r.latent_size))  # type: ignore[misc]
