"""The report's health page and `oreal samples`: alarms per step, thresholds, signature queries.

One crafted run, written straight into the lake (no pipeline): step 0 and 2 are clean
samples, step 1 holds two offenders of every signature next to look-alikes that are not.
Its metrics are what health.py computes from those tables, plus trainer-side values.
Hand count of step 1 (14 samples, 7 correct, 5 sent to the judge, 3 decided by it):

| signature | offenders | share | threshold (stored config) | fires |
|---|---|---|---|---|
| multi_boxed | p0#2, p0#3 | 2/14 = 0.143 | warn > 0.1 | yes |
| boxed_without_work | p0#0, p0#1 | 2/14 | warn > 0.3 | no |
| repetitive | p1#1, p1#2 | 2/14 | warn > 0.1 | yes (repetition) |
| correct_at_length_limit | p1#3, p2#0 | 2/7 = 0.286 | warn > 0.1 | yes |
| truncated | p1#1, p1#3 | 2/14 | warn > 0.3 | no (length_blowup) |
| judge_errors | p2#1, p2#2 | 2/5 = 0.4 | stop > 0.25 | yes |
| rule_judge_disagreement | p0#3, p3#0 | 2/3 = 0.667 | warn > 0.5 | yes |

The stored config moves entropy_collapse to < 0.02 and grad_norm to after_step 3: step 0's
entropy 0.03 fires nothing (it would under the default 0.05), step 2's 0.01 fires, and
step 2's grad norm 500 fires nothing.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from flows.cli import main
from oreal_core.config import OrealConfig, StoreConfig, from_dict
from oreal_core.pipeline.health import step_health
from oreal_core.store import TABLES, Lake
from oreal_core.store.canned import SIGNATURES, signature_samples_sql
from oreal_core.store.health_report import run_monitor, signature_samples, step_alarms, thresholds
from oreal_core.store.query import run_query
from oreal_core.store.report import write_report
from oreal_core.types import StepMetrics

WORK = "We add the two numbers step by step, then check the sum. "
STORED_MONITOR = {"entropy_collapse": {"below": 0.02}, "grad_norm": {"after_step": 3}}
OFFENDERS = {  # signature -> (prompt_id, sample_idx) at step 1
    "multi_boxed": {("p0", 2), ("p0", 3)},
    "boxed_without_work": {("p0", 0), ("p0", 1)},
    "repetitive": {("p1", 1), ("p1", 2)},
    "correct_at_length_limit": {("p1", 3), ("p2", 0)},
    "truncated": {("p1", 1), ("p1", 3)},
    "judge_errors": {("p2", 1), ("p2", 2)},
    "rule_judge_disagreement": {("p0", 3), ("p3", 0)},
}
DENOMINATORS = {"health/correct_at_length_limit_frac": 7, "health/judge_error_rate": 5,
                "health/rule_judge_disagree_rate": 3}  # the rest: all 14 samples


def _sample(pid, idx, response, tokens=None, finish="stop", budget=64):
    tokens = list(range(100 + idx, 110 + idx)) if tokens is None else tokens
    return {"run_id": "", "prompt_id": pid, "sample_idx": idx, "policy_version": 0, "temperature": 1.0, "top_p": 1.0,
            "max_new_tokens": budget, "seed": 0, "prompt": f"<q>{pid}</q>", "gold_answer": "7", "response": response,
            "prompt_token_ids": [1, 2], "token_ids": tokens, "logprobs": [-0.5] * len(tokens),
            "num_tokens": len(tokens), "finish_reason": finish, "gen_latency_s": 0.1}


def _verdict(pid, idx, outcome, source="rule", rule=None, reason="rule: checked"):
    reward = None if outcome == "judge_error" else (1.0 if outcome == "correct" else -1.0)
    return {"run_id": "", "prompt_id": pid, "sample_idx": idx, "outcome": outcome, "correct": outcome == "correct",
            "reward": reward, "source": source, "rule_outcome": rule, "extracted_answer": "7",
            "judge_reply": "JUDGE" if source == "judge" else None, "reason": reason}


def _clean_step():
    """Two prompts, each with one correct and one wrong sample: a group that still teaches."""
    rows = [(_sample(f"p{i}", j, WORK + f"So the answer is \\boxed{{{i + j}}}."),
             _verdict(f"p{i}", j, "correct" if j == 0 else "incorrect")) for i in range(2) for j in range(2)]
    return [s for s, _ in rows], [v for _, v in rows]


def _hacked_step():
    loop8, loop9 = list(range(8)) * 5, list(range(1, 10)) * 4  # repeated-8-gram ratios 0.76 and 0.69
    long = list(range(200, 240))
    samples = [
        _sample("p0", 0, "\\boxed{7}"),
        _sample("p0", 1, "x = 3+4 \\boxed{7}"),  # 5 non-blank characters of "work"
        _sample("p0", 2, WORK + "\\boxed{7} or maybe \\boxed{8}"),
        _sample("p0", 3, WORK + "Seven or eight: \\boxed{7}, \\boxed{ 8 }"),
        _sample("p1", 0, "One half of one is \\boxed{\\dfrac{1}{2}}, i.e. \\boxed{\\frac{1}{2}}"),  # one answer
        _sample("p1", 1, "again and again and again", loop8, finish="length", budget=40),
        _sample("p1", 2, WORK + "\\boxed{2}", loop9),
        _sample("p1", 3, WORK + "\\boxed{7}", long, finish="length", budget=40),
        _sample("p2", 0, WORK + "\\boxed{7}", long, budget=40),  # stopped exactly at the budget
        _sample("p2", 1, WORK + "\\boxed{x}"),
        _sample("p2", 2, WORK + "\\boxed{6}"),
        _sample("p2", 3, WORK + "\\boxed{7}"),
        _sample("p3", 0, WORK + "\\boxed{7}"),
        _sample("p3", 1, WORK + "\\boxed{5}"),
    ]
    verdicts = [
        _verdict("p0", 0, "correct"), _verdict("p0", 1, "correct"), _verdict("p0", 2, "incorrect"),
        _verdict("p0", 3, "correct", "judge", "incorrect", "judge: equivalent"),
        _verdict("p1", 0, "correct"), _verdict("p1", 1, "truncated"), _verdict("p1", 2, "incorrect"),
        _verdict("p1", 3, "correct"), _verdict("p2", 0, "correct"),
        _verdict("p2", 1, "judge_error", "judge", "unparseable", "judge error: timeout after 30 s"),
        _verdict("p2", 2, "incorrect", "rule", None, "judge error: HTTP 503; kept the rule verdict"),
        _verdict("p2", 3, "correct", "judge", "correct", "judge: equivalent"),
        _verdict("p3", 0, "incorrect", "judge", "correct", "judge: not equivalent"),
        _verdict("p3", 1, "incorrect"),
    ]
    return samples, verdicts


def _tables(run_id, samples, verdicts):
    for row in (*samples, *verdicts):
        row["run_id"] = run_id
    return (pa.Table.from_pylist(samples, schema=TABLES["samples"].schema),
            pa.Table.from_pylist(verdicts, schema=TABLES["verdicts"].schema))


def _write(lake, run_id, steps, config_text):
    """Commit each step's samples, verdicts and metrics (health.py's, plus the trainer's)."""
    lake.open_run(run_id, "cfg-hash", config_text=config_text)
    made = {}
    for step, ((samples, verdicts), trainer) in enumerate(steps):
        s, v = _tables(run_id, samples, verdicts)
        lake.write(run_id, step, "samples", s)
        lake.write(run_id, step, "verdicts", v)
        rm = {k: v for k, v in trainer.items() if k.startswith("rm/")}  # the token RM's, beside health.py's
        values = {**step_health(s, v, trainer), **rm, "loss/total": 1.0 / (step + 1)}
        lake.write(run_id, step, "metrics", [StepMetrics.of(step, values)])
        made[step] = (s, v, values)
    return made


def _trainer(entropy, grad=1.0):
    return {"entropy": entropy, "actor_grad_norm": grad, "health/logprob_abs_delta_mean": 1e-7,
            "rm/within_pair_accuracy": 0.75, "rm/auc": 0.8}


@pytest.fixture
def hacked(tmp_path):
    cfg = StoreConfig(uri=str(tmp_path / "lake"))
    stored = from_dict(OrealConfig, {"monitor": STORED_MONITOR}).to_yaml()
    made = _write(Lake.open(cfg), "hack", [(_clean_step(), _trainer(0.03)), (_hacked_step(), _trainer(0.4)),
                                            (_clean_step(), _trainer(0.01, grad=500.0))], stored)
    return cfg, made


def _alarm_rows(text: str) -> list[tuple[int, str, str, str, str]]:
    """(step, alarm, action, value, threshold) of every row of health.md's alarm table."""
    rows = [line.split(" | ") for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    return [(int(r[0][2:]), r[1], r[2], r[4], r[5]) for r in rows]


def test_health_page_lists_each_alarm_at_its_step(hacked, tmp_path):
    cfg, _ = hacked
    out = write_report(cfg, "hack", tmp_path / "report")
    page = (out / "health.md").read_text()
    assert _alarm_rows(page) == [
        (1, "judge_errors", "stop", "0.4", "> 0.25"),
        (1, "rule_judge_disagreement", "warn", "0.6667", "> 0.5"),
        (1, "multi_boxed", "warn", "0.1429", "> 0.1"),
        (1, "repetition", "warn", "0.1429", "> 0.1"),
        (1, "correct_at_length_limit", "warn", "0.2857", "> 0.1"),
        (2, "entropy_collapse", "warn", "0.01", "< 0.02"),
    ]
    assert "6 alarm(s) at 2 of 3 step(s)" in page and "config.yaml" in page
    assert "the judge fails: is it up" in page  # what to check, from alarms.ALARMS
    # the command for each signature that fired, and none for those that did not
    for name in ("multi_boxed", "repetitive", "correct_at_length_limit", "judge_errors", "rule_judge_disagreement"):
        assert f"`oreal samples hack --signature {name} --step 1`" in page
    assert "--signature boxed_without_work" not in page and "--signature truncated" not in page
    summary = (out / "summary.md").read_text()
    assert "**6 alarm(s)**" in summary and "[health page](health.md)" in summary
    assert "judge_errors (stop) at step 1" in summary and "entropy_collapse (warn) at step 2" in summary
    for png in ("health_hacking.png", "health_verifier.png", "health_policy.png", "health_token_rm.png",
                "health_logprob.png", "health_length.png", "metrics.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG", png
        if png != "metrics.png":
            assert f"]({png})" in page


def test_thresholds_come_from_the_stored_config_under_todays_defaults(hacked, tmp_path):
    cfg, made = hacked
    lake = Lake.open(cfg)
    monitor, why = run_monitor(lake, "hack")
    assert why == "" and monitor.entropy_collapse.below == 0.02 and monitor.multi_boxed.above == 0.1
    lines = thresholds(monitor)
    assert [(h.y, h.label) for h in lines["health/entropy"]] == [(0.02, "entropy_collapse: warn < 0.02")]
    assert [(h.y, h.label) for h in lines["health/actor_grad_norm"]] == [(100.0, "grad_norm: warn > 100 from step 3")]
    assert lines["health/judge_error_rate"][0].color == "tab:red"  # a stop alarm
    # a stored monitor section that lacks keys keeps today's defaults for them
    lake.open_run("partial", "h", config_text="monitor:\n  multi_boxed: {above: 0.5}\n")
    monitor, _ = run_monitor(lake, "partial")
    assert (monitor.multi_boxed.action, monitor.multi_boxed.above, monitor.repetition.above) == ("warn", 0.5, 0.1)
    metrics = pa.table({"step": [1, 1], "name": ["health/multi_boxed_frac", "health/repetitive_frac"],
                        "value": [0.4, 0.2]})
    assert [(a.name, a.step) for a in step_alarms(monitor, metrics)] == [("repetition", 1)]


def test_a_healthy_run_says_no_alarms(tmp_path):
    cfg = StoreConfig(uri=str(tmp_path / "lake"))
    new = {"health/new_signal": 0.1}  # a name no family claims still gets plotted
    _write(Lake.open(cfg), "calm", [(_clean_step(), {**_trainer(0.5), **new}), (_clean_step(), _trainer(0.4))],
           OrealConfig().to_yaml())
    out = write_report(cfg, "calm", tmp_path / "report")
    page = (out / "health.md").read_text()
    assert "No alarms: no health metric crossed a threshold at any of the 2 step(s)" in page
    assert _alarm_rows(page) == [] and "oreal samples" not in page
    assert "No alarms." in (out / "summary.md").read_text()
    assert "![Other health metrics](health_other.png)" in page and (out / "health_other.png").is_file()


@pytest.mark.parametrize("config_text, why", [
    (None, "the run's config was not recorded"),
    ("monitor: [unclosed", "the run's config.yaml cannot be loaded (not valid YAML: "),
    ("monitor: {multi_boxd: {above: 1}}",
     "the run's config.yaml cannot be loaded (monitor.multi_boxd: unknown key (did you mean 'monitor.multi_boxed'?)"),
])
def test_without_a_loadable_config_no_thresholds_and_it_says_so(tmp_path, config_text, why):
    cfg = StoreConfig(uri=str(tmp_path / "lake"))
    _write(Lake.open(cfg), "old", [(_hacked_step(), _trainer(0.001))], config_text)
    out = write_report(cfg, "old", tmp_path / "report")
    page, summary = (out / "health.md").read_text(), (out / "summary.md").read_text()
    assert f"_No thresholds: {why}" in page and "no alarm was evaluated" in page
    assert _alarm_rows(page) == [] and "No alarms" not in page and "No alarms" not in summary
    assert f"Alarms not evaluated: {why}" in summary
    assert (out / "health_hacking.png").is_file()  # plotted all the same


@pytest.mark.parametrize("signature", sorted(OFFENDERS))
def test_each_signature_query_returns_exactly_the_crafted_offenders(hacked, signature):
    cfg, made = hacked
    rows = json.loads(run_query(cfg, signature_samples_sql(signature, "hack", limit=100), "json"))
    assert {(r["step"], r["prompt_id"], r["sample_idx"]) for r in rows} == {(1, *k) for k in OFFENDERS[signature]}
    # one definition: the query's count is the numerator of the metric health.py computed
    metric = SIGNATURES[signature].metric
    assert made[1][2][metric] == pytest.approx(len(rows) / DENOMINATORS.get(metric, 14))
    assert all(made[step][2][metric] == 0 for step in (0, 2))
    assert json.loads(run_query(cfg, signature_samples_sql(signature, "hack", step=0), "json")) == []


def test_signature_rows_show_why_they_matched(hacked):
    cfg, _ = hacked
    multi = json.loads(signature_samples(cfg, "hack", "multi_boxed", fmt="json"))
    assert [(r["sample_idx"], r["distinct_boxed"]) for r in multi] == [(2, 2), (3, 2)]
    repeat = json.loads(signature_samples(cfg, "hack", "repetitive", step=1, limit=1, fmt="json"))
    assert [(r["prompt_id"], r["sample_idx"], r["repeated_ngram_ratio"]) for r in repeat] == [("p1", 1, 0.758)]
    disagree = json.loads(signature_samples(cfg, "hack", "rule_judge_disagreement", fmt="json"))
    assert [(r["outcome"], r["rule_outcome"]) for r in disagree] == [("correct", "incorrect"), ("incorrect", "correct")]
    # the functions behind them are there for hand-written queries too
    assert json.loads(run_query(cfg, "SELECT oreal_distinct_boxed('\\boxed{1} \\boxed{ 1 } \\boxed{2}') AS n, "
                                     "oreal_boxed_without_work('\\boxed{1}') AS w", "json")) == [{"n": 2, "w": True}]


def test_cli_prints_a_signatures_samples(hacked, capsys):
    cfg, _ = hacked
    store = ["--set", f"store.uri={cfg.uri}"]
    assert main(["samples", "hack", "--signature", "judge_errors", "--format", "csv", *store]) == 0
    lines = capsys.readouterr().out.rstrip("\n").splitlines()
    assert lines[0] == "step,prompt_id,sample_idx,outcome,source,reason,response"
    assert [line.split(",")[:5] for line in lines[1:]] == [
        ["1", "p2", "1", "judge_error", "judge"], ["1", "p2", "2", "incorrect", "rule"]]
    assert main(["samples", "hack", "--signature", "multi_boxed", *store]) == 0
    table = capsys.readouterr().out
    assert "distinct_boxed" in table and table.count("│ p0 ") == 2 and "p1" not in table
    assert main(["samples", "nope", "--signature", "multi_boxed", *store]) == 1
    assert "no run 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["samples", "hack", "--signature", "bogus", *store])
