"""One OREAL optimisation step per RL iteration (Algorithm 1, lines 6-8).

For the kept samples of a step, per micro-batch (sized by ``train.micro_batch_tokens``):

1. reference log-probs (frozen pi_ref, no grad);
2. token-RM scores at the positions predicting each response token, and from them the
   token importance weights (detached: the RM *before* its update, as the reference does);
3. RM backward on the sequence BCE (paper Eq. 12);
4. actor backward on the OREAL loss (Eq. 11), normalised by the *step's* global token
   counts so the micro-batch losses add up to the step loss.

Then one optimiser step for the RM and one for the actor (skipped while the actor is
frozen for the first ``actor.freeze_steps`` steps). No weight moves until every
micro-batch has passed: a non-finite loss term refuses the whole step and discards the
accumulated gradients, so actor and RM stay exactly as they were.

Data parallelism: rank r trains samples r, r + W, ...; token counts are all-reduced and
losses multiplied by W to undo DeepSpeed's gradient averaging (as the reference does).

Learning rates: warm-up + cosine per optimiser, a pure function of the RL step. The
actor's schedule keeps advancing while it is frozen by default (the reference's
behaviour, so its first update is at peak LR); ``actor.scheduler_advances_while_frozen:
false`` starts the actor's warm-up at its first update instead.
"""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path

import torch

from oreal_core.algo.losses import oreal_loss
from oreal_core.algo.schedule import actor_frozen, actor_schedule_step, warmup_cosine
from oreal_core.algo.token_rm import sequence_loss, token_weights
from oreal_core.config import OptimConfig, OrealConfig
from oreal_core.train import checkpoint, distributed
from oreal_core.train.batching import MicroBatch, idle_micro_batch, micro_batches, validate_samples
from oreal_core.train.engines import Engine, build_engine
from oreal_core.train.models import (
    build_actor,
    build_reference,
    build_token_rm,
    load_spec,
    resolve_dtype,
)
from oreal_core.train.oom import surface_oom
from oreal_core.train.results import StepStatus, TokenRMRecord, TrainStepResult
from oreal_core.train.step_metrics import StepSums, finish_metrics, rm_health_metrics
from oreal_core.types import ScoredBatch, ScoredSample, StepMetrics

log = logging.getLogger(__name__)


class Trainer:
    """Actor + token-RM DeepSpeed engines and the frozen reference, for a whole run."""

    def __init__(self, cfg: OrealConfig, policy_dir: str | Path, checkpoint_root: str | Path | None = None,
                 sink: checkpoint.CheckpointSink | None = None) -> None:
        distributed.init_process_group()
        self.cfg = cfg
        self.policy_dir = Path(policy_dir)
        self.device = distributed.device()
        on_gpu = self.device.type == "cuda"
        spec = load_spec(cfg.model, self.policy_dir, on_gpu)
        train_spec = replace(spec, dtype=resolve_dtype(cfg.train.dtype, on_gpu))
        torch.manual_seed(cfg.run.seed)
        self.actor = build_engine(build_actor(train_spec), cfg.train, cfg.actor.optim, train_spec.dtype)
        self.rm: Engine | None = None
        if cfg.token_rm.enabled:
            rm = build_token_rm(train_spec, cfg.token_rm.kind, cfg.token_rm.implicit_beta)
            self.rm = build_engine(rm, cfg.train, cfg.token_rm.optim, train_spec.dtype)
        ref_spec = load_spec(cfg.model, cfg.model.reference or self.policy_dir, on_gpu,
                             "model.reference" if cfg.model.reference else "model.policy")
        self.reference = build_reference(ref_spec, self.device)
        model_cfg = self.actor.engine.module.model.config
        self.vocab_size = int(model_cfg.vocab_size)
        self.pad_id = int(model_cfg.pad_token_id if model_cfg.pad_token_id is not None else 0)
        self.layout = checkpoint.CheckpointLayout(checkpoint_root) if checkpoint_root else None
        self.sink = sink or checkpoint.LocalSink()
        self.fingerprint = checkpoint.model_fingerprint(self.policy_dir)
        self.next_step = 0
        self.completed_step: int | None = None  # the last step whose train_step returned (None: none yet)
        if not cfg.token_rm.enabled and cfg.actor.freeze_steps:
            log.warning("actor.freeze_steps=%d with token_rm.enabled=false: the freeze exists to warm up the "
                        "token RM; without it those steps train nothing (the reference's no-RM config uses 0)",
                        cfg.actor.freeze_steps)

    # ------------------------------------------------------------------ schedules

    def learning_rates(self, step: int) -> tuple[float, float]:
        return learning_rates(self.cfg, step)

    # ------------------------------------------------------------------ the step

    def train_step(self, batch: ScoredBatch) -> TrainStepResult:
        """Train on one step's kept samples; checkpoint; return metrics and token-RM records."""
        if batch.step != self.next_step:
            raise ValueError(f"batch.step={batch.step}: this trainer expects step {self.next_step} next")
        self.next_step += 1
        if not batch.samples:
            result = self._skipped(batch.step, "empty kept set: no prompt had 0 < pass rate < 1 this step")
        elif self.rm is None and not any(s.advantage for s in batch.samples):
            # algo.selection=all keeps the groups with p in {0, 1} at zero advantage; when every
            # group is such, only the KL term would train, i.e. a full forward/backward to pull the
            # actor back toward the reference. The reference's filtered configs never train such a
            # step; a token RM would still learn from the outcomes, so it is kept then.
            result = self._skipped(batch.step, f"no advantage: all {len(batch.samples)} kept samples are in groups "
                                               "whose samples are all correct or all wrong", len(batch.samples))
        else:
            validate_samples(batch.samples, self.vocab_size)
            result = self._train(batch)
        result = self._checkpoint(result)
        self.completed_step = batch.step
        return result

    @torch.no_grad()
    def score_tokens(self, batch: ScoredBatch) -> tuple[TokenRMRecord, ...]:
        """Token-RM scores and weights of the kept samples under the RM as it is now, i.e.
        before this step's update: exactly what ``train_step(batch)`` will weight tokens by.
        Lets the score stage commit them to the lake before training starts. Every rank of
        a group calls it: rank r scores samples r, r + W, ... and all get the whole set."""
        if self.rm is None or not batch.samples:
            return ()
        validate_samples(batch.samples, self.vocab_size)
        shard = list(range(distributed.rank(), len(batch.samples), distributed.world_size()))
        local = [batch.samples[i] for i in shard]
        records: dict[int, TokenRMRecord] = {}
        for mb in self._micro_batches(local):  # idle ones too: a ZeRO-3 forward gathers parameters collectively
            mb = mb.to(self.device)
            ref_logp = None
            if self.cfg.token_rm.kind == "implicit":  # its scores are log-ratios to the reference
                ref_logp, _ = self.reference(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
            scores = self._rm_scores(mb, ref_logp)
            if mb.rows:
                records.update(_records(mb, scores, self._token_weights(scores, mb), local, shard))
        return _gather_records(records, batch)

    def _train(self, batch: ScoredBatch) -> TrainStepResult:
        start = time.perf_counter()
        step, world, rank = batch.step, distributed.world_size(), distributed.rank()
        shard = list(range(rank, len(batch.samples), world))
        local = [batch.samples[i] for i in shard]
        counts = distributed.sum_floats(_counts(local))
        frozen = actor_frozen(step, self.cfg.actor.freeze_steps)
        actor_lr, rm_lr = self.learning_rates(step)
        self.actor.set_lr(actor_lr)
        if self.rm:
            self.rm.set_lr(rm_lr)
        sums, records = StepSums(), {}
        try:
            for mb in self._micro_batches(local):
                with surface_oom(mb, self.cfg.train.micro_batch_tokens):
                    records.update(self._micro_step(mb.to(self.device), local, shard, counts, frozen, sums))
        except ValueError as exc:
            if "non-finite" not in str(exc):  # a bug, not bad numbers: do not dress it up as a refusal
                self._discard_gradients()
                raise
            return self._refused(step, exc)  # oreal_loss and the RM check name the non-finite term
        except BaseException:
            self._discard_gradients()
            raise
        if self.rm:
            self.rm.engine.step()
        if not frozen:
            self.actor.engine.step()
        elapsed = time.perf_counter() - start
        values = finish_metrics(distributed.sum_floats(sums.values), counts, elapsed,
                                distributed.max_floats(sums.maxima))
        values.update(actor_lr=actor_lr, rm_lr=rm_lr if self.rm else 0.0,
                      actor_grad_norm=self.actor.grad_norm() if not frozen else 0.0,
                      rm_grad_norm=self.rm.grad_norm() if self.rm else 0.0, actor_frozen=float(frozen))
        token_rm = _gather_records(records, batch)
        values.update(rm_health_metrics(token_rm, batch.samples))  # every rank holds all records
        return TrainStepResult(step=step, status=StepStatus.TRAINED, actor_updated=not frozen,
                               metrics=StepMetrics.of(step, values), token_rm=token_rm)

    def _micro_batches(self, local: list[ScoredSample]) -> list[MicroBatch]:
        """This rank's micro-batches, padded with idle ones to the busiest rank's count."""
        mbs = micro_batches(local, self.cfg.train.micro_batch_tokens, self.pad_id)
        busiest = distributed.max_int(len(mbs))
        return mbs + [idle_micro_batch(self.pad_id)] * (busiest - len(mbs))

    def _idle_micro_step(self, mb: MicroBatch, frozen: bool) -> None:
        """Zero-loss backward passes that only join the other ranks' gradient reductions."""
        if self.rm:
            self.rm.engine.backward(self._rm_scores(mb, torch.zeros(mb.targets.shape, device=mb.targets.device)).sum() * 0.0)
        if not frozen:
            logp, _ = self.actor.engine(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
            self.actor.engine.backward(logp.sum() * 0.0)

    def _micro_step(self, mb: MicroBatch, local: list[ScoredSample], shard: list[int], counts: dict[str, float],
                    frozen: bool, sums: StepSums) -> dict[int, TokenRMRecord]:
        if not mb.rows:
            self._idle_micro_step(mb, frozen)
            return {}
        world = distributed.world_size()
        with torch.no_grad():
            ref_logp, _ = self.reference(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
        weights, records = None, {}
        if self.rm:
            scores = self._rm_scores(mb, ref_logp)
            weights = self._token_weights(scores.detach(), mb)
            rm_loss, rm_metrics = sequence_loss(scores, mb.mask, mb.is_positive)
            if not bool(torch.isfinite(rm_loss.detach())):
                raise ValueError(f"rm_loss: non-finite value {float(rm_loss.detach()):.4g}; refusing the step")
            share = len(mb.rows) / counts["samples"]  # the BCE is a mean over the step's samples
            self.rm.engine.backward(rm_loss * share * world)
            sums.add_rm(rm_metrics, mb)
            records = _records(mb, scores.detach(), weights, local, shard)
        with torch.set_grad_enabled(not frozen):
            logp, entropy = self.actor.engine(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
        loss, metrics = oreal_loss(logp, ref_logp, mb.mask, mb.advantages, weights, mb.is_positive, self.cfg.loss,
                                   num_pos_tokens=counts["pos_tokens"], num_neg_tokens=counts["neg_tokens"],
                                   num_tokens=counts["tokens"])
        if not frozen:
            self.actor.engine.backward(loss * world)
        sums.add_actor(metrics, entropy, mb)
        sums.add_mismatch(logp, mb)
        return records

    def _rm_scores(self, mb: MicroBatch, ref_logp: torch.Tensor | None) -> torch.Tensor:
        """The token RM's scores (B, T) of a micro-batch; ``ref_logp`` is read by the implicit RM only."""
        return self.rm.engine(mb.input_ids, mb.attention_mask, mb.positions, mb.targets, ref_logp)

    def _token_weights(self, scores: torch.Tensor, mb: MicroBatch) -> torch.Tensor:
        rm_cfg = self.cfg.token_rm
        return token_weights(scores, mb.mask, mb.is_positive, rm_cfg.weighting, pos_threshold=rm_cfg.pos_threshold,
                             neg_threshold=rm_cfg.neg_threshold, topk_ratio=rm_cfg.topk_ratio)

    def _discard_gradients(self) -> None:
        self.actor.discard_gradients()
        if self.rm:
            self.rm.discard_gradients()

    def _refused(self, step: int, exc: ValueError) -> TrainStepResult:
        self._discard_gradients()
        message = str(exc)
        term = message.split(":", 1)[0].strip() or None
        log.warning("step %d refused, no weight updated: %s", step, message)
        return TrainStepResult(step=step, status=StepStatus.REFUSED, actor_updated=False,
                               metrics=StepMetrics.of(step, {"refused": 1.0}), reason=message, bad_term=term)

    def _skipped(self, step: int, reason: str, zero_advantage_samples: int = 0) -> TrainStepResult:
        log.warning("step %d skipped: %s", step, reason)
        metrics = {"skipped": 1.0, "num_samples": 0.0, "skipped_zero_advantage_samples": float(zero_advantage_samples)}
        return TrainStepResult(step=step, status=StepStatus.SKIPPED, actor_updated=False,
                               metrics=StepMetrics.of(step, metrics), reason=reason)

    # ------------------------------------------------------------------ checkpoints

    def actor_weights(self) -> dict[str, torch.Tensor] | None:
        """The actor's HF-named state dict on rank 0 (None on other ranks), for the rollout engine."""
        return checkpoint.actor_state_dict(self.actor.engine, self.cfg.train.zero_stage)

    def _checkpoint(self, result: TrainStepResult) -> TrainStepResult:
        if self.layout is None:
            return result
        step, run = result.step, self.cfg.run
        full_state = (step + 1) % run.checkpoint_every == 0 or step + 1 == run.total_steps
        evaluated = run.eval_every > 0 and (step + 1) % run.eval_every == 0  # eval records name this checkpoint
        hf_uri = state_uri = None
        if full_state or evaluated or self.cfg.rollout.weight_sync == "disk":
            hf_dir = self.layout.hf_dir(step)
            checkpoint.save_hf_actor(self.actor.engine, self.cfg.train.zero_stage, self.policy_dir, hf_dir)
            hf_uri = self.sink.publish(hf_dir, hf_dir.relative_to(self.layout.root).as_posix())
            if distributed.rank() == 0:
                self.layout.prune_hf(self.cfg.train.keep_hf_checkpoints, run.eval_every)
        if full_state:
            state_uri = self.save_state(self.layout.state_dir(step))
        return replace(result, hf_checkpoint=hf_uri, state_checkpoint=state_uri)

    def save_last_hf(self) -> Path | None:
        """The actor after the last trained step as an HF checkpoint, if that step has none: a
        run stopped between checkpoints (rollout.weight_sync=memory) keeps its newest weights
        loadable by engines and evaluation. Every rank calls it (ZeRO-3 gathers the weights)."""
        step = self.completed_step  # not next_step - 1: a step that raised half-way left no new weights
        if self.layout is None or step is None or (self.layout.hf_dir(step) / "config.json").is_file():
            return None
        hf_dir = self.layout.hf_dir(step)
        checkpoint.save_hf_actor(self.actor.engine, self.cfg.train.zero_stage, self.policy_dir, hf_dir)
        self.sink.publish(hf_dir, hf_dir.relative_to(self.layout.root).as_posix())
        return hf_dir

    def identity(self) -> dict:
        return {"config_hash": self.cfg.hash(), "config": self.cfg.to_dict(), "policy": str(self.policy_dir),
                "model_fingerprint": self.fingerprint, "world_size": distributed.world_size()}

    def _engines(self) -> dict:
        return {"actor": self.actor.engine, **({"rm": self.rm.engine} if self.rm else {})}

    def save_state(self, state_dir: Path) -> str:
        meta = {**self.identity(), "step": self.next_step - 1, "next_step": self.next_step}
        checkpoint.save_full_state(self._engines(), meta, state_dir)
        return self.sink.publish(state_dir, state_dir.relative_to(self.layout.root).as_posix()
                                 if self.layout else state_dir.name)

    def resume(self, state_dir: str | Path | None = None) -> int:
        """Restore a full state (the latest under the checkpoint root by default); returns
        the next step to train. Refuses a state from another config or start model."""
        if state_dir is None:
            state_dir = self.layout.latest_state() if self.layout else None
            if state_dir is None:
                raise FileNotFoundError(f"no complete training state under {self.layout.root if self.layout else None}")
        state_dir = Path(state_dir)
        meta = checkpoint.read_state_meta(state_dir)
        checkpoint.check_compatible(meta, self.identity(), state_dir)
        checkpoint.load_full_state(self._engines(), state_dir)
        self.next_step = int(meta["next_step"])
        return self.next_step


def learning_rates(cfg: OrealConfig, step: int) -> tuple[float, float]:
    """(actor LR, RM LR) at RL step ``step`` (see the module docstring for the freeze)."""
    actor_cfg, total = cfg.actor, cfg.run.total_steps
    advances = actor_cfg.scheduler_advances_while_frozen
    actor_total = total if advances else max(1, total - actor_cfg.freeze_steps)
    actor_step = actor_schedule_step(step, actor_cfg.freeze_steps, advances)
    return (_lr(actor_cfg.optim, actor_step, actor_total), _lr(cfg.token_rm.optim, step, total))


def _lr(optim: OptimConfig, step: int, total: int) -> float:
    return warmup_cosine(step, lr=optim.lr, min_lr=optim.min_lr, warmup_steps=optim.warmup_steps, total_steps=total)


def _counts(samples: list[ScoredSample]) -> dict[str, float]:
    pos = sum(len(s.token_ids) for s in samples if s.is_positive)
    total = sum(len(s.token_ids) for s in samples)
    return {"pos_tokens": pos, "neg_tokens": total - pos, "tokens": total, "samples": len(samples),
            "pos_samples": sum(s.is_positive for s in samples),
            "prompt_tokens": sum(len(s.prompt_token_ids) for s in samples)}


def _records(mb: MicroBatch, scores: torch.Tensor, weights: torch.Tensor, local: list[ScoredSample],
             shard: list[int]) -> dict[int, TokenRMRecord]:
    out = {}
    for row, local_idx in enumerate(mb.rows):
        s, n = local[local_idx], int(mb.mask[row].sum())
        out[shard[local_idx]] = TokenRMRecord(s.prompt_id, s.sample_idx, scores[row, :n].tolist(),
                                              weights[row, :n].tolist())
    return out


def _gather_records(records: dict[int, TokenRMRecord], batch: ScoredBatch) -> tuple[TokenRMRecord, ...]:
    merged: dict[int, TokenRMRecord] = {}
    for part in distributed.gather_objects(records):
        merged.update(part)
    return tuple(merged[i] for i in sorted(merged))
