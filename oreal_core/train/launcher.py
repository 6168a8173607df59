"""The command that starts one node's training ranks (torchrun or the deepspeed launcher).

Shared by the driver, which starts its own node's ranks (:mod:`oreal_core.train.group`), and by
the Kubernetes manifests of the other nodes (:mod:`oreal_core.train.cluster`).
"""

from __future__ import annotations

import sys

from oreal_core.config import OrealConfig


def launcher_command(cfg: OrealConfig, control: str, rdzv: str, run_id: str, hosts_rendezvous: bool = True) -> list[str]:
    """The command that starts one node's ranks. The run's own node hosts the c10d rendezvous
    (``is_host``: its endpoint may be a Service name that matches no local hostname); the
    other nodes of a cluster job run the same command with ``hosts_rendezvous=False``."""
    train = cfg.train
    worker = ["oreal_core.train.group_worker", "--control", control]
    if train.launcher == "deepspeed":
        cmd = [sys.executable, "-m", "deepspeed.launcher.runner", "--num_nodes", str(train.nnodes),
               "--num_gpus", str(train.nproc_per_node)]
        if train.hostfile:
            cmd += ["--hostfile", train.hostfile]
        host, _, port = rdzv.rpartition(":")
        return [*cmd, "--master_addr", host, "--master_port", port, "--module", *worker]
    return [sys.executable, "-m", "torch.distributed.run", "--nnodes", str(train.nnodes),
            "--nproc-per-node", str(train.nproc_per_node), "--rdzv-backend", "c10d", "--rdzv-endpoint", rdzv,
            "--rdzv-id", run_id, "--rdzv-conf", f"is_host={int(hosts_rendezvous)}", "--max-restarts", "0",
            "--monitor-interval", "0.5", "-m", *worker]
