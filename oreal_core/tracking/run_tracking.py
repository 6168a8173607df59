"""What a training run sends to its trackers, and when (docs/tracking.md).

* once, at the start: the resolved config, flattened, with its hash and the run id;
* after each step, once the step is committed (never from inside a stage): every metric the
  iteration returned under tracker names (names.py), the step's seconds, the alarms it fired,
  and a few of its rollouts as a text table (``samples``, read on the trackers' threads);
* after each evaluation: ``val/<bench>/pass@1`` and its interval, at the evaluated policy's
  version (0 = the start policy, n = after n updates);
* committed steps no tracker saw (a kill, a stop alarm, tracking added on a resume) from the
  lake: at open on each backend's thread, and in the run's process when the run fails.

The x axis is the step (iteration) index everywhere.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path

from oreal_core.alarms import evaluate
from oreal_core.config import OrealConfig
from oreal_core.store import Lake
from oreal_core.store.errors import ArtefactNotFound
from oreal_core.tracking.backend import TrackerRun, backend_for
from oreal_core.tracking.names import tracker_metrics
from oreal_core.tracking.sample_table import SampleTable
from oreal_core.tracking.tracker import Tracker

log = logging.getLogger(__name__)

LOCAL_FALLBACK = Path("runs/tracking")  # beside a lake on S3: trackers write local files


def tracking_folder(cfg: OrealConfig) -> Path:
    if cfg.tracking.dir is not None:
        return Path(cfg.tracking.dir)
    return LOCAL_FALLBACK if "://" in cfg.store.uri else Path(cfg.store.uri) / "tracking"


def tracker_run(cfg: OrealConfig, run_id: str) -> TrackerRun:
    return TrackerRun(run_id, cfg.tracking.experiment or cfg.run.name, tracking_folder(cfg), cfg.tracking.mlflow_uri)


def run_params(cfg: OrealConfig, run_id: str) -> dict[str, str]:
    """The resolved config as flat ``section.key`` -> text, with its hash and the run id."""
    flat: dict[str, str] = {"run_id": run_id, "config_hash": cfg.hash()}

    def walk(prefix: str, value) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                walk(f"{prefix}{key}.", item)
        else:
            flat[prefix.rstrip(".")] = value if isinstance(value, str) else json.dumps(value)

    walk("", cfg.to_dict())
    return flat


def step_values(cfg: OrealConfig, step: int, metrics: dict[str, float]) -> dict[str, float]:
    """One step's metrics under tracker names, with ``alarm/<name>`` = 1 for each alarm it fires."""
    values = tracker_metrics(metrics)
    values.update((f"alarm/{alarm.name}", 1.0) for alarm in evaluate(cfg.monitor, step, metrics))
    return values


def committed_metrics(lake: Lake, run_id: str, step: int) -> dict[str, float]:
    table = lake.read(run_id, step, "metrics")
    return dict(zip(table["name"].to_pylist(), table["value"].to_pylist(), strict=True))


def lake_history(cfg: OrealConfig, run_id: str, since: int) -> Iterator[tuple[int, dict[str, float]]]:
    """Committed steps >= ``since`` with their values, read by a lake of the caller's own (it
    runs on a tracker's thread, beside the run's)."""
    lake = Lake.open(cfg.store)
    for step in sorted({s for _, s, table in lake.committed(run_id) if table == "metrics" and s >= since}):
        try:
            yield step, step_values(cfg, step, committed_metrics(lake, run_id, step))
        except ArtefactNotFound:  # removed since the listing
            continue


class RunTracking:
    """The run's hooks into its Tracker: ``step`` and ``evaluation`` (see the module docstring)."""

    def __init__(self, cfg: OrealConfig, run_id: str, tracker: Tracker) -> None:
        self.cfg, self.run_id, self.tracker = cfg, run_id, tracker
        self.live_steps: set[int] = set()

    def step(self, step: int, metrics: dict[str, float], seconds: float) -> None:
        values = step_values(self.cfg, step, metrics)
        values["timing_s/step"] = seconds
        self.tracker.log_scalars(step, values)
        if self.cfg.tracking.sample_rollouts and self.tracker.workers:
            self.tracker.log_text(step, "samples", SampleTable(self.cfg.store, self.run_id, step,
                                                               self.cfg.tracking.sample_rollouts))
        self.live_steps.add(step)

    def evaluation(self, policy_version: int, scores: dict[str, float]) -> None:
        self.tracker.log_scalars(policy_version, tracker_metrics(scores))

    def committed_steps(self, lake: Lake, steps: Iterable[int]) -> None:
        """Steps committed in the lake but not sent live (the run failed after committing them)."""
        for step in sorted(set(steps) - self.live_steps):
            try:
                self.tracker.log_scalars(step, step_values(self.cfg, step, committed_metrics(lake, self.run_id, step)))
            except ArtefactNotFound:
                continue


@contextmanager
def run_tracking(cfg: OrealConfig, run_id: str, lake: Lake, first_step: int) -> Iterator[RunTracking]:
    """The run's trackers, open for the ``with`` block, for a session running from ``first_step``;
    a no-op without ``tracking.backends``."""
    makers = {name: partial(backend_for, name, tracker_run(cfg, run_id)) for name in cfg.tracking.backends}
    tracker = Tracker(makers, cfg.tracking.queue_size, cfg.tracking.close_timeout_s,
                      history=partial(lake_history, cfg, run_id))
    tracking = RunTracking(cfg, run_id, tracker)
    if makers:
        tracker.log_params(run_params(cfg, run_id))
    try:
        yield tracking
    except BaseException:
        if makers:  # a stop alarm or a crash after a commit: the step is committed, send it
            try:
                done = {s for _, s, table in lake.committed(run_id) if table == "metrics" and s >= first_step}
                tracking.committed_steps(lake, done)
            except Exception as exc:  # noqa: BLE001 - the run's own error is the one to see
                log.warning("tracking: could not send the run's last committed steps (%s)", exc)
        raise
    finally:
        tracker.close()
