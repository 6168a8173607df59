"""The gate of a cycle: challenger against champion on the same frozen problems, per problem.

Both models are evaluated by the cycle's training run itself (its step-0 evaluation is the
start model, the champion; its last one the challenger), on ``eval.benchmarks`` with the
same verifier, and their per-problem records are in the lake's ``eval`` table under the
cycle's run id. The comparison is paired (oreal_core/eval/paired.py) and the rule is
``retrain.min_gain`` / ``max_regression`` / ``guard_benchmarks``. The challenger is the
run's *last* checkpoint: choosing the best of its evaluations would select on the very
problems the gate then tests on, and overstate the gain.
"""

from __future__ import annotations

from oreal_core.config import OrealConfig
from oreal_core.eval.metrics import per_problem_counts
from oreal_core.eval.paired import GateDecision, PairedComparison, compare, decide
from oreal_core.eval.problems import load_eval_set
from oreal_core.eval.runner import evaluate
from oreal_core.eval.stored import StepRecords
from oreal_core.rollout import SamplingSpec
from oreal_core.rollout.policy_dir import inspect_policy_dir, load_policy_tokenizer
from oreal_core.store import Lake

Scores = dict[str, dict[str, float]]  # benchmark -> problem id -> pass@1 of that problem


def evaluated_scores(cfg: OrealConfig, lake: Lake, run_id: str, step: int, checkpoint: str) -> Scores:
    """Per-problem pass@1 of ``checkpoint`` on every eval problem, from the records at (run_id,
    step); what the run's own evaluation did not commit (killed in its last one) is evaluated
    now, into the same records."""
    tokenizer = load_policy_tokenizer(inspect_policy_dir(checkpoint))
    eval_sets = [load_eval_set(name, cfg, tokenizer) for name in cfg.eval.benchmarks]
    samples = SamplingSpec.from_eval(cfg.eval, cfg.rollout).n
    stored = StepRecords(lake, run_id, step)
    if any({p.prompt_id for p in s.prompts} - stored.finished_problems(checkpoint, s.name, samples)
           for s in eval_sets):
        evaluate(cfg, checkpoint, run_id=run_id, step=step, lake=lake)
        stored = StepRecords(lake, run_id, step)
    scores: Scores = {}
    for eval_set in eval_sets:
        wanted = {p.prompt_id for p in eval_set.prompts}
        counts = per_problem_counts([r for r in stored.of(checkpoint, eval_set.name) if r.problem_id in wanted])
        scores[eval_set.name] = {pid: correct / n for pid, (n, correct) in counts.items()}
    return scores


def gate(cfg: OrealConfig, champion: Scores, challenger: Scores) -> tuple[dict[str, PairedComparison], GateDecision]:
    comparisons = {bench: compare(champion[bench], challenger[bench]) for bench in cfg.eval.benchmarks}
    rule = cfg.retrain
    return comparisons, decide(comparisons, guards=rule.guard_benchmarks, min_gain=rule.min_gain,
                               max_regression=rule.max_regression)


def gate_markdown(lineage: str, cycle_id: str, champion: str, challenger: str, comparisons: dict,
                  verdict: str, reason: str) -> str:
    """The decision as a Prefect artifact: both models per benchmark, the paired gain, the verdict.
    ``comparisons``: benchmark -> asdict(PairedComparison) (as gate.json stores it)."""
    rows = []
    for bench, c in comparisons.items():
        p = "-" if c["mcnemar_p"] is None else f"{c['mcnemar_p']:.3g}"
        rows.append(f"| {bench} | {_interval(c['a_pass1'])} | {_interval(c['b_pass1'])} | "
                    f"{c['gain']['value']:+.3f} [{c['gain']['low']:+.3f}, {c['gain']['high']:+.3f}] | "
                    f"{c['gained']} / {c['lost']} of {c['problems']} | {p} |")
    return "\n".join([
        f"# Retraining cycle `{cycle_id}` (lineage `{lineage}`): **{verdict}**", "",
        f"Champion `{champion}` against challenger `{challenger}`, paired on the same problems.", "",
        "| benchmark | champion pass@1 | challenger pass@1 | gain [95 %] | gained / lost | McNemar p |",
        "|---|---|---|---|---|---|", *rows, "", f"Gate: {reason}", ""])


def _interval(i: dict) -> str:
    return f"{i['value']:.3f} [{i['low']:.3f}, {i['high']:.3f}]"
