"""deploy/prefect.yaml against a real Prefect server: deploy, run through a worker, complete.

Everything runs as the docs say a user runs it: `prefect server start` on 127.0.0.1 with
its own PREFECT_HOME, `prefect work-pool create`, `prefect deploy --prefect-file
deploy/prefect.yaml` from the repository root, `prefect worker start`; the flow run is
created through the API with `run_deployment`. Every process started here is stopped
by its process group at the end, pass or fail.
"""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests.services import (
    PREFECT,
    REPO_ROOT,
    Service,
    free_port,
    prefect_server_env,
    start_prefect_server,
    start_service,
)

POOL = "oreal-local"  # deploy/prefect.yaml, definitions.work_pools.local
DEPLOYMENT = "oreal-train/oreal-train"  # flow name / deployment name
RUN_TIMEOUT_S = 1200  # the first use of the tiny config trains an SFT policy (minutes on 2 busy cores)

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]


def prefect_cli(args: list[str], env: dict[str, str], timeout_s: float) -> None:
    done = subprocess.run([*PREFECT, *args], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout_s)
    assert done.returncode == 0, f"prefect {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


@pytest.fixture(scope="module")
def prefect_env(tmp_path_factory):
    """A real Prefect server with an isolated PREFECT_HOME, and the env its clients use."""
    home = tmp_path_factory.mktemp("prefect-home")
    env = prefect_server_env(home, f"http://127.0.0.1:{free_port()}/api")
    server = start_prefect_server(env, home)
    try:
        yield env, server
    finally:
        server.stop()


def cheap_parameters(tmp: Path, sft_cache: Path, run_id: str) -> dict:
    """One iteration of 4 prompts x 4 samples with the HF engine after a 20-step SFT warm-up.

    The policy this makes is poor (the test is about deployment, not learning): its SFT
    cache lives in the test's own temporary folder, never in runs/sft.
    """
    return {"config": "tiny-cpu", "run_id": run_id, "overrides": [
        "rollout.engine=hf", "run.total_steps=1", "data.prompts_per_step=4",
        "rollout.samples_per_prompt=4", f"store.uri={tmp / 'lake'}",
        f"train.checkpoint_dir={tmp / 'checkpoints'}", f"sft.cache_dir={sft_cache}",
        "rollout.max_new_tokens=48", "sft.max_steps=20", "sft.batch_size=16", "sft.check_every=20",
        "sft.check_size=10"]}


def wait_final(flow_run_id, timeout_s: float, services: list[Service]):
    from prefect.client.orchestration import get_client

    deadline = time.monotonic() + timeout_s
    with get_client(sync_client=True) as client:
        while True:
            run = client.read_flow_run(flow_run_id)
            if run.state is not None and run.state.is_final():
                return run
            if time.monotonic() > deadline or any(s.proc.poll() is not None for s in services):
                logs = "\n".join(s.tail() for s in services)
                pytest.fail(f"flow run {run.name} still {run.state_name} after {timeout_s:.0f} s "
                            f"(or a service died)\n{logs}")
            time.sleep(3)


def test_train_deployment_runs_to_completion(prefect_env, tmp_path, tmp_path_factory):
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env, server = prefect_env
    prefect_cli(["work-pool", "create", POOL, "--type", "process", "--overwrite"], env, timeout_s=180)
    prefect_cli(["--no-prompt", "deploy", "--prefect-file", "deploy/prefect.yaml", "--name", "oreal-train"],
                env, timeout_s=600)
    worker = start_service("worker", [*PREFECT, "worker", "start", "--pool", POOL, "--limit", "1"], env, tmp_path)
    run_id = f"deploy-test-{uuid.uuid4().hex[:8]}"
    params = cheap_parameters(tmp_path, tmp_path_factory.mktemp("sft"), run_id)
    try:
        with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}):
            flow_run = run_deployment(DEPLOYMENT, parameters=params, timeout=0)
            final = wait_final(flow_run.id, RUN_TIMEOUT_S, [server, worker])
        assert final.state.is_completed(), (
            f"flow run {final.name} ended {final.state_name}: {final.state.message}\n{worker.tail(12000)}")
    finally:
        worker.stop()
    assert final.name == run_id  # the flow names its run after the run id
    lake_files = [p.relative_to(tmp_path / "lake") for p in (tmp_path / "lake").rglob("*.parquet")]
    assert any("step=0" in str(p) and "metrics" in str(p) for p in lake_files), lake_files


def test_every_deployment_registers_with_its_schedules_and_limits(prefect_env):
    """The GPU-cluster deployments need no cluster to register: the server validates the
    Kubernetes job template, the job variables, the schedules and the concurrency limits."""
    import yaml
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env, _ = prefect_env
    spec = yaml.safe_load((REPO_ROOT / "deploy" / "prefect.yaml").read_text())
    pools = spec["definitions"]["work_pools"]
    for pool, kind, template in ((pools["gpu"]["name"], "kubernetes", ["--base-job-template", "deploy/k8s-gpu-job-template.json"]),
                                 (pools["local"]["name"], "process", [])):
        prefect_cli(["work-pool", "create", pool, "--type", kind, "--overwrite", *template], env, timeout_s=180)
    present = [d for d in spec["deployments"] if (REPO_ROOT / d["entrypoint"].split(":")[0]).exists()]
    names = [arg for d in present for arg in ("--name", d["name"])]
    prefect_cli(["--no-prompt", "deploy", "--prefect-file", "deploy/prefect.yaml", *names], env, timeout_s=900)
    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
        retrain = client.read_deployment_by_name("oreal-retrain/oreal-retrain")
        gpu = client.read_work_pool(pools["gpu"]["name"])
        automations = client.read_automations_by_name(f"{retrain.name}__automation_1")
    schedules = {s.slug: s for s in retrain.schedules}
    assert schedules["nightly-cycle"].active and schedules["nightly-cycle"].schedule.cron == "0 2 * * *"
    assert retrain.entrypoint == "flows/retrain.py:retrain" and retrain.parameters["lineage"] == "oreal-7b"
    assert retrain.global_concurrency_limit.limit == 1
    # The new-prompt trigger: an automation that runs this deployment on oreal.prompts.added for its lineage.
    (automation,) = automations
    assert automation.enabled and automation.trigger.expect == {"oreal.prompts.added"}
    assert automation.trigger.match.model_dump()["prefect.resource.id"] == "oreal.lineage.oreal-7b"
    assert [a.deployment_id for a in automation.actions] == [retrain.id]
    assert retrain.job_variables["gpu_count"] == pools["gpu"]["job_variables"]["gpu_count"]
    assert "gpu_count" in gpu.base_job_template["variables"]["properties"]


def test_new_prompts_trigger_a_retraining_cycle(prefect_env, tmp_path):
    """`oreal prompts add` lands the file and emits oreal.prompts.added; the retrain deployment's
    automation (registered by the test above) answers with a flow run of that deployment."""
    import json
    import sys

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
    from prefect.settings import PREFECT_API_URL, temporary_settings

    env, _ = prefect_env
    prompts = tmp_path / "arrived.jsonl"
    prompts.write_text(json.dumps({"question": "What is 2 + 2?", "gold_answer": "4"}) + "\n")
    added = subprocess.run([sys.executable, "-m", "flows.cli", "prompts", "add", str(prompts), "--lineage",
                            "oreal-7b", "--set", f"store.uri={tmp_path / 'lake'}"], cwd=REPO_ROOT, env=env,
                           capture_output=True, text=True, timeout=300)
    assert added.returncode == 0, added.stderr[-3000:]
    assert "event oreal.prompts.added emitted" in added.stdout, added.stdout
    assert list((tmp_path / "lake" / "retrain" / "oreal-7b" / "incoming").glob("*-arrived.jsonl"))
    with temporary_settings(updates={PREFECT_API_URL: env["PREFECT_API_URL"]}), get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name("oreal-retrain/oreal-retrain")
        only_it = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        deadline = time.monotonic() + 120
        # The nightly schedule's runs are auto-scheduled; the trigger's is not.
        while not (runs := [r for r in client.read_flow_runs(deployment_filter=only_it) if not r.auto_scheduled]):
            assert time.monotonic() < deadline, "no flow run of oreal-retrain 120 s after oreal.prompts.added"
            time.sleep(2)
    assert runs[0].parameters["lineage"] == "oreal-7b"
