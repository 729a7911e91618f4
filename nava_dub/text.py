"""NAVA's text path: prompt cleaning, speaker slots, umT5 tokenization, encoding and cropping.

What NAVA does (nava_pipeline.md §1), and where we differ on purpose:
- Cleaning is Wan's: `ftfy.fix_text`, `html.unescape` twice, whitespace collapsed.
- Every `<S>` becomes `<S><extra_id_2>`; the positions of `<extra_id_2>` are the speaker slots.
- Prompts pad to 512 tokens. NAVA silently truncates longer ones, which drops speech spans and
  speaker slots; here a prompt over 512 tokens is an error that says how many tokens are over.
- The encoder runs on the full padded batch; each prompt's rows are cropped to its true length
  and not re-padded.

torch and transformers are imported inside the functions that need them, so the cheap parts
(cleaning, slot marking) can be used without loading either.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ftfy

from nava_dub.errors import ModelError, WeightsError
from nava_dub.weights import load_strict, read_pth_state_dict

if TYPE_CHECKING:
    import torch

    from nava_dub.model.text_encoder import TextEncoder

TEXT_LEN = 512                 # NAVA pads every prompt to 512 umT5 tokens (and cuts longer ones)
SPEECH_OPEN = "<S>"
SPEAKER_SLOT = "<extra_id_2>"  # umT5 sentinel NAVA writes after each <S>; its rows get speaker tokens


@dataclass(frozen=True)
class TokenizedPrompts:
    """A batch padded to TEXT_LEN: ids and mask [B, 512] int64, per-prompt lengths and slots."""

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    n_tokens: tuple[int, ...]
    speaker_slot_positions: tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class EncodedPrompt:
    """One prompt's umT5 context [n_tokens, d_model] and the rows that are speaker slots."""

    context: torch.Tensor
    speaker_slot_positions: tuple[int, ...]

    @property
    def n_tokens(self) -> int:
        return int(self.context.shape[0])


# --- cleaning -------------------------------------------------------------------------------

_WHITESPACE = re.compile(r"\s+")


def clean_prompt(text: str) -> str:
    """Wan's `clean='whitespace'`: ftfy's fixes, HTML-unescape twice, collapse whitespace."""
    text = ftfy.fix_text(text)
    text = html.unescape(html.unescape(text))
    return _WHITESPACE.sub(" ", text.strip()).strip()


def mark_speaker_slots(text: str) -> str:
    """Write a speaker slot after every `<S>` (idempotent), as NAVA does before encoding.

    A slot that does not follow `<S>` would take a speaker embedding meant for a span, so it is
    an error rather than a silent shift of every later binding.
    """
    marked = re.sub(re.escape(SPEECH_OPEN) + f"(?!{re.escape(SPEAKER_SLOT)})", SPEECH_OPEN + SPEAKER_SLOT, text)
    n_stray = marked.count(SPEAKER_SLOT) - marked.count(SPEECH_OPEN + SPEAKER_SLOT)
    if n_stray:
        raise ModelError(
            f"prompt has {n_stray} `{SPEAKER_SLOT}` not directly after `{SPEECH_OPEN}`: {text[:80]!r}",
            f"remove `{SPEAKER_SLOT}` from the prompt; nava-dub adds it after each `{SPEECH_OPEN}`",
        )
    return marked


def prepare_prompt(text: str) -> str:
    """Clean, then mark slots (cleaning first, so `&lt;S&gt;` also gets its slot)."""
    return mark_speaker_slots(clean_prompt(text))


# --- tokenization ---------------------------------------------------------------------------

def load_tokenizer(folder: str | Path) -> Any:
    """The umT5 tokenizer from a local folder (`tokenizer.json`, as shipped next to Wan's T5)."""
    from transformers import T5TokenizerFast

    folder = Path(folder)
    if not (folder / "tokenizer.json").is_file():
        raise WeightsError(
            f"umT5 tokenizer folder {folder} has no tokenizer.json",
            "point to Wan2.2-TI2V-5B/google/umt5-xxl from the official release",
        )
    # AutoTokenizer needs tokenizer_config.json, which NAVA's folder may lack (components.md §2.4).
    try:
        tokenizer = T5TokenizerFast.from_pretrained(str(folder), local_files_only=True)
    except Exception as err:  # tokenizers and transformers raise many kinds for a damaged file
        raise WeightsError(f"cannot read the umT5 tokenizer in {folder}: {type(err).__name__}: {err}",
                           "copy google/umt5-xxl from the official Wan2.2-TI2V-5B release again") from err
    slot_id = tokenizer.convert_tokens_to_ids(SPEAKER_SLOT)
    if slot_id is None or slot_id == tokenizer.unk_token_id or tokenizer.pad_token_id is None:
        raise WeightsError(
            f"tokenizer in {folder} lacks `{SPEAKER_SLOT}` or a pad token",
            "use the umT5 tokenizer (google/umt5-xxl layout) shipped with Wan2.2-TI2V-5B",
        )
    return tokenizer


def n_prompt_tokens(tokenizer: Any, prompt: str) -> int:
    """How many umT5 tokens (with the closing `</s>`) the prepared prompt takes."""
    return len(tokenizer(prepare_prompt(prompt), add_special_tokens=True).input_ids)


def tokenize_prompts(tokenizer: Any, prompts: Sequence[str]) -> TokenizedPrompts:
    """Prepare and tokenize; right-pad to 512 with `<pad>`. A prompt over 512 tokens raises."""
    import torch

    ids_per_prompt = [tokenizer(prepare_prompt(p), add_special_tokens=True).input_ids for p in prompts]
    for prompt, ids in zip(prompts, ids_per_prompt, strict=True):
        _check_fits(prompt, len(ids))
    slot_id = tokenizer.convert_tokens_to_ids(SPEAKER_SLOT)
    input_ids = torch.full((len(prompts), TEXT_LEN), tokenizer.pad_token_id, dtype=torch.int64)
    attention_mask = torch.zeros((len(prompts), TEXT_LEN), dtype=torch.int64)
    for row, ids in enumerate(ids_per_prompt):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.int64)
        attention_mask[row, : len(ids)] = 1
    return TokenizedPrompts(
        input_ids=input_ids,
        attention_mask=attention_mask,
        n_tokens=tuple(len(ids) for ids in ids_per_prompt),
        speaker_slot_positions=tuple(
            tuple(i for i, t in enumerate(ids) if t == slot_id) for ids in ids_per_prompt
        ),
    )


def _check_fits(prompt: str, n_tokens: int) -> None:
    if n_tokens > TEXT_LEN:
        raise ModelError(
            f"prompt is {n_tokens} umT5 tokens, {n_tokens - TEXT_LEN} over NAVA's {TEXT_LEN}-token limit: "
            f"{prompt[:60]!r}...",
            "shorten the scene description or give this window fewer speech spans",
        )


# --- encoding -------------------------------------------------------------------------------

def encode_prompts(encoder: TextEncoder, tokenizer: Any, prompts: Sequence[str]) -> list[EncodedPrompt]:
    """Encode a batch as NAVA does: full 512-long padded batch in, each prompt cropped out."""
    import torch

    if not prompts:
        return []
    batch = tokenize_prompts(tokenizer, prompts)
    device = next(encoder.parameters()).device
    with torch.no_grad():
        hidden = encoder(batch.input_ids.to(device), batch.attention_mask.to(device))  # [B, 512, D]
    return [
        EncodedPrompt(context=hidden[row, :n_tokens], speaker_slot_positions=slots)
        for row, (n_tokens, slots) in enumerate(zip(batch.n_tokens, batch.speaker_slot_positions, strict=True))
    ]


def load_text_encoder(path: str | Path, dtype: torch.dtype | None = None, device: str = "cpu") -> TextEncoder:
    """Build the umT5 encoder from a Wan-format state dict (`.pth` or `.safetensors`).

    The sizes come from the tensors' shapes, so the release file and the tiny test file load the
    same way. The model is built on the meta device and takes the file's tensors (no 2x RAM peak).
    """
    import torch

    from nava_dub.convert.umt5 import wan_to_hf_umt5, wan_umt5_sizes
    from nava_dub.model.text_encoder import TextEncoder, umt5_config

    dtype = torch.bfloat16 if dtype is None else dtype   # NAVA runs umT5 in bf16
    wan_state = _read_state_dict(Path(path))
    config = umt5_config(**wan_umt5_sizes(wan_state))
    hf_state = {k: v.to(dtype) for k, v in wan_to_hf_umt5(wan_state).items()}
    with torch.device("meta"):
        encoder = TextEncoder(config)
    load_strict(encoder.umt5, hf_state, what="the umT5 weights", path=path,
                hint="use Wan2.2's models_t5_umt5-xxl-enc-bf16.pth")
    return encoder.to(device).eval()


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise WeightsError(f"umT5 weight file {path} does not exist",
                           "download Wan2.2-TI2V-5B/models_t5_umt5-xxl-enc-bf16.pth into weights/")
    if path.suffix != ".safetensors":
        return read_pth_state_dict(path, "models_t5_umt5-xxl-enc-bf16.pth", "umT5 weights")
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as err:  # safetensors raises several kinds for a bad file
        raise WeightsError(f"cannot read umT5 weights {path}: {err}",
                           "re-download the file; it may be truncated") from err
