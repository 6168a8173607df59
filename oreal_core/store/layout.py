"""Key layout of the lake, and the run-id rule that keeps every key inside its root.

    <root>/runs/<run_id>/run.json                          run manifest (config hash, code version)
    <root>/runs/<run_id>/config.yaml                       the resolved config it started with
    <root>/runs/<run_id>/step=<n>/<table>.parquet          committed data
    <root>/runs/<run_id>/step=<n>/<table>.manifest.json    commit marker: written last
    <root>/_staging/<uuid>/...                             in-flight writes, never read

``step=<n>`` is a Hive partition (n is a plain decimal, no padding); ``step`` is not a
column inside the files (see schemas.py). A run id is one path segment of letters,
digits, ``.``, ``_`` and ``-`` that does not start with ``.`` or ``_``: it cannot contain
``/``, ``..`` or ``=`` and so cannot escape ``runs/`` or pose as a partition.
"""

from __future__ import annotations

import re

from oreal_core.store.errors import InvalidRunId, StoreError

RUNS_DIR = "runs"
STAGING_DIR = "_staging"
RUN_MANIFEST = "run.json"
RUN_CONFIG = "config.yaml"
DATA_SUFFIX = ".parquet"
MANIFEST_SUFFIX = ".manifest.json"

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_STEP_DIR = re.compile(r"step=(0|[1-9][0-9]*)")


def check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not _RUN_ID.fullmatch(run_id) or ".." in run_id:
        raise InvalidRunId(
            f"run id {run_id!r}: must be 1-128 characters of letters, digits, '.', '_' or '-', "
            "start with a letter or digit, and contain no '..'"
        )
    return run_id


def check_step(step: object) -> int:
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise StoreError(f"step {step!r}: must be a non-negative integer")
    return step


def run_dir(run_id: str) -> str:
    return f"{RUNS_DIR}/{check_run_id(run_id)}"


def step_dir(run_id: str, step: int) -> str:
    return f"{run_dir(run_id)}/step={check_step(step)}"


def data_key(run_id: str, step: int, table: str) -> str:
    return f"{step_dir(run_id, step)}/{table}{DATA_SUFFIX}"


def manifest_key(run_id: str, step: int, table: str) -> str:
    return f"{step_dir(run_id, step)}/{table}{MANIFEST_SUFFIX}"


def run_manifest_key(run_id: str) -> str:
    return f"{run_dir(run_id)}/{RUN_MANIFEST}"


def parse_manifest_key(relative: str) -> tuple[str, int, str] | None:
    """(run_id, step, table) of ``runs/<run>/step=<n>/<table>.manifest.json``, else None."""
    parts = relative.split("/")
    if len(parts) != 4 or parts[0] != RUNS_DIR or not parts[3].endswith(MANIFEST_SUFFIX):
        return None
    match = _STEP_DIR.fullmatch(parts[2])
    if match is None or not _RUN_ID.fullmatch(parts[1]):
        return None
    return parts[1], int(match.group(1)), parts[3][: -len(MANIFEST_SUFFIX)]
