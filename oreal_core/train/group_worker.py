"""One rank of a run's training group, started by torchrun or the deepspeed launcher.

Every rank runs the same loop: take the next request from the run's control store (a
``torch.distributed.TCPStore`` the run's process hosts, see ``group.py``), do it, and rank 0
posts the reply. The only argument is the store's address: the run's config, start
policy and checkpoint root are in the store, so a node of a cluster job needs nothing
else. Data never travels through the store: a train request names a step whose
``scored`` artefact is committed to the lake, and every rank reads it there.

    torchrun --nnodes 4 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \\
        -m oreal_core.train.group_worker --control DRIVER:29500

A rank that fails writes its traceback to its log and exits non-zero; the launcher then
stops the others and the run's process reports the failed rank. A rank whose run
process is gone (its store unreachable) exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path

import torch
import yaml
from torch.distributed import TCPStore

from oreal_core.config import OrealConfig
from oreal_core.config.loading import from_dict
from oreal_core.pipeline.records import kept_samples
from oreal_core.store import Lake
from oreal_core.train.batch_files import read_scored_batch
from oreal_core.train.checkpoint import CheckpointLayout
from oreal_core.train.results import write_result
from oreal_core.train.trainer import Trainer
from oreal_core.types import ScoredBatch

log = logging.getLogger("oreal_core.train.group")

REQUEST_POLL_S = 0.02  # request latency vs. idle load on the store (every rank polls it)


def connect(endpoint: str, timeout: timedelta) -> TCPStore:
    host, _, port = endpoint.rpartition(":")
    return TCPStore(host, int(port), is_master=False, timeout=timeout)


class GroupRank:
    def __init__(self, store: TCPStore, spec: dict, rank: int) -> None:
        self.store, self.rank = store, rank
        self.cfg: OrealConfig = from_dict(OrealConfig, yaml.safe_load(spec["config"]))
        self.run_id = spec["run_id"]
        self.layout = CheckpointLayout(Path(spec["checkpoint_root"]))
        self.trainer = Trainer(self.cfg, spec["policy"], self.layout.root)
        self.lake = Lake.open(self.cfg.store)

    def serve(self) -> None:
        n = 0
        while True:
            request = json.loads(self._next(f"request/{n}"))
            reply = getattr(self, f"do_{request['op']}")(**request.get("args", {}))
            if self.rank == 0:
                self.store.set(f"reply/{n}", json.dumps(reply))
            if request["op"] == "stop":
                return
            n += 1

    def _next(self, key: str) -> bytes:
        # Polled, not store.wait: a wait that times out logs a C++ warning each time. A store
        # that is gone (the run's process ended) raises here, and the rank exits.
        while not self.store.check([key]):
            time.sleep(REQUEST_POLL_S)
        return self.store.get(key)

    # ------------------------------------------------------------------ requests

    def do_open(self, before: int) -> dict:
        """Restore the newest full state before step ``before`` (none: the start policy)."""
        state = self.layout.latest_state(before=before)
        if state is not None:
            self.trainer.resume(state)
        return {"next_step": self.trainer.next_step, "state": str(state) if state else None}

    def do_train(self, step: int) -> dict:
        scored = self.lake.read(self.run_id, step, "scored")
        samples = self.lake.read(self.run_id, step, "samples")
        result = self.trainer.train_step(ScoredBatch(step=step, samples=tuple(kept_samples(scored, samples))))
        return {"result": str(write_result(self.layout.root, result)) if self.rank == 0 else None}

    def do_score(self, batch: str, out: str) -> dict:
        records = self.trainer.score_tokens(read_scored_batch(batch))
        if self.rank == 0:
            tmp = Path(out).with_name(f".{Path(out).name}.tmp")
            tmp.write_text(json.dumps([r.__dict__ for r in records]))
            tmp.replace(out)
        return {"records": out}

    def do_weights(self, out: str) -> dict:
        weights = self.trainer.actor_weights()  # gathered on rank 0 (a collective under ZeRO-3)
        if self.rank == 0:
            tmp = Path(out).with_name(f".{Path(out).name}.tmp")
            torch.save(weights, tmp)
            tmp.replace(out)
        return {"weights": out}

    def do_save_last_hf(self) -> dict:
        saved = self.trainer.save_last_hf()
        return {"hf_dir": str(saved) if saved else None}

    def do_stop(self) -> dict:
        return {}


def beat(endpoint: str, rank: int, every_s: float) -> None:
    """Count up ``beat/<rank>`` while this process runs: a stopped or wedged rank stops counting."""
    store = connect(endpoint, timedelta(seconds=60))  # its own client: the main one blocks in waits
    while True:
        time.sleep(every_s)
        try:
            store.add(f"beat/{rank}", 1)
        except Exception:  # noqa: BLE001 - the run's process is gone; the main loop exits on its own
            return


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m oreal_core.train.group_worker", description=__doc__.splitlines()[0])
    parser.add_argument("--control", required=True, help="host:port of the run's control store")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher
    args = parser.parse_args(argv)
    rank = int(os.environ["RANK"])
    store = connect(args.control, timedelta(seconds=300))
    spec = json.loads(store.get("spec"))
    log_path = Path(spec["log_dir"]) / f"rank{rank}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab", buffering=0) as out:  # the rank's whole output, engines' included
        os.dup2(out.fileno(), 1)
        os.dup2(out.fileno(), 2)
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s rank{rank} %(levelname)s %(name)s: %(message)s",
                        stream=sys.stderr, force=True)
    store.set(f"pid/{rank}", str(os.getpid()))
    threading.Thread(target=beat, args=(args.control, rank, spec["beat_s"]), daemon=True).start()
    try:
        GroupRank(store, spec, rank).serve()
    except BaseException:
        log.error("rank %d failed:\n%s", rank, traceback.format_exc())
        with contextlib.suppress(Exception):  # the store may have gone with the run's process
            store.set(f"error/{rank}", traceback.format_exc()[-4000:])
        raise


if __name__ == "__main__":
    main()
