"""What live tracking (docs/tracking.md) costs per RL iteration, each backend, against the
demo's iteration.

The run's side is what the training flow calls after each step (``RunTracking.step``: name
mapping, alarm flags, one enqueue per backend) on a real tiny-cpu step's metrics
(tests/tracking/step_metrics.py), plus one evaluation every ``--eval-every`` steps; the
sample-rollout table (a lake read on the backend's thread) is left out. The
backend's side (its thread writing the step) runs beside the run and is reported apart: on
2 cores it takes CPU from the run, but the run never waits for it. Opening a backend
(imports, store) is once per run, reported apart too.

    .venv/bin/python benchmarks/tracking_cost.py [--steps 200] [--iter-s 3.0]

``--iter-s``: the demo iteration's seconds (configs/demo-cpu.yaml, ~3 s on 2 cores: flows/
train.py's "timing_s/step"); not measured here, so the figures do not move with that run's
noise. Last line: JSON with ``iter_s`` and, per backend, ``caller_s`` (per iteration, the
run's thread), ``share`` (caller_s / iter_s; target <= 1 %), ``backend_s`` (per iteration, the
backend's thread, wall), ``backend_cpu_s`` (its CPU time), ``backend_share`` (backend_cpu_s /
iter_s: what it can take from the run on a busy machine) and ``open_s``; ``none`` is the cost
with no backend.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from bench_env import REPO  # noqa: F401 - sets the environment and sys.path first

from oreal_core.config import load_config  # noqa: E402
from oreal_core.tracking.backend import Backend, backend_for  # noqa: E402
from oreal_core.tracking.run_tracking import RunTracking, run_params, tracker_run  # noqa: E402
from oreal_core.tracking.tracker import Tracker  # noqa: E402
from tests.tracking.step_metrics import EVAL_SCORES, STEP_METRICS  # noqa: E402

BACKENDS = ("none", "tensorboard", "mlflow", "jsonl")


def measure(name: str, folder: Path, steps: int, eval_every: int, iter_s: float) -> dict:
    # No sample table: it is a lake read on the backend's thread, which this lake-less run has not.
    cfg = load_config("demo-cpu", [f"tracking.dir={folder}", "tracking.sample_rollouts=0"])
    run = tracker_run(cfg, f"bench-{name}")

    def make() -> Backend:
        return backend_for(name, run)

    start = time.perf_counter()
    tracker = Tracker({} if name == "none" else {name: make}, queue_size=2 * steps + 10, close_timeout_s=600)
    tracking = RunTracking(cfg, run.run_id, tracker)
    tracker.log_params(run_params(cfg, run.run_id))  # as the run starts: waited for once the backend is open
    tracker.wait_idle(600)
    open_s = time.perf_counter() - start

    cpu_start = time.process_time()
    caller = []
    for step in range(steps):
        metrics = {k: v + step * 1e-3 for k, v in STEP_METRICS.items()}
        t0 = time.perf_counter()
        tracking.step(step, metrics, iter_s)
        if eval_every and (step + 1) % eval_every == 0:
            tracking.evaluation(step + 1, EVAL_SCORES)
        caller.append(time.perf_counter() - t0)
    tracker.wait_idle(600)  # the run sends in microseconds: this is the backend's thread writing
    backend_total = time.perf_counter() - start - open_s
    close_start = time.perf_counter()
    tracker.close()
    close_s = time.perf_counter() - close_start
    # The process's CPU time over the steps is the run's sending plus the backend's thread (the
    # only other thread working): on a loaded 2-core machine wall time would count waiting too.
    backend_cpu_s = max(time.process_time() - cpu_start - sum(caller), 0.0) / steps
    caller_s = statistics.mean(caller)
    backend_s = (backend_total + close_s) / steps
    return {"caller_s": caller_s, "caller_p99_s": sorted(caller)[int(0.99 * len(caller))],
            "share": caller_s / iter_s, "backend_s": backend_s, "backend_cpu_s": backend_cpu_s,
            "backend_share": backend_cpu_s / iter_s,
            "open_s": open_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--eval-every", type=int, default=10)
    parser.add_argument("--iter-s", type=float, default=3.0)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in BACKENDS:
            results[name] = measure(name, Path(tmp), args.steps, args.eval_every, args.iter_s)
    print(f"{len(STEP_METRICS)} metrics a step, {args.steps} steps, an evaluation every {args.eval_every}; "
          f"iteration {args.iter_s:.1f} s (demo-cpu)")
    print(f"{'backend':12} {'run thread/iter':>16} {'share':>8} {'p99':>10} {'backend thread/iter':>20} "
          f"{'its CPU':>10} {'share':>8} {'open (once)':>12}")
    for name, r in results.items():
        print(f"{name:12} {r['caller_s'] * 1e6:13.0f} us {r['share']:8.4%} {r['caller_p99_s'] * 1e6:7.0f} us "
              f"{r['backend_s'] * 1e3:17.2f} ms {r['backend_cpu_s'] * 1e3:7.2f} ms {r['backend_share']:8.3%} "
              f"{r['open_s']:10.2f} s")
    print(json.dumps({"iter_s": args.iter_s, "metrics_per_step": len(STEP_METRICS), **results}))


if __name__ == "__main__":
    main()
