"""benchmarks/gpu_check.py, the one-command GPU check, kept from rotting on the CPU machine:
``--dry`` runs every part's code path and must print every key of the JSON, with figures
where a CPU can give them; the pieces only a GPU run reaches are checked here directly."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    sys.path.insert(0, str(SCRIPT.parent))  # the script imports its sibling benchmarks by name
    try:
        import gpu_check

        yield gpu_check
    finally:
        sys.path.remove(str(SCRIPT.parent))


@pytest.mark.slow
def test_dry_run_prints_every_part_with_plausible_figures(tmp_path):
    """One engine start shared by the three engine parts: ~80 s on the 2-core machine."""
    log = tmp_path / "gpu_check.log"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--dry", "--log", str(log)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["mode"] == "dry" and result["device"] == "cpu" and result["model"]["name"] == "tiny"
    parts = {k: result[k] for k in ("rollout", "weight_sync", "sleep", "mfu", "gpu_tests")}
    assert not [p for p in parts.values() if "error" in p or "skipped_reason" in p], parts
    rollout = parts["rollout"]
    assert rollout["rollout_tok_s"] > 0 and rollout["raw_tok_s"] > 0 and rollout["ratio"] > 0
    assert parts["weight_sync"]["gb_s"] > 0 and parts["weight_sync"]["weights_mb"] > 0
    assert parts["sleep"]["freed_gib"] is None and "unavailable on CPU" in parts["sleep"]["unavailable"]
    mfu = parts["mfu"]
    assert mfu["mfu"] is None and mfu["peak_flops"] is None  # no known peak for a CPU
    assert mfu["trainer"] == "deepspeed" and mfu["params"] > 0 and mfu["tok_s"] > 0 and mfu["step_s"] > 0
    tests = parts["gpu_tests"]
    assert tests["skipped"] >= 1 and tests["passed"] == tests["failed"] == 0 and tests["rc"] == 0
    assert not tests["collection_errors"] and not tests["timed_out"]
    assert "gpu_check part gpu_tests" in log.read_text()  # engine and pytest output went to the log


def test_pytest_counts_read_a_run_cut_short_and_collection_errors(gpu_check):
    output = "\n".join([
        "tests/train/test_trainer.py::test_bf16_step_on_gpu PASSED                [ 20%]",
        "tests/rollout/test_engine_group.py::test_two[a b] FAILED                [ 40%]",
        "tests/rollout/test_engine_group.py::test_three SKIPPED (needs a CUDA GPU) [ 60%]",
        "ERROR tests/flows/test_demo.py - ModuleNotFoundError: No module named 'prefect'",
    ])
    counts = gpu_check.pytest_counts(output)
    assert (counts["passed"], counts["failed"], counts["skipped"]) == (1, 1, 1)
    assert counts["failed_tests"] == ["tests/rollout/test_engine_group.py::test_two[a b]"]
    assert counts["collection_errors"] == ["tests/flows/test_demo.py"]


def test_budget_skips_a_part_with_its_reason(gpu_check, tmp_path):
    check = gpu_check.Check(None, tmp_path, gpu_check.DRY, tmp_path / "log", on_gpu=False,
                            deadline=time.monotonic() - 1)
    result = gpu_check.run_part(check, "mfu", sys.stdout)
    assert "time budget" in result["skipped_reason"]
    assert gpu_check.headline("mfu", result).startswith("skipped_reason: time budget")


def test_mfu_without_deepspeed_times_the_plain_torch_loop(gpu_check, monkeypatch, tmp_path):
    """The GPU image may lack DeepSpeed: the part then times benchmarks/train.py's torch loop."""
    from oreal_core.models.tiny import build_tiny_policy

    policy = build_tiny_policy(tmp_path / "tiny")
    cfg = gpu_check.check_config(policy, gpu_check.DRY, on_gpu=False)
    check = gpu_check.Check(cfg, policy, gpu_check.DRY, tmp_path / "log", on_gpu=False, deadline=time.monotonic() + 60)
    monkeypatch.setattr(gpu_check, "find_spec", lambda name: None)
    result = gpu_check.mfu_part(check)
    assert result["trainer"].startswith("torch") and result["tok_s"] > 0 and result["mfu"] is None


def test_peak_is_known_only_for_the_hopper_chips(gpu_check):
    assert gpu_check.peak_flops("NVIDIA H200") == gpu_check.peak_flops("NVIDIA H100 80GB HBM3") == 989e12
    assert gpu_check.peak_flops("NVIDIA A100-SXM4-80GB") is None and gpu_check.peak_flops("cpu") is None
