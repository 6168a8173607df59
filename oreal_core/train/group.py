"""The run's training group: N DeepSpeed ranks under torchrun or the deepspeed launcher,
alive for the whole run (``train.launcher: torchrun | deepspeed``).

The run's process hosts a ``torch.distributed.TCPStore`` (the control channel) and starts
the launcher; every rank (``group_worker.py``) loads actor, token RM and reference once and
then serves requests: ``open`` (restore the newest full state), ``train`` (one step, read
from the lake's committed ``scored`` artefact), ``score`` (token-RM scores for the score
stage), ``weights`` (the actor for the rollout engine), ``save_last_hf`` and ``stop``. A request is a small
JSON value under ``request/<n>``; rank 0 answers under ``reply/<n>``; data goes through the
lake or files, never the store.

Waiting on a reply is never blind: the launcher's exit (a rank died: torchrun stops the
others) and every rank's heartbeat counter are checked while waiting, so a dead or hung
rank fails the request within seconds or ``train.heartbeat_timeout_s``, naming the rank
and the last lines of its log. The group is then stopped; the run resumes as usual, and a
new group restores the newest full state and replays the steps after it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import torch
from torch.distributed import TCPStore

from oreal_core.config import OrealConfig
from oreal_core.rollout.devices import trainer_devices
from oreal_core.train.batch_files import write_scored_batch
from oreal_core.train.cluster import (
    ClusterError,
    RemoteNodes,
    start_remote_nodes,
    stop_remote_nodes,
)
from oreal_core.train.launcher import launcher_command
from oreal_core.train.results import TokenRMRecord, TrainStepResult, read_result
from oreal_core.types import ScoredBatch

log = logging.getLogger(__name__)

POLL_S = 0.005  # reply latency; a check is one small round trip to our own store
CHECK_EVERY_S = 0.5  # how often a wait looks at the launcher and the heartbeats
LOG_TAIL_LINES = 20


class TrainGroupError(RuntimeError):
    """The training group could not start, or a rank died or hung; the message names it."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def trainer_gpus(cfg: OrealConfig) -> list[str] | None:
    """The CUDA devices this node's ranks get (None on CPU), refused before anything starts
    if the group asks for more ranks than there are devices (or CPU cores) for it."""
    ranks = cfg.train.nproc_per_node
    if not torch.cuda.is_available():
        if ranks > (os.cpu_count() or 1):
            raise TrainGroupError(f"train.nproc_per_node={ranks}: this node has {os.cpu_count()} CPU cores; "
                                  "lower train.nproc_per_node or run on a larger node")
        return None
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    names = visible.split(",") if visible else [str(i) for i in range(torch.cuda.device_count())]
    free = [names[i] for i in trainer_devices(cfg, len(names))]  # disjoint: those the engines leave
    if ranks > len(free):
        raise TrainGroupError(f"train.nproc_per_node={ranks}: the trainer has {len(free)} of this node's "
                              f"{len(names)} GPUs (rollout.colocation={cfg.rollout.colocation}); lower "
                              "train.nproc_per_node or rollout.engines x tensor_parallel_size")
    return free


class TrainGroup:
    """The driver's handle on the group: same calls as an in-process ``Trainer``."""

    def __init__(self, cfg: OrealConfig, run_id: str, policy_dir: Path, checkpoint_root: Path, before: int) -> None:
        gpus = trainer_gpus(cfg)
        self.cfg, self.run_id = cfg, run_id
        self.root = Path(checkpoint_root)
        self.log_dir = self.root / "group"
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.scratch = _scratch_dir(run_id)  # weights for the engine (rank 0 is on this node): tmpfs if any
        self.world = cfg.train.nproc_per_node * cfg.train.nnodes
        control = cfg.train.control_endpoint or f"127.0.0.1:{free_port()}"
        host, _, port = control.rpartition(":")
        self.store = TCPStore(host if cfg.train.control_endpoint is None else "0.0.0.0", int(port),
                              is_master=True, wait_for_workers=False, timeout=timedelta(seconds=60))
        beat_s = min(5.0, max(0.2, cfg.train.heartbeat_timeout_s / 10))
        self.store.set("spec", json.dumps({"run_id": run_id, "config": cfg.to_yaml(), "policy": str(policy_dir),
                                           "checkpoint_root": str(self.root), "log_dir": str(self.log_dir),
                                           "beat_s": beat_s}))
        rdzv = cfg.train.rdzv_endpoint or f"127.0.0.1:{free_port()}"
        self.command = launcher_command(cfg, control, rdzv, run_id)
        env = {k: v for k, v in os.environ.items()  # a one-process group's made-up rendezvous is not theirs
               if k not in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "OREAL_DIST_DEFAULTS")}
        if gpus is not None:
            env["CUDA_VISIBLE_DEVICES"] = ",".join(gpus)
        self.remote: RemoteNodes | None = None
        if cfg.train.nnodes > 1:
            self.remote = self._start_other_nodes(control, rdzv)
            env.update(self.remote.driver_env if self.remote else {})
        self._launcher_log = open(self.log_dir / "launcher.log", "ab")  # noqa: SIM115 - closed in stop()
        log.info("run %s: starting a training group of %d rank(s): %s", run_id, self.world, " ".join(self.command))
        self.proc = subprocess.Popen(self.command, stdout=self._launcher_log, stderr=subprocess.STDOUT, env=env,
                                     start_new_session=True)  # its own process group: stop() kills every rank
        self._n = 0
        self._beats: dict[int, tuple[int, float]] = {}
        self.failed: str | None = None
        try:
            opened = self._request("open", timeout_s=cfg.train.start_timeout_s, before=before)
        except BaseException:
            self.stop()
            raise
        self.next_step = int(opened["next_step"])

    def _start_other_nodes(self, control: str, rdzv: str) -> RemoteNodes | None:
        """Nodes 1..N-1: a Kubernetes Job when the run is a pod (cluster.py); the deepspeed
        launcher starts them itself (hostfile); elsewhere the user starts them, and is told how."""
        if self.cfg.train.launcher == "torchrun" and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return start_remote_nodes(self.cfg, self.run_id)
        if self.cfg.train.launcher == "torchrun":
            other = launcher_command(self.cfg, control, rdzv, self.run_id, hosts_rendezvous=False)
            log.warning("run %s: start nodes 1..%d of the training group within train.start_timeout_s=%.0f s; on "
                        "each: %s", self.run_id, self.cfg.train.nnodes - 1, self.cfg.train.start_timeout_s,
                        " ".join(other))
        return None

    # ------------------------------------------------------------------ the Trainer's calls

    @property
    def alive(self) -> bool:
        return self.failed is None and self.proc.poll() is None

    def train_step(self, batch: ScoredBatch) -> TrainStepResult:
        """Train ``batch.step``: the ranks read its committed ``scored`` artefact from the lake."""
        if batch.step != self.next_step:
            raise ValueError(f"batch.step={batch.step}: this training group expects step {self.next_step} next")
        reply = self._request("train", step=batch.step)
        self.next_step += 1
        return read_result(Path(reply["result"]))

    def score_tokens(self, batch: ScoredBatch) -> tuple[TokenRMRecord, ...]:
        if not self.cfg.token_rm.enabled or not batch.samples:
            return ()
        # Every rank reads the batch: it goes where all nodes see it (the checkpoint root).
        path = write_scored_batch(batch, self.log_dir / f"score-{batch.step}.json")
        out = self.log_dir / f"token-rm-{batch.step}.json"
        try:
            self._request("score", batch=str(path), out=str(out))
            return tuple(TokenRMRecord(**r) for r in json.loads(out.read_text()))
        finally:
            path.unlink(missing_ok=True)
            out.unlink(missing_ok=True)

    def actor_weights(self) -> dict[str, torch.Tensor]:
        out = self.scratch / "actor.pt"
        self._request("weights", out=str(out))
        try:
            return torch.load(out, mmap=True, weights_only=True)
        finally:
            out.unlink(missing_ok=True)  # the mapping stays valid until the tensors are dropped

    def save_last_hf(self) -> Path | None:
        saved = self._request("save_last_hf")["hf_dir"]
        return Path(saved) if saved else None

    def stop(self) -> None:
        """Stop the ranks (politely if they answer, killed otherwise) and release the store."""
        if self.proc.poll() is None and self.failed is None:
            with contextlib.suppress(TrainGroupError):
                self._request("stop", timeout_s=30)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=30)
        self._kill()
        self._launcher_log.close()
        shutil.rmtree(self.scratch, ignore_errors=True)
        if self.remote is not None:
            with contextlib.suppress(ClusterError):  # the run's outcome stands; kubectl's complaint is logged
                stop_remote_nodes(self.cfg, namespace=self.remote.namespace)

    close = stop

    # ------------------------------------------------------------------ requests

    def _request(self, op: str, timeout_s: float | None = None, **args) -> dict:
        if self.failed:
            raise TrainGroupError(f"run {self.run_id}: the training group is down: {self.failed}")
        n, self._n = self._n, self._n + 1
        self.store.set(f"request/{n}", json.dumps({"op": op, "args": args}))
        start = checked = time.monotonic()
        while True:
            # Polled: a TCPStore wait that times out logs a C++ warning each time.
            if self.store.check([f"reply/{n}"]):
                return json.loads(self.store.get(f"reply/{n}"))
            time.sleep(POLL_S)
            if time.monotonic() - checked < CHECK_EVERY_S:
                continue
            checked = time.monotonic()
            problem = self._dead() or self._hung()
            if problem is None and timeout_s is not None and time.monotonic() - start > timeout_s:
                problem = f"no reply to {op!r} within {timeout_s:.0f} s{self._startup_hint()}"
            if problem:
                self.failed = problem
                self._kill()
                raise TrainGroupError(f"run {self.run_id}: training group request {op!r} failed: {problem}")

    def _dead(self) -> str | None:
        code = self.proc.poll()
        if code is None:
            return None
        launcher_tail = _tail(self.log_dir / "launcher.log")
        failed = sorted({int(r) for r in re.findall(r"rank\s*:\s*(\d+)", launcher_tail)}) or self._errored_ranks()
        named = ", ".join(f"rank {r}" for r in failed) or "a rank"
        return (f"{named} died (launcher exit code {code}).\n" + self._logs(failed) +
                f"\n--- launcher ({self.log_dir / 'launcher.log'}) ---\n{launcher_tail}")

    def _hung(self) -> str | None:
        now, limit = time.monotonic(), self.cfg.train.heartbeat_timeout_s
        silent = []
        for r in range(self.world):
            count = int(self.store.add(f"beat/{r}", 0))
            last = self._beats.get(r)
            if last is None or count != last[0]:
                self._beats[r] = (count, now)
            elif count > 0 and now - last[1] > limit:
                silent.append(r)
        if not silent:
            return None
        return (f"{', '.join(f'rank {r}' for r in silent)} sent no heartbeat for {limit:.0f} s "
                "(train.heartbeat_timeout_s): stopped, wedged or out of CPU; the group was stopped.\n"
                + self._logs(silent))

    def _errored_ranks(self) -> list[int]:
        return [r for r in range(self.world) if self.store.check([f"error/{r}"])]

    def _logs(self, ranks: list[int]) -> str:
        return "\n".join(f"--- rank {r} ({self.log_dir / f'rank{r}.log'}) ---\n{_tail(self.log_dir / f'rank{r}.log')}"
                         for r in ranks)

    def _startup_hint(self) -> str:
        if self.cfg.train.nnodes > 1:
            return (f"; are all {self.cfg.train.nnodes} nodes started and can they reach the rendezvous "
                    f"{self.cfg.train.rdzv_endpoint} and the control store {self.cfg.train.control_endpoint}?")
        return f"; see {self.log_dir}"

    def _kill(self) -> None:
        """Kill the launcher's process group; after a failure also ranks it may have orphaned."""
        pids = set()
        if self.failed:  # this node's ranks are 0..nproc_per_node-1 (cluster.py puts global rank 0 here)
            pids = {int(self.store.get(f"pid/{r}")) for r in range(self.cfg.train.nproc_per_node)
                    if self.store.check([f"pid/{r}"])}
        if self.proc.poll() is None:
            pids.add(-self.proc.pid)  # the whole process group
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.proc.wait()


def _scratch_dir(run_id: str) -> Path:
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=f"oreal-{run_id}-", dir=base))


def _tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    if not path.is_file():
        return "(no log)"
    with open(path, "rb") as f:
        f.seek(max(0, f.seek(0, 2) - 64_000))
        return "\n".join(f.read().decode(errors="replace").splitlines()[-lines:])
