"""Entry point of the training stage under a launcher (the scale-out path, docs/training.md).

The same module runs on one CPU process and on many GPUs::

    python -m oreal_core.train.launch --config tiny-cpu --policy DIR --checkpoint-root OUT step0.json ...
    torchrun --nproc_per_node 8 -m oreal_core.train.launch --config oreal-7b --policy DIR ...
    deepspeed --num_gpus 8 --module oreal_core.train.launch --config oreal-7b --policy DIR ...

Each positional argument is one step's scored batch (JSON or the lake's scored.parquet,
``--first-step`` numbering them); steps are trained in order. With ``--resume`` the
latest full state under the checkpoint root is restored first (refused if it came from
another config or start model) and batches of steps already trained are skipped.
Rank 0 writes ``<checkpoint-root>/results/step=N.json`` (status, metrics, token-RM
records) next to the HF checkpoint of each step.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from oreal_core.config import load_config
from oreal_core.train import distributed
from oreal_core.train.batch_files import read_scored_batch
from oreal_core.train.results import TrainStepResult, write_result
from oreal_core.train.trainer import Trainer


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m oreal_core.train.launch", description=__doc__.splitlines()[0])
    parser.add_argument("batches", nargs="+", type=Path, help="scored batch per step, in step order")
    parser.add_argument("--config", default=None, help="config name or YAML path (default: tiny-cpu)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--policy", type=Path, required=True, help="HF-format start policy directory")
    parser.add_argument("--checkpoint-root", type=Path, required=True)
    parser.add_argument("--first-step", type=int, default=0, help="step number of the first batch")
    parser.add_argument("--resume", action="store_true", help="restore the latest full state first")
    parser.add_argument("--local_rank", type=int, default=None, help=argparse.SUPPRESS)  # deepspeed launcher
    return parser.parse_args(argv)


def run(args: argparse.Namespace) -> list[TrainStepResult]:
    cfg = load_config(args.config, args.overrides)
    trainer = Trainer(cfg, args.policy, args.checkpoint_root)
    start = trainer.resume() if args.resume else 0
    results = []
    for offset, path in enumerate(args.batches):
        step = args.first_step + offset
        if step < start:
            continue  # trained before the state we resumed from
        batch = read_scored_batch(path, step=step)
        if batch.step != step:
            raise ValueError(f"{path}: holds step {batch.step}, expected step {step} at this position")
        result = trainer.train_step(batch)
        if distributed.rank() == 0:
            write_result(args.checkpoint_root, result)
            logging.info("step %d %s %s", step, result.status, result.metrics.as_dict())
        results.append(result)
    return results


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run(parse_args(argv))


if __name__ == "__main__":
    main()
