"""One registry decision: a row of the ``model_decisions`` log (DESIGN.md §10).

The log is the registry's truth; the ``models`` table is a fold over it (fold.py). A
decision is one of:

| action   | model_id            | displaced                 | effect |
|----------|---------------------|---------------------------|--------|
| register | the new model       | -                         | the model exists, as a candidate |
| promote  | the new champion    | the champion it replaces  | champion; the displaced one retired |
| reject   | a candidate         | -                         | rejected (the champion stays) |
| rollback | the champion before | the champion rolled back  | champion again; the displaced one retired |

A register row carries the model's provenance and evaluation results; every row carries
its reason, time and author, and ``evidence`` (JSON text: the gate's comparison, when a gate
decided). ``seq`` numbers a lineage's decisions 1, 2, ...; ``follows`` is the decision it
was made on (seq - 1), the compare-and-set of log.py.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal

import pyarrow as pa

Action = Literal["register", "promote", "reject", "rollback"]
ACTIONS: tuple[str, ...] = ("register", "promote", "reject", "rollback")
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class EvalResult:
    """One benchmark's pass@1 of a model, and where its per-problem records are (the lake's
    ``eval`` table at run ``eval_run_id``, step ``eval_step``, rows of ``eval_checkpoint``)."""

    bench: str
    pass1: float
    pass1_low: float  # 95 % percentile-bootstrap interval over problems
    pass1_high: float
    problems: int
    samples_per_problem: int
    eval_run_id: str
    eval_step: int
    eval_checkpoint: str


@dataclass(frozen=True)
class Provenance:
    """Where a registered model came from."""

    checkpoint_uri: str  # HF-format model folder (local path or s3://)
    parent_model_id: str | None = None  # the champion it was trained from; None: a lineage's first model
    run_id: str | None = None
    step: int | None = None
    config_hash: str | None = None
    prompts_hash: str | None = None
    code_revision: str | None = None


@dataclass(frozen=True)
class Decision:
    lineage: str
    seq: int
    follows: int  # seq of the decision this one was made on (0: the lineage's first)
    action: Action
    model_id: str
    reason: str
    decided_at: str  # UTC, ISO 8601
    decided_by: str  # "cli", "gate", ...: who asked
    displaced: str | None = None
    provenance: Provenance | None = None  # register only
    evals: tuple[EvalResult, ...] = ()  # register only
    evidence: str | None = None  # JSON text


def _field(name: str, type_: pa.DataType, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable)


_EVAL_TYPE = pa.struct([
    _field("bench", pa.string()), _field("pass1", pa.float64()), _field("pass1_low", pa.float64()),
    _field("pass1_high", pa.float64()), _field("problems", pa.int64()), _field("samples_per_problem", pa.int64()),
    _field("eval_run_id", pa.string()), _field("eval_step", pa.int64()), _field("eval_checkpoint", pa.string()),
])
_PROVENANCE = [
    _field("checkpoint_uri", pa.string(), True), _field("parent_model_id", pa.string(), True),
    _field("run_id", pa.string(), True), _field("step", pa.int64(), True), _field("config_hash", pa.string(), True),
    _field("prompts_hash", pa.string(), True), _field("code_revision", pa.string(), True),
]
SCHEMA = pa.schema([
    _field("lineage", pa.string()), _field("seq", pa.int64()), _field("follows", pa.int64()),
    _field("action", pa.string()), _field("model_id", pa.string()), _field("reason", pa.string()),
    _field("decided_at", pa.string()), _field("decided_by", pa.string()), _field("displaced", pa.string(), True),
    *_PROVENANCE,
    _field("evals", pa.list_(_EVAL_TYPE)), _field("evidence", pa.string(), True),
])
PROVENANCE_COLUMNS = tuple(f.name for f in _PROVENANCE)
EVALS_TYPE = pa.list_(_EVAL_TYPE)


def to_row(decision: Decision) -> dict:
    row = {f.name: getattr(decision, f.name) for f in dataclasses.fields(Decision)
           if f.name not in ("provenance", "evals")}
    provenance = dataclasses.asdict(decision.provenance) if decision.provenance else {}
    row.update({name: provenance.get(name) for name in PROVENANCE_COLUMNS})
    row["evals"] = [dataclasses.asdict(e) for e in decision.evals]
    return row


def to_table(decisions: list[Decision]) -> pa.Table:
    return pa.Table.from_pylist([to_row(d) for d in decisions], schema=SCHEMA)


def from_row(row: dict) -> Decision:
    provenance = None
    if row["action"] == "register":
        provenance = Provenance(**{name: row[name] for name in PROVENANCE_COLUMNS})
    plain = {f.name: row[f.name] for f in dataclasses.fields(Decision) if f.name not in ("provenance", "evals")}
    return Decision(**plain, provenance=provenance, evals=tuple(EvalResult(**e) for e in row["evals"] or ()))
