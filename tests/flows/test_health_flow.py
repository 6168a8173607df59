"""Health alarms under Prefect: a ``stop`` alarm fails the run before the next step's
rollout with a message naming metric, value, threshold and what to check; the run resumes
once the threshold is relaxed (monitor is not part of the config hash); a ``warn`` alarm
leaves a Prefect artifact and emits a Prefect event. Prefect's asserting events client
records the events (as Prefect's own test fixtures do)."""

from __future__ import annotations

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker

from flows.train import train
from oreal_core.alarms import HealthAlarmError
from oreal_core.config import load_config
from oreal_core.store import Lake

pytestmark = pytest.mark.slow

STOP = ["monitor.length_blowup={action: stop, above: -1}"]  # truncated_frac >= 0 > -1: fires on every step
RELAXED = ["monitor.length_blowup.above=1", "monitor.length_blowup.action=warn",
           "monitor.entropy_collapse.below=10"]  # a warn that fires (entropy ~0.1 < 10), no stop


def _overrides(root, sft_cache_dir) -> list[str]:
    return ["rollout.engine=hf", "run.total_steps=2", "run.eval_every=0", "actor.freeze_steps=0",
            "data.prompts_per_step=8", "rollout.samples_per_prompt=4", "rollout.max_new_tokens=64",
            f"store.uri={root}/lake", f"train.checkpoint_dir={root}/ckpt", f"sft.cache_dir={sft_cache_dir}"]


def _steps(overrides, run_id: str) -> set[tuple[int, str]]:
    lake = Lake.open(load_config("tiny-cpu", overrides).store)
    return {(step, table) for _, step, table in lake.committed(run_id)}


@pytest.fixture(scope="module")
def story(tmp_path_factory, sft_cache_dir):
    """Step 0 trips a stop alarm; a resume with the same config is refused again before any
    rollout; a resume with the threshold relaxed (and a warn alarm set) finishes step 1."""
    overrides = _overrides(tmp_path_factory.mktemp("health"), sft_cache_dir)
    worker = EventsWorker.instance(AssertingEventsClient)
    out = {"overrides": overrides}
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(EventsWorker, "instance", lambda *_: worker)
        with pytest.raises(HealthAlarmError) as first:
            train("tiny-cpu", overrides + STOP, "sick")
        out["first"], out["after_first"] = str(first.value), _steps(overrides, "sick")
        with pytest.raises(HealthAlarmError) as again:
            train("tiny-cpu", overrides + STOP, "sick")
        out["again"], out["after_again"] = str(again.value), _steps(overrides, "sick")
        out["resumed"] = train("tiny-cpu", overrides + STOP + RELAXED, "sick")
        worker.drain()
    out["events"] = [e for e in worker._client.events if e.event.startswith("oreal.health.")]
    return out


def test_stop_alarm_fails_the_run_before_the_next_rollout(story):
    text = story["first"]
    assert "health alarm 'length_blowup' (stop) at step 0" in text
    assert "health/truncated_frac = 0" in text and "threshold > -1" in text and "(monitor.length_blowup)" in text
    assert "Check: responses run into rollout.max_new_tokens" in text and "resume" in text
    assert (0, "metrics") in story["after_first"]  # the step itself is committed...
    assert not any(step == 1 for step, _ in story["after_first"])  # ...the next one never started


def test_resume_under_the_same_thresholds_stops_again_before_the_rollout(story):
    assert "length_blowup" in story["again"] and story["after_again"] == story["after_first"]


def test_resume_after_relaxing_the_threshold_continues(story):
    resumed = story["resumed"]
    assert resumed["first_step"] == 1 and resumed["steps_run"] == 1
    assert (1, "metrics") in _steps(story["overrides"], "sick")


def test_alarms_emit_prefect_events(story):
    stops = [e for e in story["events"] if e.event == "oreal.health.stop"]
    warns = [e for e in story["events"] if e.event == "oreal.health.warn"]
    assert len(stops) == 1  # announced once, when step 0 was trained; the refused resume only re-checks
    assert stops[0].resource.id == "oreal.run.sick" and stops[0].payload["metric"] == "health/truncated_frac"
    assert [(e.payload["alarm"], e.payload["step"]) for e in warns] == [("entropy_collapse", 1)]
    assert warns[0].payload["threshold"] == "< 10" and warns[0].resource["oreal.alarm"] == "entropy_collapse"


def test_alarms_leave_a_prefect_artifact(story):
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(
            key=ArtifactFilterKey(any_=["sick-step-0-health", "sick-step-1-health"])))
    by_key = {a.key: a.data for a in found}
    assert "length_blowup" in by_key["sick-step-0-health"] and "entropy_collapse" in by_key["sick-step-1-health"]
