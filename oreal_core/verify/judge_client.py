"""Async client for an LLM judge behind an OpenAI-compatible API (OREAL_SPEC.md §4, step 4).

Production serves Qwen2.5-72B-Instruct with lmdeploy on port 10003; any server speaking
``GET /v1/models`` and ``POST /v1/chat/completions`` works (vLLM, SGLang, Ollama). The
reference spawns 8 processes x 8 threads of blocking calls; here one event loop keeps the
same number of requests in flight (``num_processes * concurrency_per_proc[0]``), with a
per-request timeout, retries with exponential backoff and full jitter on connection
errors, 5xx and 429 (a server's ``Retry-After`` wins over the backoff), and a circuit breaker
per host. Whatever a host sends back, a grading ends as a :class:`JudgeResult`: a judge that
answers garbage is a ``judge_error`` for that sample, never an exception that fails the stage.
Servers that can hold decoding to a grammar are asked to answer only "A" or "B"
(``verifier.judge.server_kind``, :data:`REPLY_CONSTRAINTS`).
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import math
import random
import ssl
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import certifi
import httpx

from oreal_core.config import JudgeConfig
from oreal_core.verify.breaker import CircuitBreaker
from oreal_core.verify.grader import GraderPrompt, parse_grade
from oreal_core.verify.reply_body import MAX_REPLY_BYTES, BodyRefused, BoundedBody  # noqa: F401 - re-exported

_MAX_ERROR_TEXT = 200

# How much of the judge's text a JudgeResult keeps (it lands in verdicts.judge_reply). A usable
# reply is one letter; a longer one is a judge_error anyway and only needs enough to diagnose.
MAX_STORED_REPLY_CHARS = 2_000

# The request field that holds the reply to "A" or "B", per verifier.judge.server_kind. Left to
# free text, SmolLM2-135M answered neither letter for 95.5 % of samples (docs/real-models.md).
# The reply still goes through parse_grade, so a server that ignores the field degrades to
# free text; one that rejects it answers HTTP 400, which names the key to change.
REPLY_CONSTRAINTS: dict[str, dict] = {
    "generic": {},
    "vllm": {"structured_outputs": {"choice": ["A", "B"]}},  # vLLM's StructuredOutputsParams
    "lmdeploy": {"response_format": {"type": "regex_schema", "regex_schema": "A|B"}},
}


@dataclass(frozen=True)
class JudgeRequest:
    question: str
    gold: str
    answer_text: str  # the whole post-thinking text, as the reference passes it


@dataclass(frozen=True)
class JudgeResult:
    correct: bool | None  # None: no usable verdict (see ``error``)
    reply: str | None  # the judge's raw text, whenever one came back
    error: str = ""
    host: str | None = None
    attempts: int = 0
    latency_s: float = 0.0


class _Retryable(Exception):
    """A failure worth trying again on the next host (connection error, timeout, 5xx, 429)."""

    def __init__(self, message: str, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s  # the server's Retry-After, already capped


class _Final(Exception):
    """A failure that retrying cannot fix (4xx, malformed response)."""


class _Rejected(_Final):
    """The server refused the request as sent (HTTP 4xx other than 429)."""


def base_url(host: str) -> str:
    return host.rstrip("/") if host.startswith(("http://", "https://")) else f"http://{host}"


def _clip(text: str) -> str:
    return text if len(text) <= _MAX_ERROR_TEXT else text[:_MAX_ERROR_TEXT] + "..."


def _clip_reply(reply: str) -> str:
    """The reply as stored: at most MAX_STORED_REPLY_CHARS characters, plus a marker of the cut."""
    if len(reply) <= MAX_STORED_REPLY_CHARS:
        return reply
    return f"{reply[:MAX_STORED_REPLY_CHARS]}... [{len(reply) - MAX_STORED_REPLY_CHARS} more characters cut]"


def _retry_after_s(response: httpx.Response, cap_s: float) -> float | None:
    """``Retry-After`` in seconds (delta-seconds or HTTP-date form), clipped to [0, cap_s].

    None when absent or unreadable. The cap keeps a server asking for an hour from
    stalling the verify stage: after it, the retry just meets another 429 or succeeds.
    """
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        when = when if when.tzinfo else when.replace(tzinfo=UTC)  # "-0000" parses as naive
        seconds = (when - datetime.now(UTC)).total_seconds()
    return min(max(seconds, 0.0), cap_s) if math.isfinite(seconds) else None


class JudgeClient:
    """Use as ``async with JudgeClient(cfg) as judge: results = await judge.judge_many(reqs)``."""

    def __init__(self, cfg: JudgeConfig, prompt: GraderPrompt | None = None, seed: int | None = None) -> None:
        if not cfg.hosts:
            raise ValueError("verifier.judge.hosts is empty: no judge server to call")
        self.cfg = cfg
        self.prompt = prompt or GraderPrompt.load(cfg.prompt_template)
        self._rng = random.Random(seed)
        self._hosts = [base_url(h) for h in cfg.hosts]
        self._next = self._rng.randrange(len(self._hosts))  # round-robin from a random start
        self.breakers = {h: CircuitBreaker(cfg.breaker_failures, cfg.breaker_cooldown_s) for h in self._hosts}
        self._model: str | None = cfg.model
        self._model_lock = asyncio.Lock()
        self._pools: list[httpx.AsyncClient] = []

    async def __aenter__(self) -> JudgeClient:
        # One connection pool per "process" of the reference's layout, each serving exactly
        # concurrency_per_proc[0] workers: httpcore's pool scans every queued request against
        # every connection on each state change (O(n^2)), which at 64 connections in one
        # pool cost more CPU than the requests themselves (profiled; see benchmarks/verify.py).
        per_pool = self.cfg.concurrency_per_proc[0]
        tls = ssl.create_default_context(cafile=certifi.where())  # built once, not per pool
        # Only the codings BoundedBody inflates (httpx would also offer br/zstd when installed).
        self._pools = [httpx.AsyncClient(headers={"Accept-Encoding": "gzip, deflate"}, limits=httpx.Limits(max_connections=per_pool,
                                                             max_keepalive_connections=per_pool),
                                         timeout=httpx.Timeout(self.cfg.request_timeout_s), verify=tls)
                       for _ in range(self.cfg.num_processes)]
        return self

    async def __aexit__(self, *exc: object) -> None:
        for pool in self._pools:
            await pool.aclose()
        self._pools = []

    def _pick_host(self) -> str | None:
        for _ in range(len(self._hosts)):
            host = self._hosts[self._next]
            self._next = (self._next + 1) % len(self._hosts)
            if self.breakers[host].allow():
                return host
        return None

    async def _send(self, http: httpx.AsyncClient, method: str, path: str,
                    payload: dict | None = None) -> tuple[str, dict]:
        """One attempt on the next available host; breaker bookkeeping included."""
        host = self._pick_host()
        if host is None:
            raise _Final("every judge host has an open circuit breaker")
        response, body = await self._exchange(http, host, method, path, payload)
        return host, self._read(host, response, body)

    async def _exchange(self, http: httpx.AsyncClient, host: str, method: str, path: str,
                        payload: dict | None) -> tuple[httpx.Response, bytes]:
        """The HTTP request and its decoded body, at most MAX_REPLY_BYTES of it.

        Every httpx error becomes _Retryable or _Final; an oversized body is _Final (the
        host answered, so its breaker counts a success). The timeout covers reading the body.
        """
        breaker = self.breakers[host]
        try:
            async with asyncio.timeout(self.cfg.request_timeout_s):
                async with http.stream(method, host + path, json=payload) as response:
                    body = BoundedBody(response.headers.get("Content-Encoding", ""))
                    async for chunk in response.aiter_raw():
                        body.feed(chunk)
                    return response, body.finish()
        except BodyRefused as exc:  # the host answered: its breaker counts a success
            breaker.record_success()
            raise _Final(f"{host}: {exc}") from exc
        except (TimeoutError, httpx.TimeoutException) as exc:
            breaker.record_failure()
            raise _Retryable(f"{host}: timed out after {self.cfg.request_timeout_s:g}s") from exc
        except httpx.TransportError as exc:  # refused, reset, broken HTTP framing (ProtocolError)
            breaker.record_failure()
            raise _Retryable(f"{host}: {type(exc).__name__}: {_clip(str(exc))}") from exc
        except httpx.HTTPError as exc:
            # It answered, but undecodably (DecodingError: a Content-Encoding its body does not
            # have; TooManyRedirects): a malformed reply, not a dead host, and not retried.
            breaker.record_success()
            raise _Final(f"{host}: malformed response: {type(exc).__name__}: {_clip(str(exc))}") from exc

    def _read(self, host: str, response: httpx.Response, body: bytes) -> dict:
        """The JSON body of a 2xx/3xx response; 429 and 5xx are retryable, the rest final."""
        breaker, status = self.breakers[host], response.status_code
        text = body.decode(response.encoding or "utf-8", errors="replace")
        if status == 429 or status >= 500:
            if status == 429:
                breaker.record_success()  # alive, just busy: opening its breaker would idle a working host
            else:
                breaker.record_failure()
            raise _Retryable(f"{host}: HTTP {status}: {_clip(text)}",
                             _retry_after_s(response, self.cfg.request_timeout_s))
        breaker.record_success()  # the host answered; a 4xx or bad body is not its health
        if status >= 400:
            raise _Rejected(f"{host}: HTTP {status}: {_clip(text)}")
        try:
            return json.loads(body)  # as httpx's Response.json(): bytes, encoding detected
        except (ValueError, RecursionError) as exc:  # not JSON, not UTF-8, or nested too deep to parse
            raise _Final(f"{host}: response is not JSON: {_clip(text)!r}") from exc

    async def _with_retries(self, http: httpx.AsyncClient, method: str, path: str,
                            payload: dict | None = None) -> tuple[str, dict, int]:
        last_error, retry_after_s = "", None
        for attempt in range(self.cfg.max_retries + 1):
            if attempt:
                # The server's Retry-After if it sent one; else full jitter, so concurrent
                # retries against a recovering host do not line up.
                backoff = self._rng.uniform(0, self.cfg.backoff_base_s * 2 ** (attempt - 1))
                await asyncio.sleep(backoff if retry_after_s is None else retry_after_s)
            try:
                host, body = await self._send(http, method, path, payload)
                return host, body, attempt + 1
            except _Retryable as exc:
                last_error, retry_after_s = str(exc), exc.retry_after_s
        raise _Final(f"gave up after {self.cfg.max_retries + 1} attempt(s); last: {last_error}")

    def _require_open(self) -> None:
        if not self._pools:  # a programming error: raised, unlike anything a server does
            raise RuntimeError("JudgeClient used outside 'async with JudgeClient(cfg) as client:'")

    async def model(self) -> str:
        """The served model's name, from ``GET /v1/models`` unless configured."""
        self._require_open()
        async with self._model_lock:
            if self._model is None:
                _, body, _ = await self._with_retries(self._pools[0], "GET", "/v1/models")
                try:
                    model = body["data"][0]["id"]
                except (KeyError, IndexError, TypeError) as exc:
                    raise _Final(f"GET /v1/models lists no model: {_clip(str(body))}") from exc
                if not isinstance(model, str) or not model:
                    raise _Final(f"GET /v1/models: model id is not a name: {_clip(repr(model))}")
                self._model = model
            return self._model

    def _payload(self, model: str, request: JudgeRequest) -> dict:
        c = self.cfg
        content = self.prompt.render(request.question, request.gold, request.answer_text)
        return {"model": model, "messages": [{"role": "user", "content": content}],
                "temperature": c.temperature, "top_p": c.top_p, "top_k": c.top_k,
                "repetition_penalty": c.repetition_penalty, "max_tokens": c.max_tokens, "stop": list(c.stop),
                **REPLY_CONSTRAINTS[c.server_kind]}

    def _rejected_hint(self) -> str:
        """What to change when a server refuses a grading request that carried a constraint field."""
        if self.cfg.server_kind == "generic":
            return ""
        fields = ", ".join(REPLY_CONSTRAINTS[self.cfg.server_kind])
        return (f"; if this server does not take the '{fields}' field of verifier.judge.server_kind: "
                f"{self.cfg.server_kind}, set verifier.judge.server_kind: generic")

    async def judge(self, request: JudgeRequest, pool: int = 0) -> JudgeResult:
        """One grading call; every failure is a result with ``correct=None`` and an error."""
        self._require_open()
        start = time.perf_counter()
        try:
            return await self._judge(request, pool, start)
        except _Final as exc:
            return JudgeResult(None, None, str(exc), latency_s=time.perf_counter() - start)
        except Exception as exc:  # noqa: BLE001 - one unforeseen reply must cost one sample, not the stage
            return JudgeResult(None, None, f"unexpected {type(exc).__name__}: {_clip(str(exc))}",
                               latency_s=time.perf_counter() - start)

    async def _judge(self, request: JudgeRequest, pool: int, start: float) -> JudgeResult:
        model = await self.model()
        try:
            host, body, attempts = await self._with_retries(self._pools[pool], "POST", "/v1/chat/completions",
                                                            self._payload(model, request))
        except _Rejected as exc:
            raise _Final(f"{exc}{self._rejected_hint()}") from exc
        elapsed = time.perf_counter() - start
        try:
            reply = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            return JudgeResult(None, None, f"{host}: no choices[0].message.content in {_clip(str(body))}",
                               host, attempts, elapsed)
        reply = reply if isinstance(reply, str) else str(reply)
        grade = parse_grade(reply)
        error = "" if grade is not None else f"reply is not exactly 'A' or 'B': {_clip(reply)!r}"
        return JudgeResult(grade, _clip_reply(reply), error, host, attempts, elapsed)

    async def judge_many(self, requests: Sequence[JudgeRequest]) -> list[JudgeResult]:
        """All requests, ``max_in_flight`` at a time: that many workers pull from one queue."""
        results: list[JudgeResult | None] = [None] * len(requests)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for index in range(len(requests)):
            queue.put_nowait(index)

        async def worker(pool: int) -> None:
            while not queue.empty():
                index = queue.get_nowait()
                results[index] = await self.judge(requests[index], pool)

        per_pool = self.cfg.concurrency_per_proc[0]
        workers = min(self.cfg.max_in_flight, len(requests))
        await asyncio.gather(*(worker(w // per_pool) for w in range(workers)))
        return results  # type: ignore[return-value]  # every index was filled


def judge_batch(cfg: JudgeConfig, requests: Sequence[JudgeRequest], seed: int | None = None) -> list[JudgeResult]:
    """Blocking entry for synchronous callers (a Prefect task, the verify stage)."""

    async def run() -> list[JudgeResult]:
        async with JudgeClient(cfg, seed=seed) as client:
            return await client.judge_many(requests)

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run())
    # Called from inside a running loop (an async Prefect task): run on a fresh thread's loop.
    box: list = []
    thread = threading.Thread(target=lambda: box.append(asyncio.run(run())), name="judge-client")
    thread.start()
    thread.join()
    return box[0]
