"""Verify-stage throughput and judge-client overhead (DESIGN.md §8).

Rule stage: one realistic step, 64 prompts x 16 samples whose answers are drawn with
repeats from MATH-500 gold answers, rewritings and perturbations, in responses of
realistic length, measured after one warm-up step on other prompts (a run's steady state).
Side by side:
  * baseline - the naive reward function (TRL style): math-verify parse + verify per sample,
    serially, in the calling thread, no cache;
  * ours uncached - the Verifier with cache off (every sample goes to the process pool);
  * ours cached - a fresh Verifier (cold cache): each distinct (answer, gold) pair of the
    step is checked once, repeats are served from the cache;
  * ours warm - the same step again on the same Verifier (every pair already cached).
Judge client: N requests at 64 in flight against a scripted OpenAI-compatible server in
another process that answers after a fixed latency; overhead = our wall time over the
ideal N / 64 x latency, next to a bare httpx loop against the same server.

Run: .venv/bin/python benchmarks/verify.py   (last line: one JSON object)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import random
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from oreal_core.config import JudgeConfig, VerifierConfig  # noqa: E402
from oreal_core.types import FinishReason  # noqa: E402
from oreal_core.verify.judge_client import JudgeClient, JudgeRequest  # noqa: E402
from oreal_core.verify.rule import new_pool  # noqa: E402
from oreal_core.verify.verifier import Verifier, VerifyItem  # noqa: E402
from tests.verify.math500_variants import PERTURBATIONS, REWRITINGS, gold_answers  # noqa: E402

STOP = "<|im_end|>"
FILLER = ("Let me work through this carefully. First we rewrite the expression, then we simplify "
          "each term and check the edge cases. ") * 12


def realistic_batch(prompts: int, samples: int, seed: int, golds: list[str]) -> list[VerifyItem]:
    """Per prompt: the gold (most often), a rewriting and perturbations, drawn with repeats."""
    rng = random.Random(seed)
    golds = rng.sample(golds, prompts)
    items = []
    for gold in golds:
        rewrites = [v for f in REWRITINGS.values() if (v := f(gold))]
        wrongs = [v for f in PERTURBATIONS.values() if (v := f(gold))]
        pool = [gold] + rewrites[:1] + wrongs[:2]
        weights = [0.55, 0.15, 0.2, 0.1][:len(pool)]
        for _ in range(samples):
            answer = rng.choices(pool, weights)[0]
            truncated = rng.random() < 0.05
            text = f"<think>{FILLER}</think>{FILLER[:300]}So the answer is $\\boxed{{{answer}}}$."
            items.append(VerifyItem(text if truncated else text + STOP,
                                    FinishReason.LENGTH if truncated else FinishReason.STOP, gold, "q"))
    return items


def baseline_serial(items: list[VerifyItem]) -> float:
    from math_verify import parse, verify

    start = time.perf_counter()
    for item in items:
        verify(parse(f"${item.gold}$", parsing_timeout=None), parse(item.response, parsing_timeout=None),
               timeout_seconds=None)
    return time.perf_counter() - start


def _timed_step(pool, items: list[VerifyItem], cache: bool) -> tuple[float, Verifier]:
    verifier = Verifier(VerifierConfig(cache=cache, rule_workers=pool.workers), pool=pool)
    start = time.perf_counter()
    verifier.verify(items)
    return time.perf_counter() - start, verifier


def rule_figures(prompts: int, samples: int, workers: int) -> dict[str, float]:
    """Steady state of a run: checkers warmed by an earlier step on *other* prompts.

    math-verify's ANTLR parser builds its prediction cache as it meets new LaTeX, so the
    first step of a process is slower; every variant (baseline included) first sees one
    warm-up step drawn from the other half of MATH-500, then the measured step.
    """
    golds = gold_answers()
    warm_items = realistic_batch(prompts, samples, seed=1, golds=golds[len(golds) // 2:])
    items = realistic_batch(prompts, samples, seed=0, golds=golds[:len(golds) // 2])
    baseline_serial(warm_items)
    figures = {"samples": len(items), "baseline_s": baseline_serial(items)}
    start = time.perf_counter()
    with new_pool(workers) as pool:
        figures["pool_start_s"] = time.perf_counter() - start
        _timed_step(pool, warm_items, cache=False)
        figures["uncached_s"], _ = _timed_step(pool, items, cache=False)
    with new_pool(workers) as pool:  # fresh workers: their parse memo must not carry over
        _timed_step(pool, warm_items, cache=True)
        figures["cached_s"], verifier = _timed_step(pool, items, cache=True)
        figures["distinct_pairs"] = verifier.rule_checks
        start = time.perf_counter()
        verifier.verify(items)
        figures["warm_s"] = time.perf_counter() - start
    return figures


def _serve(port: int, latency_s: float) -> None:
    """An asyncio OpenAI-compatible stand-in (uvicorn): it answers "A" after ``latency_s``.

    Async, so 64 sleeping requests cost it nothing and the measured overhead is the client's.
    """
    import uvicorn

    from tests.verify.scripted_openai import chat_body

    models = json.dumps({"object": "list", "data": [{"id": "bench-judge"}]}).encode()
    answer = chat_body("A").encode()

    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        if scope["method"] == "POST":
            await asyncio.sleep(latency_s)
        body = answer if scope["method"] == "POST" else models
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})

    uvicorn.run(app, host="127.0.0.1", port=port, log_level="error", backlog=512)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_listening(host: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://{host}/v1/models", timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.2)
    raise TimeoutError(f"benchmark judge server on {host} did not start")


async def _bare_httpx(host: str, n: int, in_flight: int) -> float:
    gate = asyncio.Semaphore(in_flight)
    limits = httpx.Limits(max_connections=in_flight, max_keepalive_connections=in_flight)
    async with httpx.AsyncClient(limits=limits, timeout=60) as client:
        async def one() -> None:
            async with gate:
                for attempt in range(2):  # one retry on a dropped connection, like ours
                    try:
                        r = await client.post(f"http://{host}/v1/chat/completions",
                                              json={"model": "m", "messages": [{"role": "user", "content": "x"}]})
                        r.json()
                        return
                    except httpx.TransportError:
                        if attempt:
                            raise

        start = time.perf_counter()
        await asyncio.gather(*(one() for _ in range(n)))
        return time.perf_counter() - start


async def _ours(host: str, n: int, in_flight: int) -> float:
    cfg = JudgeConfig(enabled=True, hosts=(host,), num_processes=in_flight // 8, concurrency_per_proc=(8, 8))
    request = JudgeRequest("What is 1/2?", "\\frac{1}{2}", "So the answer is \\boxed{0.5}.")
    async with JudgeClient(cfg, seed=0) as client:
        await client.model()  # discovery is a one-off per run, not per request
        start = time.perf_counter()
        results = await client.judge_many([request] * n)
        elapsed = time.perf_counter() - start
    assert all(r.correct for r in results), [r.error for r in results if not r.correct][:3]
    return elapsed


def judge_figures(n: int, in_flight: int, latency_s: float, repeats: int) -> dict[str, float]:
    port = _free_port()
    host = f"127.0.0.1:{port}"
    server = mp.get_context("spawn").Process(target=_serve, args=(port, latency_s), daemon=True)
    server.start()
    try:
        _wait_listening(host)
        asyncio.run(_bare_httpx(host, in_flight, in_flight))  # warm the server
        # Interleaved repeats; the best of each is the least disturbed by other processes.
        bare, ours = [], []
        for _ in range(repeats):
            bare.append(asyncio.run(_bare_httpx(host, n, in_flight)))
            ours.append(asyncio.run(_ours(host, n, in_flight)))
        bare, ours = min(bare), min(ours)
    finally:
        server.kill()
        server.join(5)
    return {"ideal_s": n / in_flight * latency_s, "bare_s": bare, "ours_s": ours}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--judge-requests", type=int, default=640)
    parser.add_argument("--judge-latency", type=float, default=1.0, help="server seconds per request")
    parser.add_argument("--judge-repeats", type=int, default=3)
    args = parser.parse_args()

    load_before = os.getloadavg()[0]
    rule = rule_figures(args.prompts, args.samples, args.workers)
    judge = judge_figures(args.judge_requests, 64, args.judge_latency, args.judge_repeats)
    n = rule["samples"]
    rates = {k: n / rule[f"{k}_s"] for k in ("baseline", "uncached", "cached", "warm")}
    overhead = judge["ours_s"] / judge["ideal_s"] - 1
    print(f"machine: {os.cpu_count()} cores, load average {load_before:.2f} before, "
          f"{os.getloadavg()[0]:.2f} after (other processes distort timings)")
    print(f"rule stage: {n} samples ({args.prompts} prompts x {args.samples}), "
          f"{rule['distinct_pairs']} distinct (answer, gold) pairs, {args.workers} workers")
    print(f"{'variant':<38}{'seconds':>10}{'samples/s':>12}")
    for label, key in (("baseline: serial math-verify, no cache", "baseline"), ("ours, cache off", "uncached"),
                       ("ours, cache on (cold, one step)", "cached"), ("ours, cache on (warm, repeat step)", "warm")):
        print(f"{label:<38}{rule[key + '_s']:>10.3f}{rates[key]:>12.1f}")
    print(f"(rule worker pool start-up, once per run: {rule['pool_start_s']:.2f}s)")
    print(f"judge client: {args.judge_requests} requests, 64 in flight, server latency {args.judge_latency:g}s")
    print(f"{'variant':<38}{'seconds':>10}{'overhead':>12}")
    print(f"{'ideal (N / 64 x latency)':<38}{judge['ideal_s']:>10.3f}{'':>12}")
    print(f"{'bare httpx + semaphore':<38}{judge['bare_s']:>10.3f}{judge['bare_s'] / judge['ideal_s'] - 1:>12.2%}")
    print(f"{'ours (JudgeClient)':<38}{judge['ours_s']:>10.3f}{overhead:>12.2%}")
    print(json.dumps({
        "samples_per_s_cached": round(rates["cached"], 1),
        "samples_per_s_uncached": round(rates["uncached"], 1),
        "samples_per_s_warm_cache": round(rates["warm"], 1),
        "samples_per_s_baseline": round(rates["baseline"], 1),
        "distinct_pairs": rule["distinct_pairs"],
        "rule_pool_start_s": round(rule["pool_start_s"], 2),
        "judge_overhead": round(overhead, 4),
        "judge_overhead_bare_httpx": round(judge["bare_s"] / judge["ideal_s"] - 1, 4),
        "judge_overhead_vs_bare": round(judge["ours_s"] / judge["bare_s"] - 1, 4),
    }))


if __name__ == "__main__":
    main()
