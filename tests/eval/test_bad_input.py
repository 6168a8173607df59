"""Bad input to the evaluation: clear errors, raised before any sampling, nothing written."""

from __future__ import annotations

import shutil

import pytest

from oreal_core.eval.command import run_eval_command
from oreal_core.eval.problems import EvalInputError, known_benchmarks, parse_bench_list
from oreal_core.eval.runner import evaluate
from oreal_core.store import Lake
from tests.eval.conftest import eval_cfg


def _nothing_written(cfg) -> bool:
    return Lake.open(cfg.store).runs() == []


def test_unknown_benchmark_lists_the_known_ones(tmp_path, policy_dir, hf_engine):
    cfg = eval_cfg(tmp_path / "lake")
    with pytest.raises(EvalInputError, match=r"unknown benchmark 'math5000'.*math500.*synthetic"):
        evaluate(cfg, policy_dir, run_id="x", benches=["synthetic", "math5000"], engine=hf_engine)
    assert _nothing_written(cfg)
    assert {"math500", "aime24", "aime25", "amc2023", "minervamath", "olympiadbench", "gsm8k",
            "synthetic"} <= set(known_benchmarks())


def test_malformed_rows_name_file_and_line(tmp_path, policy_dir, hf_engine):
    bench = tmp_path / "mine.jsonl"
    bench.write_text('{"problem": "1+1?", "answer": "2"}\n{"problem": "2+2?"}\n')
    cfg = eval_cfg(tmp_path / "lake")
    with pytest.raises(EvalInputError, match=r"mine.jsonl:2: missing field 'answer'"):
        evaluate(cfg, policy_dir, run_id="x", benches=[str(bench)], engine=hf_engine)
    bench.write_text('{"problem": "1+1?", "answer": "2"}\nnot json\n')
    with pytest.raises(EvalInputError, match=r"mine.jsonl:2: not valid JSON"):
        evaluate(cfg, policy_dir, run_id="x", benches=[str(bench)], engine=hf_engine)
    with pytest.raises(EvalInputError, match=r"missing.jsonl: no such file"):
        evaluate(cfg, policy_dir, run_id="x", benches=[str(tmp_path / "missing.jsonl")], engine=hf_engine)
    assert _nothing_written(cfg)


def test_a_jsonl_benchmark_by_path_is_recorded_under_its_stem(tmp_path, policy_dir, hf_engine, verifier):
    bench = tmp_path / "tiny_set.jsonl"
    bench.write_text('{"problem": "What is 1+1?", "answer": "2", "level": "1"}\n'
                     '{"question": "What is 2+3?", "answer": "5", "level": "2"}\n')
    cfg = eval_cfg(tmp_path / "lake")
    summary = evaluate(cfg, policy_dir, run_id="x", benches=[str(bench)], engine=hf_engine, verifier=verifier)
    result = summary.bench("tiny_set")
    assert result.problems == 2 and [(g.value, g.problems) for g in result.breakdown] == [("1", 1), ("2", 1)]
    ids = Lake.open(cfg.store).read("x", 20, "eval").column("problem_id").to_pylist()
    assert sorted(ids) == ["tiny_set-0", "tiny_set-1"]


def test_checkpoint_that_does_not_load(tmp_path, policy_dir):
    cfg = eval_cfg(tmp_path / "lake")
    with pytest.raises(EvalInputError, match=r"checkpoint .*nowhere: no such directory"):
        evaluate(cfg, tmp_path / "nowhere", run_id="x", benches=["synthetic"])
    broken = tmp_path / "broken"
    shutil.copytree(policy_dir, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"not safetensors")
    with pytest.raises(EvalInputError, match=r"checkpoint .*broken: model.safetensors: unreadable safetensors header"):
        evaluate(cfg, broken, run_id="x", benches=["synthetic"])
    assert _nothing_written(cfg)


def test_a_negative_step_or_a_bad_run_id_is_refused_before_the_engine_starts(tmp_path):
    cfg = eval_cfg(tmp_path / "lake")
    with pytest.raises(EvalInputError, match=r"eval records: step -1: must be a non-negative integer"):
        evaluate(cfg, tmp_path / "not-even-a-checkpoint", run_id="x", benches=["synthetic"], step=-1)
    with pytest.raises(EvalInputError, match=r"eval records: run id '../x'"):
        evaluate(cfg, tmp_path / "not-even-a-checkpoint", run_id="../x", benches=["synthetic"])
    assert _nothing_written(cfg)


def test_prompt_longer_than_the_context_is_refused_before_sampling(tmp_path, policy_dir, hf_engine):
    cfg = eval_cfg(tmp_path / "lake", "eval.limit=20", "eval.max_new_tokens=32")
    with pytest.raises(EvalInputError, match=r"benchmark 'gsm8k': prompt 'gsm8k-4'.*exceed the context"):
        evaluate(cfg, policy_dir, run_id="x", benches=["gsm8k"], engine=hf_engine)
    assert _nothing_written(cfg)


def test_command_arguments(tmp_path, policy_dir):
    cfg = eval_cfg(tmp_path / "lake")
    with pytest.raises(EvalInputError, match=r"temperature.*--temperature"):
        run_eval_command(cfg, str(policy_dir), "synthetic", k=16)
    with pytest.raises(EvalInputError, match="limit"):
        run_eval_command(cfg, str(policy_dir), "synthetic", limit=0)
    for text in ("", "math500,,aime24"):
        with pytest.raises(EvalInputError, match="comma-separated"):
            parse_bench_list(text)
    with pytest.raises(EvalInputError, match="more than once"):
        parse_bench_list("math500,math500")
    assert parse_bench_list(" math500, aime24 ") == ("math500", "aime24")
    assert _nothing_written(cfg)
