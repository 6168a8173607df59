"""Versioned Parquet schemas of the rollout lake's tables (DESIGN.md §3).

One row per sample in ``samples``, ``verdicts``, ``scored`` and ``eval``; one row per
(step, metric name) in ``metrics``. Every table carries ``run_id`` as a column. ``step`` is
NOT stored in the files: it is the Hive partition key of the directory the file lives in
(``runs/<run_id>/step=<n>/<table>.parquet``), and readers (``Lake.read_stage``, the DuckDB
views) add it back. A partition key that is also a file column makes pyarrow refuse to
merge the two (ENVIRONMENT.md §5), so the key lives in exactly one place.

A table's version changes whenever a column is added, removed, renamed or retyped; an
artefact whose manifest names another version is refused by the reader rather than
silently misread. Column docs live in the field metadata so ``DESCRIBE`` tooling and
docs/lake.md can show them.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from oreal_core.store.errors import SchemaError


def _f(name: str, type_: pa.DataType, doc: str, nullable: bool = False) -> pa.Field:
    return pa.field(name, type_, nullable=nullable, metadata={"doc": doc})


_RUN = _f("run_id", pa.string(), "run identifier (also the run's directory name)")
_PROMPT = _f("prompt_id", pa.string(), "the problem's id within its dataset")
_IDX = _f("sample_idx", pa.int32(), "index of the sample among the K of its prompt")
_TOKENS = pa.list_(pa.int32())
_FLOATS = pa.list_(pa.float32())


@dataclass(frozen=True)
class TableSchema:
    """A lake table: its name (= the artefact file stem), version and Arrow schema."""

    name: str
    version: int
    schema: pa.Schema
    doc: str

    def columns(self) -> list[tuple[str, str, str]]:
        """(name, type, doc) of every column, for docs and error messages."""
        return [(f.name, str(f.type), (f.metadata or {}).get(b"doc", b"").decode()) for f in self.schema]


SAMPLES = TableSchema("samples", 1, pa.schema([
    _RUN, _PROMPT, _IDX,
    _f("policy_version", pa.int32(), "training step whose weights produced the sample"),
    _f("temperature", pa.float32(), "sampling temperature"),
    _f("top_p", pa.float32(), "nucleus sampling threshold"),
    _f("max_new_tokens", pa.int32(), "generation budget"),
    _f("seed", pa.int64(), "sampling seed of the rollout", nullable=True),
    _f("prompt", pa.string(), "the chat-templated prompt text the policy saw"),
    _f("gold_answer", pa.string(), "reference answer of the problem", nullable=True),
    _f("response", pa.string(), "decoded response text"),
    _f("prompt_token_ids", _TOKENS, "prompt tokens"),
    _f("token_ids", _TOKENS, "response tokens, including the generated stop token"),
    _f("logprobs", _FLOATS, "rollout engine log-prob of each response token"),
    _f("num_tokens", pa.int32(), "len(token_ids); kept as a scalar so length queries skip the list"),
    _f("finish_reason", pa.string(), "stop | length"),
    _f("gen_latency_s", pa.float32(), "wall time of the generate call that produced it", nullable=True),
]), "one row per sampled response (rollout stage)")

VERDICTS = TableSchema("verdicts", 1, pa.schema([
    _RUN, _PROMPT, _IDX,
    _f("outcome", pa.string(), "correct | incorrect | truncated | unparseable | judge_error"),
    _f("correct", pa.bool_(), "outcome == 'correct'"),
    _f("reward", pa.float32(), "the outcome reward fed to the advantages; null: not graded (judge error)",
       nullable=True),
    _f("source", pa.string(), "rule | judge: who decided the outcome"),
    _f("rule_outcome", pa.string(), "the rule check's outcome when the judge was consulted", nullable=True),
    _f("extracted_answer", pa.string(), "answer extracted from the response", nullable=True),
    _f("judge_reply", pa.string(), "raw judge reply text", nullable=True),
    _f("reason", pa.string(), "why the verdict is what it is"),
]), "one row per sample: the verifier's decision (verify stage)")

SCORED = TableSchema("scored", 1, pa.schema([
    _RUN, _PROMPT, _IDX,
    _f("reward", pa.float32(), "outcome reward (copied from verdicts); null: not graded", nullable=True),
    _f("advantage", pa.float32(), "group advantage over the group's graded samples, before filtering; "
       "null: not graded", nullable=True),
    _f("kept", pa.bool_(), "selected for training (Algorithm 1, line 5)"),
    _f("is_positive", pa.bool_(), "trained as a positive (behaviour cloning) sample"),
    _f("token_rm_scores", _FLOATS, "token-level RM score per response token (empty if not computed)"),
    _f("token_weights", _FLOATS, "token weight w+ or w- per response token (empty if not computed)"),
]), "one row per sample: advantage, selection and token-level RM weights (score stage)")

METRICS = TableSchema("metrics", 1, pa.schema([
    _RUN,
    _f("name", pa.string(), "metric name, e.g. loss/total, kl, entropy, accuracy, time/rollout_s"),
    _f("value", pa.float64(), "metric value"),
]), "one row per (step, metric): losses, KL, entropy, accuracy, lengths, stage timings")

EVAL = TableSchema("eval", 1, pa.schema([
    _RUN,
    _f("checkpoint", pa.string(), "checkpoint evaluated (path or name)"),
    _f("bench", pa.string(), "benchmark name, e.g. math500"),
    _f("problem_id", pa.string(), "problem id within the benchmark"),
    _f("sample_idx", pa.int32(), "index of the sample among the n drawn for pass@k"),
    _f("response", pa.string(), "decoded response text"),
    _f("num_tokens", pa.int32(), "response length in tokens"),
    _f("finish_reason", pa.string(), "stop | length"),
    _f("outcome", pa.string(), "correct | incorrect | truncated | unparseable | judge_error"),
    _f("extracted_answer", pa.string(), "answer extracted from the response", nullable=True),
    _f("reward", pa.float32(), "outcome reward; null: not graded (judge error)", nullable=True),
]), "one row per evaluation sample; step = the training step of the checkpoint")

TABLES: dict[str, TableSchema] = {t.name: t for t in (SAMPLES, VERDICTS, SCORED, METRICS, EVAL)}


def table_schema(name: str) -> TableSchema:
    try:
        return TABLES[name]
    except KeyError:
        raise SchemaError(f"unknown lake table {name!r}; known tables: {sorted(TABLES)}") from None


def conform(name: str, table: pa.Table) -> pa.Table:
    """Return ``table`` with exactly the columns of table ``name``, in order and type.

    Missing or unexpected columns are an error naming them; types are cast only when the
    cast is safe (an int64 column of token ids becomes int32, a float64 overflow fails).
    """
    spec = table_schema(name)
    have, want = set(table.column_names), set(spec.schema.names)
    if have != want:
        missing, extra = sorted(want - have), sorted(have - want)
        raise SchemaError(f"table {name!r} v{spec.version}: missing columns {missing}, unexpected columns {extra}")
    table = table.select(spec.schema.names)
    for field in spec.schema:
        if not field.nullable and table.column(field.name).null_count:
            raise SchemaError(f"table {name!r}: column {field.name!r} has nulls but is required")
    try:
        return table.cast(spec.schema, safe=True)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as exc:
        raise SchemaError(f"table {name!r} v{spec.version}: cannot cast to the lake schema: {exc}") from None
