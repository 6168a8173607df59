"""What one training step hands back, and how it fails."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from enum import StrEnum
from pathlib import Path

from oreal_core.types import StepMetrics


class StepStatus(StrEnum):
    TRAINED = "trained"  # optimiser step(s) taken (the RM only, while the actor is frozen)
    SKIPPED = "skipped"  # nothing to train on (no prompt with 0 < p < 1): recorded, not an error
    REFUSED = "refused"  # a loss term was non-finite: no weight changed


@dataclass(frozen=True)
class TokenRMRecord:
    """Token-RM scores and importance weights of one kept sample, for the lake (lists:
    they become Parquet list columns). Computed by the RM *before* this step's update."""

    prompt_id: str
    sample_idx: int
    scores: list[float]
    weights: list[float]


@dataclass(frozen=True)
class TrainStepResult:
    step: int
    status: StepStatus
    actor_updated: bool
    metrics: StepMetrics
    token_rm: tuple[TokenRMRecord, ...] = ()
    reason: str = ""  # why a step was skipped or refused (names the bad term)
    bad_term: str | None = None
    hf_checkpoint: str | None = None  # actor weights the rollout engine loads next
    state_checkpoint: str | None = None  # full state, every run.checkpoint_every steps


class MicroBatchOutOfMemoryError(RuntimeError):
    """A micro-batch did not fit in memory; the message names its size and the knob to turn."""


class CheckpointMismatchError(RuntimeError):
    """A checkpoint was written by a different config or start model; resuming would mix runs."""


def write_result(root: Path, result: TrainStepResult) -> Path:
    """``<root>/results/step=N.json``, written whole (temp file, then rename)."""
    out = root / "results" / f"step={result.step:06d}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    record = asdict(result)
    record["metrics"] = result.metrics.as_dict()
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(json.dumps(record))
    tmp.replace(out)
    return out


def read_result(path: Path) -> TrainStepResult:
    record = json.loads(Path(path).read_text())
    return TrainStepResult(
        step=record["step"], status=StepStatus(record["status"]), actor_updated=record["actor_updated"],
        metrics=StepMetrics.of(record["step"], record["metrics"]),
        token_rm=tuple(TokenRMRecord(**r) for r in record["token_rm"]), reason=record["reason"],
        bad_term=record["bad_term"], hf_checkpoint=record["hf_checkpoint"],
        state_checkpoint=record["state_checkpoint"])
