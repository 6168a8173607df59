"""The multi-node training group on Kubernetes (oreal_core/train/cluster.py) against the code.

The worker Job runs group.py's own launcher command, its ports and node count are the
config's, its pods look like the flow-run pod of deploy/prefect.yaml, the checked-in
deploy/k8s/train-group.yaml is what cluster.py renders for configs/oreal-7b.yaml, and the
kubectl calls are checked against a fake kubectl (no cluster needed).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest
import yaml

from oreal_core.config import load_config
from oreal_core.train import cluster
from oreal_core.train.cluster import (
    ClusterError,
    render_worker_manifests,
    start_remote_nodes,
    stop_remote_nodes,
)
from oreal_core.train.launcher import launcher_command

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "deploy" / "k8s" / "train-group.yaml"
PLACEHOLDER_RUN = "oreal-7b-CHANGE-ME"  # as deploy/prefect.yaml's resume schedule names a run to fill in
GPU_TEMPLATE = json.loads((ROOT / "deploy" / "k8s-gpu-job-template.json").read_text())


@pytest.fixture(scope="module")
def cfg():
    return load_config("oreal-7b")


@pytest.fixture(scope="module")
def docs(cfg):
    return render_worker_manifests(cfg, "run-1")


def one(docs: list[dict], kind: str, name: str | None = None) -> dict:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def gpu_pool() -> dict:
    return yaml.safe_load((ROOT / "deploy" / "prefect.yaml").read_text())["definitions"]["work_pools"]["gpu"]["job_variables"]


def endpoint(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    return host, int(port)


# ------------------------------------------------------------------ the manifests


def test_checked_in_manifest_is_what_cluster_renders(cfg):
    on_disk = [d for d in yaml.safe_load_all(STATIC.read_text()) if d is not None]
    expected = render_worker_manifests(cfg, PLACEHOLDER_RUN, cluster.IMAGE, cluster.NAMESPACE)
    assert on_disk == expected, ("deploy/k8s/train-group.yaml is out of date; regenerate it with "
                                 f"python -m oreal_core.train.cluster --config oreal-7b --run-id {PLACEHOLDER_RUN}")


def test_the_paper_config_is_four_nodes_of_eight(cfg):
    t, r = cfg.train, cfg.rollout
    assert (t.launcher, t.nproc_per_node, t.nnodes) == ("torchrun", 8, 4)
    # The engines run in the run's process, i.e. on node 0's GPUs.
    assert r.engines * r.tensor_parallel_size == t.nproc_per_node == gpu_pool()["gpu_count"]


def test_workers_run_the_launcher_command_with_the_rendezvous_hosted_elsewhere(cfg, docs):
    command = one(docs, "Job")["spec"]["template"]["spec"]["containers"][0]["command"]
    t = cfg.train
    expected = launcher_command(cfg, t.control_endpoint, t.rdzv_endpoint, "run-1", hosts_rendezvous=False)
    assert command == [cluster.PYTHON, *expected[1:]]
    driver = launcher_command(cfg, t.control_endpoint, t.rdzv_endpoint, "run-1")
    assert [a for a in driver[1:] if a not in command] == ["is_host=1"] and "is_host=0" in command
    assert command[command.index("--rdzv-id") + 1] == "run-1"


def test_services_carry_the_config_endpoints(cfg, docs):
    (rhost, rport), (chost, cport) = endpoint(cfg.train.rdzv_endpoint), endpoint(cfg.train.control_endpoint)
    assert rhost == chost
    service = one(docs, "Service", rhost.split(".")[0])
    assert f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc" == rhost
    spec = service["spec"]
    assert spec["clusterIP"] == "None" and spec["publishNotReadyAddresses"]
    assert {p["name"]: (p["port"], p["targetPort"]) for p in spec["ports"]} == {"rdzv": (rport, rport),
                                                                                  "control": (cport, cport)}
    # It selects the run's pod (labelled by start_remote_nodes), never a worker.
    assert spec["selector"] == {cluster.GROUP_LABEL: service["metadata"]["name"], cluster.ROLE_LABEL: "driver"}


def test_worker_pods_resolve_through_their_own_headless_service(docs):
    job = one(docs, "Job")
    pod = job["spec"]["template"]
    nodes = one(docs, "Service", pod["spec"]["subdomain"])
    assert nodes["spec"]["clusterIP"] == "None" and nodes["spec"]["selector"].items() <= pod["metadata"]["labels"].items()
    assert job["metadata"]["name"] == nodes["metadata"]["name"]
    assert len(f"{job['metadata']['name']}-{job['spec']['completions']}") <= 63  # the pods' hostnames


def test_job_runs_the_other_nnodes_minus_one_nodes(cfg, docs):
    spec = one(docs, "Job")["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == cfg.train.nnodes - 1 == 3
    assert spec["backoffLimit"] == 0 and spec["template"]["spec"]["restartPolicy"] == "Never"


def test_worker_pods_look_like_the_flow_run_pod(cfg, docs):
    pool = gpu_pool()
    pod = one(docs, "Job")["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == cfg.train.nproc_per_node == pool["gpu_count"]
    assert c["resources"]["requests"] == {"cpu": pool["cpu_request"], "memory": pool["memory_request"]}
    assert c["envFrom"] == [{"secretRef": {"name": pool["s3_secret"]}}]
    assert pod["nodeSelector"] == pool["node_selector"]
    assert one(docs, "Job")["metadata"]["namespace"] == pool["namespace"] == cluster.NAMESPACE
    claims = {v["name"]: v.get("persistentVolumeClaim", {}).get("claimName") for v in pod["volumes"]}
    assert claims["models"] == pool["models_pvc"] and claims["checkpoints"] == pool["checkpoints_pvc"]
    assert next(v for v in pod["volumes"] if v["name"] == "shm")["emptyDir"]["sizeLimit"] == pool["shm_size"]
    template = GPU_TEMPLATE["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
    assert c["volumeMounts"] == template["volumeMounts"]  # same names, paths and read-only flags


def test_what_every_node_reads_and_writes_is_on_the_shared_volumes(cfg):
    mounts = {m["mountPath"] for m in
              GPU_TEMPLATE["job_configuration"]["job_manifest"]["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]}
    for path in (cfg.train.checkpoint_dir, cfg.model.policy, cfg.data.prompts):
        assert any(Path(path).is_relative_to(m) for m in mounts - {"/dev/shm"}), path
    assert cfg.store.uri.startswith("s3://")


def test_image_and_interpreter_follow_the_dockerfile_and_the_pool(docs):
    dockerfile = (ROOT / "infra" / "pipeline.Dockerfile").read_text()
    assert one(docs, "Job")["spec"]["template"]["spec"]["containers"][0]["image"] == cluster.IMAGE == gpu_pool()["image"]
    assert cluster.IMAGE in dockerfile  # its docker build -t line
    assert f"RUN {cluster.PYTHON} -m pip install --no-cache-dir -e ." in dockerfile
    assert re.search(r"dl\.k8s\.io/release/\$\{KUBECTL_VERSION\}/bin/linux/\$\{TARGETARCH\}/kubectl", dockerfile)


def test_flow_run_pods_may_do_what_start_remote_nodes_does():
    docs = [d for d in yaml.safe_load_all((ROOT / "infra" / "train-group.k8s.yaml").read_text()) if d]
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    assert gpu_pool()["service_account_name"] == account
    assert "service_account_name" in GPU_TEMPLATE["variables"]["properties"]
    binding = one(docs, "RoleBinding")
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account}]
    rules = one(docs, "Role", binding["roleRef"]["name"])["rules"]
    granted = {(g, r, v) for rule in rules for g in rule["apiGroups"] for r in rule["resources"] for v in rule["verbs"]}
    needed = {("", "pods", "get"), ("", "pods", "patch"), ("discovery.k8s.io", "endpointslices", "list")}
    needed |= {(g, r, v) for g, r in (("batch", "jobs"), ("", "services"))
               for v in ("get", "list", "watch", "create", "patch", "delete")}
    assert needed <= granted, needed - granted


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("overrides, message", [
    (["train.nnodes=1"], "train.nnodes=1: a one-node group"),
    (["train.launcher=deepspeed", "train.hostfile=hosts"], "train.launcher=deepspeed"),
    (["train.control_endpoint=other.oreal.svc:29500"], "same host"),
    (["train.control_endpoint=oreal-train-group.oreal.svc:29400"], "two different ports"),
    (["train.rdzv_endpoint=g.elsewhere.svc:1", "train.control_endpoint=g.elsewhere.svc:2"], "namespace 'elsewhere'"),
    (["train.rdzv_endpoint=Bad_Name:1", "train.control_endpoint=Bad_Name:2"], "a Service name is lower-case"),
    (["train.checkpoint_dir=checkpoints"], "train.checkpoint_dir=checkpoints: every node reads and writes it"),
    (["model.policy=/home/me/policy"], "model.policy=/home/me/policy"),
])
def test_a_config_that_cannot_work_is_refused_before_kubectl(overrides, message, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no kubectl: the config error must come first
    bad = load_config("oreal-7b", overrides)
    with pytest.raises(ClusterError, match=re.escape(message)):
        render_worker_manifests(bad, "r")
    with pytest.raises(ClusterError, match=re.escape(message)):
        start_remote_nodes(bad, "r", namespace="oreal", driver_pod="driver-pod")


def test_missing_kubectl_is_a_clear_error(cfg, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ClusterError, match="kubectl is not on PATH"):
        start_remote_nodes(cfg, "r", namespace="oreal", driver_pod="driver-pod")
    with pytest.raises(ClusterError, match="kubectl is not on PATH"):
        stop_remote_nodes(cfg, namespace="oreal")


def test_outside_a_pod_node_0_must_be_named(cfg, monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ClusterError, match="not in a Kubernetes pod"):
        start_remote_nodes(cfg, "r", namespace="oreal")


# ------------------------------------------------------------------ kubectl calls (a fake kubectl)

FAKE = """#!{python}
import json, os, sys
args = sys.argv[1:]
data = sys.stdin.read() if args[-2:] == ["-f", "-"] else ""
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"args": args, "stdin": data}}) + "\\n")
verb = args[2]
if verb == os.environ.get("FAKE_FAIL"):
    print("Error from server (Forbidden): jobs.batch is forbidden", file=sys.stderr)
    sys.exit(1)
if args[2:4] == ["get", "pod"]:
    print(json.dumps({{"status": {{"podIP": os.environ["FAKE_IP"]}},
                      "spec": {{"containers": [{{"image": "registry.local/oreal:sha-1"}}]}}}}))
elif args[2:4] == ["get", "endpointslices"]:
    print(os.environ.get("FAKE_ENDPOINTS", os.environ["FAKE_IP"]))
"""


@pytest.fixture
def fake_kubectl(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "kubectl"
    exe.write_text(FAKE.format(python=sys.executable))
    exe.chmod(0o755)
    log = tmp_path / "calls.jsonl"
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setenv("FAKE_LOG", str(log))
    monkeypatch.setenv("FAKE_IP", "10.4.0.17")

    def calls() -> list[dict]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls


def test_start_labels_node_0_replaces_the_old_job_applies_and_waits(cfg, fake_kubectl):
    nodes = start_remote_nodes(cfg, "run-7", namespace="oreal", driver_pod="oreal-7b-flow-abcde")
    calls = fake_kubectl()
    assert all(c["args"][:2] == ["--namespace", "oreal"] for c in calls)
    verbs = [" ".join(c["args"][2:4]) for c in calls]
    assert verbs == ["get pod", "delete job,service", "label pod", "apply -f", "get endpointslices"]
    assert calls[1]["args"][4:6] == ["-l", "oreal.io/train-group=oreal-train-group"]
    assert calls[2]["args"][4:] == ["oreal-7b-flow-abcde", "--overwrite", "oreal.io/train-group=oreal-train-group",
                                    "oreal.io/role=driver"]
    applied = list(yaml.safe_load_all(calls[3]["stdin"]))
    assert applied == render_worker_manifests(cfg, "run-7", "registry.local/oreal:sha-1", "oreal")  # node 0's image
    assert nodes.driver_env == {"PET_LOCAL_ADDR": "10.4.0.17"}
    assert (nodes.namespace, nodes.names.service, nodes.names.nodes) == ("oreal", "oreal-train-group",
                                                                         "oreal-train-group-nodes")


def test_torchrun_reads_the_driver_address_from_the_environment(monkeypatch):
    from torch.distributed.run import get_args_parser

    monkeypatch.setenv("PET_LOCAL_ADDR", "10.4.0.17")
    assert get_args_parser().parse_args(["x.py"]).local_addr == "10.4.0.17"


def test_node_0_must_be_rank_0(fake_kubectl, monkeypatch):
    monkeypatch.setenv("FAKE_IP", "fd00::17")  # IPv6 sorts after a Service named "abc"
    odd = load_config("oreal-7b", ["train.rdzv_endpoint=abc:29400", "train.control_endpoint=abc:29500"])
    with pytest.raises(ClusterError, match="a worker would be rank 0"):
        start_remote_nodes(odd, "r", namespace="oreal", driver_pod="p")
    assert [c["args"][2] for c in fake_kubectl()] == ["get"]  # nothing was changed


def test_a_failed_apply_names_the_command_and_kubectls_message(cfg, fake_kubectl, monkeypatch):
    monkeypatch.setenv("FAKE_FAIL", "apply")
    with pytest.raises(ClusterError, match=r"`kubectl --namespace oreal apply -f -` failed \(exit 1\): "
                                           r"Error from server \(Forbidden\)"):
        start_remote_nodes(cfg, "r", namespace="oreal", driver_pod="p")


def test_a_service_that_never_lists_node_0_fails_start(cfg, fake_kubectl, monkeypatch):
    monkeypatch.setenv("FAKE_ENDPOINTS", "10.9.9.9")
    with pytest.raises(ClusterError, match=r"does not list pod p \(10\.4\.0\.17\).*oreal\.io/train-group"):
        start_remote_nodes(cfg, "r", namespace="oreal", driver_pod="p", ready_timeout_s=0)


def test_stop_deletes_the_groups_objects_and_waits(cfg, fake_kubectl):
    stop_remote_nodes(cfg, namespace="oreal")
    (call,) = fake_kubectl()
    assert call["args"][2:] == ["delete", "job,service", "-l", "oreal.io/train-group=oreal-train-group",
                                "--ignore-not-found", "--cascade=foreground", "--wait", "--timeout=150s"]


def test_generator_prints_the_manifests(cfg, capsys):
    cluster.main(["--config", "oreal-7b", "--run-id", "run-9", "--image", "img:1"])
    assert list(yaml.safe_load_all(capsys.readouterr().out)) == render_worker_manifests(cfg, "run-9", "img:1")
    with pytest.raises(SystemExit) as exited:
        cluster.main(["--config", "oreal-7b", "--run-id", "r", "--set", "train.nnodes=1"])
    assert exited.value.code == 2 and "train.nnodes=1" in capsys.readouterr().err
