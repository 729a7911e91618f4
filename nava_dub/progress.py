"""How long work reports progress without knowing who shows it (the CLI draws rich bars)."""

from __future__ import annotations

from collections.abc import Callable

# report(stage, done, total): a stage starts with done=0; total None means "unknown length".
ProgressFn = Callable[[str, int, "int | None"], None]


def silent(stage: str, done: int, total: int | None) -> None:
    """The default: report nothing."""
