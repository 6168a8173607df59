"""Three retraining cycles of the tiny model, each after a new prompt file lands (issue 28).

Per cycle: the start (champion) and end (challenger) pass@1 on the 500 held-out synthetic
problems with their 95 % intervals, the paired gain with its interval and McNemar p, the
gate's decision and the cycle's wall time. Then the champion after the last cycle against
the champion after the first, paired on the same problems. Everything runs through the real
flow (`flows/retrain.py`) in this process, on a fresh lake under --out.

    .venv/bin/python benchmarks/retrain.py [--cycles 3] [--steps 80] [--new-prompts 200]

Last line: one JSON object (benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import replace
from pathlib import Path

from flows.retrain import retrain
from oreal_core.config import load_config
from oreal_core.data.synthetic import generate
from oreal_core.data.tasks import synthetic_spec
from oreal_core.eval.paired import compare
from oreal_core.retrain.cycle import CycleRecords
from oreal_core.retrain.gate import evaluated_scores
from oreal_core.retrain.incoming import add_prompt_file
from oreal_core.retrain.stages import Cycle
from oreal_core.store import Lake

LINEAGE = "bench"
CONFIG = "demo-cpu"


def new_prompt_file(cfg, folder: Path, cycle: int, n: int) -> Path:
    """``n`` fresh train-split problems (the split is a function of the question, so none is held out)."""
    problems = generate(synthetic_spec(replace(cfg.data.synthetic)), "train", n, seed=1000 + cycle)
    path = folder / f"arrived-{cycle}.jsonl"
    path.write_text("".join(json.dumps({"question": p.question, "gold_answer": p.answer}) + "\n" for p in problems))
    return path


def champion_scores(records: CycleRecords, cycle_id: str, decision: dict) -> tuple[str, dict]:
    """The champion after ``cycle_id`` and its per-problem scores (the cycle's own evaluations)."""
    cycle = Cycle(records.plan(cycle_id))
    gate = records.read(cycle_id, "gate")
    run_cfg, lake = cycle.run_config(), cycle.lake
    if decision["verdict"] == "promoted":
        return decision["challenger"], evaluated_scores(run_cfg, lake, cycle_id, gate["step"], gate["challenger_checkpoint"])
    return decision["champion"], evaluated_scores(run_cfg, lake, cycle_id, 0, gate["champion_checkpoint"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=3)
    parser.add_argument("--steps", type=int, default=80, help="OREAL steps per cycle (run.total_steps)")
    parser.add_argument("--new-prompts", type=int, default=200, help="prompts in each cycle's new file")
    parser.add_argument("--config-prompts", type=int, default=512, help="retrain.config_prompts")
    parser.add_argument("--out", default="runs/bench-retrain")
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    overrides = [f"store.uri={out}/lake", f"train.checkpoint_dir={out}/ckpt", f"run.total_steps={args.steps}",
                 f"run.eval_every={args.steps}", f"retrain.config_prompts={args.config_prompts}"]
    cfg = load_config(CONFIG, overrides)
    records = CycleRecords(Lake.open(cfg.store), LINEAGE)
    rows, champions = [], []
    for number in range(1, args.cycles + 1):
        add_prompt_file(cfg, LINEAGE, new_prompt_file(cfg, out, number, args.new_prompts))
        began = time.perf_counter()
        decision = retrain(LINEAGE, CONFIG, overrides)
        wall = time.perf_counter() - began
        c = records.read(decision["cycle_id"], "gate")["comparisons"]["synthetic"]
        rows.append({"cycle": decision["cycle_id"], "start_pass1": c["a_pass1"], "end_pass1": c["b_pass1"],
                     "gain": c["gain"], "gained": c["gained"], "lost": c["lost"], "mcnemar_p": c["mcnemar_p"],
                     "verdict": decision["verdict"], "champion": decision["champion"], "wall_s": round(wall, 1)})
        champions.append(champion_scores(records, decision["cycle_id"], decision))
    print(f"{'cycle':<12} {'start pass@1':<22} {'end pass@1':<22} {'gain [95 %]':<26} {'p':>7}  {'decision':<9} "
          f"{'champion':<9} {'wall':>6}")
    for r in rows:
        def iv(i):
            return f"{i['value']:.3f} [{i['low']:.3f}, {i['high']:.3f}]"
        gain = f"{r['gain']['value']:+.3f} [{r['gain']['low']:+.3f}, {r['gain']['high']:+.3f}]"
        print(f"{r['cycle']:<12} {iv(r['start_pass1']):<22} {iv(r['end_pass1']):<22} {gain:<26} "
              f"{r['mcnemar_p']:>7.3g}  {r['verdict']:<9} {r['champion']:<9} {r['wall_s']:>5.0f}s")
    (first_id, first), (last_id, last) = champions[0], champions[-1]
    overall = compare(first["synthetic"], last["synthetic"])
    print(f"champion after cycle {args.cycles} ({last_id}) vs after cycle 1 ({first_id}): "
          f"{overall.b_pass1.value:.3f} vs {overall.a_pass1.value:.3f}, paired gain {overall.gain.value:+.3f} "
          f"[{overall.gain.low:+.3f}, {overall.gain.high:+.3f}], McNemar p={overall.mcnemar_p:.3g}")
    print(json.dumps({"cycles": rows, "steps": args.steps, "champion_after_first": first_id,
                      "champion_after_last": last_id, "last_vs_first_gain": overall.gain.value,
                      "last_vs_first_gain_low": overall.gain.low, "last_vs_first_gain_high": overall.gain.high,
                      "wall_s": round(sum(r["wall_s"] for r in rows), 1)}))


if __name__ == "__main__":
    main()
