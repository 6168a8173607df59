"""The DeepSpeed training stage on the tiny policy (CPU, gloo, one process).

Trainers are module-scoped (each holds two DeepSpeed engines); tests that need a fresh
state build it by resuming. Test order matters only inside each trainer's story and is
written out in each test.
"""

import math
from dataclasses import replace

import pytest
import torch
from transformers import AutoModelForCausalLM

from oreal_core.config import load_config
from oreal_core.train import CheckpointMismatchError, MicroBatchOutOfMemoryError, StepStatus
from oreal_core.train.batching import micro_batches
from oreal_core.train.oom import surface_oom
from oreal_core.train.trainer import Trainer
from tests.train.conftest import toy_batch

# Constant LRs (warm-up 0, min_lr = lr): an update does not depend on the step index, so a
# refused step that left any trace would show up as a difference from the clean run.
CONSTANT_LR = ["actor.optim.warmup_steps=0", "actor.optim.min_lr=1e-3", "actor.optim.lr=1e-3",
               "token_rm.optim.warmup_steps=0", "token_rm.optim.min_lr=2e-3", "token_rm.optim.lr=2e-3"]
RUN = ["run.total_steps=10", "run.checkpoint_every=2", "actor.freeze_steps=1", "train.micro_batch_tokens=64"]


def params(engine) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in engine.module.named_parameters()}


def assert_same(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


def mean_logp(trainer: Trainer, batch, positive: bool) -> float:
    samples = [s for s in batch.samples if s.is_positive == positive]
    (mb,) = micro_batches(samples, budget=10_000, pad_id=trainer.pad_id)
    with torch.no_grad():
        logp, _ = trainer.actor.engine.module(mb.input_ids, mb.attention_mask, mb.positions, mb.targets)
    return float(logp[mb.mask].mean())


@pytest.fixture(scope="module")
def config():
    return load_config("tiny-cpu", CONSTANT_LR + RUN)


@pytest.fixture(scope="module")
def run_a(config, policy_dir, tmp_path_factory):
    """The uninterrupted run: steps 0-3, full state saved after step 1 (checkpoint_every 2).
    Before each step the token-RM records are also scored ahead (as the score stage does)."""
    trainer = Trainer(config, policy_dir, tmp_path_factory.mktemp("run-a"))
    results, snapshots, scored_ahead = [], [], []
    for step in range(4):
        batch = toy_batch(step, seed=step)
        scored_ahead.append(trainer.score_tokens(batch))
        results.append(trainer.train_step(batch))
        snapshots.append((params(trainer.actor.engine), params(trainer.rm.engine)))
    trainer.scored_ahead = scored_ahead
    return trainer, results, snapshots


def test_scoring_ahead_gives_the_weights_the_step_trains_with(run_a):
    trainer, results, _ = run_a
    for ahead, result in zip(trainer.scored_ahead, results, strict=True):
        assert [(r.prompt_id, r.sample_idx) for r in ahead] == [(r.prompt_id, r.sample_idx) for r in result.token_rm]
        for a, b in zip(ahead, result.token_rm, strict=True):
            assert a.weights == pytest.approx(b.weights, abs=1e-6) and a.scores == pytest.approx(b.scores, abs=1e-6)


def test_actor_frozen_while_rm_learns_from_a_zero_head(run_a, policy_dir):
    trainer, results, snapshots = run_a
    first = results[0]
    assert first.status is StepStatus.TRAINED and not first.actor_updated
    m = first.metrics.as_dict()
    assert m["actor_frozen"] == 1.0 and m["rm_loss"] == pytest.approx(math.log(2), abs=1e-6)  # q = 0.5
    assert all(w == 0.0 for r in first.token_rm for w in r.weights)  # zero head: q = 0.5 -> w = 0
    assert all(s == 0.0 for r in first.token_rm for s in r.scores)
    start_model = AutoModelForCausalLM.from_pretrained(policy_dir)  # the start policy, from disk
    start = {f"model.{k}": v for k, v in start_model.state_dict().items()}
    assert_same(snapshots[0][0], start)  # actor untouched during the freeze
    assert torch.count_nonzero(snapshots[0][1]["head.weight"]) > 0  # the RM moved
    assert results[1].actor_updated and results[1].metrics.as_dict()["actor_grad_norm"] > 0


def test_rm_separates_outcomes_and_reference_stays_frozen(run_a, policy_dir):
    trainer, results, _ = run_a
    losses = [r.metrics.as_dict()["rm_loss"] for r in results]
    assert losses[-1] < losses[0]
    final = results[-1].metrics.as_dict()
    assert final["rm_accuracy"] == 1.0 and final["rm_logit_pos"] > final["rm_logit_neg"]
    start = AutoModelForCausalLM.from_pretrained(policy_dir).state_dict()
    assert_same({k.removeprefix("model."): v for k, v in trainer.reference.named_parameters()},
                {k: v for k, v in start.items()})
    assert all(not p.requires_grad for p in trainer.reference.parameters())


def test_rm_health_metrics_travel_in_the_step_metrics(run_a):
    """rm/ metrics (docs/token-rm.md) from the step's own RM forward: chance at step 0 (zero
    head), the separable toy task ranked perfectly once the RM has learned."""
    _, results, _ = run_a
    first, final = results[0].metrics.as_dict(), results[-1].metrics.as_dict()
    assert first["rm/within_pair_accuracy"] == 0.5 and first["rm/auc"] == 0.5
    assert first["rm/bce"] == pytest.approx(first["rm_loss"], abs=1e-6)
    assert first["rm/zero_weight_frac"] == 1.0 and first["rm/w_pos_mean"] == first["rm/w_neg_std"] == 0.0
    assert final["rm/within_pair_accuracy"] == 1.0 and final["rm/auc"] == 1.0
    assert final["rm/bce"] == pytest.approx(final["rm_loss"], rel=1e-5)
    assert final["rm/w_pos_mean"] == pytest.approx(final["mean_weight_pos"], rel=1e-5)
    assert 0.0 <= final["rm/zero_weight_frac"] < 1.0 and final["rm/w_neg_std"] >= 0.0


def test_metrics_and_token_rm_records_cover_the_step(run_a):
    _, results, _ = run_a
    batch = toy_batch(3, seed=3)
    result = results[3]
    m = result.metrics.as_dict()
    for key in ("loss", "loss_pos", "loss_neg", "loss_kl", "kl", "entropy", "actor_grad_norm", "rm_grad_norm",
                "actor_lr", "rm_lr", "tokens_per_s", "rm_loss", "rm_accuracy", "step_s"):
        assert math.isfinite(m[key]), key
    assert m["loss"] == pytest.approx(m["loss_pos"] + m["loss_neg"] + m["loss_kl"], rel=1e-5)
    assert m["num_tokens"] == batch.num_response_tokens and m["micro_batches"] > 1
    assert m["actor_lr"] == pytest.approx(1e-3) and m["rm_lr"] == pytest.approx(2e-3)
    assert [(r.prompt_id, r.sample_idx) for r in result.token_rm] == [(s.prompt_id, s.sample_idx) for s in batch.samples]
    for rec, s in zip(result.token_rm, batch.samples, strict=True):
        assert isinstance(rec.scores, list) and len(rec.scores) == len(rec.weights) == len(s.token_ids)
        assert all(0.0 <= w <= 1.0 for w in rec.weights)
    assert any(w > 0 for r in result.token_rm for w in r.weights)  # the warmed-up RM gives weight


def test_hf_checkpoint_at_full_state_steps_loads_as_the_trained_actor(run_a):
    """rollout.weight_sync=memory (default): the engine gets the actor's tensors every step, the
    HF checkpoint is written with the full state (and at evaluations and the last step)."""
    from oreal_core.models.tiny import load_tokenizer

    trainer, results, snapshots = run_a
    assert [bool(r.state_checkpoint) for r in results] == [False, True, False, True]
    assert [bool(r.hf_checkpoint) for r in results] == [False, True, False, True]
    saved = AutoModelForCausalLM.from_pretrained(results[3].hf_checkpoint)
    assert_same({f"model.{k}": v for k, v in saved.state_dict().items()}, snapshots[3][0])
    assert_same({f"model.{k}": v for k, v in trainer.actor_weights().items()}, snapshots[3][0])
    tok = load_tokenizer(results[3].hf_checkpoint)
    assert tok.decode(tok("Compute 6 + 7.")["input_ids"]) == "Compute 6 + 7."


@pytest.fixture(scope="module")
def run_b(config, policy_dir, run_a, tmp_path_factory):
    """Resumed from run A's state after step 1."""
    trainer = Trainer(config, policy_dir, tmp_path_factory.mktemp("run-b"))
    state = run_a[1][1].state_checkpoint
    assert trainer.resume(state) == 2
    return trainer


def test_resume_then_next_step_equals_the_uninterrupted_run(run_b, run_a):
    _, results_a, snapshots_a = run_a
    assert_same(params(run_b.actor.engine), snapshots_a[1][0])
    result = run_b.train_step(toy_batch(2, seed=2))
    assert_same(params(run_b.actor.engine), snapshots_a[2][0])
    assert_same(params(run_b.rm.engine), snapshots_a[2][1])
    assert result.metrics.as_dict()["loss"] == results_a[2].metrics.as_dict()["loss"]


def test_non_finite_loss_refuses_the_step_and_leaves_no_trace(run_b, run_a):
    """A huge advantage in the last micro-batch overflows loss_pos after earlier
    micro-batches have already accumulated gradients: nothing may be updated, and the
    next step must equal run A's step 3 (constant LRs make the step index irrelevant)."""
    _, _, snapshots_a = run_a
    before = (params(run_b.actor.engine), params(run_b.rm.engine))
    poisoned = toy_batch(3, seed=7)
    longest = max(range(len(poisoned.samples)), key=lambda i: len(poisoned.samples[i].token_ids) + len(poisoned.samples[i].prompt_token_ids))
    shortest = min(range(len(poisoned.samples)), key=lambda i: len(poisoned.samples[i].token_ids) + len(poisoned.samples[i].prompt_token_ids) + (0 if poisoned.samples[i].is_positive else 100))
    assert longest != shortest
    samples = list(poisoned.samples)
    samples[shortest] = replace(samples[shortest], advantage=1e38)  # finite, but the loss overflows
    result = run_b.train_step(replace(poisoned, samples=tuple(samples)))
    assert result.status is StepStatus.REFUSED and not result.actor_updated
    assert result.bad_term == "loss_pos" and "non-finite" in result.reason
    assert_same(params(run_b.actor.engine), before[0])
    assert_same(params(run_b.rm.engine), before[1])
    run_b.train_step(toy_batch(4, seed=3))  # run A's step-3 data
    assert_same(params(run_b.actor.engine), snapshots_a[3][0])
    assert_same(params(run_b.rm.engine), snapshots_a[3][1])


def test_empty_kept_set_is_skipped_and_recorded(run_b):
    before = params(run_b.actor.engine)
    step = run_b.next_step
    result = run_b.train_step(replace(toy_batch(step), samples=()))
    assert result.status is StepStatus.SKIPPED and "empty kept set" in result.reason
    assert result.metrics.as_dict()["skipped"] == 1.0
    assert_same(params(run_b.actor.engine), before)
    assert_same({f"model.{k}": v for k, v in run_b.actor_weights().items()}, before)  # what the engine gets
    assert run_b.train_step(toy_batch(step + 1)).status is StepStatus.TRAINED
    with pytest.raises(ValueError, match=f"expects step {step + 2}"):
        run_b.train_step(toy_batch(step + 5))


@pytest.fixture(scope="module")
def run_c(other_policy_dir, tmp_path_factory):
    """No token RM (weights = 1), no freeze, another start model and KL coefficient."""
    cfg = load_config("tiny-cpu", CONSTANT_LR + ["actor.freeze_steps=0", "token_rm.enabled=false",
                                                 "loss.kl_coef=0.02", "run.total_steps=10"])
    return Trainer(cfg, other_policy_dir, tmp_path_factory.mktemp("run-c"))


def test_resume_refuses_a_checkpoint_from_another_config_and_model(run_c, run_a):
    state = run_a[1][1].state_checkpoint
    with pytest.raises(CheckpointMismatchError) as err:
        run_c.resume(state)
    message = str(err.value)
    assert "refusing to resume" in message and "loss.kl_coef: 0.01 -> 0.02" in message
    assert "token_rm.enabled: True -> False" in message
    assert "start model" in message and "fingerprint" in message
    assert run_c.next_step == 0


def test_one_step_moves_positive_log_probs_up_and_negative_down(run_c):
    batch = toy_batch(0, seed=11)
    up, down = mean_logp(run_c, batch, True), mean_logp(run_c, batch, False)
    ref_before = {k: v.clone() for k, v in run_c.reference.state_dict().items()}
    result = run_c.train_step(batch)
    assert result.actor_updated and result.token_rm == ()
    assert mean_logp(run_c, batch, True) > up
    assert mean_logp(run_c, batch, False) < down
    assert_same(dict(run_c.reference.state_dict()), ref_before)


def test_a_step_without_advantage_is_skipped_when_no_token_rm_learns_from_it(run_c):
    """algo.selection=all on a step whose every group is all right or all wrong: only the KL
    term would train, so no forward/backward is spent and the skip is recorded."""
    before, step = params(run_c.actor.engine), run_c.next_step
    no_signal = replace(toy_batch(step, seed=12), samples=tuple(replace(s, advantage=0.0)
                                                                for s in toy_batch(step, seed=12).samples))
    result = run_c.train_step(no_signal)
    assert result.status is StepStatus.SKIPPED and not result.actor_updated and "no advantage" in result.reason
    assert result.metrics.as_dict()["skipped_zero_advantage_samples"] == len(no_signal.samples)
    assert_same(params(run_c.actor.engine), before)
    assert run_c.train_step(toy_batch(step + 1, seed=13)).status is StepStatus.TRAINED


def test_out_of_memory_names_the_micro_batch_size():
    (mb,) = micro_batches(list(toy_batch(0, prompts=2).samples), budget=10_000, pad_id=0)
    with pytest.raises(MicroBatchOutOfMemoryError, match=r"micro-batch of 4 samples x \d+ tokens.*micro_batch_tokens \(now 512\)"), \
            surface_oom(mb, 512):
        torch.empty(1 << 62, dtype=torch.uint8)  # a real allocation failure of the CPU allocator


def test_zero_stage_3_trains_the_same_step_as_stage_2(config, policy_dir, run_a, tmp_path):
    """ZeRO-3 (the 7B config's stage) partitions parameters too; the math must not change,
    and the HF checkpoint must gather the full weights."""
    _, results_a, snapshots_a = run_a
    trainer = Trainer(replace(config, train=replace(config.train, zero_stage=3)), policy_dir, tmp_path)
    for step in range(3):
        result = trainer.train_step(toy_batch(step, seed=step))
        assert result.metrics.as_dict()["loss"] == pytest.approx(results_a[step].metrics.as_dict()["loss"], rel=1e-5)
    gathered = trainer.actor_weights()  # what the engine gets: the full weights, gathered across partitions
    for name, value in snapshots_a[2][0].items():
        torch.testing.assert_close(gathered[name.removeprefix("model.")], value, rtol=1e-4, atol=1e-6)


@pytest.mark.gpu
def test_bf16_step_on_gpu(policy_dir, tmp_path):
    """On a CUDA machine: bf16 DeepSpeed engines (auto dtype), flash-attn or SDPA."""
    cfg = load_config("tiny-cpu", ["model.dtype=auto", "train.dtype=auto", "actor.freeze_steps=0", "token_rm.enabled=true"])
    trainer = Trainer(cfg, policy_dir, tmp_path)
    assert next(trainer.actor.engine.module.parameters()).dtype == torch.bfloat16
    result = trainer.train_step(toy_batch(0))
    assert result.status is StepStatus.TRAINED and math.isfinite(result.metrics.as_dict()["loss"])
    assert all(torch.isfinite(w).all() for w in trainer.actor_weights().values())


def test_implicit_token_rm_learns_the_outcome_and_scores_ahead_as_it_trains(policy_dir, tmp_path):
    """token_rm.kind=implicit: the whole policy LM as RM, scored against the reference. It starts
    at q = 0.5 (BCE log 2, zero weights) like the head RM, separates the toy outcomes after a few
    steps, and the score stage's look-ahead gives the weights the step trains with."""
    cfg = load_config("tiny-cpu", [*CONSTANT_LR, *RUN, "token_rm.kind=implicit", "token_rm.implicit_beta=1.0"])
    trainer = Trainer(cfg, policy_dir, tmp_path)
    results = []
    for step in range(4):
        batch = toy_batch(step, seed=step)
        ahead = trainer.score_tokens(batch)
        results.append(trainer.train_step(batch))
        for a, b in zip(ahead, results[-1].token_rm, strict=True):
            assert a.scores == pytest.approx(b.scores, abs=1e-5) and a.weights == pytest.approx(b.weights, abs=1e-5)
    first, last = results[0].metrics.as_dict(), results[-1].metrics.as_dict()
    assert first["rm_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert all(s == 0.0 for r in results[0].token_rm for s in r.scores)
    assert last["rm_loss"] < first["rm_loss"] and last["rm_logit_pos"] > last["rm_logit_neg"]
    assert last["rm_accuracy"] == 1.0
    assert any(w > 0 for r in results[-1].token_rm for w in r.weights)
