"""Pure key conversions from the official checkpoint formats to the modules nava-dub builds."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TypeVar

from nava_dub.errors import WeightsError

T = TypeVar("T")

_N_SHOWN = 5


def raise_if_unknown(keys: list[str], source: str, hint: str) -> None:
    """A WeightsError naming the first few (sorted) of `keys` that are not `source` keys; nothing if none."""
    if keys:
        shown = ", ".join(sorted(keys)[:_N_SHOWN]) + (f" (+{len(keys) - _N_SHOWN} more)" if len(keys) > _N_SHOWN else "")
        raise WeightsError(f"{len(keys)} key(s) are not {source} keys: {shown}", hint)


def rename_all(state: Mapping[str, T], rename_key: Callable[[str], str | None], source: str,
               hint: str) -> dict[str, T]:
    """Every key of `state` renamed by `rename_key`; a key it returns None for is an error (all named at once)."""
    out: dict[str, T] = {}
    unknown: list[str] = []
    for key, tensor in state.items():
        new = rename_key(key)
        if new is None:
            unknown.append(key)
        else:
            out[new] = tensor
    raise_if_unknown(unknown, source, hint)
    return out
