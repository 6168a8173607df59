"""A retraining cycle's identity, plan and records in the lake (DESIGN.md §10, docs/registry.md).

    <store>/retrain/<lineage>/cycles/<cycle_id>/plan.json       start model, incoming files, the run's settings
    <store>/retrain/<lineage>/cycles/<cycle_id>/prompts.jsonl   the cycle's prompts with pass rates
    <store>/retrain/<lineage>/cycles/<cycle_id>/prompts.json    their summary (the prompts stage's commit)
    <store>/retrain/<lineage>/cycles/<cycle_id>/gate.json       the paired comparison and the verdict
    <store>/retrain/<lineage>/cycles/<cycle_id>/decision.json   what the registry recorded: the cycle is over

A cycle id is ``<lineage>-c<NNNN>`` and is also the run id of the cycle's training run, so
its samples, metrics and eval records are in the lake under that run. Each record is
committed whole (Lake.put_document) as its stage's last act; a triggered cycle whose latest
cycle has no decision resumes it at the first stage without a record, under the same
config and overrides (refused otherwise), and a new cycle starts only after a decision.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

from oreal_core.registry.log import check_lineage
from oreal_core.store import Lake
from oreal_core.store.runlock import RunLock, acquire_lock

CYCLE_RECORDS = ("plan", "prompts", "gate", "decision")


class CycleMismatch(ValueError):
    """A re-triggered cycle under other settings than the unfinished one it would resume."""


@dataclass(frozen=True)
class CyclePlan:
    cycle_id: str
    lineage: str
    number: int
    config: str
    overrides: tuple[str, ...]  # the user's, before the cycle's own
    start_model_id: str  # the champion when the cycle started: what the challenger must beat
    start_checkpoint: str
    reference_checkpoint: str | None  # None: the start model (retrain.reference: start)
    incoming_uri: str
    incoming: tuple[dict, ...]  # IncomingFile fields of every file the cycle trains on
    started_at: str
    code_version: str
    new_incoming: tuple[str, ...] = field(default=())  # names no earlier cycle read

    def run_overrides(self, prompts_path: Path, eval_every: int, total_steps: int) -> list[str]:
        """The training run's settings: the user's, then the cycle's start model, reference and
        prompt file (balanced by the pass rates it carries), evaluated at its start and end."""
        own = [f"model.policy={self.start_checkpoint}",
               f"model.reference={json.dumps(self.reference_checkpoint)}",
               f"data.prompts={prompts_path}", "data.balance_by_pass_rate=true"]
        if eval_every == 0:  # the gate needs the start and end evaluations the run makes
            own.append(f"run.eval_every={total_steps}")
        return [*self.overrides, *own]


def cycle_id_for(lineage: str, number: int) -> str:
    return f"{check_lineage(lineage)}-c{number:04d}"


class CycleRecords:
    """The records of a lineage's cycles in one lake."""

    def __init__(self, lake: Lake, lineage: str) -> None:
        self.lake, self.lineage = lake, check_lineage(lineage)

    def key(self, cycle_id: str, name: str) -> str:
        return f"retrain/{self.lineage}/cycles/{cycle_id}/{name}"

    def cycles(self) -> list[str]:
        """Cycle ids with a committed plan, oldest first."""
        prefix = f"retrain/{self.lineage}/cycles"
        ids = {k.split("/")[3] for k in self.lake.list_documents(prefix) if k.endswith("/plan.json")}
        return sorted(ids, key=lambda c: int(c.rsplit("-c", 1)[1]))

    def read(self, cycle_id: str, record: str) -> dict | None:
        raw = self.lake.get_document(self.key(cycle_id, f"{record}.json"))
        return None if raw is None else json.loads(raw)

    def write(self, cycle_id: str, record: str, doc: dict) -> str:
        return self.lake.put_document(self.key(cycle_id, f"{record}.json"),
                                      json.dumps(doc, indent=2, sort_keys=True).encode())

    def plan(self, cycle_id: str) -> CyclePlan:
        doc = self.read(cycle_id, "plan")
        if doc is None:
            raise KeyError(f"no plan for cycle {cycle_id}")
        return CyclePlan(**{**doc, "overrides": tuple(doc["overrides"]), "incoming": tuple(doc["incoming"]),
                            "new_incoming": tuple(doc["new_incoming"])})

    def write_plan(self, plan: CyclePlan) -> None:
        self.write(plan.cycle_id, "plan", asdict(plan))

    def unfinished(self) -> CyclePlan | None:
        """The latest cycle if it has no decision yet (a killed or failed one), else None."""
        ids = self.cycles()
        if not ids or self.read(ids[-1], "decision") is not None:
            return None
        return self.plan(ids[-1])

    def next_number(self) -> int:
        ids = self.cycles()
        return int(ids[-1].rsplit("-c", 1)[1]) + 1 if ids else 1

    def files_seen(self) -> set[str]:
        """Incoming file hashes read by earlier cycles."""
        return {f["sha256"] for c in self.cycles() for f in self.plan(c).incoming}


def resumable(plan: CyclePlan, config: str, overrides: tuple[str, ...]) -> CyclePlan:
    """The unfinished cycle, if it was started with these settings; refused otherwise (its run
    would refuse them anyway, after the prompts stage)."""
    if (plan.config, plan.overrides) != (config, overrides):
        raise CycleMismatch(
            f"cycle {plan.cycle_id} of lineage {plan.lineage} is unfinished and was started with --config "
            f"{plan.config} {' '.join(f'--set {o}' for o in plan.overrides)}; re-run it with those settings to "
            "finish it (its committed stages are kept), then start the next cycle with the new ones")
    return plan


def lineage_lock(lake: Lake, lineage: str, checkpoint_dir: str) -> RunLock:
    """One cycle per lineage at a time: a lock beside the lineage's records on a local lake, in
    the checkpoint folder for S3 (no locks in object storage: per machine only)."""
    if lake.location.is_s3:
        path = Path(checkpoint_dir) / "retrain" / f"{lineage}.lock"
    else:
        path = Path(lake.location.path(f"retrain/{check_lineage(lineage)}")) / "cycle.lock"
    return acquire_lock(path, f"lineage {lineage} already has a retraining cycle running (one at a time per "
                              "lineage; another lineage may run)")
