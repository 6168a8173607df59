"""`oreal eval` end to end on the vLLM engine it opens itself (engine start: 20-90 s on CPU)."""

from __future__ import annotations

import json

import pytest

from oreal_core.eval.command import run_eval_command
from oreal_core.store.query import run_query
from tests.eval.conftest import eval_cfg

pytestmark = pytest.mark.slow
pytest.importorskip("vllm")


def test_eval_command_on_vllm_writes_queryable_records(tmp_path, policy_dir, hf_engine, verifier):
    cfg = eval_cfg(tmp_path / "lake", engine="vllm")
    text = run_eval_command(cfg, str(policy_dir), "synthetic,gsm8k", limit=4, run_id="vllm")
    assert "synthetic" in text and "gsm8k" in text and "run_id = 'vllm' AND step = 20" in text
    rows = json.loads(run_query(cfg, "SELECT bench, count(*) AS n, count(DISTINCT problem_id) AS problems, "
                                     "min(step) AS step FROM eval WHERE run_id = 'vllm' GROUP BY bench "
                                     "ORDER BY bench", "json"))
    assert rows == [{"bench": "gsm8k", "n": 4, "problems": 4, "step": 20},
                    {"bench": "synthetic", "n": 4, "problems": 4, "step": 20}]
    # greedy decoding of the same weights: the two engines give the same responses
    from oreal_core.eval.runner import evaluate

    hf = evaluate(eval_cfg(tmp_path / "lake-hf", "eval.limit=4"), policy_dir, run_id="hf",
                  benches=["synthetic", "gsm8k"], engine=hf_engine, verifier=verifier)
    ours = json.loads(run_query(cfg, "SELECT problem_id, response FROM eval ORDER BY problem_id", "json"))
    theirs = json.loads(run_query(eval_cfg(tmp_path / "lake-hf"), "SELECT problem_id, response FROM eval "
                                                                  "ORDER BY problem_id", "json"))
    same = sum(a == b for a, b in zip(ours, theirs, strict=True))
    assert same >= 6, (ours, theirs)  # float differences may flip an argmax late in a response
    assert hf.bench("synthetic").problems == 4
