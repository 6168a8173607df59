"""Judge client failure modes against a scripted OpenAI-compatible server on 127.0.0.1."""

import asyncio
import time

import pytest

from oreal_core.config import JudgeConfig
from oreal_core.verify.breaker import CircuitBreaker
from oreal_core.verify.grader import GraderPrompt, parse_grade
from oreal_core.verify.judge_client import JudgeClient, JudgeRequest, judge_batch
from tests.verify.scripted_openai import Reply, ScriptedOpenAI, dead_host

REQUEST = JudgeRequest("What is 1/2 as a decimal?", "0.5", "So the answer is \\boxed{1/2}.")


def _cfg(*hosts: str, **kw) -> JudgeConfig:
    base = dict(enabled=True, hosts=hosts, request_timeout_s=2.0, max_retries=1, backoff_base_s=0.01,
                num_processes=2, concurrency_per_proc=(4, 4))
    return JudgeConfig(**{**base, **kw})


@pytest.mark.parametrize(("reply", "grade"), [
    ("A", True), ("B", False), (" A\n", True), ("B.", False), ("**A**", True), ("A (CORRECT)", True),
    ("", None), ("A or B", None), ("AB", None), ("The answer is A", None), ("correct", None), ("A\nB", None),
])
def test_reply_parsing_is_strict(reply, grade):
    assert parse_grade(reply) is grade


def test_prompt_template_substitutes_without_reexpanding():
    prompt = GraderPrompt.load().render("Q {x}", "\\frac{1}{2}", "text with {{gold}} inside")
    assert "Q {x}" in prompt and "\\frac{1}{2}" in prompt and "text with {{gold}} inside" in prompt
    assert "{{question}}" not in prompt and "{{answer}}" not in prompt


def test_bad_template_file_names_the_missing_placeholder(tmp_path):
    bad = tmp_path / "grader.txt"
    bad.write_text("grade {{question}} vs {{gold}}")
    with pytest.raises(ValueError, match=r"missing placeholder\(s\) \{\{answer\}\}"):
        GraderPrompt.load(str(bad))


def test_request_follows_the_reference_protocol():
    with ScriptedOpenAI(lambda n, body: Reply(content="A")) as server:
        [result] = judge_batch(_cfg(server.host), [REQUEST])
    assert result.correct is True and result.reply == "A" and result.attempts == 1
    [body] = server.requests
    assert body["model"] == "scripted-judge"  # discovered through GET /v1/models
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert REQUEST.answer_text in body["messages"][0]["content"]
    assert body["temperature"] == 0.0 and body["top_k"] == 20 and body["max_tokens"] == 100
    assert body["stop"] == ["<|im_end|>", "<|endoftext|>"]


def test_5xx_is_retried_then_succeeds():
    with ScriptedOpenAI(lambda n, body: Reply(500, None, "overloaded") if n == 0 else Reply(content="B")) as s:
        [result] = judge_batch(_cfg(s.host), [REQUEST])
    assert result.correct is False and result.attempts == 2


def test_persistent_5xx_gives_up_with_the_reason():
    with ScriptedOpenAI(lambda n, body: Reply(503, None, "down for maintenance")) as s:
        [result] = judge_batch(_cfg(s.host, max_retries=2), [REQUEST])
    assert result.correct is None and "3 attempt(s)" in result.error and "HTTP 503" in result.error
    assert len(s.requests) == 3


def test_4xx_is_not_retried():
    with ScriptedOpenAI(lambda n, body: Reply(400, None, '{"error": "context too long"}')) as s:
        [result] = judge_batch(_cfg(s.host), [REQUEST])
    assert result.correct is None and "HTTP 400" in result.error and len(s.requests) == 1


def test_garbage_body_and_prose_reply_are_judge_errors_with_raw_text():
    with ScriptedOpenAI(lambda n, body: Reply(content="I believe the candidate is right.")) as s:
        [prose] = judge_batch(_cfg(s.host), [REQUEST])
    with ScriptedOpenAI(lambda n, body: Reply(content=None, raw="<html>bad gateway</html>")) as s:
        [garbage] = judge_batch(_cfg(s.host), [REQUEST])
    assert prose.correct is None and prose.reply == "I believe the candidate is right."
    assert "not exactly 'A' or 'B'" in prose.error
    assert garbage.correct is None and "not JSON" in garbage.error


def test_slow_reply_times_out_per_request():
    with ScriptedOpenAI(lambda n, body: Reply(content="A", delay_s=3.0)) as s:
        start = time.monotonic()
        [result] = judge_batch(_cfg(s.host, request_timeout_s=0.5, max_retries=1), [REQUEST])
        elapsed = time.monotonic() - start
    assert result.correct is None and "timed out after 0.5s" in result.error
    assert elapsed < 2.5


def test_dead_host_is_skipped_by_round_robin_and_breaker():
    with ScriptedOpenAI(lambda n, body: Reply(content="A")) as live:
        cfg = _cfg(dead_host(), live.host, breaker_failures=2, breaker_cooldown_s=60.0, max_retries=1)
        results = judge_batch(cfg, [REQUEST] * 40, seed=0)
    assert all(r.correct is True for r in results)
    # After the breaker opens, the dead host costs nothing: few requests ever retried.
    assert sum(r.attempts for r in results) <= 40 + 4


def test_all_hosts_down_fails_fast_with_reason():
    cfg = _cfg(dead_host(), dead_host(), breaker_failures=1, max_retries=3)
    start = time.monotonic()
    results = judge_batch(cfg, [REQUEST] * 50)
    assert time.monotonic() - start < 5.0
    assert all(r.correct is None and r.error for r in results)
    assert any("open circuit breaker" in r.error for r in results)


def test_in_flight_requests_are_bounded_by_config():
    in_flight, peak = 0, 0

    def script(n, body):
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        time.sleep(0.05)
        in_flight -= 1
        return Reply(content="A")

    with ScriptedOpenAI(script) as s:
        cfg = _cfg(s.host, num_processes=3, concurrency_per_proc=(2, 8))  # 6 in flight
        results = judge_batch(cfg, [REQUEST] * 30)
    assert all(r.correct for r in results) and 1 < peak <= 6


def test_sync_entry_works_inside_a_running_event_loop():
    with ScriptedOpenAI(lambda n, body: Reply(content="A")) as s:
        async def inside_loop():
            return judge_batch(_cfg(s.host), [REQUEST])

        [result] = asyncio.run(inside_loop())
    assert result.correct is True


def test_round_robin_spreads_over_hosts():
    with ScriptedOpenAI(lambda n, b: Reply(content="A")) as a, ScriptedOpenAI(lambda n, b: Reply(content="A")) as b:
        async def run():
            async with JudgeClient(_cfg(a.host, b.host), seed=1) as client:
                return await client.judge_many([REQUEST] * 10)

        asyncio.run(run())
    assert len(a.requests) == len(b.requests) == 5


def test_breaker_opens_half_opens_and_closes():
    now = [0.0]
    breaker = CircuitBreaker(failures=2, cooldown_s=10.0, clock=lambda: now[0])
    breaker.record_failure()
    assert breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open" and not breaker.allow()
    now[0] = 10.0
    assert breaker.allow() and not breaker.allow()  # one trial only
    breaker.record_failure()
    assert breaker.state == "open"
    now[0] = 20.0
    assert breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()


def test_client_outside_its_context_is_a_clear_error():
    client = JudgeClient(_cfg("127.0.0.1:9"))
    with pytest.raises(RuntimeError, match="outside 'async with"):
        asyncio.run(client.judge(REQUEST))
