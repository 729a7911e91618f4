"""Every NAVA component, loaded from a weights folder laid out as the official release ships it.

`load_models(dir, components=...)` first checks every file the named components need with
`weights.require_weights` (presence, headers, sizes), so a missing or damaged file fails before a
single large tensor is read; then it loads each component with its own loader. The release folder
loads with no extra files: the transformer's architecture is the release preset unless a
`config.json` lies beside it, umT5's sizes come from its tensor shapes, the Wan VAE's preset is
picked from its convolution widths, the LTX audio configs come from the file's metadata and
ReDimNet's from its checkpoint's `model_config`. `.pth` files are read with
`torch.load(weights_only=True, mmap=True)` (ReDimNet's small `.pt` through its own loader, also
`weights_only`).

`Models` is a frozen bundle; a component not loaded is None. Components load separately and can be
released (`models.without("text_encoder")` drops the umT5 encoder once the prompts are encoded);
nava_dub.placement loads them where a memory plan puts them (`on_host`) and parks umT5 in between.

Dtypes follow NAVA: the transformer, umT5 and the Wan VAE run in `dtype` (bf16 on a GPU, fp32 on
the CPU by default); the LTX audio VAE, its vocoder and ReDimNet always run in fp32.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from nava_dub.errors import UsageError, WeightsError
from nava_dub.progress import ProgressFn, silent
from nava_dub.weights import load_strict, read_pth_state_dict, require_weights

if TYPE_CHECKING:
    from nava_dub.model.audio_vae import LtxAudioVAE
    from nava_dub.model.offload import BlockOffload
    from nava_dub.model.speaker import ReDimNet
    from nava_dub.model.text_encoder import TextEncoder
    from nava_dub.model.transformer import NavaTransformer
    from nava_dub.model.video_vae import WanVaeParams, WanVideoVAE
    from nava_dub.model.vocoder import LtxVocoder

# The manifest's components; the vocoder lives in the audio VAE's file and loads with it.
ALL = frozenset({"transformer", "text_encoder", "tokenizer", "video_vae", "audio_vae", "speaker_encoder"})
_ATTRIBUTES = {"audio_vae": ("audio_vae", "vocoder"), "transformer": ("transformer", "offload")}
_SETTINGS = {"dtype", "device", "offload"}     # Models fields that are not components


@dataclass(frozen=True, eq=False)
class Models:
    """The loaded NAVA components (None = not loaded), on one device."""

    transformer: NavaTransformer | None = None
    text_encoder: TextEncoder | None = None
    tokenizer: Any = None                      # transformers' T5TokenizerFast
    video_vae: WanVideoVAE | None = None
    audio_vae: LtxAudioVAE | None = None
    vocoder: LtxVocoder | None = None          # loaded with the audio VAE (one file)
    speaker_encoder: ReDimNet | None = None
    dtype: torch.dtype = torch.float32
    device: torch.device = torch.device("cpu")
    offload: BlockOffload | None = None        # the transformer's block streaming (nava_dub.placement)

    def without(self, *names: str) -> Models:
        """This bundle with the named components dropped (their memory is freed once unreferenced)."""
        attributes = [a for n in names for a in _ATTRIBUTES.get(n, (n,))]
        unknown = set(attributes) - ({f.name for f in fields(self)} - {"dtype", "device"})
        if unknown:
            raise UsageError(f"no model component named {', '.join(sorted(unknown))}",
                             f"name one of {', '.join(sorted(ALL | {'vocoder'}))}")
        return replace(self, **{a: None for a in attributes})

    def merged(self, other: Models) -> Models:
        """This bundle with every component `other` has loaded added (other's win)."""
        loaded = {f.name: getattr(other, f.name) for f in fields(other)
                  if f.name not in _SETTINGS and getattr(other, f.name) is not None}
        if other.transformer is not None:   # its block streaming comes with it
            loaded["offload"] = other.offload
        merged = replace(self, **loaded)
        check_compatible(merged)
        return merged

    def require(self, name: str) -> Any:
        """The named component, or an error saying it was not loaded."""
        component = getattr(self, name, None)
        if component is None:
            raise UsageError(f"the {name} is not loaded", f"load it with load_models(..., components={{{name!r}}})")
        return component


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def default_dtype(device: torch.device) -> torch.dtype:
    """NAVA's bf16 on a GPU; fp32 on the CPU, where bf16 is slow and only tests run."""
    return torch.bfloat16 if device.type == "cuda" else torch.float32


def load_models(weights_dir: str | Path, *, components: Iterable[str] = ALL,
                dtype: torch.dtype | None = None, device: str | torch.device | None = None,
                on_host: Iterable[str] = (), progress: ProgressFn = silent) -> Models:
    """Load the named components from weights_dir after checking every file they need.

    Those in `on_host` load into host memory whatever the device: a memory plan streams or runs
    them from there (nava_dub.placement), so they never need room on the GPU to load."""
    from nava_dub.checkpoint import load_transformer
    from nava_dub.text import load_text_encoder, load_tokenizer
    from nava_dub.voice import load_speaker_encoder

    components = set(components)
    unknown = components - ALL
    if unknown:
        raise UsageError(f"unknown model components: {', '.join(sorted(unknown))}",
                         f"choose from {', '.join(sorted(ALL))}")
    device = torch.device(device) if device is not None else default_device()
    dtype = dtype or default_dtype(device)
    on_host = set(on_host)

    def where(name: str) -> torch.device:
        return torch.device("cpu") if name in on_host else device

    paths = require_weights(Path(weights_dir), components)     # every file checked before any large read
    loaders = {
        "tokenizer": lambda p: {"tokenizer": load_tokenizer(p)},
        "text_encoder": lambda p: {"text_encoder": load_text_encoder(p, dtype=dtype,
                                                                     device=str(where("text_encoder")))},
        "speaker_encoder": lambda p: {"speaker_encoder": load_speaker_encoder(p, device=device)},
        "video_vae": lambda p: {"video_vae": load_video_vae(p, dtype=dtype, device=device)},
        "audio_vae": lambda p: dict(zip(("audio_vae", "vocoder"), load_audio_codec(p, device=device), strict=True)),
        "transformer": lambda p: {"transformer": load_transformer(p, dtype=dtype, device=where("transformer"))},
    }
    order = [name for name in loaders if name in components]
    loaded: dict[str, Any] = {}
    for done, name in enumerate(order):
        progress("load models", done, len(order))
        loaded.update(loaders[name](paths[name]))
    progress("load models", len(order), len(order))
    models = Models(**loaded, dtype=dtype, device=device)
    check_compatible(models)
    return models


def check_compatible(models: Models) -> None:
    """The loaded components must fit each other's widths (a mixed-up folder fails here, not mid-run)."""
    t = models.transformer
    problems = []
    if t is not None and models.text_encoder is not None and models.text_encoder.d_model != t.params.text_dim:
        problems.append(f"umT5 is {models.text_encoder.d_model} wide, the transformer takes {t.params.text_dim}")
    if t is not None and models.video_vae is not None and models.video_vae.params.z_dim != t.params.video_in_channels:
        problems.append(f"the Wan VAE has {models.video_vae.params.z_dim} latent channels, "
                        f"the transformer takes {t.params.video_in_channels}")
    if t is not None and models.audio_vae is not None and \
            models.audio_vae.params.latent_width != t.params.audio_in_channels:
        problems.append(f"the LTX audio latent is {models.audio_vae.params.latent_width} wide, "
                        f"the transformer takes {t.params.audio_in_channels}")
    if models.text_encoder is not None and models.tokenizer is not None and \
            len(models.tokenizer) > models.text_encoder.umt5.config.vocab_size:
        problems.append(f"the tokenizer has {len(models.tokenizer)} tokens, "
                        f"umT5 embeds {models.text_encoder.umt5.config.vocab_size}")
    if problems:
        raise WeightsError(f"the weights do not fit together: {'; '.join(problems)}",
                           "take every file from the same release (or the same tiny_weights folder)")


# --- the loaders the release's files need that no component module has ----------------------------

def load_video_vae(path: str | Path, *, dtype: torch.dtype = torch.float32,
                   device: str | torch.device = "cpu") -> WanVideoVAE:
    """The Wan2.2 VAE from Wan's `Wan2.2_VAE.pth`; its preset is read off the convolution widths."""
    from nava_dub.convert.wan_vae import wan_to_diffusers_vae
    from nava_dub.model.video_vae import WanVideoVAE

    path = Path(path)
    state = wan_to_diffusers_vae(read_pth_state_dict(path, "Wan2.2_VAE.pth"))
    params = video_vae_preset(state, path)
    with torch.device("meta"):
        vae = WanVideoVAE(params)
    load_strict(vae.autoencoder, state, what=f"the Wan VAE weights ({params.base_dim}-wide preset)", path=path,
                hint="use Wan2.2-TI2V-5B/Wan2.2_VAE.pth from the official release")
    return vae.to(device=device, dtype=dtype).eval()


def video_vae_preset(state: dict[str, torch.Tensor], path: str | Path) -> WanVaeParams:
    """The WanVaeParams preset whose widths and latent channels match the (diffusers-keyed) state dict."""
    from nava_dub.model.video_vae import WAN22_RELEASE, WAN22_TINY

    found = _vae_widths(state)
    for preset in (WAN22_RELEASE, WAN22_TINY):
        if found == (preset.base_dim, preset.decoder_base_dim * preset.dim_mult[-1], preset.z_dim):
            return preset
    raise WeightsError(f"{path} is a Wan VAE of no known size (encoder width, decoder width, latent "
                       f"channels = {found})", "use Wan2.2-TI2V-5B/Wan2.2_VAE.pth (the 48-channel Wan2.2 VAE)")


def _vae_widths(state: dict[str, torch.Tensor]) -> tuple[int, int, int]:
    try:
        return (int(state["encoder.conv_in.weight"].shape[0]),        # [base_dim, 12, 3, 3, 3]
                int(state["decoder.conv_in.weight"].shape[0]),        # [decoder_base_dim·mult[-1], z, 3, 3, 3]
                int(state["decoder.conv_in.weight"].shape[1]))
    except KeyError as err:
        raise WeightsError(f"Wan VAE state dict lacks {err}", "use Wan2.2-TI2V-5B/Wan2.2_VAE.pth") from err


def load_audio_codec(path: str | Path, *, device: str | torch.device = "cpu") -> tuple[LtxAudioVAE, LtxVocoder]:
    """(LTX audio VAE, vocoder) in fp32 from `ltx-2.3-22b-dev_audio_vae.safetensors` and its metadata config."""
    from safetensors import safe_open

    from nava_dub.convert.ltx_audio import params_from_ltx_config, split_ltx_audio
    from nava_dub.model.audio_vae import LtxAudioVAE
    from nava_dub.model.vocoder import LtxVocoder

    path = Path(path)
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            config = json.loads((f.metadata() or {}).get("config", "null"))
            state = {key: f.get_tensor(key).float() for key in f.keys()}   # NAVA runs both in fp32
    except Exception as err:  # safetensors raises its own error type, OSError or ValueError for a bad file
        raise WeightsError(f"cannot read the LTX audio file {path}: {err}", "download the file again") from err
    if not isinstance(config, dict):
        raise WeightsError(f"{path} has no LTX config in its metadata",
                           "use the official ltx-2.3-22b-dev_audio_vae.safetensors")
    vae_params, vocoder_params = params_from_ltx_config(config)
    vae_state, vocoder_state = split_ltx_audio(state)
    with torch.device("meta"):
        vae, vocoder = LtxAudioVAE(vae_params), LtxVocoder(vocoder_params)
    for module, part, what in ((vae.autoencoder, vae_state, "audio VAE"), (vocoder.bwe_vocoder, vocoder_state,
                                                                          "vocoder")):
        load_strict(module, part, what=f"the LTX {what} weights (config from the file's metadata)", path=path,
                    hint="use the official ltx-2.3-22b-dev_audio_vae.safetensors")
    return vae.to(device).eval(), vocoder.to(device).eval()
