"""LTX-2.3's audio file (`ltx-2.3-22b-dev_audio_vae.safetensors`) -> the diffusers modules nava-dub builds.

The one file holds three models under two prefixes:
- `audio_vae.{encoder,decoder}.*` and `audio_vae.per_channel_statistics.{mean-of-means,std-of-means}`:
  the VAE, whose module names diffusers keeps; the statistics become `latents_mean` / `latents_std`.
- `vocoder.{vocoder,bwe_generator}.*` and `vocoder.mel_stft.*`: the vocoder with bandwidth extension,
  where diffusers renames conv_pre/conv_post/act_post/ups/resblocks and drops `lowpass`.
Its config is JSON in the safetensors metadata key "config"; `params_from_ltx_config` reads it with
ltx-core's defaults for absent keys. Nothing here touches files: dicts in, dicts out. Tensors keep
their dtype (bf16 in the release): load them into float32 modules without `assign=True`, as NAVA
builds all three in float32.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TypeVar

from nava_dub.convert import raise_if_unknown
from nava_dub.errors import WeightsError
from nava_dub.model.audio_vae import AudioVaeParams
from nava_dub.model.vocoder import GeneratorParams, VocoderParams

T = TypeVar("T")

_STATS = {"audio_vae.per_channel_statistics.mean-of-means": "latents_mean",
          "audio_vae.per_channel_statistics.std-of-means": "latents_std"}
_VAE_BODY = re.compile(r"audio_vae\.((?:encoder|decoder)\.[\w.]+\.(?:weight|bias))")
# ltx-core module name -> diffusers module name, segment by segment, inside each generator
_GENERATOR_RENAMES = {"conv_pre": "conv_in", "conv_post": "conv_out", "act_post": "act_out",
                      "ups": "upsamplers", "resblocks": "resnets"}
_ACTIVATION = r"(?:act\.alpha|act\.beta|upsample\.filter|downsample\.lowpass\.filter)"
_LTX_GENERATOR = re.compile(
    r"vocoder\.(vocoder|bwe_generator)\.("
    r"conv_pre\.(?:weight|bias)|conv_post\.(?:weight|bias)|ups\.\d+\.(?:weight|bias)"
    r"|resblocks\.\d+\.convs[12]\.\d+\.(?:weight|bias)"
    rf"|resblocks\.\d+\.acts[12]\.\d+\.{_ACTIVATION}|act_post\.{_ACTIVATION})")
_LTX_MEL_STFT = re.compile(r"vocoder\.(mel_stft\.(?:mel_basis|stft_fn\.forward_basis|stft_fn\.inverse_basis))")


def split_ltx_audio(state_dict: Mapping[str, T]) -> tuple[dict[str, T], dict[str, T]]:
    """The file's keys -> (AutoencoderKLLTX2Audio keys, LTX2VocoderWithBWE keys); an unknown key is an error."""
    vae: dict[str, T] = {}
    vocoder: dict[str, T] = {}
    unknown: list[str] = []
    for key, tensor in state_dict.items():
        if key in _STATS:
            vae[_STATS[key]] = tensor
        elif m := _VAE_BODY.fullmatch(key):
            vae[m.group(1)] = tensor
        elif m := _LTX_GENERATOR.fullmatch(key):
            vocoder[f"{m.group(1)}.{_rename_generator(m.group(2))}"] = tensor
        elif m := _LTX_MEL_STFT.fullmatch(key):
            vocoder[m.group(1)] = tensor
        else:
            unknown.append(key)
    raise_if_unknown(unknown, "LTX-2.3 audio VAE or vocoder",
                     "check that the file is params/LTX2/ltx-2.3-22b-dev_audio_vae.safetensors")
    return vae, vocoder


def join_ltx_audio(vae: Mapping[str, T], vocoder: Mapping[str, T]) -> dict[str, T]:
    """The inverse of split_ltx_audio: diffusers keys back to the file's."""
    out: dict[str, T] = {}
    stats = {hf: ltx for ltx, hf in _STATS.items()}
    for key, tensor in vae.items():
        out[stats.get(key, f"audio_vae.{key}")] = tensor
    back = {hf: ltx for ltx, hf in _GENERATOR_RENAMES.items()}
    for key, tensor in vocoder.items():
        parts = [back.get(p, p) for p in key.split(".")]
        name = ".".join(parts).replace("downsample.filter", "downsample.lowpass.filter")
        out[f"vocoder.{name}"] = tensor
    return out


def _rename_generator(rest: str) -> str:
    parts = [_GENERATOR_RENAMES.get(p, p) for p in rest.split(".")]
    return ".".join(parts).replace("downsample.lowpass.filter", "downsample.filter")


# --- the metadata config ------------------------------------------------------------------------

def params_from_ltx_config(config: Mapping) -> tuple[AudioVaeParams, VocoderParams]:
    """The file's metadata config (parsed JSON) -> our params, with ltx-core's defaults for absent keys."""
    try:
        return _vae_params(config["audio_vae"]), _vocoder_params(config["vocoder"])
    except KeyError as missing:
        raise WeightsError(f"LTX audio config lacks {missing}",
                           "use the official ltx-2.3-22b-dev_audio_vae.safetensors (its metadata holds the config)",
                           ) from missing


def _vae_params(section: Mapping) -> AudioVaeParams:
    params = section.get("model", {}).get("params", {})
    dd = params.get("ddconfig", {})
    stft = section.get("preprocessing", {}).get("stft", {})
    mel = section.get("preprocessing", {}).get("mel", {})
    if dd.get("out_ch", 2) != dd.get("in_channels", 2):
        raise WeightsError(f"LTX audio VAE maps {dd.get('in_channels')} to {dd.get('out_ch')} channels",
                           "only the stereo LTX-2.3 audio VAE is supported")
    return AudioVaeParams(
        base_channels=dd.get("ch", 128), ch_mult=tuple(dd.get("ch_mult", (1, 2, 4))),
        num_res_blocks=dd.get("num_res_blocks", 2), z_channels=dd.get("z_channels", 8),
        attn_resolutions=tuple(dd.get("attn_resolutions", (8, 16, 32))),       # ltx-core's default
        mid_block_add_attention=dd.get("mid_block_add_attention", True), resolution=dd.get("resolution", 256),
        norm_type=dd.get("norm_type", "pixel"), causality_axis=dd.get("causality_axis", "height"),
        dropout=dd.get("dropout", 0.0), double_z=dd.get("double_z", True), n_audio_channels=dd.get("in_channels", 2),
        n_mel_bins=dd.get("mel_bins") or mel.get("n_mel_channels") or 64,
        sample_rate_hz=params.get("sampling_rate", 16000), hop_samples=stft.get("hop_length", 160),
        n_fft=stft.get("filter_length", 1024), is_causal=stft.get("causal", True))


def _vocoder_params(section: Mapping) -> VocoderParams:
    stage1, bwe = section["vocoder"], section["bwe"]   # LTX-2.3 nests both; older files have no BWE
    for name, cfg in (("vocoder", stage1), ("bwe", bwe)):
        for field, want in (("resblock", "AMP1"), ("stereo", True), ("activation", "snakebeta")):
            if cfg.get(field) != want:
                raise WeightsError(f"LTX vocoder.{name}.{field} is {cfg.get(field)!r}, expected {want!r}",
                                   "only the LTX-2.3 vocoder with bandwidth extension is supported")
    return VocoderParams(stage1=_generator(stage1), bwe=_generator(bwe), bwe_n_fft=bwe["n_fft"],
                         bwe_hop_samples=bwe["hop_length"], bwe_n_mel_bins=bwe["num_mels"],
                         input_rate_hz=bwe["input_sampling_rate"], output_rate_hz=bwe["output_sampling_rate"])


def _generator(cfg: Mapping) -> GeneratorParams:
    # defaults are ltx-core's `_vocoder_from_config`
    return GeneratorParams(
        hidden_channels=cfg.get("upsample_initial_channel", 1024),
        upsample_rates=tuple(cfg.get("upsample_rates", (6, 5, 2, 2, 2))),
        upsample_kernel_sizes=tuple(cfg.get("upsample_kernel_sizes", (16, 15, 8, 4, 4))),
        resblock_kernel_sizes=tuple(cfg.get("resblock_kernel_sizes", (3, 7, 11))),
        resblock_dilations=tuple(tuple(d) for d in cfg.get("resblock_dilation_sizes", [[1, 3, 5]] * 3)),
        final_tanh=cfg.get("use_tanh_at_final", True), final_bias=cfg.get("use_bias_at_final", True))
