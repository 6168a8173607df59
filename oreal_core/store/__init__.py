"""The rollout lake: versioned Parquet tables per run and step, in a local folder or on S3,
committed atomically and queryable with DuckDB (docs/lake.md)."""

from oreal_core.store.errors import (
    ArtefactExists,
    ArtefactNotFound,
    ChecksumMismatch,
    CodeVersionMismatch,
    ConfigMismatch,
    InvalidRunId,
    PromptsMismatch,
    QueryRefused,
    RunLocked,
    RunNotFound,
    SchemaError,
    StorageUnavailable,
    StoreError,
)
from oreal_core.store.lake import Lake
from oreal_core.store.records import (
    EvalRecord,
    SamplingParams,
    ScoredRow,
    eval_table,
    metrics_table,
    samples_table,
    scored_rows,
    scored_table,
    verdicts_table,
)
from oreal_core.store.schemas import TABLES

__all__ = [
    "TABLES", "ArtefactExists", "ArtefactNotFound", "ChecksumMismatch", "CodeVersionMismatch", "ConfigMismatch", "EvalRecord",
    "InvalidRunId", "Lake", "PromptsMismatch", "QueryRefused", "RunLocked", "RunNotFound", "SamplingParams", "SchemaError", "ScoredRow",
    "StorageUnavailable", "StoreError", "eval_table", "metrics_table", "samples_table", "scored_rows",
    "scored_table", "verdicts_table",
]
