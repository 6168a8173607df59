"""The stages of a retraining cycle, without Prefect (flows/retrain.py runs them as tasks).

    plan     the start model (the lineage's champion; the config's policy, registered and
             promoted as the lineage's base, for the first cycle) and the incoming files
    prompts  the config's and the incoming prompts, pass rates under the start model
    train    a normal run from the start model on those prompts (flows/train.py), which
             evaluates the start model at step 0 and the challenger after its last step
    gate     the paired comparison of the two on the same problems (gate.py)
    decide   the challenger registered (parent: the start model) and promoted or rejected

Every stage ends by committing its record (cycle.py) and begins by reading it, so a
re-triggered cycle skips what is done. The registry is read before each decision, so a
cycle killed after its decision was committed but before its record never decides twice.
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path

from oreal_core.config import OrealConfig, load_config
from oreal_core.data.records import PromptDataError
from oreal_core.models.sft import start_policy_dir
from oreal_core.registry.decisions import Provenance
from oreal_core.registry.evals import eval_results
from oreal_core.registry.fold import ModelState
from oreal_core.registry.registry import Registry
from oreal_core.retrain.cycle import CyclePlan, CycleRecords, cycle_id_for, resumable
from oreal_core.retrain.gate import evaluated_scores, gate
from oreal_core.retrain.incoming import read_incoming
from oreal_core.retrain.prompt_set import rate_prompts
from oreal_core.store import Lake
from oreal_core.store.manifest import code_version, utc_now
from oreal_core.train.checkpoint import CheckpointLayout

log = logging.getLogger(__name__)

BY = "retrain"  # decided_by of the cycle's registry decisions


class Cycle:
    """One cycle's handles: the user's config, the lake, its records, the registry."""

    def __init__(self, plan: CyclePlan) -> None:
        self.plan = plan
        self.cfg = load_config(plan.config, plan.overrides)
        self.lake = Lake.open(self.cfg.store)
        self.records = CycleRecords(self.lake, plan.lineage)
        self.registry = Registry(self.lake.location)

    @property
    def prompts_path(self) -> Path:
        """The run's data.prompts: local, as the prompt readers need (a copy is in the lake)."""
        return Path(self.cfg.train.checkpoint_dir) / "retrain" / self.plan.cycle_id / "prompts.jsonl"

    def run_overrides(self) -> list[str]:
        return self.plan.run_overrides(self.prompts_path, self.cfg.run.eval_every, self.cfg.run.total_steps)

    def run_config(self) -> OrealConfig:
        return load_config(self.plan.config, self.run_overrides())

    def challenger_checkpoint(self) -> tuple[int, Path]:
        """The run's last step and its HF checkpoint (what its last evaluation evaluated)."""
        last = self.cfg.run.total_steps - 1
        return last, CheckpointLayout(Path(self.cfg.train.checkpoint_dir) / self.plan.cycle_id).hf_dir(last)


def plan_cycle(config: str, overrides: tuple[str, ...], lineage: str) -> CyclePlan:
    """The lineage's unfinished cycle (same settings), or a new one from its champion."""
    cfg = load_config(config, overrides)
    lake = Lake.open(cfg.store)
    records = CycleRecords(lake, lineage)
    pending = records.unfinished()
    if pending is not None:
        log.info("lineage %s: resuming cycle %s", lineage, pending.cycle_id)
        return resumable(pending, config, overrides)
    incoming = read_incoming(cfg, lineage)  # a malformed file is refused before the registry is touched
    registry = Registry(lake.location)
    champion = registry.champion(lineage) or _base_model(cfg, registry, lineage, config)
    base = registry.state(lineage).models[0]
    seen = records.files_seen()
    number = records.next_number()
    plan = CyclePlan(
        cycle_id=cycle_id_for(lineage, number), lineage=lineage, number=number, config=config, overrides=overrides,
        start_model_id=champion.model_id, start_checkpoint=champion.provenance.checkpoint_uri,
        reference_checkpoint=base.provenance.checkpoint_uri if cfg.retrain.reference == "base" else None,
        incoming_uri=incoming.uri, incoming=tuple(asdict(f) for f in incoming.files), started_at=utc_now(),
        code_version=code_version(), new_incoming=tuple(f.name for f in incoming.files if f.sha256 not in seen))
    records.write_plan(plan)
    return plan


def _base_model(cfg: OrealConfig, registry: Registry, lineage: str, config: str) -> ModelState:
    """A lineage's first cycle starts from the config's policy: registered and promoted as the
    lineage's base, so the first challenger has a champion to beat and a rollback has a floor."""
    uri = start_policy_dir(cfg).expanduser().resolve().as_posix()
    state = registry.state(lineage)
    base = next((m for m in state.models if m.provenance.checkpoint_uri == uri and m.status == "candidate"), None)
    if base is None:  # not already registered by a cycle killed before its promote
        base = registry.register(lineage, Provenance(checkpoint_uri=uri), reason=f"model.policy of config {config}",
                                 by=BY)
    registry.promote(base.model_id, f"lineage base: the policy of config {config}, before any retraining", by=BY)
    return registry.model(base.model_id)


def cycle_prompts(cycle: Cycle) -> Path:
    """Rate the cycle's prompts under the start model (once), return the run's prompt file."""
    plan, path = cycle.plan, cycle.prompts_path
    lake_copy = cycle.records.key(plan.cycle_id, "prompts.jsonl")
    if cycle.records.read(plan.cycle_id, "prompts") is not None:
        if not path.is_file():  # another machine, or a cleaned checkpoint folder: the lake has it
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(cycle.lake.get_document(lake_copy) or b"")
        return path
    incoming = read_incoming(cycle.cfg, plan.lineage)
    planned = {f["sha256"] for f in plan.incoming}
    changed = planned - {f.sha256 for f in incoming.files}
    if changed:
        raise PromptDataError(f"cycle {plan.cycle_id}: {len(changed)} incoming file(s) it was planned with are gone "
                              f"or changed in {plan.incoming_uri}; restore them (names in its plan.json)")
    planned_uris = {f.uri for f in incoming.files if f.sha256 in planned}  # a file that landed since waits
    records = [r for r in incoming.records if r.source.rpartition(":")[0] in planned_uris]
    summary = rate_prompts(cycle.cfg, plan.start_checkpoint, records, plan.number, path)
    cycle.lake.put_document(lake_copy, path.read_bytes())
    cycle.records.write(plan.cycle_id, "prompts", {**summary.as_dict(), "file": str(path),
                                                   "lake_copy": lake_copy})
    log.info("cycle %s: %d prompts rated (%d incoming), %d trainable", plan.cycle_id,
             summary.config_prompts + summary.incoming_prompts, summary.incoming_prompts, summary.trainable)
    return path


def cycle_gate(cycle: Cycle) -> dict:
    """Champion and challenger per problem, compared; the record is the gate's verdict."""
    plan = cycle.plan
    done = cycle.records.read(plan.cycle_id, "gate")
    if done is not None:
        return done
    run_cfg = cycle.run_config()
    last, checkpoint = cycle.challenger_checkpoint()
    champion = evaluated_scores(run_cfg, cycle.lake, plan.cycle_id, 0, plan.start_checkpoint)
    challenger = evaluated_scores(run_cfg, cycle.lake, plan.cycle_id, last, str(checkpoint))
    comparisons, decision = gate(run_cfg, champion, challenger)
    doc = {"champion": plan.start_model_id, "champion_checkpoint": plan.start_checkpoint,
           "challenger_checkpoint": str(checkpoint), "step": last, "promote": decision.promote,
           "reason": decision.reason, "comparisons": {b: asdict(c) for b, c in comparisons.items()}}
    cycle.records.write(plan.cycle_id, "gate", doc)
    return doc


def cycle_decision(cycle: Cycle, gate_doc: dict) -> dict:
    """Register the challenger and promote or reject it, each at most once."""
    plan, registry = cycle.plan, cycle.registry
    done = cycle.records.read(plan.cycle_id, "decision")
    if done is not None:
        return done
    challenger = _challenger(cycle)
    if challenger.status == "candidate":
        state = registry.state(plan.lineage)
        evidence = json.dumps(gate_doc, sort_keys=True)
        if state.champion != plan.start_model_id:  # promoted or rolled back by hand meanwhile
            registry.reject(challenger.model_id, f"reject: the champion changed during cycle {plan.cycle_id} "
                            f"({plan.start_model_id} -> {state.champion}) and the gate compared against "
                            f"{plan.start_model_id}", by=BY, evidence=evidence, based_on=state)
        elif gate_doc["promote"]:
            registry.promote(challenger.model_id, gate_doc["reason"], by=BY, evidence=evidence, based_on=state)
        else:
            registry.reject(challenger.model_id, gate_doc["reason"], by=BY, evidence=evidence, based_on=state)
    decided = next(d for d in reversed(registry.decisions(plan.lineage))
                   if d.model_id == challenger.model_id and d.action in ("promote", "reject"))
    doc = {"cycle_id": plan.cycle_id, "lineage": plan.lineage, "challenger": challenger.model_id,
           "champion_before": plan.start_model_id, "verdict": "promoted" if decided.action == "promote" else "rejected",
           "reason": decided.reason, "decision_seq": decided.seq, "decided_at": decided.decided_at,
           "champion": registry.state(plan.lineage).champion}
    return doc


def _challenger(cycle: Cycle) -> ModelState:
    plan = cycle.plan
    registered = next((m for m in cycle.registry.state(plan.lineage).models if m.provenance.run_id == plan.cycle_id),
                      None)
    if registered is not None:
        return registered
    last, checkpoint = cycle.challenger_checkpoint()
    run = cycle.lake.run(plan.cycle_id)
    provenance = Provenance(checkpoint_uri=checkpoint.expanduser().resolve().as_posix(),
                            parent_model_id=plan.start_model_id, run_id=plan.cycle_id, step=last,
                            config_hash=run.config_hash, prompts_hash=run.prompts_hash, code_revision=run.code_version)
    evals = eval_results(cycle.lake, plan.cycle_id, last, str(checkpoint))
    return cycle.registry.register(plan.lineage, provenance, evals, reason=f"challenger of cycle {plan.cycle_id}",
                                   by=BY)


def finish(cycle: Cycle, decision: dict) -> None:
    """The cycle's last record: after it, the next trigger starts a new cycle."""
    cycle.records.write(cycle.plan.cycle_id, "decision", decision)


def failed_decision(cycle: Cycle, why: str) -> dict:
    """A cycle whose run was stopped by a health alarm: no challenger, the champion stays."""
    plan = cycle.plan
    return {"cycle_id": plan.cycle_id, "lineage": plan.lineage, "challenger": None, "verdict": "failed",
            "champion_before": plan.start_model_id, "reason": why,
            "champion": cycle.registry.state(plan.lineage).champion}
