"""Lake fixtures: a local folder store and a real S3-compatible server (moto) on 127.0.0.1,
plus a builder of realistic stage records so the same tests run against both stores."""

from __future__ import annotations

import logging
import os
import random
import socket
import uuid
from dataclasses import dataclass

import boto3
import pytest

from oreal_core.config import StoreConfig
from oreal_core.store import Lake, SamplingParams, ScoredRow, samples_table, verdicts_table
from oreal_core.types import (
    FinishReason,
    Outcome,
    Prompt,
    Sample,
    StepMetrics,
    Verdict,
    VerdictSource,
)

# The S3 test credentials; a test asserts this string never reaches a manifest or message.
S3_KEY_ID = "AKIALAKETESTKEY00001"
S3_SECRET = "lake-test-secret-9f2c1e7b"
BUCKET = "oreal-lake"


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API (moto's HTTP server) on 127.0.0.1; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's per-request access log

    env = {"AWS_ACCESS_KEY_ID": S3_KEY_ID, "AWS_SECRET_ACCESS_KEY": S3_SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           # pyarrow's aws-chunked uploads are stored framed by some servers (ENVIRONMENT.md §5)
           "AWS_REQUEST_CHECKSUM_CALCULATION": "WHEN_REQUIRED", "AWS_RESPONSE_CHECKSUM_VALIDATION": "WHEN_REQUIRED"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(params=["local", "s3"])
def store_cfg(request, tmp_path) -> StoreConfig:
    """The same tests against a local folder and against s3://bucket/<unique prefix>."""
    if request.param == "local":
        return StoreConfig(uri=str(tmp_path / "lake"))
    endpoint = request.getfixturevalue("s3_server")
    return StoreConfig(uri=f"s3://{BUCKET}/{uuid.uuid4().hex}", endpoint_url=endpoint, max_retries=1)


@pytest.fixture
def lake(store_cfg) -> Lake:
    return Lake.open(store_cfg)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class StepRecords:
    prompts: dict[str, Prompt]
    samples: list[Sample]
    verdicts: list[Verdict]
    scored: list[ScoredRow]
    metrics: StepMetrics


def make_step(step: int, n_prompts: int = 4, k: int = 4, max_tokens: int = 12, seed: int = 0,
              judge: bool = False) -> StepRecords:
    """Deterministic records of one iteration, shaped as the stages produce them."""
    rng = random.Random(seed * 1000 + step)
    prompts = {f"p{i}": Prompt(f"p{i}", f"What is {i} + {i}?", str(2 * i), f"<q>{i}+{i}</q>") for i in range(n_prompts)}
    samples, verdicts, scored = [], [], []
    for pid in prompts:
        for idx in range(k):
            n = rng.randint(2, max_tokens)
            tokens = tuple(rng.randrange(300) for _ in range(n))
            finish = FinishReason.LENGTH if n == max_tokens else FinishReason.STOP
            samples.append(Sample(pid, idx, f"answer {idx}", (1, 2, 3), tokens,
                                  tuple(-rng.random() for _ in range(n)), finish, policy_version=step))
            correct = rng.random() < 0.3 + 0.1 * step
            outcome = Outcome.CORRECT if correct else Outcome.INCORRECT
            rule = (Outcome.INCORRECT if correct else Outcome.CORRECT) if judge and idx == 0 else None
            verdicts.append(Verdict(outcome, 1.0 if correct else -1.0,
                                    VerdictSource.JUDGE if rule else VerdictSource.RULE, str(idx), "ok",
                                    "judge says so" if rule else None, rule))
            kept = idx < 2
            weights = tuple(rng.random() for _ in range(n)) if kept else ()
            scored.append(ScoredRow(pid, idx, 1.0 if correct else -1.0, 0.5 if correct else -0.5, kept,
                                    kept and correct, tuple(rng.gauss(0, 1) for _ in range(n)) if kept else (), weights))
    metrics = StepMetrics.of(step, {"loss/total": 1.0 / (step + 1), "kl": 0.01 * step, "entropy": 0.5,
                                    "health/truncated_frac": 0.0})
    return StepRecords(prompts, samples, verdicts, scored, metrics)


def write_run(lake: Lake, run_id: str, steps: int = 3, judge: bool = False, **kw) -> list[StepRecords]:
    lake.open_run(run_id, "cfg-hash-1")
    made = []
    for step in range(steps):
        rec = make_step(step, judge=judge, **kw)
        lake.write(run_id, step, "samples", samples_table(run_id, rec.samples, rec.prompts, SamplingParams(1.0, 0.9, 64, 0)))
        lake.write(run_id, step, "verdicts", verdicts_table(run_id, rec.samples, rec.verdicts))
        lake.write(run_id, step, "scored", rec.scored)
        lake.write(run_id, step, "metrics", [rec.metrics])
        made.append(rec)
    return made
