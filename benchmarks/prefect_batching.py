"""What the temporary Prefect server's write batching (flows/__init__.py) saves per iteration.

Each arm runs the same iterations in a child process with a temporary Prefect server of its
own (an empty database under a fresh PREFECT_HOME): a parent flow run, and per iteration a
subflow run of four task runs that hold the demo's stage times (rollout 0.40 s, verify 0.02,
score 0.01, train 0.65: `make demo`'s medians), a markdown artifact and a log line, as
``rl_iteration`` does. The arms differ only in the server's settings:

* ``prefect-defaults``: a task-run state written per event, events persisted every 20;
* ``batched``: both batched (flows/__init__.py), flushed at least every 5 s and at shutdown.

Overhead is the iteration's wall time minus the stage time it holds. A write that meets
another in SQLite answers 503 ("database is locked") and Prefect's client waits 2 s before
it retries: those retries are counted. After the runs each arm reads back, from the API, how
many of its task runs ended COMPLETED (every one must: batching may not lose a state).

    .venv/bin/python benchmarks/prefect_batching.py [--iterations 60] [--rounds 1]

Last line: JSON with, per arm, overhead_s (mean per iteration), retries_503 (per 100
iterations), task_runs_completed, task_runs_expected.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter

from bench_env import REPO  # noqa: E402 - sets the environment before the pipeline is imported

from flows import PREFECT_SERVER_BATCHING

STAGE_S = {"rollout": 0.40, "verify": 0.02, "score": 0.01, "train": 0.65}
PREFECT_DEFAULTS = {"PREFECT_SERVER_SERVICES_TASK_RUN_RECORDER_BATCH_SIZE": "1",
                    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_BATCH_SIZE": "20"}
ARMS = {"prefect-defaults": PREFECT_DEFAULTS, "batched": PREFECT_SERVER_BATCHING}


def count_responses() -> Counter:
    """Every response of Prefect's clients in this process, by method, route and status."""
    import httpx

    counts: Counter = Counter()
    sync_send, async_send = httpx.Client.send, httpx.AsyncClient.send

    def send(self, request, **kwargs):
        response = sync_send(self, request, **kwargs)
        counts[(request.method, request.url.path.rsplit("/api", 1)[-1], response.status_code)] += 1
        return response

    async def asend(self, request, **kwargs):
        response = await async_send(self, request, **kwargs)
        counts[(request.method, request.url.path.rsplit("/api", 1)[-1], response.status_code)] += 1
        return response

    httpx.Client.send, httpx.AsyncClient.send = send, asend
    return counts


def measure(iterations: int) -> dict:
    counts = count_responses()
    from prefect import flow, get_run_logger, task
    from prefect.artifacts import create_markdown_artifact
    from prefect.cache_policies import NO_CACHE
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterParentFlowRunId
    from prefect.context import FlowRunContext

    from flows.train import iteration_runs

    @task(cache_policy=NO_CACHE)
    def stage(name: str, step: int) -> None:
        time.sleep(STAGE_S[name])

    @flow(name="batching-iteration", flow_run_name="step-{step}", validate_parameters=False)
    def iteration(step: int) -> None:
        for name in STAGE_S:
            stage(name, step)
        create_markdown_artifact(key=f"batching-{step}", markdown=f"iteration {step}")

    @flow(name="batching-benchmark")
    def run() -> dict:
        logger = get_run_logger()
        parent = FlowRunContext.get().flow_run.id
        walls = []
        with iteration_runs():
            for step in range(iterations):
                start = time.perf_counter()
                iteration(step)
                walls.append(time.perf_counter() - start)
                logger.info("step %d/%d (%.2f s)", step + 1, iterations, walls[-1])
        time.sleep(6)  # the batched recorder flushes at least every 5 s
        with get_client(sync_client=True) as client:
            children = client.read_flow_runs(flow_run_filter=FlowRunFilter(
                parent_flow_run_id=FlowRunFilterParentFlowRunId(any_=[parent])))
            completed = sum(tr.state_type.value == "COMPLETED" for child in children
                            for tr in client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [child.id]})))
        return {"overhead_s": sum(walls) / iterations - sum(STAGE_S.values()),
                "retries_503": 100 * sum(n for (_, _, code), n in counts.items() if code == 503) / iterations,
                "task_runs_completed": completed, "task_runs_expected": iterations * len(STAGE_S)}

    return run()


def run_arm(settings: dict[str, str], iterations: int) -> dict:
    with tempfile.TemporaryDirectory() as home:
        env = {**os.environ, **settings, "PREFECT_HOME": home}
        env.pop("PREFECT_API_URL", None)
        out = subprocess.run([sys.executable, __file__, "--child", "--iterations", str(iterations)], env=env,
                             cwd=REPO, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=1, help="alternate the arms this many times")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.iterations)))
        return
    rows: dict[str, list[dict]] = {arm: [] for arm in ARMS}
    for _ in range(args.rounds):
        for arm, settings in ARMS.items():
            rows[arm].append(run_arm(settings, args.iterations))
    summary = {}
    print(f"{args.rounds} x {args.iterations} iterations per arm, stage time {sum(STAGE_S.values()):.2f} s each")
    print(f"{'arm':<18}{'overhead s/iter':>16}{'503 per 100':>13}{'task runs COMPLETED':>22}")
    for arm, results in rows.items():
        summary[arm] = {
            "overhead_s": round(sum(r["overhead_s"] for r in results) / len(results), 3),
            "retries_503": round(sum(r["retries_503"] for r in results) / len(results), 1),
            "task_runs_completed": sum(r["task_runs_completed"] for r in results),
            "task_runs_expected": sum(r["task_runs_expected"] for r in results)}
        s = summary[arm]
        print(f"{arm:<18}{s['overhead_s']:>16.3f}{s['retries_503']:>13.1f}"
              f"{s['task_runs_completed']:>14} of {s['task_runs_expected']}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
