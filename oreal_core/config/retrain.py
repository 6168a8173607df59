"""The ``retrain`` section: how a retraining cycle gates a challenger against the champion
(DESIGN.md §10; the statistics are oreal_core/eval/paired.py, the registry oreal_core/registry).

Left out of the config hash: none of it changes what a run computes. The gate only reads
the evaluations after the run, and ``reference`` reaches a run as that run's own
``model.reference`` (the cycle sets it: null for "start", the lineage's base policy for
"base"), which the run's hash does cover.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from oreal_core.config.checks import _check

# "start": KL to the model the cycle starts from (the champion), as Algorithm 1 anchors each run
# to its own start policy; "base": KL to the lineage's first policy, so cycles cannot drift far
# from it however many there are.
ReferenceChoice = Literal["start", "base"]


@dataclass(frozen=True)
class RetrainConfig:
    """When a retrained model replaces the lineage's champion."""

    # Promote only when, on every gated benchmark, the lower end of the 95 % paired interval
    # of the pass@1 gain is above this (0: a gain that is significant, however small).
    min_gain: float = 0.0
    # A guard benchmark may lose at most this much pass@1 (point estimate of the paired gain).
    max_regression: float = 0.02
    # Benchmarks of eval.benchmarks that must not regress but need not improve (e.g. gsm8k
    # while training on competition problems); the others are gated on min_gain.
    guard_benchmarks: tuple[str, ...] = ()
    reference: ReferenceChoice = "start"
    # Where new prompt files arrive (JSONL/Parquet of question + gold_answer): a local folder or
    # an s3:// prefix (read with the store's endpoint and credentials). None: the lake's
    # retrain/<lineage>/incoming/, which `oreal prompts add` fills.
    incoming: str | None = None
    # Prompts of data.prompts a cycle draws (seeded by the cycle number) besides every incoming
    # one; None = all. Each is sampled rollout.samples_per_prompt times to re-estimate its pass
    # rate under the start model, so a 20k-prompt set costs a full pass over it every cycle.
    config_prompts: int | None = None

    def __post_init__(self) -> None:
        _check(-1 < self.min_gain < 1, "min_gain", self.min_gain, "must be in (-1, 1) (a pass@1 difference)")
        _check(0 <= self.max_regression <= 1, "max_regression", self.max_regression, "must be in [0, 1]")
        _check(len(set(self.guard_benchmarks)) == len(self.guard_benchmarks), "guard_benchmarks",
               self.guard_benchmarks, "names a benchmark twice")
        _check(self.incoming is None or bool(self.incoming.strip()), "incoming", self.incoming,
               "must be a folder, an s3:// prefix, or null")
        _check(self.config_prompts is None or self.config_prompts >= 0, "config_prompts", self.config_prompts,
               "must be >= 0 (or null for all)")
