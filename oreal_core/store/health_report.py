"""The report's health page and ``oreal samples`` (docs/health.md, "See it").

``health.md`` plots every ``health/`` and ``rm/`` metric per step with its alarm thresholds,
lists the alarms the run raised and when, and for each reward-hacking / health signature
that fired gives the command that pulls its samples (canned.SIGNATURES).

The alarms are not read from Prefect (its artifacts and events may be gone, or never were:
``oreal_core`` runs without a server); they are recomputed with the pure ``alarms.evaluate``
over each step's committed metrics, as flows/monitor.py does, under the ``monitor`` section
of the config the run started with (``runs/<id>/config.yaml``). So the page lists what the
run raised, except where the run was resumed under other ``--set monitor...`` settings: the
lake does not record those (``monitor`` is not part of the config hash).
"""

from __future__ import annotations

from collections import defaultdict
from functools import reduce
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import yaml

from oreal_core.alarms import ALARMS, Alarm, evaluate
from oreal_core.config import ConfigError, OrealConfig, StoreConfig, from_dict
from oreal_core.config.loading import yaml_problem
from oreal_core.config.schema import MonitorConfig
from oreal_core.store import plots
from oreal_core.store.canned import HEALTH_METRIC_PREFIXES, SIGNATURES, signature_samples_sql
from oreal_core.store.lake import Lake
from oreal_core.store.layout import check_run_id
from oreal_core.store.query import Format, run_query

# (file, title, name prefixes): a metric goes to the first family one of whose prefixes it
# starts with, so names added later still land somewhere (the last two catch everything).
FAMILIES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("health_hacking.png", "Reward-hacking signatures",
     ("health/multi_boxed", "health/boxed_without_work", "health/repeat", "health/repetitive",
      "health/correct_at_length_limit")),
    ("health_length.png", "Response lengths", ("health/truncated", "health/length_")),
    ("health_verifier.png", "Verifier, judge and groups", ("health/judge_", "health/rule_judge", "health/groups_")),
    ("health_logprob.png", "Rollout engine vs trainer log-probs", ("health/logprob_",)),
    ("health_policy.png", "Policy and optimiser",
     ("health/nonfinite", "health/entropy", "health/kl", "health/actor_grad", "health/rm_grad")),
    ("health_token_rm.png", "Token reward model", ("rm/",)),
    ("health_other.png", "Other health metrics", ("health/",)),
)
_ACTION_COLORS = {"stop": "tab:red", "warn": "tab:orange"}


def run_monitor(lake: Lake, run_id: str) -> tuple[MonitorConfig | None, str]:
    """The ``monitor`` settings the run started with, keys it lacks at today's defaults;
    or None and why not. Only that section is read: a schema change elsewhere since the run
    started must not hide its thresholds."""
    text = lake.run_config(run_id)
    if text is None:
        return None, "the run's config was not recorded (no config.yaml beside its run.json)"
    try:
        raw = yaml.safe_load(text)
        if not isinstance(raw, dict):
            raise ConfigError("the top level is not a mapping")
        return from_dict(MonitorConfig, raw.get("monitor") or {}, "monitor."), ""
    except yaml.YAMLError as exc:
        return None, f"the run's config.yaml cannot be loaded (not valid YAML: {yaml_problem(exc)})"
    except ConfigError as exc:
        return None, f"the run's config.yaml cannot be loaded ({exc})"


def thresholds(monitor: MonitorConfig | None) -> dict[str, list[plots.HLine]]:
    """Metric name -> the bounds of the alarms watching it (those that can fire)."""
    lines: dict[str, list[plots.HLine]] = defaultdict(list)
    if monitor is None or not monitor.enabled:
        return {}
    for name, cfg in monitor.alarms().items():
        if cfg.action == "none":
            continue
        since = f" from step {cfg.after_step}" if cfg.after_step else ""
        for sign, bound in ((">", cfg.above), ("<", cfg.below)):
            if bound is not None:
                lines[ALARMS[name].metric].append(
                    plots.HLine(bound, f"{name}: {cfg.action} {sign} {bound:g}{since}", _ACTION_COLORS[cfg.action]))
    return dict(lines)


def step_alarms(monitor: MonitorConfig, metrics: pa.Table) -> list[Alarm]:
    """Every alarm of every step, in step order: ``evaluate`` on the step's committed metrics
    (all of them, as flows/monitor.step_metrics reads them). ``metrics``: step, name, value."""
    by_step: dict[int, dict[str, float]] = defaultdict(dict)
    for row in metrics.select(["step", "name", "value"]).to_pylist():
        by_step[row["step"]][row["name"]] = row["value"]
    return [alarm for step in sorted(by_step) for alarm in evaluate(monitor, step, by_step[step])]


def write_health_page(lake: Lake, run_id: str, metrics: pa.Table, out: Path) -> str:
    """Write ``out/health.md`` and its PNGs from the run's metrics (canned.METRICS_BY_STEP);
    return the paragraph summary.md shows."""
    monitor, why_not = run_monitor(lake, run_id)
    alarms = step_alarms(monitor, metrics) if monitor is not None else []
    figures = _draw(_health_metrics(metrics), thresholds(monitor), alarms, out)
    steps = len(set(metrics.column("step").to_pylist()))
    page = [f"# Health of run `{run_id}`", "", _source_line(run_id, monitor, why_not), "", "## Alarms", "",
            *_alarm_lines(monitor, alarms, steps), *_signature_lines(run_id, alarms), "## Metrics", ""]
    page += [f"### {title}\n\n![{title}]({file})\n" for file, title in figures] or \
        ["_no health/ or rm/ metrics for this run_", ""]
    (out / "health.md").write_text("\n".join(page))
    return _summary_paragraph(monitor, why_not, alarms)


def signature_samples(cfg: OrealConfig | StoreConfig, run_id: str, signature: str, step: int | None = None,
                      limit: int = 20, fmt: Format = "table") -> str:
    """``oreal samples``: the run's samples that show ``signature``, through ``oreal query``'s
    read-only path (same guards, timeout and output formats)."""
    store = cfg.store if isinstance(cfg, OrealConfig) else cfg
    Lake.open(store).run(check_run_id(run_id))  # RunNotFound names the known runs; no silent empty answer
    return run_query(store, signature_samples_sql(signature, run_id, step, limit), fmt)


def is_health_metric(names: pa.ChunkedArray) -> pa.ChunkedArray:
    """Which metric names belong on this page (the rest are summary.md's training metrics)."""
    return reduce(pc.or_, (pc.starts_with(names, prefix) for prefix in HEALTH_METRIC_PREFIXES))


def _health_metrics(metrics: pa.Table) -> pa.Table:
    return metrics.filter(is_health_metric(metrics.column("name")))


def _draw(health: pa.Table, lines: dict[str, list[plots.HLine]], alarms: list[Alarm],
          out: Path) -> list[tuple[str, str]]:
    """One small-multiples figure per family that has metrics; (file, title) of each."""
    marks: dict[str, list[int]] = defaultdict(list)
    for alarm in alarms:
        marks[alarm.metric].append(alarm.step)
    members: dict[str, list[str]] = defaultdict(list)
    for name in sorted(set(health.column("name").to_pylist())):
        file = next(f for f, _, prefixes in FAMILIES if name.startswith(prefixes))
        members[file].append(name)
    drawn = []
    for file, title, _ in FAMILIES:
        if members[file]:
            rows = health.filter(pc.is_in(health.column("name"), pa.array(members[file])))
            plots.metrics_grid(rows, out / file, max_panels=len(members[file]), title=title, lines=lines, marks=marks)
            drawn.append((file, title))
    return drawn


def _source_line(run_id: str, monitor: MonitorConfig | None, why_not: str) -> str:
    if monitor is None:
        return f"_No thresholds: {why_not}, so no alarm was evaluated; the metrics are plotted without them._"
    if not monitor.enabled:
        return "_`monitor.enabled` is false in the run's config: no alarm was evaluated._"
    return (f"Thresholds: the `monitor` section of the config the run started with (`runs/{run_id}/config.yaml`; "
            "settings it lacks take today's defaults), applied to each step's committed metrics. "
            "A `--set monitor...` given at a resume is not recorded in the lake and not shown here.")


def _alarm_lines(monitor: MonitorConfig | None, alarms: list[Alarm], steps: int) -> list[str]:
    if monitor is None or not monitor.enabled:
        return ["_alarms not evaluated_", ""]
    if not alarms:
        return [f"No alarms: no health metric crossed a threshold at any of the {steps} step(s) with metrics.", ""]
    fired_steps = sorted({a.step for a in alarms})
    lines = [f"{len(alarms)} alarm(s) at {len(fired_steps)} of {steps} step(s).", "",
             "| step | alarm | action | metric | value | threshold | what to check |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {a.step} | {a.name} | {a.action} | `{a.metric}` | {a.value:.4g} | {a.bound} | "
              f"{a.check.replace('|', '/')} |" for a in alarms]
    return [*lines, ""]


def _signature_lines(run_id: str, alarms: list[Alarm]) -> list[str]:
    """Per signature whose metric raised an alarm: the steps and the command for its samples."""
    steps_by_metric: dict[str, list[int]] = defaultdict(list)
    for alarm in alarms:
        steps_by_metric[alarm.metric].append(alarm.step)
    fired = [(name, sig, steps_by_metric[sig.metric]) for name, sig in SIGNATURES.items()
             if steps_by_metric.get(sig.metric)]
    if not fired:
        return []
    lines = ["## Pull the offending samples", ""]
    for name, sig, steps in fired:
        lines += [f"- **{name}**, alarm at step {', '.join(map(str, steps))} (`{sig.metric}`): {sig.what}",
                  f"  `oreal samples {run_id} --signature {name} --step {steps[0]}`"]
    return [*lines, "", "Drop `--step` for every step; `--limit N` (default 20) for more rows, `--format json` "
            "for whole responses; pass the `--config`/`--set store...` this report was written with.", ""]


def _summary_paragraph(monitor: MonitorConfig | None, why_not: str, alarms: list[Alarm]) -> str:
    if monitor is None:
        return f"Alarms not evaluated: {why_not}. Metrics per step: [health page](health.md)."
    if not monitor.enabled:
        return "Alarms not evaluated: `monitor.enabled` is false. Metrics per step: [health page](health.md)."
    if not alarms:
        return "No alarms. Health metrics and thresholds per step: [health page](health.md)."
    counts: dict[str, list[int]] = defaultdict(list)
    for alarm in alarms:
        counts[f"{alarm.name} ({alarm.action})"].append(alarm.step)
    listed = "; ".join(f"{name} at step {', '.join(map(str, steps))}" for name, steps in counts.items())
    return f"**{len(alarms)} alarm(s)**: {listed}. When, values, what to check and the samples: [health page](health.md)."
