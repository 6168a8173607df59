"""The `oreal` command line's argument types: each parses one value and refuses a bad one
with argparse's own one-line usage error, before any config, engine or server starts."""

from __future__ import annotations

import argparse
import math

from oreal_core.config.schema import shown
from oreal_core.store.errors import InvalidRunId
from oreal_core.store.layout import check_run_id


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be >= 1")
    return value


def non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"{value}: must be >= 0")
    return value


def finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{value}: must be a finite number")
    return value


def positive_float(text: str) -> float:
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value}: must be > 0")
    return value


def run_id_arg(text: str) -> str:
    """A run id the lake accepts, checked before anything starts ('' must not mean "a new run")."""
    try:
        return check_run_id(text)
    except InvalidRunId as exc:
        rule = str(exc).partition(": ")[2]  # the lake's rule, without its uncapped echo of the id
        raise argparse.ArgumentTypeError(f"run id {shown(text)}: {rule}") from None
