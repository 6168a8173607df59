"""`oreal prepare`: pass rates under the start policy (HF engine, real verifier), written as
a prompt file that training then balances by the configured bands."""

from __future__ import annotations

import json
import re

import pytest

from flows.cli import main
from flows.prepare import prepare_prompts
from oreal_core.config import load_config
from oreal_core.data.prompts import load_prompt_set
from oreal_core.models.sft import start_policy_dir
from oreal_core.pipeline.prepare import prepare
from oreal_core.rollout.policy_dir import inspect_policy_dir, load_policy_tokenizer
from tests.verify.scripted_openai import Reply, ScriptedOpenAI

pytestmark = pytest.mark.slow

SAMPLES, LIMIT = 4, 12


def _cfg(sft_cache_dir, *extra: str):
    return load_config("tiny-cpu", ["rollout.engine=hf", "rollout.max_new_tokens=64",
                                    f"sft.cache_dir={sft_cache_dir}", *extra])


def test_pass_rates_feed_balancing_and_the_file_is_never_overwritten(tmp_path, sft_cache_dir):
    out = tmp_path / "prompts" / "rated.jsonl"
    report = prepare(_cfg(sft_cache_dir), out, samples=SAMPLES, limit=LIMIT)

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == report.prompts == LIMIT and set(rows[0]) == {"question", "gold_answer", "pass_rate", "source"}
    assert all(row["pass_rate"] * SAMPLES in range(SAMPLES + 1) for row in rows)
    assert report.mean_pass_rate == pytest.approx(sum(r["pass_rate"] for r in rows) / LIMIT)
    assert sum(report.outcomes.values()) == LIMIT * SAMPLES
    assert report.outcomes.get("correct", 0) == round(sum(r["pass_rate"] for r in rows) * SAMPLES)
    in_bands = sum(count for _, count, _ in report.bands)
    assert in_bands + sum(r["pass_rate"] >= 0.8 for r in rows) == LIMIT  # the reference bands stop at 0.8

    trained_on = _cfg(sft_cache_dir, f"data.prompts={out}", "data.balance_by_pass_rate=true")
    tokenizer = load_policy_tokenizer(inspect_policy_dir(start_policy_dir(trained_on)))
    pool = load_prompt_set(trained_on.data, tokenizer)
    assert len(pool.prompts) == report.balanced_prompts
    assert pool.report.kept == LIMIT - report.dropped_prompts

    before = out.read_bytes()
    with pytest.raises(FileExistsError, match="--overwrite"):
        prepare(_cfg(sft_cache_dir), out, samples=SAMPLES, limit=LIMIT)
    assert out.read_bytes() == before


def test_prepare_flow_reports_the_bands(tmp_path, sft_cache_dir):
    out = tmp_path / "rated.jsonl"
    result = prepare_prompts(str(out), "tiny-cpu", ["rollout.engine=hf", "rollout.max_new_tokens=64",
                                                    f"sft.cache_dir={sft_cache_dir}"], samples=2, limit=4)
    assert result["prompts"] == 4 and result["samples_per_prompt"] == 2 and out.is_file()
    assert [band for band, _, _ in result["bands"]] == ["[0, 0.2)", "[0.2, 0.4)", "[0.4, 0.6)", "[0.6, 0.8)"]


def test_samples_the_judge_could_not_grade_stop_prepare_before_anything_is_written(tmp_path, sft_cache_dir,
                                                                                     capsys):
    out = tmp_path / "rated.jsonl"
    with ScriptedOpenAI(lambda n, body: Reply(status=500, content="overloaded")) as judge:
        sets = ["rollout.engine=hf", "rollout.max_new_tokens=64", f"sft.cache_dir={sft_cache_dir}",
                "verifier.judge.enabled=true", f"verifier.judge.hosts=[{judge.host}]", "verifier.judge.max_retries=0"]
        code = main(["prepare", *(a for s in sets for a in ("--set", s)), "--out", str(out), "--samples", "2",
                     "--limit", "4"])
    assert code == 1
    assert re.search(r"oreal: judge error: \d+ of 8 samples got no judge verdict \(first: .*HTTP 500",
                     capsys.readouterr().err)
    assert not out.exists() and not list(tmp_path.iterdir())
