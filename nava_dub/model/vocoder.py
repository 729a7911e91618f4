"""NAVA's sound codec, second half: the LTX-2.3 vocoder with bandwidth extension (log-mel -> waveform).

diffusers' `LTX2VocoderWithBWE` computes what ltx-core's `VocoderWithBWE` computes (within 2e-5 on
the parity fixture), given one setting its conversion script gets wrong: ltx-core clamps the
stage-1 output to [-1, 1] when the config says `use_tanh_at_final: false`, so stage 1 here is built
with `final_act_fn="clamp"`. The bandwidth-extension generator has no final activation; the sum
of its residual and the sinc-upsampled stage-1 signal is clamped to [-1, 1].

Shapes (B batch, F mel frames):

    log-mel [B, 2, F, 64]  -> stage 1      -> [B, 2, 160 F]  16 kHz
                           -> with BWE     -> [B, 2, 480 F]  48 kHz  (what the vocoder outputs)
    nava_resample_16k: 48 kHz -> [B, 2, 160 F] 16 kHz, clipped to +-0.99 (what NAVA writes)
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torchaudio.functional as AF
from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE
from torch import nn

NAVA_OUTPUT_RATE_HZ = 16000
NAVA_OUTPUT_LIMIT = 0.99       # NAVA's _audio_post_process clips here after resampling


@dataclass(frozen=True)
class GeneratorParams:
    """One BigVGAN-v2-style generator (AMP1 blocks, SnakeBeta, anti-aliased activations)."""

    hidden_channels: int
    upsample_rates: tuple[int, ...]
    upsample_kernel_sizes: tuple[int, ...]
    resblock_kernel_sizes: tuple[int, ...] = (3, 7, 11)
    resblock_dilations: tuple[tuple[int, ...], ...] = ((1, 3, 5), (1, 3, 5), (1, 3, 5))
    final_tanh: bool = False       # ltx-core `use_tanh_at_final`; stage 1 clamps instead when false
    final_bias: bool = False       # ltx-core `use_bias_at_final`


@dataclass(frozen=True)
class VocoderParams:
    stage1: GeneratorParams = GeneratorParams(1536, (5, 2, 2, 2, 2, 2), (11, 4, 4, 4, 4, 4))
    bwe: GeneratorParams = GeneratorParams(512, (6, 5, 2, 2, 2), (12, 11, 4, 4, 4))
    bwe_n_fft: int = 512           # the BWE stage re-analyses stage 1 with a causal STFT
    bwe_hop_samples: int = 80
    bwe_n_mel_bins: int = 64
    n_mel_bins: int = 64
    n_audio_channels: int = 2
    input_rate_hz: int = 16000     # stage 1 output
    output_rate_hz: int = 48000    # after bandwidth extension

    def diffusers_config(self) -> dict:
        in_channels = self.n_audio_channels * self.n_mel_bins      # stereo mels stacked: 2 x 64
        s1, bwe = self.stage1, self.bwe
        return dict(
            in_channels=in_channels, hidden_channels=s1.hidden_channels, out_channels=self.n_audio_channels,
            upsample_kernel_sizes=list(s1.upsample_kernel_sizes), upsample_factors=list(s1.upsample_rates),
            resnet_kernel_sizes=list(s1.resblock_kernel_sizes),
            resnet_dilations=[list(d) for d in s1.resblock_dilations],
            act_fn="snakebeta", final_act_fn="tanh" if s1.final_tanh else "clamp", final_bias=s1.final_bias,
            bwe_in_channels=self.n_audio_channels * self.bwe_n_mel_bins, bwe_hidden_channels=bwe.hidden_channels,
            bwe_out_channels=self.n_audio_channels, bwe_upsample_kernel_sizes=list(bwe.upsample_kernel_sizes),
            bwe_upsample_factors=list(bwe.upsample_rates), bwe_resnet_kernel_sizes=list(bwe.resblock_kernel_sizes),
            bwe_resnet_dilations=[list(d) for d in bwe.resblock_dilations], bwe_act_fn="snakebeta",
            bwe_final_act_fn=None, bwe_final_bias=bwe.final_bias,
            filter_length=self.bwe_n_fft, hop_length=self.bwe_hop_samples, window_length=self.bwe_n_fft,
            num_mel_channels=self.bwe_n_mel_bins, input_sampling_rate=self.input_rate_hz,
            output_sampling_rate=self.output_rate_hz)

    @property
    def samples_per_mel_frame(self) -> int:
        """Stage-1 samples per mel frame (160 at 16 kHz): the product of the upsample rates."""
        return math.prod(self.stage1.upsample_rates)


LTX23_VOCODER = VocoderParams()
# The parity fixture's widths (fixtures/ltx_audio_vae); rates and kernels as released.
LTX23_VOCODER_TINY = VocoderParams(stage1=GeneratorParams(64, (5, 2, 2, 2, 2, 2), (11, 4, 4, 4, 4, 4)),
                                   bwe=GeneratorParams(32, (6, 5, 2, 2, 2), (12, 11, 4, 4, 4)))


class LtxVocoder(nn.Module):
    """Log-mel -> 48 kHz stereo. `bwe_vocoder` holds the converted keys (stage 1, BWE, STFT bases)."""

    def __init__(self, params: VocoderParams = LTX23_VOCODER) -> None:
        super().__init__()
        if params.output_rate_hz % params.input_rate_hz:
            raise ValueError(f"BWE needs an integer rate ratio, got {params.input_rate_hz} -> {params.output_rate_hz}")
        if params.samples_per_mel_frame % params.bwe_hop_samples:
            # diffusers pads odd lengths through an attribute it does not have; keep lengths exact instead
            raise ValueError("stage-1 samples per mel frame must be a multiple of the BWE hop")
        self.params = params
        self.bwe_vocoder = LTX2VocoderWithBWE(**params.diffusers_config())
        self.bwe_vocoder.eval()
        self._materialize_resampler()

    def _materialize_resampler(self) -> None:
        # The skip path's sinc filter is computed, never stored in the file (a non-persistent buffer),
        # so a build on the meta device would leave it empty; compute it on the CPU as ltx-core does.
        resampler = self.bwe_vocoder.resampler
        if resampler.filter.is_meta:
            with torch.device("cpu"):
                self.bwe_vocoder.resampler = type(resampler)(
                    ratio=self.params.output_rate_hz // self.params.input_rate_hz, window_type="hann",
                    persistent=False)

    @torch.no_grad()
    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, 2, F, 64] log-mel -> [B, 2, F * 480] at 48 kHz, clamped to [-1, 1]."""
        return self.bwe_vocoder(self._check(mel)).float()

    @torch.no_grad()
    def stage1(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, 2, F, 64] log-mel -> [B, 2, F * 160] at 16 kHz: the generator before bandwidth extension."""
        return self.bwe_vocoder.vocoder(self._check(mel)).float()

    def _check(self, mel: torch.Tensor) -> torch.Tensor:
        want = (self.params.n_audio_channels, self.params.n_mel_bins)
        if mel.ndim != 4 or (mel.shape[1], mel.shape[3]) != want:
            raise ValueError(f"mel must be [B, {want[0]}, F, {want[1]}], got {tuple(mel.shape)}")
        return mel.to(self.bwe_vocoder.vocoder.conv_in.weight.dtype)


def nava_resample_16k(waveform: torch.Tensor, rate_hz: int) -> torch.Tensor:
    """NAVA's decode tail: resample to 16 kHz with torchaudio's defaults, then clip to +-0.99."""
    if rate_hz != NAVA_OUTPUT_RATE_HZ:
        waveform = AF.resample(waveform, orig_freq=rate_hz, new_freq=NAVA_OUTPUT_RATE_HZ)
    return waveform.clamp(-NAVA_OUTPUT_LIMIT, NAVA_OUTPUT_LIMIT)
