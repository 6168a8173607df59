"""The verify stage's batch entry: truncation, cache, judge routing, disagreement audit."""

import dataclasses
import json

import pytest

from oreal_core.config import JudgeConfig, VerifierConfig
from oreal_core.types import FinishReason, Outcome, VerdictSource
from oreal_core.verify.judge_probe import probe_judge
from oreal_core.verify.verifier import (
    JudgeUnavailable,
    Verifier,
    VerifyItem,
    check_judge_error_rate,
    judge_error_rate,
    verdict_metrics,
)
from tests.verify.scripted_openai import Reply, ScriptedOpenAI, dead_host

STOP = "<|im_end|>"
Q = "What is 7 + 5?"


def item(answer_text: str, gold: str = "12", finish=FinishReason.STOP, stop: bool = True) -> VerifyItem:
    return VerifyItem(answer_text + (STOP if stop else ""), finish, gold, Q)


def judged_cfg(host: str, **kw) -> VerifierConfig:
    judge = JudgeConfig(enabled=True, hosts=(host,), request_timeout_s=2.0, backoff_base_s=0.01,
                        num_processes=2, concurrency_per_proc=(4, 4))
    return VerifierConfig(judge=judge, **kw)


def test_rule_only_batch(rule_pool):
    items = [item("so \\boxed{12}"), item("so \\boxed{13}"), item("so \\boxed{12", stop=False),
             item("so \\boxed{12}", finish=FinishReason.LENGTH), item("nothing")]
    with Verifier(VerifierConfig(), pool=rule_pool) as verifier:
        right, wrong, no_stop, length, empty = verifier.verify(items)
    assert right.outcome is Outcome.CORRECT and right.reward == 1.0
    assert wrong.outcome is Outcome.INCORRECT and wrong.reward == -1.0
    assert no_stop.outcome is Outcome.TRUNCATED and "stop word" in no_stop.reason
    assert length.outcome is Outcome.TRUNCATED and "finish reason length" in length.reason
    assert length.extracted_answer == "12"  # still recorded for the audit
    assert empty.outcome is Outcome.UNPARSEABLE and empty.reward == -1.0
    assert "no answer extracted" in empty.reason


def test_cache_checks_each_pair_once_per_run(rule_pool):
    # 16 samples of one prompt with 3 distinct answers (spacing/\dfrac variants share a key).
    answers = ["\\boxed{12}", "\\boxed{ 12 }", "\\boxed{13}", "\\boxed{\\dfrac{24}{2}}", "\\boxed{\\frac{24}{2}}"]
    items = [item(answers[i % len(answers)]) for i in range(16)]
    with Verifier(VerifierConfig(), pool=rule_pool) as verifier:
        first = verifier.verify(items)
        assert verifier.rule_checks == 3
        second = verifier.verify(items)
        assert verifier.rule_checks == 3  # the second step recomputes nothing
    assert [v.outcome for v in first] == [v.outcome for v in second]
    assert all("cached" in v.reason for v in second)
    assert sum(v.outcome is Outcome.CORRECT for v in first) == 13


def test_cache_off_checks_every_sample(rule_pool):
    with Verifier(VerifierConfig(cache=False), pool=rule_pool) as verifier:
        verifier.verify([item("\\boxed{12}")] * 5)
        assert verifier.rule_checks == 5


def test_judge_decides_what_rule_does_not_confirm(rule_pool):
    # The judge says A for "twelve" (rule: unparseable) and B for 13 (rule agrees).
    def script(n, body):
        return Reply(content="A" if "twelve" in body["messages"][0]["content"] else "B")

    with ScriptedOpenAI(script) as server, Verifier(judged_cfg(server.host), pool=rule_pool) as verifier:
        right, words, wrong, truncated = verifier.verify(
            [item("\\boxed{12}"), item("It is twelve."), item("\\boxed{13}"), item("\\boxed{1", stop=False)])
        assert len(server.requests) == 2  # rule-correct and truncated samples never reach the judge
    assert right.source is VerdictSource.RULE and right.outcome is Outcome.CORRECT
    assert words.source is VerdictSource.JUDGE and words.outcome is Outcome.CORRECT
    assert words.rule_outcome is Outcome.UNPARSEABLE and words.judge_reply == "A"
    assert wrong.outcome is Outcome.INCORRECT and wrong.rule_outcome is Outcome.INCORRECT
    assert not wrong.rule_judge_disagree and truncated.outcome is Outcome.TRUNCATED


def test_disagreement_is_recorded_and_counted(rule_pool):
    with ScriptedOpenAI(lambda n, body: Reply(content="A")) as server:
        cfg = judged_cfg(server.host, judge_when="always")
        with Verifier(cfg, pool=rule_pool) as verifier:
            right, wrong = verifier.verify([item("\\boxed{12}"), item("\\boxed{13}")])
    assert right.outcome is Outcome.CORRECT and not right.rule_judge_disagree
    assert wrong.outcome is Outcome.CORRECT and wrong.rule_outcome is Outcome.INCORRECT
    assert wrong.rule_judge_disagree and "rule said incorrect" in wrong.reason
    metrics = verdict_metrics([right, wrong])
    assert metrics["verify/rule_judge_disagree"] == 1.0 and metrics["verify/judged"] == 2.0


def test_judge_results_are_cached_by_answer(rule_pool):
    with ScriptedOpenAI(lambda n, body: Reply(content="B")) as server:
        with Verifier(judged_cfg(server.host), pool=rule_pool) as verifier:
            verifier.verify([item("\\boxed{13}"), item("thus \\boxed{ 13 }")])
            verifier.verify([item("\\boxed{13}")])
        assert len(server.requests) == 1


def test_judge_failure_has_no_reward_and_is_not_cached(rule_pool):
    with Verifier(judged_cfg(dead_host()), pool=rule_pool) as verifier:
        [verdict] = verifier.verify([item("\\boxed{13}")])
        verifier.verify([item("\\boxed{13}")])
        assert verifier.judge_calls == 2  # a failure is retried on the next step
    assert verdict.outcome is Outcome.JUDGE_ERROR and verdict.reward is None and verdict.judge_failed
    assert verdict.source is VerdictSource.JUDGE and "judge error" in verdict.reason
    assert verdict.rule_outcome is Outcome.INCORRECT


def test_judge_failure_falls_back_to_the_rule_when_configured(rule_pool):
    with Verifier(judged_cfg(dead_host(), on_judge_error="rule"), pool=rule_pool) as verifier:
        [verdict] = verifier.verify([item("\\boxed{13}")])
    assert verdict.outcome is Outcome.INCORRECT and verdict.reward == -1.0 and verdict.source is VerdictSource.RULE
    assert verdict.judge_failed and "graded by the rule alone (verifier.on_judge_error=rule)" in verdict.reason


@pytest.mark.parametrize("on_judge_error", ["exclude", "rule"])
def test_a_batch_over_the_judge_error_limit_is_refused(rule_pool, on_judge_error):
    # 1 of 3 judged samples fails: 33 % > the default limit of 10 %, and within a limit of 50 %.
    script = lambda n, body: Reply(content="maybe" if "\\boxed{14}" in json.dumps(body) else "B")  # noqa: E731
    items = [item("\\boxed{12}"), item("\\boxed{13}"), item("\\boxed{14}"), item("\\boxed{15}")]
    with ScriptedOpenAI(script) as server, Verifier(judged_cfg(server.host, on_judge_error=on_judge_error),
                                                     pool=rule_pool) as verifier:
        verdicts = verifier.verify(items)
    assert judge_error_rate(verdicts) == pytest.approx(1 / 3)
    assert verdict_metrics(verdicts)["verify/judge_error_rate"] == pytest.approx(1 / 3)
    with pytest.raises(JudgeUnavailable, match=r"step 3: 33% of the samples sent to the judge got no verdict "
                                               r"\(limit verifier.max_judge_error_frac=0.1\); nothing was committed"):
        check_judge_error_rate(verdicts, verifier.cfg, "step 3")
    check_judge_error_rate(verdicts, dataclasses.replace(verifier.cfg, max_judge_error_frac=0.5), "step 3")


def test_mean_reward_counts_graded_samples_only(rule_pool):
    with Verifier(judged_cfg(dead_host()), pool=rule_pool) as verifier:
        verdicts = verifier.verify([item("\\boxed{12}"), item("\\boxed{13}")])
    assert [v.reward for v in verdicts] == [1.0, None]
    assert verdict_metrics(verdicts)["verify/mean_reward"] == 1.0


def test_probe_names_every_unreachable_judge_host():
    hosts = (dead_host(), dead_host())
    cfg = VerifierConfig(judge=JudgeConfig(enabled=True, hosts=hosts, request_timeout_s=2.0))
    with pytest.raises(JudgeUnavailable, match=rf"no judge host answers: {hosts[0]}: ConnectError.*; {hosts[1]}: "):
        probe_judge(cfg)
    with ScriptedOpenAI(lambda n, body: Reply(content="A")) as server:
        probe_judge(dataclasses.replace(cfg, judge=dataclasses.replace(cfg.judge, hosts=(hosts[0], server.host))))
    probe_judge(VerifierConfig())  # no judge configured: nothing to probe


def test_probe_grades_once_with_the_constraint_and_names_the_key_on_refusal():
    def cfg(host: str) -> VerifierConfig:
        return VerifierConfig(judge=JudgeConfig(enabled=True, hosts=(host,), request_timeout_s=2.0,
                                                server_kind="vllm"))

    with (ScriptedOpenAI(lambda n, body: Reply(400, None, '{"error": "extra field"}')) as refusing,
          pytest.raises(JudgeUnavailable, match=r"HTTP 400.*set verifier\.judge\.server_kind: generic")):
        probe_judge(cfg(refusing.host))
    with ScriptedOpenAI(lambda n, body: Reply(content="Well, maybe.")) as weak:  # took the field, weak model
        probe_judge(cfg(weak.host))
    [body] = weak.requests
    assert body["structured_outputs"] == {"choice": ["A", "B"]}


def test_garbage_judge_reply_is_judge_error_with_raw_text(rule_pool):
    with (ScriptedOpenAI(lambda n, body: Reply(content="Well, maybe.")) as server,
          Verifier(judged_cfg(server.host), pool=rule_pool) as verifier):
        [verdict] = verifier.verify([item("\\boxed{13}")])
    assert verdict.outcome is Outcome.JUDGE_ERROR and verdict.judge_reply == "Well, maybe."


@pytest.mark.parametrize("when", ["never", "rule_not_correct"])
def test_judge_disabled_or_never_is_rule_only(rule_pool, when):
    cfg = VerifierConfig(judge_when=when)  # judge.enabled is False by default
    with Verifier(cfg, pool=rule_pool) as verifier:
        [verdict] = verifier.verify([item("\\boxed{13}")])
    assert verdict.source is VerdictSource.RULE and verdict.outcome is Outcome.INCORRECT


def test_item_from_rollout_sample_and_prompt():
    from oreal_core.types import Prompt, Sample

    prompt = Prompt("p1", Q, "12", "<|im_start|>user\n...")
    sample = Sample("p1", 0, "\\boxed{12}" + STOP, (1,), (2,), (-0.1,), FinishReason.STOP)
    assert VerifyItem.of(sample, prompt) == item("\\boxed{12}")
