"""One dub window: read the source, decide what NAVA regenerates, run it, and keep what comes back.

Also the voices: each re-voiced speaker's reference (a --ref file, or a clean clip cut from the
input and written beside the output) and its timbre embedding, computed once per run.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from nava_dub import face, media
from nava_dub.cache import WindowResult, file_identity, window_key
from nava_dub.geometry import CoverCrop
from nava_dub.masks import active_frames, audio_keep_mask, video_keep_mask
from nava_dub.options import DubOptions
from nava_dub.progress import ProgressFn
from nava_dub.source import NAVA_AUDIO_RATE_HZ, nava_geometry, read_window_source
from nava_dub.timeline import Window

REFERENCE_RATE_HZ = 16000     # ReDimNet hears 16 kHz mono
FACE_MARGIN_S = 0.2           # the face is regenerated this long before and after each line


# --- voices ------------------------------------------------------------------------------------------

def reference_voices(info: media.MediaInfo, analysis, speakers: list[str], refs, options: DubOptions):
    """({speaker: (waveform [1, S], rate)}, {speaker: where it came from}, {path: ReferenceClip}) for every
    re-voiced speaker; the clips cut from the input are for `write_cut_references` once the dub succeeded."""
    from nava_dub.references import check_reference_audio, reference_path, select_references
    voices, origins, cuts, missing = {}, {}, {}, []
    for speaker in speakers:
        path = refs.for_speaker(speaker)
        if path is None:
            missing.append(speaker)
            continue
        waveform = media.read_audio(media.probe(path), REFERENCE_RATE_HZ, 1)
        check_reference_audio(path, waveform, REFERENCE_RATE_HZ)
        voices[speaker], origins[speaker] = (waveform, REFERENCE_RATE_HZ), str(path)
    if missing:
        source = media.read_audio(info, REFERENCE_RATE_HZ, 1)
        clips = select_references(list(analysis.spans), list(analysis.turns), source, REFERENCE_RATE_HZ, missing)
        for speaker, clip in clips.items():
            path = reference_path(options.output, speaker)
            cuts[path] = clip
            voices[speaker] = (clip.waveform, clip.sample_rate_hz)
            origins[speaker] = f"cut from the input ({len(clip.pieces)} pieces, {clip.duration_s:.1f} s): {path}"
    return voices, origins, cuts


def write_cut_references(cuts: dict) -> None:
    """The voices cut from the input, beside the output, for the user to hear (after a dub that succeeded)."""
    from nava_dub.references import write_reference
    for path, clip in cuts.items():
        write_reference(clip, path)


def embed_voices(models, voices: dict) -> dict:
    from nava_dub.voice import embed_reference
    return {speaker: embed_reference(models.speaker_encoder, waveform, rate).float().cpu()
            for speaker, (waveform, rate) in voices.items()}


# --- models and keys ----------------------------------------------------------------------------------

def load_dub_models(options: DubOptions, plan, progress: ProgressFn):   # plan: nava_dub.memory.MemoryPlan
    """Every NAVA model, placed as the memory plan says."""
    from nava_dub.placement import load_placed
    return load_placed(options.weights_dir, plan, device=None if options.device == "auto" else options.device,
                       progress=progress)


def window_conditions(models, embeddings: dict, windows, plan, progress: ProgressFn) -> dict:
    """{window index: Conditioning in host memory} for `windows`, all encoded in one visit of umT5,
    so the plan can park it before the first window samples."""
    from nava_dub.generate import VIDEO_NEGATIVE_PROMPT, encode_conditioning
    from nava_dub.placement import HOST, text_encoder_ready

    conditions = {}
    with text_encoder_ready(models, plan):
        for done, window in enumerate(windows):
            progress("encode prompts", done, len(windows))
            conditions[window.index] = encode_conditioning(
                models, window.prompt, VIDEO_NEGATIVE_PROMPT, _window_speakers(embeddings, window)).to(HOST)
        progress("encode prompts", len(windows), len(windows))
    return conditions


def _window_speakers(embeddings: dict, window: Window):
    import torch
    return torch.stack([embeddings[s.speaker] for s in window.spans])


def window_seed(seed: int, window: Window) -> int:
    """Each window's noise depends on the seed and where the window is, not on which windows ran before."""
    return (seed * 1_000_003 + window.start_frame) % (2**63)


def cache_key(info: media.MediaInfo, window: Window, options: DubOptions, voices: dict,
              weight_paths: dict) -> str:
    """The window's cache key; voices are keyed by their reference audio, so no model loads to compute it."""
    voices = {s.speaker: hashlib.sha256(np.ascontiguousarray(voices[s.speaker][0]).tobytes()).hexdigest()[:16]
              for s in window.spans}
    return window_key({
        "input": file_identity(info.path),
        "window": [window.start_frame, window.n_frames, window.prompt,
                   [[s.start_s, s.end_s, s.speaker, s.text] for s in window.spans]],
        "voices": voices,
        "options": [options.video_mode, options.audio_mode, options.face_hint, options.steps, options.seed,
                    options.hold, options.guidance, options.shortcuts, options.resolution_px, options.margin_s,
                    options.vocoder_48k],
        "weights": {c: [str(p), p.stat().st_size if p.is_file() else 0, p.stat().st_mtime_ns]
                    for c, p in sorted(weight_paths.items())},
    })


def window_geometry(info: media.MediaInfo, options: DubOptions) -> CoverCrop:
    return nava_geometry(info, options.resolution_px)


# --- one window ---------------------------------------------------------------------------------------

def generate_window(models, embeddings: dict, info: media.MediaInfo, window: Window, options: DubOptions,
                    progress: ProgressFn, *, conditioning=None, memory=None,
                    source_offset_frames: int = 0) -> WindowResult:
    """The window generated from its source in `info`: the input, or a preview's excerpt that starts
    source_offset_frames (24 fps) into it. The window stays on the input's timeline, so its seed is the full run's.
    conditioning: from window_conditions (None: encoded here); memory: the run's MemoryPlan."""
    import torch

    from nava_dub import generate

    progress(f"window {window.index + 1} read source", 0, 1)
    read_at = replace(window, start_frame=window.start_frame - source_offset_frames)
    source = read_window_source(info, read_at, options.resolution_px)
    progress(f"window {window.index + 1} read source", 1, 1)
    n_latent_frames, height_px, width_px = window.n_latent_frames, *source.frames.shape[1:3]
    video_latent = generate.encode_video(models, source.frames)
    audio_latent = generate.encode_audio(models, source.waveform_16k, NAVA_AUDIO_RATE_HZ)[:window.n_audio_tokens]
    regions, video_mode, note = _face_regions(source, window, options)
    latent_h, latent_w = video_latent.shape[-2:]
    regenerated = (face.latent_token_mask(regions, n_latent_frames, latent_h, latent_w)
                   if video_mode == "face" else None)
    request = generate.GenerationRequest(
        prompt=window.prompt, n_latent_frames=n_latent_frames, height_px=height_px, width_px=width_px,
        speaker_embeddings=_window_speakers(embeddings, window),
        video_source=video_latent, video_keep=torch.from_numpy(
            video_keep_mask(video_mode, n_latent_frames, latent_h, latent_w, regenerated)),
        audio_source=audio_latent, audio_keep=torch.from_numpy(
            audio_keep_mask(window, options.audio_mode, options.margin_s)),
        keep_mode=options.hold, steps=options.steps, seed=window_seed(options.seed, window),
        guidance=generate.scales_from(options.guidance), shortcuts=options.shortcuts, vocoder_48k=options.vocoder_48k,
        decode_video=video_mode != "keep")
    generated = generate.generate(models, request, lambda stage, done, total: progress(
        f"window {window.index + 1} {stage}", done, total), conditioning=conditioning, memory=memory)
    waveform, rate = ((generated.waveform_48k, generated.sample_rate_48k_hz) if options.vocoder_48k
                      else (generated.waveform_16k, NAVA_AUDIO_RATE_HZ))
    return WindowResult(generated.frames, tuple(regions) if video_mode == "face" else None,
                        np.ascontiguousarray(waveform, dtype=np.float32), rate, note)


def _face_regions(source, window: Window, options: DubOptions):
    """(per-frame regenerated boxes, the video mode this window runs in, a note for the run record)."""
    if options.video_mode != "face":
        return None, options.video_mode, ""
    hint = None
    if options.face_hint:
        hint = source.geometry.box_to_target(face.parse_face_hint(options.face_hint))
    track = face.track_face(face.detect_faces(source.frames), window.n_frames, hint=hint)
    if track is None:
        return None, "keep", "no face found: picture kept, voice regenerated"
    return face.region_boxes(track, active_frames(window, FACE_MARGIN_S)), "face", ""


