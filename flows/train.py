"""The RL loop as Prefect flows: one flow run per OREAL iteration, inside a training flow.

``rl_iteration`` reads like Algorithm 1 of the paper (arXiv 2502.06781):

    for each iteration i:
        sample B prompts; draw K rollouts each from pi_i              (rollout)
        binary outcome rewards from the verifier                      (verify)
        p = mean reward per prompt; keep prompts with 0 < p < 1;
        one correct and one incorrect rollout per kept prompt;
        token importance weights from the token-level RM w_i           (score)
        update w_i with the sequence BCE (Eq. 12);
        update pi_i with the OREAL loss (Eq. 11)                      (train)

Departures, all from the reference code (OREAL_SPEC.md §1.2): advantages are RLOO over
all K samples before filtering; the KL term (k3, beta 0.01) covers all kept tokens; the
actor is frozen for the first ``actor.freeze_steps`` iterations while the RM warms up.
Every stage commits a lake artefact; re-running a run id continues at the first stage
not committed, and refuses a changed config. Storing and checkpointing are not tasks of
their own: each stage writes its artefact to the lake as its last act, and the train
stage saves the checkpoint before committing its metrics, so "stage done" and "artefact
committed" are one fact: a kill before the commit leaves the stage to be redone.
"""

from __future__ import annotations

import logging
import shlex
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.context import (
    AsyncClientContext,
    FlowRunContext,
    SettingsContext,
    get_settings_context,
)
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, get_current_settings
from prefect.utilities.asyncutils import run_coro_as_sync

from flows.monitor import check_step
from flows.stop import RunStopper
from oreal_core.eval.history import best_checkpoint
from oreal_core.pipeline import position
from oreal_core.pipeline.progress import (
    RESULT,
    artifact_key,
    iteration_markdown,
    progress_line,
    step_record,
)
from oreal_core.pipeline.session import RunSpec, close_session, session_for
from oreal_core.tracking.run_tracking import run_tracking
from oreal_core.verify.judge_probe import probe_judge
from tasks.evaluate import evaluate_task
from tasks.stages import rollout_task, score_task, train_task, verify_task

# The library logs progress (SFT checks, replays, skipped steps) at INFO; Prefect shows
# loggers named in PREFECT_LOGGING_EXTRA_LOGGERS, but only at the level they let through.
logging.getLogger("oreal_core").setLevel(logging.INFO)


# Called only by ``train`` with its own RunSpec and step: no pydantic model built per call to
# validate them (~10 ms of each tiny iteration).
@flow(name="rl-iteration", flow_run_name="{spec.run_id}-step-{step}", validate_parameters=False)
def rl_iteration(spec: RunSpec, step: int) -> dict[str, float]:
    """One OREAL iteration: rollout -> verify -> score -> train (see the module docstring),
    between two health checks (docs/health.md): the previous step's ``stop`` alarms under the
    current ``monitor`` settings before the rollout (a resumed run re-checks them), and this
    step's alarms, announced, once its metrics are committed."""
    session = session_for(spec)
    if step > 0:
        check_step(session, step - 1, announce=False)
    results = [rollout_task(spec, step), verify_task(spec, step), score_task(spec, step), train_task(spec, step)]
    metrics: dict[str, float] = {}
    for result in results:
        metrics.update(result.metrics)
        metrics[f"time/{result.stage}_s"] = result.seconds
    if not results[-1].skipped:  # the train artefact holds the step's summary; reuse it on re-runs
        create_markdown_artifact(key=artifact_key(spec.run_id, step), markdown=iteration_markdown(
            spec.run_id, step, results, session.lake.data_uri(spec.run_id, step, "samples")),
            description=f"OREAL iteration {step} of run {spec.run_id}")
    check_step(session, step, announce=not results[-1].skipped)
    return metrics


@flow(name="oreal-train", flow_run_name="{run_id}")
def train(config: str = "tiny-cpu", overrides: list[str] | None = None, run_id: str | None = None,
          allow_code_change: bool = False) -> dict:
    """Train with OREAL for ``run.total_steps`` iterations; re-running a run id resumes it
    (refused under another config, and under other code unless ``allow_code_change``)."""
    # An empty run_id (a blank UI field) is refused by the session, never swapped for a new run.
    spec = RunSpec(new_run_id(config) if run_id is None else run_id, config, tuple(overrides or ()),
                   allow_code_change)
    cfg = spec.load()
    probe_judge(cfg.verifier)  # an unreachable judge fails the run now, before anything is written
    position.reset()
    with RunStopper(resume_command(spec), prefect_api_url(), cfg.monitor.prefect_api_timeout_s):
        session = session_for(spec)  # opens (or resumes) the run: refuses a changed config up front
        position.enter(spec.run_id, None, "start-up")
        try:
            return _train_steps(spec, session)
        finally:  # engines, workers and the run lock go with the flow, not with the process
            close_session(spec.run_id)


def resume_command(spec: RunSpec) -> str:
    return " ".join(["oreal resume", spec.run_id, "--config", spec.config,
                     *(f"--set {shlex.quote(o)}" for o in spec.overrides),
                     *(["--allow-code-change"] if spec.allow_code_change else [])])


def prefect_api_url() -> str | None:
    """The API this flow run reports to (Prefect's temporary server when none is configured)."""
    client = FlowRunContext.get().client
    return str(client.api_url) if client is not None else None


def _train_steps(spec: RunSpec, session) -> dict:
    logger = get_run_logger()
    total = session.cfg.run.total_steps
    first = first_incomplete_step(session, total)
    logger.info("run %s: steps %d..%d of %d (lake %s)", spec.run_id, first, total - 1, total,
                session.lake.location.uri, extra={RESULT: True})
    every = session.cfg.run.eval_every
    evals: dict[int, dict[str, float]] = {}
    if every and first == 0:
        evals[0] = evaluate_task(spec, 0, "start")
    history = []
    # Trackers are fed here, after each step's commit, never from inside a stage (docs/tracking.md).
    with run_tracking(session.cfg, spec.run_id, session.lake, first) as tracking, iteration_runs():
        if 0 in evals:
            tracking.evaluation(0, evals[0])
        for step in range(first, total):
            start = time.perf_counter()
            metrics = rl_iteration(spec, step)
            history.append(metrics)
            seconds = time.perf_counter() - start
            tracking.step(step, metrics, seconds)
            logger.info(progress_line(step, total, metrics, seconds), extra=step_record(step, total, metrics, seconds))
            if every and ((step + 1) % every == 0 or step + 1 == total):
                evals[step + 1] = evaluate_task(spec, step + 1, f"step-{step}")
                tracking.evaluation(step + 1, evals[step + 1])
                logger.info("eval after step %d: %s", step, _pass1_text(evals[step + 1]), extra={RESULT: True})
    best = None
    if evals:  # the reference's README: the last checkpoint is often not the best; keep the best by eval
        found = best_checkpoint(session.cfg, spec.run_id, session.cfg.eval.benchmarks[0])
        best = None if found is None else {"step": found.step, "checkpoint": found.checkpoint,
                                           "bench": found.bench, "pass1": found.pass1}
        logger.info("best checkpoint by %s pass@1: %s", session.cfg.eval.benchmarks[0], best, extra={RESULT: True})
    return {"run_id": spec.run_id, "steps_run": total - first, "first_step": first, "history": history,
            "evals": evals, "best_checkpoint": best, "lake": session.lake.location.uri}


@contextmanager
def iteration_runs() -> Iterator[None]:
    """What the iteration subflows run under, entered once around the loop over steps.

    * No heartbeat thread of their own. Prefect joins a flow run's heartbeat thread when the
      run ends, waiting out its 1 s sleep: 0.5-1 s of every iteration (issue 12's profile).
      The parent flow run, in the same process, keeps sending heartbeats for the whole run,
      so a dead process is still seen.
    * One async API client for all of them. Each subflow run records its task run in the
      parent flow run from Prefect's event-loop thread through ``get_client()``, which builds
      a new httpx client (~27 ms: its TLS context) and connection per call unless an
      ``AsyncClientContext`` bound to that loop is current. This opens one there and makes
      it current here; Prefect's calls carry this thread's context over to that loop.
    """
    settings = get_current_settings().copy_with_update(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None})
    clients = AsyncClientContext()
    run_coro_as_sync(clients.client.__aenter__())  # binds the client to Prefect's event loop
    try:
        with SettingsContext(profile=get_settings_context().profile, settings=settings), clients:
            yield
    finally:
        run_coro_as_sync(clients.client.__aexit__(None, None, None))


def _pass1_text(scores: dict[str, float]) -> str:
    return ", ".join(f"{k.split('/')[1]} pass@1 {v:.3f}" for k, v in scores.items() if k.endswith("/pass1"))


def first_incomplete_step(session, total: int) -> int:
    """The first step whose train artefact is not committed (stages within it skip themselves)."""
    done = {step for run, step, table in session.lake.committed(session.run_id) if table == "metrics"}
    return next((step for step in range(total) if step not in done), total)


def new_run_id(config: str) -> str:
    name = config.rsplit("/", 1)[-1].removesuffix(".yaml")
    return f"{name}-{datetime.now(UTC).strftime('%Y%m%d-%H%M%S')}"
