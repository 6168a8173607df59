"""Nodes 1..N-1 of a multi-node training group on Kubernetes (``train.nnodes`` > 1).

Node 0 is the run's own pod (the train flow run on the ``oreal-gpu`` work pool): it hosts
the c10d rendezvous and the control store (``group.py``) and starts its own ranks. The
other nodes are the pods of an Indexed Job, each running ``launcher_command(...,
hosts_rendezvous=False)``: the command is rendered from that function, so the two cannot
drift. Two headless Services go with it:

* ``<svc>`` (the host of ``train.rdzv_endpoint`` and ``train.control_endpoint``) selects the
  run's pod, which ``start_remote_nodes`` labels, so the workers reach its two ports;
* ``<svc>-nodes`` is the worker pods' subdomain, so each worker's FQDN resolves. torchrun's
  rank-0 node serves the bootstrap store at its *own* address (``--local-addr``, else
  ``socket.getfqdn()``); ranks are ordered by that address. The run's pod passes its IP
  (``RemoteNodes.driver_env``), which sorts before the workers' names, so global rank 0 is on
  node 0, next to the files it shares with the run's process.

Every pod mounts the same volumes as the flow-run pod (deploy/k8s-gpu-job-template.json):
the policy under /models, ``train.checkpoint_dir`` under /checkpoints, the lake on S3.

    python -m oreal_core.train.cluster --config oreal-7b --run-id RUN_ID > group.yaml
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from oreal_core.config import OrealConfig
from oreal_core.train.launcher import launcher_command

# The flow-run pod's settings (deploy/prefect.yaml, work pool oreal-gpu; the tests compare them).
NAMESPACE = "oreal"
IMAGE = "ghcr.io/oreal/oreal-pipeline:0.1.0"
PYTHON = "python3"  # the image's interpreter (infra/pipeline.Dockerfile installs the project into it)
MODELS_PVC, MODELS_MOUNT = "oreal-models", "/models"
CHECKPOINTS_PVC, CHECKPOINTS_MOUNT = "oreal-checkpoints", "/checkpoints"
S3_SECRET = "oreal-s3"
SHM_SIZE = "64Gi"
CPU_REQUEST, MEMORY_REQUEST = "64", "900Gi"
NODE_SELECTOR = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}

GROUP_LABEL, ROLE_LABEL = "oreal.io/train-group", "oreal.io/role"
RUN_ANNOTATION = "oreal.io/run-id"
SA_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
KUBECTL_TIMEOUT_S = 180.0


class ClusterError(RuntimeError):
    """The other nodes could not be rendered, started or stopped; the message says why."""


@dataclass(frozen=True)
class GroupNames:
    service: str  # host of the rendezvous and control endpoints: selects the run's pod
    nodes: str  # the worker Job, and the headless Service that is its pods' subdomain
    rdzv_port: int
    control_port: int


@dataclass(frozen=True)
class RemoteNodes:
    """What ``start_remote_nodes`` started; ``driver_env`` goes into node 0's launcher environment."""

    namespace: str
    names: GroupNames
    driver_env: dict[str, str] = field(default_factory=dict)


def group_names(cfg: OrealConfig, namespace: str) -> GroupNames:
    """The Service and Job names the config's endpoints imply; a config that cannot work is refused."""
    t = cfg.train
    if t.nnodes < 2:
        raise ClusterError(f"train.nnodes={t.nnodes}: a one-node group has no other nodes to start")
    if t.launcher != "torchrun":
        raise ClusterError(f"train.launcher={t.launcher}: the Kubernetes nodes join a torchrun c10d rendezvous "
                           "(the deepspeed launcher starts remote nodes over ssh); use train.launcher=torchrun")
    if not (t.rdzv_endpoint and t.control_endpoint):
        raise ClusterError("a multi-node group on Kubernetes needs train.rdzv_endpoint and train.control_endpoint "
                           "(both <service>.<namespace>.svc:PORT)")
    (rhost, rport), (chost, cport) = _split(t.rdzv_endpoint, "rdzv_endpoint"), _split(t.control_endpoint,
                                                                                     "control_endpoint")
    if rhost != chost or rport == cport:
        raise ClusterError(f"train.rdzv_endpoint={t.rdzv_endpoint} and train.control_endpoint={t.control_endpoint}: "
                           "both must be the run's Service (same host), on two different ports")
    service, *domain = rhost.split(".")
    if domain and domain[0] != namespace:
        raise ClusterError(f"train.rdzv_endpoint={t.rdzv_endpoint} names namespace {domain[0]!r}, "
                           f"but the nodes would run in {namespace!r}")
    # DNS-1035 label; the pods' hostnames are <nodes>-<index>, also at most 63 characters.
    if not (service[:1].isalpha() and service.islower() and len(service) <= 50
            and all(c.isalnum() or c == "-" for c in service) and not service.endswith("-")):
        raise ClusterError(f"train.rdzv_endpoint host {service!r}: a Service name is lower-case letters, digits and "
                           "'-', starts with a letter and here has at most 50 characters")
    for what, path, mount in (("train.checkpoint_dir", t.checkpoint_dir, CHECKPOINTS_MOUNT),
                              ("model.policy", cfg.model.policy, None)):
        mounts = (mount,) if mount else (MODELS_MOUNT, CHECKPOINTS_MOUNT)
        if not any(Path(path).is_relative_to(m) for m in mounts):
            raise ClusterError(f"{what}={path}: every node reads and writes it, so it must be on a shared volume "
                               f"({' or '.join(mounts)} on every pod)")
    return GroupNames(service, f"{service}-nodes", rport, cport)


def _split(endpoint: str, key: str) -> tuple[str, int]:
    host, _, port = endpoint.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"train.{key}={endpoint}: expected HOST:PORT")
    return host, int(port)


def render_worker_manifests(cfg: OrealConfig, run_id: str, image: str = IMAGE,
                            namespace: str = NAMESPACE) -> list[dict]:
    """The two Services and the worker Job of ``run_id``'s group, as Kubernetes objects."""
    names = group_names(cfg, namespace)
    t = cfg.train
    command = launcher_command(cfg, t.control_endpoint, t.rdzv_endpoint, run_id, hosts_rendezvous=False)
    command = [PYTHON, *command[1:]]  # sys.executable is this process's interpreter, not the image's

    def meta(name: str, role: str | None = None) -> dict:
        labels = {GROUP_LABEL: names.service} | ({ROLE_LABEL: role} if role else {})
        return {"name": name, "namespace": namespace, "labels": labels, "annotations": {RUN_ANNOTATION: run_id}}

    def headless(name: str, role: str, ports: list[dict]) -> dict:
        # publishNotReadyAddresses: the names must resolve while the pods start, before any readiness.
        spec = {"clusterIP": "None", "publishNotReadyAddresses": True,
                "selector": {GROUP_LABEL: names.service, ROLE_LABEL: role}}
        if ports:
            spec["ports"] = ports
        return {"apiVersion": "v1", "kind": "Service", "metadata": meta(name), "spec": spec}

    driver = headless(names.service, "driver", [
        {"name": "rdzv", "port": names.rdzv_port, "targetPort": names.rdzv_port},
        {"name": "control", "port": names.control_port, "targetPort": names.control_port}])
    nodes = headless(names.nodes, "worker", [])
    container = {
        "name": "train-node", "image": image, "imagePullPolicy": "IfNotPresent", "command": command,
        "envFrom": [{"secretRef": {"name": S3_SECRET}}],  # the lake's S3 credentials
        "resources": {"limits": {"nvidia.com/gpu": t.nproc_per_node},
                      "requests": {"cpu": CPU_REQUEST, "memory": MEMORY_REQUEST}},
        "volumeMounts": [{"name": "models", "mountPath": MODELS_MOUNT, "readOnly": True},
                         {"name": "checkpoints", "mountPath": CHECKPOINTS_MOUNT},
                         {"name": "shm", "mountPath": "/dev/shm"}]}
    pod = {
        "subdomain": names.nodes, "restartPolicy": "Never", "nodeSelector": dict(NODE_SELECTOR),
        "automountServiceAccountToken": False,  # the workers talk to no API server
        "containers": [container],
        "volumes": [{"name": "models", "persistentVolumeClaim": {"claimName": MODELS_PVC, "readOnly": True}},
                    {"name": "checkpoints", "persistentVolumeClaim": {"claimName": CHECKPOINTS_PVC}},
                    {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM_SIZE}}]}
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": meta(names.nodes), "spec": {
        "completionMode": "Indexed", "completions": t.nnodes - 1, "parallelism": t.nnodes - 1,
        # One lost node fails the group (torchrun runs with --max-restarts 0); the run resumes
        # with a new group, which replaces this Job.
        "backoffLimit": 0, "ttlSecondsAfterFinished": 3600,
        "template": {"metadata": {"labels": {GROUP_LABEL: names.service, ROLE_LABEL: "worker"},
                                  "annotations": {RUN_ANNOTATION: run_id}}, "spec": pod}}}
    return [driver, nodes, job]


def dump_manifests(docs: list[dict]) -> str:
    return yaml.safe_dump_all(docs, sort_keys=False, width=120)


# --------------------------------------------------------------------------- kubectl


def start_remote_nodes(cfg: OrealConfig, run_id: str, *, namespace: str | None = None, image: str | None = None,
                       driver_pod: str | None = None, ready_timeout_s: float = 60.0) -> RemoteNodes:
    """Label this pod as the group's node 0 and apply the Services and the worker Job.

    Call it from the run's pod after the control store is listening and before node 0's
    launcher starts, and give that launcher ``driver_env``. ``image`` defaults to this pod's
    own (the nodes must run the code version of the run); a previous group's Job of the
    same name is deleted first (a Job's pod template cannot change, its pods do not rerun).
    """
    namespace = namespace or _own_namespace()
    names = group_names(cfg, namespace)  # a bad config fails before anything changes on the cluster
    pod = driver_pod or _own_pod_name()
    info = json.loads(_kubectl(namespace, "get", "pod", pod, "-o", "json"))
    ip = info.get("status", {}).get("podIP")
    if not ip:
        raise ClusterError(f"pod {namespace}/{pod} has no IP yet")
    if not ip < f"{names.nodes}-0":  # see the module docstring: the lowest address is global rank 0
        raise ClusterError(f"pod IP {ip} sorts after the worker names {names.nodes}-<i>, so a worker would be rank 0; "
                           "rename the Service (train.rdzv_endpoint) to start with a letter after 'f'")
    docs = render_worker_manifests(cfg, run_id, image or info["spec"]["containers"][0]["image"], namespace)
    stop_remote_nodes(cfg, namespace=namespace)
    _kubectl(namespace, "label", "pod", pod, "--overwrite", f"{GROUP_LABEL}={names.service}", f"{ROLE_LABEL}=driver")
    _kubectl(namespace, "apply", "-f", "-", input=dump_manifests(docs))
    _wait_for_endpoint(namespace, names.service, pod, ip, ready_timeout_s)
    return RemoteNodes(namespace, names, {"PET_LOCAL_ADDR": ip})  # torchrun reads --local-addr from PET_LOCAL_ADDR


def stop_remote_nodes(cfg: OrealConfig, *, namespace: str | None = None) -> None:
    """Delete the group's worker Job (its pods too, waited for) and Services; nothing there is fine."""
    namespace = namespace or _own_namespace()
    names = group_names(cfg, namespace)
    _kubectl(namespace, "delete", "job,service", "-l", f"{GROUP_LABEL}={names.service}", "--ignore-not-found",
             "--cascade=foreground", "--wait", f"--timeout={int(KUBECTL_TIMEOUT_S) - 30}s")


def _kubectl(namespace: str, *args: str, input: str | None = None) -> str:
    exe = shutil.which("kubectl")
    if exe is None:
        raise ClusterError("kubectl is not on PATH: the run's pod starts the group's other nodes with it "
                           "(infra/pipeline.Dockerfile installs it; or apply deploy/k8s/train-group.yaml by hand)")
    cmd = [exe, "--namespace", namespace, *args]
    try:
        done = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=KUBECTL_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ClusterError(f"`kubectl {' '.join(cmd[1:])}` did not finish within {KUBECTL_TIMEOUT_S:.0f} s") from None
    if done.returncode:
        raise ClusterError(f"`kubectl {' '.join(cmd[1:])}` failed (exit {done.returncode}): "
                           f"{(done.stderr or done.stdout).strip()[-2000:]}")
    return done.stdout


def _wait_for_endpoint(namespace: str, service: str, pod: str, ip: str, timeout_s: float) -> None:
    """Until the Service resolves to this pod: node 0's own ranks reach the control store through it."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = _kubectl(namespace, "get", "endpointslices", "-l", f"kubernetes.io/service-name={service}",
                         "-o", "jsonpath={.items[*].endpoints[*].addresses[*]}").split()
        if ip in found:
            return
        if time.monotonic() > deadline:
            raise ClusterError(f"Service {namespace}/{service} does not list pod {pod} ({ip}) after {timeout_s:.0f} s "
                               f"(it lists {found or 'nothing'}); is the pod labelled {GROUP_LABEL}={service}?")
        time.sleep(1.0)


def _own_namespace() -> str:
    return SA_NAMESPACE_FILE.read_text().strip() if SA_NAMESPACE_FILE.is_file() else NAMESPACE


def _own_pod_name() -> str:
    if "KUBERNETES_SERVICE_HOST" not in os.environ:
        raise ClusterError("this process is not in a Kubernetes pod, so it cannot be node 0 of a Kubernetes group; "
                           "pass driver_pod= (the pod that hosts the rendezvous)")
    return socket.gethostname()  # a pod's hostname is its name


# --------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> None:
    from oreal_core.config import load_config

    parser = argparse.ArgumentParser(prog="python -m oreal_core.train.cluster",
                                     description="Print the worker Job and Services of a multi-node training group.")
    parser.add_argument("--config", required=True, help="a named config (configs/NAME.yaml) or a YAML path")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--run-id", required=True, help="the run's id (torchrun's --rdzv-id)")
    parser.add_argument("--image", default=IMAGE)
    parser.add_argument("--namespace", default=NAMESPACE)
    args = parser.parse_args(argv)
    try:
        docs = render_worker_manifests(load_config(args.config, args.overrides), args.run_id, args.image,
                                       args.namespace)
    except ClusterError as exc:
        parser.exit(2, f"{parser.prog}: {exc}\n")
    sys.stdout.write(dump_manifests(docs))


if __name__ == "__main__":
    main()
