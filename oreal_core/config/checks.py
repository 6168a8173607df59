"""How a configuration value is refused: :class:`ConfigError` naming the field and its value."""

from __future__ import annotations

import reprlib
from typing import Any


class ConfigError(ValueError):
    """A configuration value is unknown, mistyped or out of range."""


SHOWN_CHARS = 100  # an echoed value is cut to this: a huge override must not become a huge message
_SHOWN = reprlib.Repr()  # reprlib never builds the full repr of a huge value first
_SHOWN.maxstring = _SHOWN.maxother = SHOWN_CHARS
_SHOWN.maxlist = _SHOWN.maxtuple = _SHOWN.maxdict = 8


def shown(value: Any) -> str:
    """``repr(value)`` for an error message, at most about SHOWN_CHARS characters."""
    text = _SHOWN.repr(value)
    return text if len(text) <= SHOWN_CHARS else f"{text[:SHOWN_CHARS]}..."


SEED_LIMIT = 2**32  # numpy and vLLM take seeds in [0, 2**32)


def _check(ok: bool, name: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={shown(value)}: {why}")
