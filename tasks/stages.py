"""Thin Prefect tasks, one per stage of an iteration.

Each resolves the run's session in this process, runs its stage (which reads its inputs
from the lake and commits its artefact, or finds it committed), and returns only a small
StageResult (artefact reference, seconds, scalar metrics): trajectories never travel
through Prefect's result pickles. Only the verify task touches the network (the LLM
judge), so only it retries; the lake retries its own S3 calls with backoff.
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE

from oreal_core.pipeline.session import RunSpec, session_for
from oreal_core.pipeline.stages import StageResult, run_stage


def _stage_task(name: str, **options):
    """A stage's task. The lake, not Prefect's result cache, says whether a stage is done (its
    committed artefact is found and reused), so no cache key is hashed and no result store is
    looked up per task run (~10 ms of each tiny iteration)."""
    return task(name=name, task_run_name=f"{name}-{{step}}", cache_policy=NO_CACHE, **options)


def _run(stage: str, spec: RunSpec, step: int) -> StageResult:
    return run_stage(stage, session_for(spec), step)


@_stage_task("rollout")
def rollout_task(spec: RunSpec, step: int) -> StageResult:
    return _run("rollout", spec, step)


@_stage_task("verify", retries=2, retry_delay_seconds=10)
def verify_task(spec: RunSpec, step: int) -> StageResult:
    return _run("verify", spec, step)


@_stage_task("score")
def score_task(spec: RunSpec, step: int) -> StageResult:
    return _run("score", spec, step)


@_stage_task("train")
def train_task(spec: RunSpec, step: int) -> StageResult:
    return _run("train", spec, step)
