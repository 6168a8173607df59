"""Thin Prefect tasks, one per stage of a retraining cycle (oreal_core/retrain/stages.py).

Each stage finds its record in the lake and returns it, or does its work and commits it, so
Prefect's result cache has no say in what is done. The training stage is not a task: it is
the ``oreal-train`` flow, run as a subflow under the cycle's run id.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from oreal_core.retrain.cycle import CyclePlan
from oreal_core.retrain.stages import Cycle, cycle_decision, cycle_gate, cycle_prompts, plan_cycle


@task(name="plan-cycle", cache_policy=NO_CACHE)
def plan_task(config: str, overrides: tuple[str, ...], lineage: str) -> CyclePlan:
    return plan_cycle(config, overrides, lineage)


@task(name="rate-prompts", cache_policy=NO_CACHE)
def prompts_task(plan: CyclePlan) -> str:
    return str(cycle_prompts(Cycle(plan)))


@task(name="gate", cache_policy=NO_CACHE)
def gate_task(plan: CyclePlan) -> dict:
    return cycle_gate(Cycle(plan))


@task(name="decide", cache_policy=NO_CACHE)
def decide_task(plan: CyclePlan, gate_doc: dict) -> dict:
    return cycle_decision(Cycle(plan), gate_doc)
