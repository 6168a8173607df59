"""What a health alarm does under Prefect (docs/health.md): a log line, a markdown artifact
per step and an event per alarm (``oreal.health.warn`` / ``oreal.health.stop``, resource
``oreal.run.<run_id>``) that a Prefect automation can notify on; a ``stop`` alarm then
fails the flow before the next step's rollout.

The alarms are evaluated on the step's *committed* metrics under the run's *current*
``monitor`` settings, so a run stopped by an alarm resumes once the threshold is relaxed
(``monitor`` is not part of the config hash).
"""

from __future__ import annotations

from prefect import get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event

from oreal_core.alarms import Alarm, HealthAlarmError, evaluate, stop_message
from oreal_core.pipeline.progress import ALARM, artifact_key
from oreal_core.store import ArtefactNotFound


def step_metrics(session, step: int) -> dict[str, float]:
    """The committed metrics of ``step`` (none if its train stage was never committed)."""
    try:
        table = session.lake.read(session.run_id, step, "metrics")
    except ArtefactNotFound:
        return {}
    return dict(zip(table["name"].to_pylist(), table["value"].to_pylist(), strict=True))


def check_step(session, step: int, announce: bool) -> list[Alarm]:
    """Evaluate ``step``'s alarms; ``announce`` them (log, artifact, events); raise on a stop."""
    alarms = evaluate(session.cfg.monitor, step, step_metrics(session, step))
    if announce and alarms:
        _announce(session.run_id, step, alarms)
    if any(a.action == "stop" for a in alarms):
        raise HealthAlarmError(stop_message(alarms))
    return alarms


def _announce(run_id: str, step: int, alarms: list[Alarm]) -> None:
    logger = get_run_logger()
    for alarm in alarms:
        logger.warning(alarm.message(), extra={ALARM: alarm.name})
        emit_event(event=f"oreal.health.{alarm.action}",
                   resource={"prefect.resource.id": f"oreal.run.{run_id}", "prefect.resource.name": run_id,
                             "oreal.alarm": alarm.name, "oreal.metric": alarm.metric},
                   payload={"run_id": run_id, "step": step, "alarm": alarm.name, "action": alarm.action,
                            "metric": alarm.metric, "value": alarm.value, "threshold": alarm.bound,
                            "check": alarm.check})
    rows = "\n".join(f"| {a.name} | {a.action} | `{a.metric}` | {a.value:.4g} | {a.bound} | {a.check} |"
                     for a in alarms)
    create_markdown_artifact(
        key=artifact_key(run_id, step, "health"),
        markdown=f"# Health alarms, run `{run_id}` step {step}\n\n| alarm | action | metric | value | threshold | "
                 f"check |\n|---|---|---|---|---|---|\n{rows}\n\nThresholds: the config's `monitor` section "
                 "(docs/health.md).\n",
        description=f"{len(alarms)} health alarm(s) at step {step} of run {run_id}")
