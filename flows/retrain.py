"""The retraining cycle as a Prefect flow: a model that only gets replaced by a better one.

    plan -> rate-prompts -> oreal-train (subflow) -> gate -> decide

(oreal_core/retrain/stages.py says what each stage does, docs/retrain.md how to run it.) The
decision is recorded in the registry, shown as a markdown artifact (both models per
benchmark: pass@1, paired gain with its interval, McNemar p, verdict) and emitted as the
Prefect event ``oreal.model.promoted`` or ``oreal.model.rejected`` (``oreal.retrain.failed``
when the run was stopped by a health alarm) with resource ``oreal.lineage.<lineage>``, for
automations. One cycle per lineage runs at a time (a lock; a second is refused at once),
and a re-triggered cycle resumes at its first unfinished stage.
"""

from __future__ import annotations

import shlex

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from flows.stop import RunStopper
from flows.train import prefect_api_url, train
from oreal_core.alarms import HealthAlarmError
from oreal_core.config import load_config
from oreal_core.pipeline import position
from oreal_core.retrain.cycle import lineage_lock
from oreal_core.retrain.gate import gate_markdown
from oreal_core.retrain.stages import Cycle, failed_decision, finish
from oreal_core.store import Lake
from oreal_core.store.manifest import utc_now
from tasks.retrain import decide_task, gate_task, plan_task, prompts_task

PROMPTS_ADDED = "oreal.prompts.added"  # what the oreal-retrain deployment's trigger waits for
EVENTS = {"promoted": "oreal.model.promoted", "rejected": "oreal.model.rejected", "failed": "oreal.retrain.failed"}


@flow(name="oreal-retrain", flow_run_name="{lineage}-{config}")
def retrain(lineage: str, config: str = "tiny-cpu", overrides: list[str] | None = None) -> dict:
    """One retraining cycle of ``lineage``: train a challenger from the champion on the config's
    and the newly arrived prompts, gate it against the champion, promote or reject it."""
    overrides_t = tuple(overrides or ())
    cfg = load_config(config, overrides_t)
    position.reset()
    with RunStopper(retrain_command(lineage, config, overrides_t), prefect_api_url(),
                    cfg.monitor.prefect_api_timeout_s):
        lock = lineage_lock(Lake.open(cfg.store), lineage, cfg.train.checkpoint_dir)
        try:
            return _cycle(config, overrides_t, lineage)
        finally:
            lock.release()


def _cycle(config: str, overrides: tuple[str, ...], lineage: str) -> dict:
    plan = plan_task(config, overrides, lineage)
    cycle = Cycle(plan)
    position.enter(plan.cycle_id, None, "rate-prompts")
    prompts_task(plan)
    if cycle.records.read(plan.cycle_id, "gate") is None:
        try:
            train(config, cycle.run_overrides(), plan.cycle_id)
        except HealthAlarmError as exc:
            return _announce(cycle, failed_decision(cycle, f"training stopped by a health alarm: {exc}"))
    position.enter(plan.cycle_id, None, "gate")
    gate_doc = gate_task(plan)
    position.enter(plan.cycle_id, None, "decide")
    decision = decide_task(plan, gate_doc)
    create_markdown_artifact(
        key=f"retrain-{plan.cycle_id}".lower().replace("_", "-").replace(".", "-"),
        markdown=gate_markdown(plan.lineage, plan.cycle_id, plan.start_model_id, decision["challenger"],
                               gate_doc["comparisons"], decision["verdict"], gate_doc["reason"]),
        description=f"retraining cycle {plan.cycle_id}: {decision['verdict']}")
    return _announce(cycle, decision)


def retrain_command(lineage: str, config: str, overrides: tuple[str, ...]) -> str:
    """What continues a stopped cycle: the same trigger (a cycle resumes under its own settings)."""
    return " ".join(["oreal retrain --lineage", lineage, "--config", config,
                     *(f"--set {shlex.quote(o)}" for o in overrides)])


def _announce(cycle: Cycle, decision: dict) -> dict:
    """Log and emit the decision, then commit the cycle's last record (an event may repeat if
    the process dies between the two; the registry decision never does)."""
    lineage = cycle.plan.lineage
    get_run_logger().info("cycle %s: %s (%s); champion of %s: %s", decision["cycle_id"], decision["verdict"],
                          decision["reason"], lineage, decision["champion"])
    related = [{"prefect.resource.id": f"oreal.model.{decision[role]}", "prefect.resource.role": role}
               for role in ("challenger", "champion") if decision[role]]
    emit_event(event=EVENTS[decision["verdict"]],
               resource={"prefect.resource.id": f"oreal.lineage.{lineage}", "prefect.resource.name": lineage},
               related=related, payload={**decision, "emitted_at": utc_now()})
    finish(cycle, decision)
    return decision


def announce_prompts(lineage: str, added) -> str:
    """Emit ``oreal.prompts.added`` for the lineage (the retrain deployment's trigger); says
    where it went. ``added``: the IncomingFile that landed."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value():
        return "no PREFECT_API_URL: no event emitted (the next scheduled or manual cycle reads the file)"
    emit_event(event=PROMPTS_ADDED,
               resource={"prefect.resource.id": f"oreal.lineage.{lineage}", "prefect.resource.name": lineage},
               payload={"file": added.uri, "sha256": added.sha256, "rows": added.rows})
    return f"event {PROMPTS_ADDED} emitted to {PREFECT_API_URL.value()}"
