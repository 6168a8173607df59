"""A real pretrained LLM through the whole pipeline (issue 13): SmolLM2-135M-Instruct as
policy, reference, token RM and LLM judge, two OREAL iterations under Prefect, then
``oreal eval`` on real benchmark prompts and the checkpoint reloaded in vLLM and HF.

One module-scoped run feeds every check: the judge server (`oreal serve-judge`'s
JudgeServer) and the vLLM rollout engine each take 30-80 s to start on 2 cores.
"""

from __future__ import annotations

import json
import time

import pyarrow.compute as pc
import pytest

from flows.cli import main
from flows.train import train
from oreal_core.config import load_config
from oreal_core.eval.problems import load_eval_set
from oreal_core.rollout.base import SamplingSpec
from oreal_core.rollout.hf_engine import HFEngine
from oreal_core.store import Lake
from oreal_core.store.query import run_query
from oreal_core.train.checkpoint import CheckpointLayout
from oreal_core.verify.grader import parse_grade
from oreal_core.verify.serve import JudgeServer

pytestmark = pytest.mark.slow

CONFIG = "smollm2-cpu"
RUN = "smol"
EVAL_BENCHES = "gsm8k,math500"
EVAL_LIMIT = 2
EVAL_TOKENS = 96


@pytest.fixture(scope="module")
def judge(smollm2_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("judge") / "vllm.log"
    with JudgeServer(smollm2_dir, max_model_len=2048, log_path=log) as server:
        yield server


@pytest.fixture(scope="module")
def run(judge, smollm2_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("smollm2-run")
    # The config's own task and defaults are the learning run's (benchmarks/smollm2_learn.py); this
    # run switches on everything the model can be (token RM, judge) on the mixed prompt file.
    overrides = [f"model.policy={smollm2_dir}", "verifier.judge.enabled=true", f"verifier.judge.hosts=[\"{judge.host}\"]",
                 "token_rm.enabled=true", "actor.freeze_steps=1", "data.prompts=oreal_core/data/train/smollm2_mix.jsonl",
                 "data.shuffle=false", "data.prompts_per_step=4", "rollout.samples_per_prompt=4", "rollout.max_new_tokens=192",
                 "run.eval_every=0",
                 "run.total_steps=2",
                 f"store.uri={root}/lake", f"train.checkpoint_dir={root}/ckpt"]
    start = time.perf_counter()
    result = train(CONFIG, overrides, RUN)
    cfg = load_config(CONFIG, overrides)
    lake = Lake.open(cfg.store)
    tables = {t: [lake.read(RUN, s, t) for s in range(2)] for t in ("samples", "verdicts", "scored", "metrics")}
    return {"result": result, "cfg": cfg, "overrides": overrides, "tables": tables, "root": root,
            "train_s": time.perf_counter() - start}


def test_two_iterations_commit_every_stage(run):
    assert run["result"]["steps_run"] == 2
    per_step = run["cfg"].data.prompts_per_step * run["cfg"].rollout.samples_per_prompt
    for step in range(2):
        samples = run["tables"]["samples"][step]
        assert samples.num_rows == per_step and run["tables"]["verdicts"][step].num_rows == per_step
        assert min(pc.list_value_length(samples["prompt_token_ids"]).to_pylist()) > 30  # the real chat template
    print(f"\n2 iterations in {run['train_s']:.0f}s")


def test_judge_replies_are_stored_and_unparseable_ones_recorded(run):
    asked = 0
    for step, verdicts in enumerate(run["tables"]["verdicts"]):
        failed = 0
        for r in verdicts.to_pylist():
            if r["outcome"] == "truncated":  # no stop word: graded without asking the judge
                assert r["judge_reply"] is None
                continue
            asked += 1  # judge_when: always
            assert r["rule_outcome"] is not None and r["judge_reply"] is not None, r
            fell_back = r["reason"].startswith("judge error:")  # neither A nor B: on_judge_error=rule
            failed += fell_back
            assert r["source"] == ("rule" if fell_back else "judge"), r
            assert (parse_grade(r["judge_reply"]) is None) == fell_back, r
        metrics = _metrics(run, step)
        assert metrics["health/judge_error_rate"] == pytest.approx(failed / metrics["health/judge_asked"])
    assert asked > 0


def test_rule_vs_judge_disagreements_are_recorded(run):
    for step, verdicts in enumerate(run["tables"]["verdicts"]):
        decided = [r for r in verdicts.to_pylist() if r["source"] == "judge"
                   and {r["outcome"], r["rule_outcome"]} <= {"correct", "incorrect"}]
        disagree = sum(r["outcome"] != r["rule_outcome"] for r in decided)
        assert _metrics(run, step)["health/rule_judge_disagree_rate"] == pytest.approx(
            disagree / len(decided) if decided else 0.0)
    sql = ("SELECT step, count(*) FILTER (WHERE rule_outcome IS NOT NULL) AS judged, "
           "count(*) FILTER (WHERE outcome <> 'truncated') AS finished "
           f"FROM verdicts WHERE run_id = '{RUN}' GROUP BY step ORDER BY step")
    rows = json.loads(run_query(run["cfg"], sql, "json"))
    assert [r["judged"] for r in rows] == [r["finished"] for r in rows] and len(rows) == 2


def _metrics(run, step: int) -> dict[str, float]:
    return {m["name"]: m["value"] for m in run["tables"]["metrics"][step].to_pylist()}


def test_token_rm_scores_every_response_token_of_the_kept_samples(run):
    kept = 0
    for samples, scored in zip(run["tables"]["samples"], run["tables"]["scored"], strict=True):
        lengths = dict(zip(zip(samples["prompt_id"].to_pylist(), samples["sample_idx"].to_pylist(), strict=True),
                           samples["num_tokens"].to_pylist(), strict=True))
        for row in scored.to_pylist():
            if row["kept"]:
                kept += 1
                n = lengths[(row["prompt_id"], row["sample_idx"])]
                assert len(row["token_rm_scores"]) == len(row["token_weights"]) == n
    assert kept > 0, "no group with 0 < pass rate < 1 in two steps: nothing to check"


def test_eval_on_real_benchmarks_then_vllm_and_hf_give_the_same_greedy_output(run, capsys):
    checkpoint = CheckpointLayout(run["root"] / "ckpt" / RUN).hf_dir(1)
    assert (checkpoint / "config.json").is_file() and (checkpoint / "tokenizer.json").is_file()
    sets = [a for o in run["overrides"] + [f"eval.max_new_tokens={EVAL_TOKENS}"] for a in ("--set", o)]
    code = main(["eval", "--config", CONFIG, *sets, "--checkpoint", str(checkpoint), "--bench", EVAL_BENCHES,
                 "--limit", str(EVAL_LIMIT), "--run-id", "smol-eval"])
    assert code == 0, capsys.readouterr().err
    assert "gsm8k" in capsys.readouterr().out
    cfg = load_config(CONFIG, run["overrides"] + [f"eval.max_new_tokens={EVAL_TOKENS}", f"eval.limit={EVAL_LIMIT}"])
    records = Lake.open(cfg.store).read("smol-eval", 1, "eval").to_pylist()
    assert len(records) == 2 * EVAL_LIMIT
    vllm_text = {(r["bench"], r["problem_id"]): r["response"] for r in records}
    hf = HFEngine(checkpoint, stop_word=cfg.rollout.stop_word, prompts_per_batch=1)  # unpadded, as vLLM runs it
    spec = SamplingSpec.greedy(EVAL_TOKENS, cfg.rollout.max_length, cfg.rollout.stop_word)
    for bench in EVAL_BENCHES.split(","):
        prompts = load_eval_set(bench, cfg, hf.tokenizer).prompts
        for prompt, sample in zip(prompts, hf.generate(prompts, spec).samples, strict=True):
            assert sample.response == vllm_text[(bench, prompt.prompt_id)], (bench, prompt.prompt_id)
