"""A run's long-lived state inside one process: config, lake, prompts and the engines.

Prefect tasks are short calls; the rollout engine (20-45 s to start), the DeepSpeed
trainer and the verifier's worker processes must outlive them. A ``RunSession`` holds
them for one run and brings them to the state a step needs:

* the rollout engine at step s carries the weights after step s-1 (the start policy at
  s = 0), reloaded in place after each training step;
* the trainer at step s holds the state after step s-1. In a fresh process (a resumed
  run) it restores the newest full-state checkpoint before s and replays the training
  steps after it from their committed ``scored`` artefacts. Training is deterministic,
  so a resumed run reproduces the uninterrupted one.
"""

from __future__ import annotations

import atexit
import hashlib
import logging
import random
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import yaml

from oreal_core.config import OrealConfig, load_config
from oreal_core.data.prompts import SYNTHETIC as SYNTHETIC_PROMPTS
from oreal_core.data.prompts import PromptSet, check_prompts_fit, load_prompt_set
from oreal_core.data.records import PromptDataError
from oreal_core.models.sft import start_policy_dir
from oreal_core.pipeline.environment import environment_changes, run_environment
from oreal_core.pipeline.preflight import check_run_inputs
from oreal_core.pipeline.records import kept_samples
from oreal_core.rollout import RolloutEngine, open_engine
from oreal_core.rollout.policy_dir import (
    inspect_policy_dir,
    load_policy_tokenizer,
    stop_word_warning,
)
from oreal_core.store import ConfigMismatch, Lake, PromptsMismatch
from oreal_core.store.layout import check_run_id
from oreal_core.store.manifest import content_sha256
from oreal_core.store.runlock import acquire_run_lock
from oreal_core.train.checkpoint import CheckpointLayout, config_differences
from oreal_core.train.group import TrainGroup
from oreal_core.train.trainer import Trainer
from oreal_core.types import Prompt, ScoredBatch
from oreal_core.verify.verifier import Verifier

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSpec:
    """What names a run to any process: small and picklable (Prefect parameters)."""

    run_id: str
    config: str = "tiny-cpu"  # a name in configs/ or a YAML path
    overrides: tuple[str, ...] = ()
    allow_code_change: bool = False  # resume under other code than the run started with

    def load(self) -> OrealConfig:
        return load_config(self.config, self.overrides)


class RunSession:
    def __init__(self, spec: RunSpec, cfg: OrealConfig | None = None) -> None:
        self.spec = spec
        self.cfg = cfg or spec.load()
        self.run_id = check_run_id(spec.run_id)
        # Before the SFT warm-up and the engines (minutes): an unwritable lake or a broken model
        # folder would otherwise fail later, some only after a step was committed.
        check_run_inputs(self.cfg)
        self.lake = Lake.open(self.cfg.store)
        # Every prompt is read and checked before the run exists: a bad prompt file creates nothing.
        policy = inspect_policy_dir(self.start_policy)
        check_prompts_fit(self.prompt_pool.prompts, self.tokenizer, self.cfg.rollout, policy.context_length)
        if (why := stop_word_warning(policy, self.tokenizer, self.cfg.rollout.stop_word)) is not None:
            log.warning(why)
        self._open_run()
        self.checkpoints = CheckpointLayout(Path(self.cfg.train.checkpoint_dir) / self.run_id)
        self._engine: RolloutEngine | None = None
        self._trainer: Trainer | TrainGroup | None = None
        self._verifier: Verifier | None = None
        self._epoch_orders: dict[int, list[int]] = {}

    def _open_run(self) -> None:
        """Open (or resume) the run under its lock, held until close() or the process exits:
        a second process resuming the same run is refused up front, naming the holder."""
        self._run_lock = acquire_run_lock(self.lake, self.run_id, Path(self.cfg.train.checkpoint_dir) / self.run_id)
        try:
            self._open_locked_run()
        except BaseException:
            self._run_lock.release()  # a refused or failed open leaves the run to others
            raise

    def _open_locked_run(self) -> None:
        prompts = self.cfg.data.prompts
        prompts_hash = None if prompts == SYNTHETIC_PROMPTS else _prompts_hash(Path(prompts))
        environment = run_environment(self.cfg, self.start_policy)
        try:
            manifest = self.lake.open_run(self.run_id, self.cfg.hash(), config_text=self.cfg.to_yaml(),
                                          allow_code_change=self.spec.allow_code_change, prompts_hash=prompts_hash,
                                          environment=environment)
        except ConfigMismatch as exc:
            saved = self.lake.run_config(self.run_id)
            if saved is None:
                raise
            changes = config_differences(yaml.safe_load(saved), self.cfg.to_dict())
            raise ConfigMismatch(f"run {self.run_id!r} cannot resume under a different config; changed: "
                                 f"{'; '.join(changes)}. Start a new run id or restore those settings.") from exc
        except PromptsMismatch as exc:
            started = self.lake.run(self.run_id).prompts_hash
            raise PromptsMismatch(f"run {self.run_id!r} cannot resume: prompt file {prompts} now hashes to "
                                  f"{prompts_hash}, the run started with {started}. Restore that file or "
                                  "start a new run id.") from exc
        changes = environment_changes(manifest.environment or {}, environment) if manifest.environment else []
        if changes:
            log.warning("run %s resumes in another environment than it started in; later steps may differ "
                        "numerically from an uninterrupted run (docs/reproducibility.md): %s",
                        self.run_id, "; ".join(changes))

    # ------------------------------------------------------------------ inputs

    @cached_property
    def start_policy(self) -> Path:
        """The SFT policy RL starts from (the tiny one is built and cached on first use)."""
        return start_policy_dir(self.cfg)

    @cached_property
    def tokenizer(self):
        return load_policy_tokenizer(inspect_policy_dir(self.start_policy))

    @cached_property
    def prompt_pool(self) -> PromptSet:
        pool = load_prompt_set(self.cfg.data, self.tokenizer)
        if len(pool.prompts) == 0:
            raise ValueError(f"data.prompts={self.cfg.data.prompts!r}: no prompts left after loading ({pool.report})")
        return pool

    def step_prompts(self, step: int) -> list[Prompt]:
        """The step's ``data.prompts_per_step`` prompts: epochs over a seeded shuffle of the pool."""
        pool, n = self.prompt_pool.prompts, self.cfg.data.prompts_per_step
        chosen = []
        for g in range(step * n, (step + 1) * n):
            epoch, pos = divmod(g, len(pool))
            chosen.append(pool[self._epoch_order(epoch)[pos]])
        return chosen

    def _epoch_order(self, epoch: int) -> list[int]:
        # Kept: shuffling a 20k-prompt pool takes ~5 ms, and every prompt of a step needs it
        # (three stages per step read the step's prompts): 0.5 s of a 3 s tiny iteration.
        cached = self._epoch_orders.get(epoch)
        if cached is not None:
            return cached
        order = list(range(len(self.prompt_pool.prompts)))
        if self.cfg.data.shuffle:
            seed = hashlib.sha256(f"{self.cfg.run.seed}:{epoch}".encode()).digest()
            random.Random(seed).shuffle(order)
        # A step spans at most two epochs: keep this one and the one before it.
        self._epoch_orders = {e: o for e, o in self._epoch_orders.items() if e == epoch - 1} | {epoch: order}
        return order

    def policy_dir_for(self, step: int) -> Path:
        """Weights the rollout of ``step`` samples from: the actor after step - 1."""
        return self.start_policy if step == 0 else self.checkpoints.hf_dir(step - 1)

    # ------------------------------------------------------------------ engines

    def engine_at(self, step: int) -> RolloutEngine:
        """The rollout engine, carrying the actor's weights after step - 1."""
        if self._engine is not None and not self._engine.alive:  # a retried stage after an engine crash
            log.warning("run %s: the rollout engine died; opening a new one", self.run_id)
            self._engine.close()
            self._engine = None
        if self._engine is not None:
            self._engine.wake()  # asleep since the train step (rollout.colocation: sleep); a no-op otherwise
        if self.cfg.rollout.weight_sync == "memory":
            if self._engine is None:
                self._engine = open_engine(self.start_policy, self.cfg)
            if self._engine.policy_version != step:  # the trainer's tensors, no checkpoint round trip
                self._engine.load_weights(self.trainer_at(step).actor_weights(), policy_version=step)
            return self._engine
        weights = self.policy_dir_for(step)
        if step > 0 and not (weights / "config.json").is_file():
            self.trainer_at(step)  # a resumed process: replaying the last steps rewrites the checkpoint
        if self._engine is None:
            self._engine = open_engine(weights, self.cfg)
            self._engine.policy_version = step
        elif self._engine.policy_version != step:
            self._engine.reload_weights(weights, policy_version=step)
        return self._engine

    def free_engine_memory(self) -> None:
        """Before a train step: with rollout.colocation=sleep the engine hands its GPU memory
        (KV cache, weights) to the trainer until ``engine_at`` wakes it."""
        if self._engine is not None:
            self._engine.sleep()

    @property
    def verifier(self) -> Verifier:
        if self._verifier is None:
            self._verifier = Verifier(self.cfg.verifier, seed=self.cfg.run.seed)
        return self._verifier

    def trainer_at(self, step: int) -> Trainer | TrainGroup:
        """The trainer holding the state after ``step - 1``: in this process, or the run's
        training group (``train.launcher``), which serves the same calls."""
        if isinstance(self._trainer, TrainGroup) and not self._trainer.alive:  # a retried stage after a rank died
            log.warning("run %s: the training group is down; starting a new one", self.run_id)
            self._trainer.stop()
            self._trainer = None
        if self._trainer is None:
            log.info("run %s: starting the trainer (%s, ZeRO stage %d)", self.run_id, self.cfg.train.launcher,
                     self.cfg.train.zero_stage)
            if self.cfg.train.launcher == "inprocess":
                self._trainer = Trainer(self.cfg, self.start_policy, self.checkpoints.root)
                state = self.checkpoints.latest_state(before=step)
                if state is not None:
                    self._trainer.resume(state)
            else:
                self._trainer = TrainGroup(self.cfg, self.run_id, self.start_policy, self.checkpoints.root,
                                           before=step)
        trainer = self._trainer
        if trainer.next_step > step:
            raise RuntimeError(f"run {self.run_id}: the trainer is past step {step} (next {trainer.next_step}); "
                               "a committed training step cannot be redone in place")
        for replay in range(trainer.next_step, step):
            log.info("run %s: replaying training step %d from the lake", self.run_id, replay)
            trainer.train_step(self.scored_batch(replay))
        return trainer

    def scored_batch(self, step: int) -> ScoredBatch:
        scored = self.lake.read(self.run_id, step, "scored")
        samples = self.lake.read(self.run_id, step, "samples")
        return ScoredBatch(step=step, samples=tuple(kept_samples(scored, samples)))

    def close(self) -> None:
        self._save_last_hf()
        for closing in (self._engine, self._verifier, self._trainer if isinstance(self._trainer, TrainGroup) else None):
            if closing is not None:
                closing.close()
        self._engine = self._verifier = self._trainer = None
        self._run_lock.release()  # another process may resume the run now


    def _save_last_hf(self) -> None:
        """A run that ends or stops keeps its newest weights as an HF checkpoint (with memory
        weight sync they are otherwise written only every run.checkpoint_every steps)."""
        trainer = self._trainer
        if trainer is None or (isinstance(trainer, TrainGroup) and not trainer.alive):
            return
        try:
            saved = trainer.save_last_hf()
        except Exception:  # noqa: BLE001 - closing must go on; the full state and the lake still hold the run
            log.exception("run %s: could not write the HF checkpoint of the last trained step", self.run_id)
            return
        if saved is not None:
            log.info("run %s: wrote %s (the last trained step had no HF checkpoint)", self.run_id, saved)


def _prompts_hash(path: Path) -> str:
    """The content hash of the prompt file or HF-dataset folder the run trains on."""
    if not path.exists():
        raise PromptDataError(f"{path}: no such file or directory")
    return content_sha256(path)


_OPEN: dict[str, RunSession] = {}


def session_for(spec: RunSpec) -> RunSession:
    """The process's session for this run, created on first use (one per run id)."""
    current = _OPEN.get(spec.run_id)
    if current is not None and current.spec == spec:
        return current
    if current is not None:
        current.close()
    _OPEN[spec.run_id] = RunSession(spec)
    return _OPEN[spec.run_id]


def close_session(run_id: str) -> None:
    """Close this process's session of ``run_id`` (engines, workers, run lock), if open."""
    session = _OPEN.pop(run_id, None)
    if session is not None:
        session.close()


@atexit.register  # stop the engine and the verifier's workers before the interpreter tears down
def close_sessions() -> None:
    while _OPEN:
        _OPEN.popitem()[1].close()
