"""S3-only behaviour: retries with backoff, clear failures, credentials kept secret."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
import uuid

import boto3
import httpx
import pytest

from oreal_core.config import StoreConfig
from oreal_core.store import Lake, StorageUnavailable
from oreal_core.store.query import run_query
from tests.store.conftest import BUCKET, S3_KEY_ID, S3_SECRET, free_port, write_run


@pytest.fixture
def counting_dead_server():
    """A TCP port that accepts and hangs up at once: every S3 request is a network error."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.1)  # so the thread notices the close below
    accepted, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            accepted.append(1)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(timeout=5)
    server.close()


@pytest.mark.parametrize("max_retries", [0, 2])
def test_network_errors_are_retried_then_fail_clearly(s3_server, counting_dead_server, max_retries):
    port, accepted = counting_dead_server
    cfg = StoreConfig(uri="s3://bucket/lake", endpoint_url=f"http://127.0.0.1:{port}", max_retries=max_retries)
    with pytest.raises(StorageUnavailable) as caught:
        Lake.open(cfg).open_run("r1", "h")
    message = str(caught.value)
    assert f"127.0.0.1:{port}" in message and f"up to {max_retries + 1} attempts" in message
    assert len(accepted) == max_retries + 1  # the SDK retried each failed request
    assert S3_SECRET not in message and S3_KEY_ID not in message


def test_unreachable_endpoint_is_a_clear_error(s3_server):
    cfg = StoreConfig(uri="s3://bucket/lake", endpoint_url=f"http://127.0.0.1:{free_port()}", max_retries=0)
    with pytest.raises(StorageUnavailable, match="Could not connect"):
        run_query(cfg, "SELECT count(*) FROM samples")


def test_missing_bucket_is_a_clear_error(s3_server):
    cfg = StoreConfig(uri="s3://no-such-bucket/lake", endpoint_url=s3_server, max_retries=0)
    lake = Lake.open(cfg)
    with pytest.raises(StorageUnavailable, match="no-such-bucket"):
        lake.open_run("r1", "h")


def test_credentials_never_reach_objects_logs_or_reprs(s3_server, caplog):
    cfg = StoreConfig(uri=f"s3://{BUCKET}/{uuid.uuid4().hex}", endpoint_url=s3_server)
    lake = Lake.open(cfg)
    with caplog.at_level(logging.DEBUG):
        write_run(lake, "r1", steps=1)
        lake.open_run("r1", "cfg-hash-1", version="another-version", allow_code_change=True)  # logs a warning
        run_query(cfg, "SELECT count(*) FROM samples")
    assert "resuming under code another-version" in caplog.text
    client = boto3.client("s3", endpoint_url=s3_server)
    prefix = cfg.uri.split("/", 3)[3]
    keys = [o["Key"] for o in client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]]
    assert any(k.endswith("manifest.json") for k in keys) and any(k.endswith("run.json") for k in keys)
    for key in keys:
        body = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert S3_SECRET.encode() not in body and S3_KEY_ID.encode() not in body, key
    for text in (caplog.text, repr(lake.location), repr(lake.location.s3)):
        assert S3_SECRET not in text and S3_KEY_ID not in text


@pytest.fixture(scope="module")
def authenticating_s3():
    """A moto_server process that checks credentials (INITIAL_NO_AUTH_ACTION_COUNT=0)."""
    port = free_port()
    env = {**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"}
    proc = subprocess.Popen([os.path.join(os.path.dirname(sys.executable), "moto_server"), "-H", "127.0.0.1",
                             "-p", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{url}/moto-api/", timeout=1)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.slow
def test_wrong_credentials_fail_without_revealing_them(s3_server, authenticating_s3):
    cfg = StoreConfig(uri="s3://bucket/lake", endpoint_url=authenticating_s3, max_retries=0)
    with pytest.raises(StorageUnavailable) as caught:
        Lake.open(cfg).open_run("r1", "h")
    message = str(caught.value)
    assert "ACCESS_DENIED" in message or "InvalidAccessKeyId" in message or "403" in message, message
    assert S3_SECRET not in message and S3_KEY_ID not in message
