"""NAVA's sound codec, first half: the LTX-2.3 audio VAE (stereo log-mel <-> 128-channel tokens).

The network is diffusers' `AutoencoderKLLTX2Audio`, which computes what NAVA's vendored ltx-core
computes (within 4e-6 on the parity fixture). Two pieces diffusers leaves to its pipeline are here:
the waveform -> log-mel front end (ltx-core's `AudioProcessor`) and the per-channel statistics
normalisation, applied on the patchified view with channel index c*16 + f (c the z channel, f the
latent mel bin). NAVA adds no scale or shift of its own, so the DiT works in this normalised space.

Shapes (B batch, S samples at 16 kHz, F = 1 + S // 160 mel frames, T' = 1 + (F - 1) // 4 tokens):

    waveform [B, 2, S]  ->  log-mel [B, 2, F, 64]  ->  latent [B, 128, T']      (25 tokens per second)
    latent   [B, 128, T']  ->  log-mel [B, 2, 4T' - 3, 64]  (then nava_dub.model.vocoder)

The encoder is causal in time: its first token covers one mel frame, every later one four.
Keys of the official `ltx-2.3-22b-dev_audio_vae.safetensors` convert with nava_dub.convert.ltx_audio.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torchaudio.functional as AF
from diffusers import AutoencoderKLLTX2Audio
from torch import nn

from nava_dub.model.vocoder import LtxVocoder, nava_resample_16k

LATENT_DOWNSAMPLE = 4          # time and mel, 3 resolution levels


@dataclass(frozen=True)
class AudioVaeParams:
    """The LTX-2.3 audio VAE config (the `audio_vae` part of the file's metadata), with its defaults."""

    base_channels: int = 128
    ch_mult: tuple[int, ...] = (1, 2, 4)
    num_res_blocks: int = 2
    z_channels: int = 8
    attn_resolutions: tuple[int, ...] = ()
    mid_block_add_attention: bool = False
    resolution: int = 256
    norm_type: str = "pixel"
    causality_axis: str = "height"     # the time axis of [B, C, time, mel]
    dropout: float = 0.0
    double_z: bool = True
    n_audio_channels: int = 2          # stereo in and out
    n_mel_bins: int = 64
    sample_rate_hz: int = 16000
    hop_samples: int = 160
    n_fft: int = 1024
    is_causal: bool = True

    def __post_init__(self) -> None:
        # ltx-core sizes the statistics vector by base_channels and applies it to the patchified latent
        if self.latent_width != self.base_channels:
            raise ValueError(f"z_channels x mel_bins/4 = {self.latent_width} must equal base_channels "
                             f"= {self.base_channels} (one statistic per latent channel)")

    @property
    def latent_width(self) -> int:
        """Channels per audio token: z channels x latent mel bins (128 for LTX-2.3)."""
        return self.z_channels * self.n_mel_bins // LATENT_DOWNSAMPLE

    @property
    def tokens_per_second(self) -> float:
        return self.sample_rate_hz / self.hop_samples / LATENT_DOWNSAMPLE

    def diffusers_config(self) -> dict:
        return dict(
            base_channels=self.base_channels, output_channels=self.n_audio_channels, ch_mult=tuple(self.ch_mult),
            num_res_blocks=self.num_res_blocks, attn_resolutions=tuple(self.attn_resolutions) or None,
            in_channels=self.n_audio_channels, resolution=self.resolution, latent_channels=self.z_channels,
            norm_type=self.norm_type, causality_axis=self.causality_axis, dropout=self.dropout,
            mid_block_add_attention=self.mid_block_add_attention, sample_rate=self.sample_rate_hz,
            mel_hop_length=self.hop_samples, is_causal=self.is_causal, mel_bins=self.n_mel_bins,
            double_z=self.double_z)


LTX23_AUDIO_VAE = AudioVaeParams()
# The parity fixture's sizes (fixtures/ltx_audio_vae): the statistics width must stay z x 16.
LTX23_AUDIO_VAE_TINY = AudioVaeParams(base_channels=32, ch_mult=(1, 1, 2), z_channels=2)


def log_mel(waveform: torch.Tensor, params: AudioVaeParams) -> torch.Tensor:
    """ltx-core's front end: [B, C, S] -> natural-log magnitude mel [B, C, 1 + S // hop, n_mels].

    torchaudio's MelSpectrogram maths (Hann window, centred with reflect padding, power 1, Slaney
    scale and norm, 0..8 kHz), built per call so the module has no buffers to load.
    """
    window = torch.hann_window(params.n_fft, device=waveform.device, dtype=waveform.dtype)
    spectrum = AF.spectrogram(waveform, pad=0, window=window, n_fft=params.n_fft, hop_length=params.hop_samples,
                              win_length=params.n_fft, power=1.0, normalized=False, center=True,
                              pad_mode="reflect", onesided=True)                       # [B, C, n_fft/2+1, F]
    filters = AF.melscale_fbanks(params.n_fft // 2 + 1, f_min=0.0, f_max=params.sample_rate_hz / 2,
                                 n_mels=params.n_mel_bins, sample_rate=params.sample_rate_hz,
                                 norm="slaney", mel_scale="slaney").to(spectrum)        # [n_fft/2+1, n_mels]
    mel = torch.matmul(spectrum.transpose(-1, -2), filters)                             # [B, C, F, n_mels]
    return torch.log(torch.clamp(mel, min=1e-5))


class LtxAudioVAE(nn.Module):
    """Stereo 16 kHz audio <-> NAVA's normalised audio tokens. `autoencoder` holds the converted keys."""

    def __init__(self, params: AudioVaeParams = LTX23_AUDIO_VAE) -> None:
        super().__init__()
        self.params = params
        # its latents_mean / latents_std buffers are the file's per-channel statistics
        self.autoencoder = AutoencoderKLLTX2Audio(**params.diffusers_config())
        self.autoencoder.eval()

    def waveform_to_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """[B, 2, S] at 16 kHz -> [B, 2, 1 + S // 160, 64] log-mel."""
        if waveform.ndim != 3 or waveform.shape[1] != self.params.n_audio_channels:
            raise ValueError(f"waveform must be [B, {self.params.n_audio_channels}, S], got {tuple(waveform.shape)}")
        return log_mel(waveform.float(), self.params)

    @torch.no_grad()
    def encode(self, waveform: torch.Tensor) -> torch.Tensor:
        """[B, 2, S] at 16 kHz -> normalised tokens [B, 128, T'], T' = 1 + S // 640."""
        return self.encode_mel(self.waveform_to_mel(waveform))

    @torch.no_grad()
    def encode_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, 2, F, 64] log-mel -> [B, 128, 1 + (F - 1) // 4] normalised tokens (the posterior mean)."""
        dtype = self.autoencoder.latents_mean.dtype
        z = self.autoencoder.encode(mel.to(dtype)).latent_dist.mode()        # [B, z, T', 16]
        tokens = z.permute(0, 2, 1, 3).flatten(2)                               # [B, T', z*16], index c*16+f
        tokens = (tokens - self.autoencoder.latents_mean) / self.autoencoder.latents_std
        return tokens.transpose(1, 2).float()                                   # [B, 128, T']

    @torch.no_grad()
    def decode(self, tokens: torch.Tensor) -> torch.Tensor:
        """[B, 128, T'] normalised tokens -> log-mel [B, 2, 4T' - 3, 64] (the vocoder's input)."""
        width = self.params.latent_width
        if tokens.ndim != 3 or tokens.shape[1] != width:
            raise ValueError(f"audio tokens must be [B, {width}, T'], got {tuple(tokens.shape)}")
        stats = self.autoencoder.latents_mean
        x = tokens.transpose(1, 2).to(stats.dtype) * self.autoencoder.latents_std + stats   # [B, T', z*16]
        z = x.unflatten(2, (self.params.z_channels, -1)).permute(0, 2, 1, 3)               # [B, z, T', 16]
        return self.autoencoder.decode(z).sample.float()


@dataclass(frozen=True)
class DecodedAudio:
    waveform_vocoder: torch.Tensor    # [B, 2, 480 F] at vocoder_rate_hz (48 kHz): the vocoder's output
    waveform_16k: torch.Tensor        # [B, 2, 160 F]: NAVA's, resampled to 16 kHz and clipped to +-0.99
    vocoder_rate_hz: int


def decode_audio(vae: LtxAudioVAE, vocoder: LtxVocoder, tokens: torch.Tensor) -> DecodedAudio:
    """NAVA's audio decode: tokens [B, 128, T'] -> mel -> vocoder (48 kHz) -> resampled 16 kHz."""
    waveform = vocoder(vae.decode(tokens))
    rate_hz = vocoder.params.output_rate_hz
    return DecodedAudio(waveform, nava_resample_16k(waveform, rate_hz), rate_hz)
