"""The demo's iteration time against an earlier revision of this repository, side by side.

Issue 12's demo target is relative ("120 iterations in under half of the time they took when
the issue was filed"), and this 2-core machine's speed drifts by 2x between hours, so an
absolute figure from another day says little. This script runs the same work, `oreal train
--config demo-cpu` for ``--steps`` iterations (no evaluation, SFT policy cached in
`runs/sft`), alternately from a git worktree of ``--base`` and of HEAD, each run with its
own fresh Prefect home, and compares the seconds per iteration the runs log
("step N/M ... (X.Xs)").

    .venv/bin/python benchmarks/step_time_vs_revision.py [--base 160fb7b] [--steps 40] [--rounds 2]

The default base is the last commit before issue 12's work (weights to the engine through a
disk checkpoint every step, a new prompt shuffle per prompt, the heartbeat of every subflow).
Both revisions run with this checkout's .venv. Last line: JSON with the per-revision median
and mean total seconds of steps 2..N (step 1 starts the engines) and ``ratio`` (HEAD / base,
of the totals: the runs log seconds to 0.1 s, too coarse for a ratio of medians).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench_env import REPO  # noqa: E402 - sets the environment before anything is run

ISSUE_12_BASE = "160fb7b"
STEP_LINE = re.compile(r"step (\d+)/(\d+) .*\((\d+(?:\.\d+)?)s\)")
RUN = ("import sys, flows.cli as cli; sys.exit(cli.main(['train', '--config', 'demo-cpu', '--run-id', sys.argv[1], "
       "'--set', f'run.total_steps={sys.argv[2]}', '--set', 'run.eval_every=0']))")


def worktree(rev: str, path: Path) -> Path:
    """A detached worktree of ``rev`` at ``path`` that reads the SFT policy from this checkout's cache."""
    added = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(path), rev],
                           capture_output=True, text=True)
    if added.returncode:
        raise RuntimeError(f"no worktree of {rev!r}: {added.stderr.strip()}")
    cache = REPO / "runs" / "sft"
    cache.mkdir(parents=True, exist_ok=True)  # the first run builds the SFT policy here if it is missing
    (path / "runs").mkdir(exist_ok=True)
    (path / "runs" / "sft").symlink_to(cache)
    return path


def step_seconds(logs: list[Path], run_id: str, steps: int) -> list[float]:
    """Seconds of each step, from the run's console output and its oreal.log (newer revisions
    send the step lines to the log file and keep a status line on the terminal)."""
    seconds: dict[int, float] = {}
    for log in logs:
        for match in STEP_LINE.finditer(log.read_text(errors="replace")):
            seconds[int(match[1])] = float(match[3])
    missing = set(range(1, steps + 1)) - set(seconds)
    if missing:
        raise RuntimeError(f"run {run_id}: no time logged for steps {sorted(missing)}; see {logs[0].parent}")
    return [seconds[s] for s in range(1, steps + 1)]


def run_once(tree: Path, run_id: str, steps: int, logs: Path) -> list[float]:
    """One run from ``tree``; its console output and log files are kept under ``logs/run_id``
    (the worktree, and the run's checkpoint folder in it, go when the benchmark ends)."""
    kept = logs / run_id
    kept.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="prefect-home-") as home, open(kept / "console.out", "w") as out:
        env = {**os.environ, "PREFECT_HOME": home, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
        proc = subprocess.run([sys.executable, "-c", RUN, run_id, str(steps)], cwd=tree, env=env, stdout=out,
                              stderr=subprocess.STDOUT)
    for log in tree.glob(f"checkpoints/{run_id}/*.log"):
        shutil.copy(log, kept / log.name)
    if proc.returncode:
        raise RuntimeError(f"{tree.name} run {run_id} exited {proc.returncode}; see {kept}")
    return step_seconds(sorted(kept.iterdir()), run_id, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=ISSUE_12_BASE)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    if args.steps < 2 or args.rounds < 1:
        parser.error("--steps must be at least 2 (step 1 starts the engines and is not counted), --rounds at least 1")
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], check=True, capture_output=True,
                          text=True).stdout.strip()
    root = Path(tempfile.mkdtemp(prefix="step-time-vs-rev-"))
    revs = {"base": args.base, "head": head}
    trees: dict[str, Path] = {}
    steps: dict[str, list[float]] = {"base": [], "head": []}
    try:
        for name, rev in revs.items():
            trees[name] = worktree(rev, root / name)
        for r in range(args.rounds):
            for name, tree in trees.items():  # alternating: the machine's drift hits both alike
                times = run_once(tree, f"{name}{r}", args.steps, root / "logs")[1:]
                steps[name] += times
                print(f"round {r} {name:<4} median {statistics.median(times):.2f} s/step, steps 2..{args.steps} "
                      f"{sum(times):.1f} s", flush=True)
    finally:
        for tree in trees.values():
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(tree)], capture_output=True)
    print(f"run logs kept in {root / 'logs'}")
    result = {name: {"rev": revs[name], "median_s": round(statistics.median(t), 2),
                     "per_run_total_s": round(sum(t) / args.rounds, 1)} for name, t in steps.items()}
    result["ratio"] = round(result["head"]["per_run_total_s"] / result["base"]["per_run_total_s"], 3)
    load = os.getloadavg()[0]
    print(f"demo-cpu iteration, {args.rounds} alternating runs of {args.steps} steps each; load average {load:.1f} at the end")
    for name in ("base", "head"):
        print(f"  {name} {result[name]['rev']}: median {result[name]['median_s']:.2f} s/step, "
              f"{result[name]['per_run_total_s']:.1f} s for steps 2..{args.steps}")
    print(f"  HEAD / base = {result['ratio']:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
