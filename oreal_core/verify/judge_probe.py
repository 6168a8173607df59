"""Fail fast on an unreachable judge: before a run's first rollout, not after a step of it.

A judge that is down when a run starts would otherwise surface only at step 0's verify
stage, after the rollout's minutes of GPU time, as a step full of ``judge_error``s.
"""

from __future__ import annotations

import logging

import httpx

from oreal_core.config import VerifierConfig
from oreal_core.verify.judge_client import base_url
from oreal_core.verify.verifier import JudgeUnavailable

log = logging.getLogger(__name__)


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


def probe_judge(cfg: VerifierConfig) -> None:
    """Raise :class:`JudgeUnavailable` naming every host when none answers; warn for each down host."""
    if not cfg.judge.enabled or cfg.judge_when == "never":
        return
    problems = {host: host_problem(host, cfg.judge.request_timeout_s) for host in cfg.judge.hosts}
    down = {host: why for host, why in problems.items() if why is not None}
    if len(down) == len(problems):
        raise JudgeUnavailable("no judge host answers: " + "; ".join(f"{h}: {why}" for h, why in down.items())
                               + ". Start the judge (oreal serve-judge, infra/judge-lmdeploy.*) or fix "
                               "verifier.judge.hosts; nothing was run.")
    for host, why in down.items():
        log.warning("judge host %s is down (%s); the others serve", host, why)
