"""Stage records -> Arrow tables in the lake's schemas (one row per sample).

The rollout, verify, score, train and eval stages hand each other frozen dataclasses
(oreal_core.types); these functions turn them into the tables ``Lake.write`` commits.
Per-token values (token ids, log-probs, token-RM scores and weights) stay list columns.
Columns are built with one ``pa.array`` per column, which is what keeps a 1,024 x 512-token
step well under a second (benchmarks/lake.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa

from oreal_core.store.errors import SchemaError
from oreal_core.store.schemas import table_schema
from oreal_core.types import Prompt, Sample, ScoredBatch, StepMetrics, Verdict


@dataclass(frozen=True)
class SamplingParams:
    """How a batch of samples was drawn (the rollout or eval section of the config)."""

    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int | None = None

    @classmethod
    def of(cls, section: object) -> SamplingParams:
        """From a RolloutConfig or EvalConfig (anything with these attributes)."""
        return cls(temperature=section.temperature, top_p=section.top_p,
                   max_new_tokens=section.max_new_tokens, seed=getattr(section, "seed", None))


@dataclass(frozen=True)
class ScoredRow:
    """The score stage's decision on one sample (all K, kept or not)."""

    prompt_id: str
    sample_idx: int
    reward: float | None  # None: nobody graded it (a judge error), so it has no advantage either
    advantage: float | None
    kept: bool
    is_positive: bool
    token_rm_scores: tuple[float, ...] = ()
    token_weights: tuple[float, ...] = ()


@dataclass(frozen=True)
class EvalRecord:
    """One evaluation sample; written by the evaluation stage as table ``eval``."""

    checkpoint: str
    bench: str
    problem_id: str
    sample_idx: int
    response: str
    num_tokens: int
    finish_reason: str
    outcome: str
    extracted_answer: str | None
    reward: float


Record = StepMetrics | ScoredRow | EvalRecord


def _table(name: str, run_id: str, n: int, columns: dict[str, list]) -> pa.Table:
    schema = table_schema(name).schema
    arrays = {"run_id": pa.array([run_id] * n, pa.string())}
    for field in schema:
        if field.name != "run_id":
            arrays[field.name] = pa.array(columns[field.name], field.type)
    return pa.table(arrays, schema=schema)


def samples_table(run_id: str, samples: Sequence[Sample], prompts: Mapping[str, Prompt],
                  sampling: SamplingParams, gen_latency_s: Sequence[float] | None = None) -> pa.Table:
    missing = sorted({s.prompt_id for s in samples} - set(prompts))
    if missing:
        raise SchemaError(f"samples refer to prompts not given: {missing[:5]}")
    if gen_latency_s is not None and len(gen_latency_s) != len(samples):
        raise SchemaError(f"{len(gen_latency_s)} latencies for {len(samples)} samples")
    for s in samples:
        if len(s.token_ids) != len(s.logprobs):
            raise SchemaError(f"sample {s.prompt_id}/{s.sample_idx}: {len(s.token_ids)} tokens "
                              f"but {len(s.logprobs)} logprobs")
    n = len(samples)
    return _table("samples", run_id, n, {
        "prompt_id": [s.prompt_id for s in samples],
        "sample_idx": [s.sample_idx for s in samples],
        "policy_version": [s.policy_version for s in samples],
        "temperature": [sampling.temperature] * n,
        "top_p": [sampling.top_p] * n,
        "max_new_tokens": [sampling.max_new_tokens] * n,
        "seed": [sampling.seed] * n,
        "prompt": [prompts[s.prompt_id].text for s in samples],
        "gold_answer": [prompts[s.prompt_id].gold_answer for s in samples],
        "response": [s.response for s in samples],
        "prompt_token_ids": [s.prompt_token_ids for s in samples],
        "token_ids": [s.token_ids for s in samples],
        "logprobs": [s.logprobs for s in samples],
        "num_tokens": [len(s.token_ids) for s in samples],
        "finish_reason": [str(s.finish_reason) for s in samples],
        "gen_latency_s": list(gen_latency_s) if gen_latency_s is not None else [None] * n,
    })


def verdicts_table(run_id: str, samples: Sequence[Sample], verdicts: Sequence[Verdict]) -> pa.Table:
    """``verdicts[i]`` is the verdict on ``samples[i]``."""
    if len(samples) != len(verdicts):
        raise SchemaError(f"{len(verdicts)} verdicts for {len(samples)} samples")
    return _table("verdicts", run_id, len(samples), {
        "prompt_id": [s.prompt_id for s in samples],
        "sample_idx": [s.sample_idx for s in samples],
        "outcome": [str(v.outcome) for v in verdicts],
        "correct": [v.correct for v in verdicts],
        "reward": [v.reward for v in verdicts],
        "source": [str(v.source) for v in verdicts],
        "rule_outcome": [None if v.rule_outcome is None else str(v.rule_outcome) for v in verdicts],
        "extracted_answer": [v.extracted_answer for v in verdicts],
        "judge_reply": [v.judge_reply for v in verdicts],
        "reason": [v.reason for v in verdicts],
    })


def scored_rows(samples: Sequence[Sample], rewards: Sequence[float], advantages: Sequence[float],
                batch: ScoredBatch) -> list[ScoredRow]:
    """Rows for all samples of a step: kept/polarity from the batch the selection produced."""
    if not len(samples) == len(rewards) == len(advantages):
        raise SchemaError(f"{len(samples)} samples, {len(rewards)} rewards, {len(advantages)} advantages")
    polarity = {(s.prompt_id, s.sample_idx): s.is_positive for s in batch.samples}
    return [ScoredRow(prompt_id=s.prompt_id, sample_idx=s.sample_idx, reward=r, advantage=a,
                      kept=(s.prompt_id, s.sample_idx) in polarity,
                      is_positive=polarity.get((s.prompt_id, s.sample_idx), False))
            for s, r, a in zip(samples, rewards, advantages, strict=True)]


def scored_table(run_id: str, rows: Sequence[ScoredRow]) -> pa.Table:
    return _table("scored", run_id, len(rows), {
        "prompt_id": [r.prompt_id for r in rows],
        "sample_idx": [r.sample_idx for r in rows],
        "reward": [r.reward for r in rows],
        "advantage": [r.advantage for r in rows],
        "kept": [r.kept for r in rows],
        "is_positive": [r.is_positive for r in rows],
        "token_rm_scores": [r.token_rm_scores for r in rows],
        "token_weights": [r.token_weights for r in rows],
    })


def metrics_table(run_id: str, metrics: Sequence[StepMetrics]) -> pa.Table:
    """Long format: one row per metric. The step goes in the artefact's partition."""
    steps = {m.step for m in metrics}
    if len(steps) > 1:
        raise SchemaError(f"metrics of several steps {sorted(steps)} in one artefact; write one per step")
    pairs = [pair for m in metrics for pair in m.values]
    return _table("metrics", run_id, len(pairs), {"name": [k for k, _ in pairs], "value": [v for _, v in pairs]})


def eval_table(run_id: str, records: Sequence[EvalRecord]) -> pa.Table:
    names = [f for f in table_schema("eval").schema.names if f != "run_id"]
    return _table("eval", run_id, len(records), {n: [getattr(r, n) for r in records] for n in names})


def records_table(table: str, run_id: str, records: Sequence[Record]) -> pa.Table:
    """Convert a list of self-contained records (those that need no prompt/sample context)."""
    converters = {"metrics": (StepMetrics, metrics_table), "scored": (ScoredRow, scored_table),
                  "eval": (EvalRecord, eval_table)}
    if table not in converters:
        raise SchemaError(f"table {table!r} needs context to build: use {table}_table(...) and pass the table")
    kind, convert = converters[table]
    wrong = [type(r).__name__ for r in records if not isinstance(r, kind)]
    if wrong:
        raise SchemaError(f"table {table!r} takes {kind.__name__} records, got {sorted(set(wrong))}")
    return convert(run_id, records)
