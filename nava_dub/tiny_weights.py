"""A complete weights folder of tiny random models, laid out and formatted exactly like the release.

    python -m nava_dub.tiny_weights DIR [--seed N]

Every file sits at its release path (weights.MANIFEST) in its release format, so it loads through
the same loaders as the real weights (nava_dub.models.load_models):

    NAVA.safetensors + config.json        `backbone.`-prefixed transformer, fp32, NAVA_6B.json-style config
    Wan2.2-TI2V-5B/Wan2.2_VAE.pth         Wan's key names, fp32 (torch zip)
    Wan2.2-TI2V-5B/models_t5_umt5-xxl-enc-bf16.pth   Wan's umT5 key names, bf16
    Wan2.2-TI2V-5B/google/umt5-xxl/tokenizer.json    the 812-token test tokenizer (nava_dub/assets)
    params/LTX2/ltx-2.3-22b-dev_audio_vae.safetensors  LTX key names, bf16, config JSON in the metadata
    M-vb2+vox2+cnc-ft_mix.pt              {"model_config", "state_dict"} as IDRnD releases it
    TINY                                  marker: `nava-dub check` skips the size check (weights.py)

Sizes are the parity fixtures' tiny presets. Two transformer widths follow the tiny codecs rather
than the transformer's own tiny preset: text_dim = 64 (the tiny umT5) and 32 audio channels (the
tiny LTX VAE: 2 latent channels x 16 mel bins). Weights are each module's default initialisation
drawn from a seeded RNG: the same seed writes the same tensors.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from nava_dub.weights import TINY_MARKER

ASSETS = Path(__file__).parent / "assets"
TOKENIZER_JSON = ASSETS / "umt5_tiny" / "tokenizer.json"
TINY_TEXT_DIM = 64                 # tiny umT5 d_model
TINY_AUDIO_CHANNELS = 32           # tiny LTX audio VAE: z_channels 2 x 64/4 mel bins

# ReDimNet small enough for tests; the release's format and every block type of the 'M' model.
TINY_REDIMNET_CONFIG = {
    "F": 72, "C": 4, "block_1d_type": "att", "block_2d_type": "convnext_like",
    "stages_setup": [[1, 1, 1, [[3, 3]], 8], [2, 1, 1, [[3, 3]], 8]], "group_divisor": 4,
    "out_channels": None, "embed_dim": 192, "num_classes": None, "hop_length": 160, "pooling_func": "ASTP",
    "feat_type": "pt", "global_context_att": False, "emb_bn": False,
    "spec_params": {"do_spec_aug": False}, "tf_optimized_arch": False,
}


def tiny_transformer_params():  # -> NavaParams
    from nava_dub.model.transformer import PRESETS

    return replace(PRESETS["tiny"], text_dim=TINY_TEXT_DIM, audio_in_channels=TINY_AUDIO_CHANNELS,
                   audio_out_channels=TINY_AUDIO_CHANNELS)


def write_tiny_weights(folder: str | Path, seed: int = 0) -> Path:
    """Write the folder (created if needed; files of the same names are replaced) and return it."""
    folder = Path(folder)
    writers: list[Callable[[Path], None]] = [_write_transformer, _write_video_vae, _write_text_encoder,
                                             _write_tokenizer, _write_audio_codec, _write_speaker_encoder]
    for index, write in enumerate(writers):
        with torch.random.fork_rng(devices=[]):   # the caller's global RNG is left as it was
            torch.manual_seed(seed * len(writers) + index)
            write(folder)
    (folder / TINY_MARKER).write_text("tiny random test weights written by `python -m nava_dub.tiny_weights`; "
                                      "nava-dub check does not compare their sizes with the release's\n")
    return folder


# --- one writer per release file ---------------------------------------------------------------

def _write_transformer(folder: Path) -> None:
    from nava_dub.checkpoint import CHECKPOINT_PREFIX
    from nava_dub.model.transformer import NavaTransformer

    params = tiny_transformer_params()
    model = NavaTransformer(params)
    _save_safetensors(folder / "NAVA.safetensors", model, torch.float32, prefix=CHECKPOINT_PREFIX)
    (folder / "config.json").write_text(json.dumps(nava_config(params), indent=2) + "\n")


def nava_config(params) -> dict:  # params: NavaParams
    """The official NAVA_6B.json layout (plus the constructor flags the release passes) for params."""
    return {
        "model_type": "ti2v", "patch_size": list(params.patch_size), "dim": params.dim,
        "ffn_dim": params.ffn_dim, "freq_dim": params.freq_dim, "num_heads": params.n_heads,
        "num_layers": params.n_double_blocks + params.n_single_blocks,
        "num_double_layers": params.n_double_blocks, "num_single_layers": params.n_single_blocks,
        "num_double_final_layers": 0, "vid_in_dim": params.video_in_channels,
        "vid_out_dim": params.video_out_channels, "audio_in_dim": params.audio_in_channels,
        "audio_out_dim": params.audio_out_channels, "text_len": params.n_text_tokens, "text_dim": params.text_dim,
        "window_size": [-1, -1], "qk_norm": True, "cross_attn_norm": True, "eps": params.eps,
        "temporal_rope_scaling_factor": params.audio_rope_scale, "add_spk_emb": True, "no_split_norm_ffn": True,
    }


def _write_video_vae(folder: Path) -> None:
    from nava_dub.convert.wan_vae import diffusers_to_wan_vae
    from nava_dub.model.video_vae import WAN22_TINY, WanVideoVAE

    state = diffusers_to_wan_vae(WanVideoVAE(WAN22_TINY).autoencoder.state_dict())
    _save_pth(folder / "Wan2.2-TI2V-5B" / "Wan2.2_VAE.pth", state, torch.float32)


def _write_text_encoder(folder: Path) -> None:
    from nava_dub.convert.umt5 import hf_to_wan_umt5
    from nava_dub.model.text_encoder import TextEncoder, tiny_umt5_config

    state = hf_to_wan_umt5(TextEncoder(tiny_umt5_config()).umt5.state_dict())
    _save_pth(folder / "Wan2.2-TI2V-5B" / "models_t5_umt5-xxl-enc-bf16.pth", state, torch.bfloat16)


def _write_tokenizer(folder: Path) -> None:
    target = folder / "Wan2.2-TI2V-5B" / "google" / "umt5-xxl"
    target.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(TOKENIZER_JSON, target / "tokenizer.json")


def _write_audio_codec(folder: Path) -> None:
    from nava_dub.convert.ltx_audio import join_ltx_audio
    from nava_dub.model.audio_vae import LTX23_AUDIO_VAE_TINY, LtxAudioVAE
    from nava_dub.model.vocoder import LTX23_VOCODER_TINY, LtxVocoder

    vae, vocoder = LtxAudioVAE(LTX23_AUDIO_VAE_TINY), LtxVocoder(LTX23_VOCODER_TINY)
    state = join_ltx_audio(vae.autoencoder.state_dict(), vocoder.bwe_vocoder.state_dict())
    path = folder / "params" / "LTX2" / "ltx-2.3-22b-dev_audio_vae.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to(torch.bfloat16).contiguous().clone() for k, v in state.items()}
    config = ltx_config(LTX23_AUDIO_VAE_TINY, LTX23_VOCODER_TINY)
    save_file(tensors, str(path), metadata={"config": json.dumps(config)})


def ltx_config(vae, vocoder) -> dict:  # (AudioVaeParams, VocoderParams)
    """The metadata config of an LTX-2.3 audio file (the inverse of convert.ltx_audio.params_from_ltx_config)."""
    ddconfig = {
        "ch": vae.base_channels, "out_ch": vae.n_audio_channels, "ch_mult": list(vae.ch_mult),
        "num_res_blocks": vae.num_res_blocks, "attn_resolutions": list(vae.attn_resolutions),
        "resolution": vae.resolution, "z_channels": vae.z_channels, "double_z": vae.double_z,
        "in_channels": vae.n_audio_channels, "norm_type": vae.norm_type, "causality_axis": vae.causality_axis,
        "dropout": vae.dropout, "mid_block_add_attention": vae.mid_block_add_attention, "mel_bins": vae.n_mel_bins,
    }
    audio_vae = {
        "model": {"params": {"sampling_rate": vae.sample_rate_hz, "ddconfig": ddconfig}},
        "preprocessing": {"stft": {"hop_length": vae.hop_samples, "filter_length": vae.n_fft, "causal": vae.is_causal},
                          "mel": {"n_mel_channels": vae.n_mel_bins}},
    }
    bwe = {**_generator_config(vocoder.bwe), "input_sampling_rate": vocoder.input_rate_hz,
           "output_sampling_rate": vocoder.output_rate_hz, "n_fft": vocoder.bwe_n_fft,
           "hop_length": vocoder.bwe_hop_samples, "num_mels": vocoder.bwe_n_mel_bins}
    return {"audio_vae": audio_vae, "vocoder": {"vocoder": _generator_config(vocoder.stage1), "bwe": bwe}}


def _generator_config(g) -> dict:  # GeneratorParams
    return {"resblock": "AMP1", "stereo": True, "activation": "snakebeta", "use_tanh_at_final": g.final_tanh,
            "use_bias_at_final": g.final_bias, "resblock_kernel_sizes": list(g.resblock_kernel_sizes),
            "resblock_dilation_sizes": [list(d) for d in g.resblock_dilations],
            "upsample_initial_channel": g.hidden_channels, "upsample_rates": list(g.upsample_rates),
            "upsample_kernel_sizes": list(g.upsample_kernel_sizes)}


def _write_speaker_encoder(folder: Path) -> None:
    from nava_dub.model.speaker import ReDimNet, ReDimNetParams

    model = ReDimNet(ReDimNetParams.from_model_config(TINY_REDIMNET_CONFIG))
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    _atomic_save({"model_config": TINY_REDIMNET_CONFIG, "state_dict": state}, folder / "M-vb2+vox2+cnc-ft_mix.pt")


# --- file formats -----------------------------------------------------------------------------

def _save_safetensors(path: Path, model: nn.Module, dtype: torch.dtype, prefix: str = "") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({prefix + k: v.detach().to(dtype).contiguous().clone() for k, v in model.state_dict().items()},
              str(path))


def _save_pth(path: Path, state: dict[str, torch.Tensor], dtype: torch.dtype) -> None:
    _atomic_save({k: v.detach().to(dtype).contiguous().clone() for k, v in state.items()}, path)


def _atomic_save(obj: object, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(f".{path.name}.part")
    torch.save(obj, part)
    part.replace(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m nava_dub.tiny_weights", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="where to write the weights folder")
    parser.add_argument("--seed", type=int, default=0, help="RNG seed of the random weights (default 0)")
    args = parser.parse_args(argv)
    folder = write_tiny_weights(args.folder, seed=args.seed)
    print(f"wrote tiny test weights to {folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
