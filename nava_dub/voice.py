"""NAVA's voice path: reference audio -> ReDimNet timbre embedding, one per speech span.

NAVA (`LocalAudioVAEAdapter.encode`, nava_pipeline.md §2) resamples a reference to 16 kHz,
averages the channels, keeps the first 30 s and runs ReDimNet in float32; the raw 192-d output
(no L2 norm) is written into the span's speaker slot. Where NAVA silently uses a zero vector
(unreadable file, no model) or caps references at two, we raise or take any number.

No file I/O happens here except reading the checkpoint in `load_speaker_encoder`; waveforms come
from the media layer as float32 [C, S] arrays.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torchaudio

from nava_dub.errors import MediaError, TranscriptError, WeightsError
from nava_dub.model.speaker import ReDimNet, ReDimNetParams
from nava_dub.timeline import Span
from nava_dub.weights import load_strict

REFERENCE_SAMPLE_RATE_HZ = 16000
MAX_REFERENCE_S = 30           # NAVA keeps the first 30 s
MIN_REFERENCE_S = 1            # ours: below this a speaker embedding is noise
SILENCE_PEAK = 1e-4            # -80 dBFS: nothing a microphone would call speech
_RESAMPLE_MARGIN_S = 1         # input kept past 30 s so the resampler's edge is untouched


class AudioClip(Protocol):
    """Anything with a float32 waveform [C, S] and its rate (Reference, references.ReferenceClip)."""

    @property
    def waveform(self) -> np.ndarray: ...

    @property
    def sample_rate_hz(self) -> int: ...


@dataclass(frozen=True)
class Reference:
    """One speaker's reference audio: float32 waveform [C, S] at sample_rate_hz."""

    waveform: np.ndarray
    sample_rate_hz: int


def prepare_reference(waveform: np.ndarray | torch.Tensor, sample_rate_hz: int) -> torch.Tensor:
    """NAVA's reference preprocessing: [C, S] at any rate -> mono [1, <= 480000] at 16 kHz."""
    audio = torch.as_tensor(waveform, dtype=torch.float32)
    if audio.ndim != 2:
        raise ValueError(f"reference waveform must be [channels, samples], got shape {tuple(audio.shape)}")
    duration_s = audio.shape[1] / sample_rate_hz
    if duration_s < MIN_REFERENCE_S:
        raise MediaError(
            f"reference audio is {duration_s:.2f} s long, shorter than the {MIN_REFERENCE_S} s minimum",
            "use a reference clip with 3-30 s of the speaker talking",
        )
    if not torch.isfinite(audio).all():
        raise MediaError("reference audio contains NaN or infinite samples", "re-export the reference clip")
    # Resampling is local, so cropping first changes nothing in the 30 s that are kept.
    audio = audio[:, : math.ceil((MAX_REFERENCE_S + _RESAMPLE_MARGIN_S) * sample_rate_hz)]
    if sample_rate_hz != REFERENCE_SAMPLE_RATE_HZ:
        audio = torchaudio.functional.resample(audio, sample_rate_hz, REFERENCE_SAMPLE_RATE_HZ)
    mono = audio.mean(dim=0, keepdim=True)[:, : MAX_REFERENCE_S * REFERENCE_SAMPLE_RATE_HZ]   # [1, S]
    _check_not_silent(mono)
    return mono


def _check_not_silent(mono: torch.Tensor) -> None:
    peak = float(mono.abs().max())
    if peak < SILENCE_PEAK:
        level = f"{20 * math.log10(peak):.0f} dBFS" if peak > 0 else "digital silence"
        raise MediaError(
            f"reference audio is silent: peak {peak:.1e} ({level}) over the "
            f"{mono.shape[1] / REFERENCE_SAMPLE_RATE_HZ:.1f} s used",
            f"pick a reference where the speaker talks within its first {MAX_REFERENCE_S} s",
        )


def embed_reference(model: ReDimNet, waveform: np.ndarray | torch.Tensor, sample_rate_hz: int) -> torch.Tensor:
    """One reference -> its raw timbre embedding [embed_dim] (float32, on the model's device)."""
    mono = prepare_reference(waveform, sample_rate_hz)
    device = next(model.parameters()).device
    with torch.no_grad():
        return model(mono.to(device))[0]                             # [1, N] -> [1, D] -> [D]


def embed_spans(model: ReDimNet, spans: Sequence[Span], references: Mapping[str, AudioClip]) -> torch.Tensor:
    """One embedding per span, from its speaker's reference: [n_spans, embed_dim].

    Any number of spans and speakers; each speaker's reference is embedded once. Row i goes to
    the i-th speaker slot of the window's prompt (the slot after the i-th `<S>`). References are
    keyed by speaker, e.g. nava_dub.references.select_references' ReferenceClips.
    """
    by_speaker: dict[str, torch.Tensor] = {}
    for index, span in enumerate(spans):
        if span.speaker is not None and span.speaker in by_speaker:
            continue
        if span.speaker is None or span.speaker not in references:
            raise TranscriptError(
                f"span {index} ({span.text[:40]!r}) is spoken by {span.speaker!r}, which has no reference audio",
                f"give a reference clip for {span.speaker!r} or assign the span to a speaker that has one",
            )
        clip = references[span.speaker]
        try:
            by_speaker[span.speaker] = embed_reference(model, clip.waveform, clip.sample_rate_hz)
        except MediaError as err:
            raise MediaError(f"speaker {span.speaker!r}: {err.message}", err.hint) from err
    device = next(model.parameters()).device
    rows = [by_speaker[span.speaker] for span in spans if span.speaker is not None]
    return torch.stack(rows) if rows else torch.zeros(0, model.params.embed_dim, device=device)


# --- checkpoint -----------------------------------------------------------------------------

def load_speaker_encoder(path: str | Path, device: str | torch.device = "cpu") -> ReDimNet:
    """ReDimNet from a release checkpoint (`{"model_config", "state_dict"}` .pt), loaded strictly.

    A `.safetensors` file with the config as JSON in its `model_config` metadata loads the same way.
    """
    path = Path(path)
    config, state_dict = _read_checkpoint(path)
    try:
        model = ReDimNet(ReDimNetParams.from_model_config(config))
    except (ValueError, KeyError, TypeError) as err:
        raise WeightsError(f"{path.name}: {err}", "use M-vb2+vox2+cnc-ft_mix.pt from IDRnD/ReDimNet's releases") from err
    load_strict(model, state_dict, what="the ReDimNet weights (sizes from its model_config)", path=path,
                hint="re-download M-vb2+vox2+cnc-ft_mix.pt", assign=False)
    return model.to(device).eval()


def _read_checkpoint(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    if not path.is_file():
        raise WeightsError(f"ReDimNet checkpoint {path} does not exist",
                           "download M-vb2+vox2+cnc-ft_mix.pt from github.com/IDRnD/ReDimNet/releases")
    try:
        if path.suffix == ".safetensors":
            from safetensors import safe_open
            from safetensors.torch import load_file

            with safe_open(str(path), "pt") as f:
                config = json.loads((f.metadata() or {}).get("model_config", "null"))
            checkpoint = {"model_config": config, "state_dict": load_file(str(path))}
        else:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch, pickle and safetensors raise many kinds for a bad file
        raise WeightsError(f"cannot read ReDimNet checkpoint {path}: {err}",
                           "re-download the file; it may be truncated") from err
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("model_config"), dict) \
            or not isinstance(checkpoint.get("state_dict"), dict):
        raise WeightsError(f"{path} is not a ReDimNet release checkpoint (no model_config/state_dict)",
                           "use M-vb2+vox2+cnc-ft_mix.pt from IDRnD/ReDimNet's releases")
    return checkpoint["model_config"], checkpoint["state_dict"]
