"""Thin Prefect tasks, one per stage of an iteration.

Each resolves the run's session in this process, runs its stage (which reads its inputs
from the lake and commits its artefact, or finds it committed), and returns only a small
StageResult (artefact reference, seconds, scalar metrics): trajectories never travel
through Prefect's result pickles. Only the verify task touches the network (the LLM
judge), so only it retries; the lake retries its own S3 calls with backoff.
"""

from __future__ import annotations

from prefect import task

from oreal_core.pipeline.session import RunSpec, session_for
from oreal_core.pipeline.stages import StageResult, run_stage


def _run(stage: str, spec: RunSpec, step: int) -> StageResult:
    return run_stage(stage, session_for(spec), step)


@task(name="rollout", task_run_name="rollout-{step}")
def rollout_task(spec: RunSpec, step: int) -> StageResult:
    return _run("rollout", spec, step)


@task(name="verify", task_run_name="verify-{step}", retries=2, retry_delay_seconds=10)
def verify_task(spec: RunSpec, step: int) -> StageResult:
    return _run("verify", spec, step)


@task(name="score", task_run_name="score-{step}")
def score_task(spec: RunSpec, step: int) -> StageResult:
    return _run("score", spec, step)


@task(name="train", task_run_name="train-{step}")
def train_task(spec: RunSpec, step: int) -> StageResult:
    return _run("train", spec, step)
