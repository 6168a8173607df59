"""Fail fast on an unreachable judge: before a run's first rollout, not after a step of it.

A judge that is down when a run starts would otherwise surface only at step 0's verify
stage, after the rollout's minutes of GPU time, as a step full of ``judge_error``s. So would
a server that refuses the constrained reply of ``verifier.judge.server_kind``: with one set,
each host also grades one sample here.
"""

from __future__ import annotations

import dataclasses
import logging

import httpx

from oreal_core.config import JudgeConfig, VerifierConfig
from oreal_core.verify.judge_client import JudgeRequest, base_url, judge_batch
from oreal_core.verify.verifier import JudgeUnavailable

log = logging.getLogger(__name__)

_PROBE = JudgeRequest("What is 1 + 1?", "2", "1 + 1 = 2, so the answer is \\boxed{2}.")


def host_problem(host: str, timeout_s: float) -> str | None:
    """Why ``GET /v1/models`` on ``host`` does not name a served model; None when it does."""
    try:
        response = httpx.get(base_url(host) + "/v1/models", timeout=timeout_s)
        if response.status_code != 200:
            return f"HTTP {response.status_code}"
        models = response.json().get("data") or []
        return None if models else "serves no model (GET /v1/models lists none)"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"
    except (ValueError, AttributeError):
        return "GET /v1/models did not answer an OpenAI model list"


def grading_problem(cfg: JudgeConfig, host: str) -> str | None:
    """Why one constrained grading on ``host`` got no reply (the client's error); None for generic."""
    if cfg.server_kind == "generic":
        return None  # nothing beyond what the run's first grading would send anyway
    [result] = judge_batch(dataclasses.replace(cfg, hosts=(host,), max_retries=0, num_processes=1), [_PROBE])
    return None if result.reply is not None else result.error  # a reply, even no letter: the field was taken


def probe_judge(cfg: VerifierConfig) -> None:
    """Raise :class:`JudgeUnavailable` naming every host when none answers; warn for each down host."""
    if not cfg.judge.enabled or cfg.judge_when == "never":
        return
    problems = {host: host_problem(host, cfg.judge.request_timeout_s) or grading_problem(cfg.judge, host)
                for host in cfg.judge.hosts}
    down = {host: why for host, why in problems.items() if why is not None}
    if len(down) == len(problems):
        raise JudgeUnavailable("no judge host answers: " + "; ".join(f"{h}: {why}" for h, why in down.items())
                               + ". Start the judge (oreal serve-judge, infra/judge-lmdeploy.*) or fix "
                               "verifier.judge.hosts (or server_kind); nothing was run.")
    for host, why in down.items():
        log.warning("judge host %s is down (%s); the others serve", host, why)
