"""The evaluation runner on the tiny policy (HF engine): records, metrics, resume, the report."""

from __future__ import annotations

import json

import pytest

from oreal_core.eval.estimators import pass_at_k
from oreal_core.eval.runner import checkpoint_step, evaluate
from oreal_core.rollout.hf_engine import HFEngine
from oreal_core.store import ConfigMismatch, Lake
from oreal_core.store.query import run_query
from oreal_core.store.report import write_report
from oreal_core.types import FinishReason
from oreal_core.verify.verifier import VerifyItem
from tests.eval.conftest import STOP, eval_cfg


@pytest.fixture(scope="module")
def greedy_run(tmp_path_factory, policy_dir, hf_engine, verifier):
    lake_dir = tmp_path_factory.mktemp("lake")
    cfg = eval_cfg(lake_dir)
    summary = evaluate(cfg, policy_dir, run_id="r1", benches=["synthetic", "gsm8k"], engine=hf_engine,
                       verifier=verifier)
    return cfg, summary


def test_summary_and_records_agree_and_duckdb_reads_them(greedy_run, policy_dir):
    cfg, summary = greedy_run
    assert summary.step == 20 == checkpoint_step(policy_dir)  # from the checkpoint's name
    assert [b.bench for b in summary.benches] == ["synthetic", "gsm8k"]
    rows = json.loads(run_query(cfg, "SELECT * FROM eval WHERE run_id = 'r1' ORDER BY bench, problem_id", "json"))
    assert len(rows) == 12 and {r["step"] for r in rows} == {20}
    assert {r["checkpoint"] for r in rows} == {str(policy_dir)}
    for bench in summary.benches:
        mine = [r for r in rows if r["bench"] == bench.bench]
        assert bench.problems == len(mine) == bench.sampled_problems == 6 and bench.samples_per_problem == 1
        assert bench.pass1.value == pytest.approx(sum(r["outcome"] == "correct" for r in mine) / 6)
        assert bench.pass_k.value == bench.pass1.value and bench.k == 1
        assert bench.pass1.low <= bench.pass1.value <= bench.pass1.high
        assert bench.mean_tokens == pytest.approx(sum(r["num_tokens"] for r in mine) / 6)
        assert bench.truncation_rate == pytest.approx(sum(r["outcome"] == "truncated" for r in mine) / 6)
        assert sum(count for _, count in bench.outcomes) == 6 and bench.problems_per_s > 0
    assert sorted(r["problem_id"] for r in rows if r["bench"] == "gsm8k") == [f"gsm8k-{i}" for i in range(6)]


def test_records_carry_the_verifiers_verdicts(greedy_run, verifier):
    cfg, _ = greedy_run
    rows = json.loads(run_query(cfg, "SELECT * FROM eval WHERE bench = 'synthetic' ORDER BY problem_id", "json"))
    from oreal_core.data.tasks import synthetic_splits

    gold = {p.problem_id: p.answer for p in synthetic_splits(cfg.data.synthetic)[1]}
    verdicts = verifier.verify([VerifyItem(r["response"], FinishReason(r["finish_reason"]), gold[r["problem_id"]])
                                for r in rows])
    assert [v.outcome.value for v in verdicts] == [r["outcome"] for r in rows]
    assert [v.reward for v in verdicts] == pytest.approx([r["reward"] for r in rows])


def test_synthetic_breakdown_by_operand_count(greedy_run):
    _, summary = greedy_run
    groups = summary.bench("synthetic").breakdown
    assert {g.key for g in groups} == {"level"} and sum(g.problems for g in groups) == 6
    assert summary.bench("gsm8k").breakdown == ()  # the packaged file has no subject/level fields


def test_report_draws_eval_accuracy_per_checkpoint(greedy_run, tmp_path):
    cfg, _ = greedy_run
    out = write_report(cfg, "r1", tmp_path / "report")
    assert (out / "eval_accuracy.png").read_bytes()[:4] == b"\x89PNG"
    assert "](eval_accuracy.png)" in (out / "summary.md").read_text()


def test_pass_at_k_with_several_samples(tmp_path, policy_dir, hf_engine, verifier):
    cfg = eval_cfg(tmp_path, "eval.samples=4", "eval.temperature=1.0", "eval.pass_k=2", "eval.limit=3")
    summary = evaluate(cfg, policy_dir, run_id="k", benches=["synthetic"], step=5, engine=hf_engine,
                       verifier=verifier)
    bench = summary.bench("synthetic")
    assert (bench.samples_per_problem, bench.k, bench.problems) == (4, 2, 3)
    table = Lake.open(cfg.store).read("k", 5, "eval").to_pylist()
    assert sorted((r["problem_id"], r["sample_idx"]) for r in table) == sorted(
        (pid, i) for pid in {r["problem_id"] for r in table} for i in range(4))
    counts = {}
    for r in table:
        n, c = counts.get(r["problem_id"], (0, 0))
        counts[r["problem_id"]] = (n + 1, c + (r["outcome"] == "correct"))
    assert bench.pass_k.value == pytest.approx(sum(pass_at_k(n, c, 2) for n, c in counts.values()) / 3)


class _InterruptedEngine(HFEngine):
    """The real HF engine, killed (KeyboardInterrupt) when asked for its ``fail_on``-th batch."""

    def __init__(self, *args, fail_on: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls, self.fail_on = 0, fail_on
        self.sampled: list[str] = []

    def generate(self, prompts, spec):
        self.calls += 1
        if self.calls == self.fail_on:
            raise KeyboardInterrupt
        self.sampled += [p.prompt_id for p in prompts]
        return super().generate(prompts, spec)


def test_interrupted_eval_resumes_without_resampling(tmp_path, policy_dir, greedy_run, verifier):
    cfg = eval_cfg(tmp_path / "lake")  # same settings as greedy_run: commits of 4 problems
    engine = _InterruptedEngine(policy_dir, stop_word=STOP, fail_on=3)
    with pytest.raises(KeyboardInterrupt):  # synthetic: 4 + 2 problems committed, gsm8k's first batch dies
        evaluate(cfg, policy_dir, run_id="r1", benches=["synthetic", "gsm8k"], engine=engine, verifier=verifier)
    lake = Lake.open(cfg.store)
    assert lake.read("r1", 20, "eval").num_rows == 6
    engine = _InterruptedEngine(policy_dir, stop_word=STOP, fail_on=0)
    summary = evaluate(cfg, policy_dir, run_id="r1", benches=["synthetic", "gsm8k"], engine=engine,
                       verifier=verifier)
    assert engine.sampled == [f"gsm8k-{i}" for i in range(6)]  # synthetic was not sampled again
    assert [b.sampled_problems for b in summary.benches] == [0, 6]
    resumed = lake.read("r1", 20, "eval").sort_by([("bench", "ascending"), ("problem_id", "ascending")])
    _, reference = greedy_run
    reference_rows = Lake.open(greedy_run[0].store).read("r1", 20, "eval")
    reference_rows = reference_rows.sort_by([("bench", "ascending"), ("problem_id", "ascending")])
    assert resumed.drop_columns(["checkpoint"]).equals(reference_rows.drop_columns(["checkpoint"]))  # greedy
    assert [b.pass1 for b in summary.benches] == [b.pass1 for b in reference.benches]


def test_rerun_samples_nothing_and_other_settings_are_refused(tmp_path, policy_dir, hf_engine, verifier):
    cfg = eval_cfg(tmp_path, "eval.limit=2")
    evaluate(cfg, policy_dir, run_id="again", benches=["synthetic"], engine=hf_engine, verifier=verifier)
    again = evaluate(cfg, policy_dir, run_id="again", benches=["synthetic"], engine=hf_engine, verifier=verifier)
    assert again.bench("synthetic").sampled_problems == 0 and again.bench("synthetic").problems == 2
    with pytest.raises(ConfigMismatch, match="'again'"):  # records of other settings never mix
        evaluate(eval_cfg(tmp_path, "eval.limit=3"), policy_dir, run_id="again", benches=["synthetic"],
                 engine=hf_engine, verifier=verifier)
