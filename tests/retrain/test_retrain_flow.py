"""Two retraining cycles of the tiny model through the real flow, lake, registry and Prefect
(issue 28): the first, from the SFT policy, is promoted; the second, with a learning rate that
wrecks the model, is killed mid-run, resumed to its end and rejected, and the champion stays.
Then what a person does by hand (promote, rollback) and what must be refused.

The tests run in order and share one lake (each builds on the previous one's registry).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime

import pytest

from flows.cli import main
from flows.retrain import retrain
from oreal_core.config import load_config
from oreal_core.registry.registry import Registry
from oreal_core.retrain.cycle import CycleRecords, lineage_lock
from oreal_core.retrain.incoming import add_prompt_file, incoming_place
from oreal_core.store import Lake
from tests.services import REPO_ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

LINEAGE = "tiny"
CONFIG = "demo-cpu"
# Cycle 1 learns: 80 demo steps (the demo's learning rate, its cosine over 80 steps). Measured
# here (HF engine): 0.378 -> 0.456, paired +0.078 [+0.028, +0.128]; on vLLM +0.080 [+0.028,
# +0.130]; 40 steps gave +0.030 [-0.018, +0.074], which the gate rightly rejects (a constant 3e-4:
# -0.046).
CYCLE_1 = ["run.total_steps=80", "run.eval_every=80"]
# Cycle 2 wrecks the model: 4 steps at 200x the demo's rate (measured: 0.458 -> 0.000, and
# finite, so no health alarm stops it).
CYCLE_2 = ["run.total_steps=4", "run.eval_every=4", "actor.optim.lr=0.03", "actor.optim.min_lr=0.03"]
NEW_PROMPTS = [{"question": f"What is {a} + {b} - {c}?", "gold_answer": str(a + b - c)}
               for a, b, c in [(31, 4, 7), (35, 12, 30), (40, 2, 19), (33, 33, 3), (38, 9, 40), (45, 1, 1)]]


@pytest.fixture(scope="module")
def world(tmp_path_factory, sft_cache_dir):
    tmp = tmp_path_factory.mktemp("retrain")
    base = [f"store.uri={tmp}/lake", f"train.checkpoint_dir={tmp}/ckpt", f"sft.cache_dir={sft_cache_dir}",
            "retrain.config_prompts=512"]
    return {"tmp": tmp, "base": base, "cfg": load_config(CONFIG, base)}


def registry(world) -> Registry:
    return Registry.open(world["cfg"].store)


def records(world) -> CycleRecords:
    return CycleRecords(Lake.open(world["cfg"].store), LINEAGE)


def test_the_first_cycle_starts_from_the_sft_policy_and_is_promoted(world):
    new = world["tmp"] / "new.jsonl"
    new.write_text("".join(json.dumps(row) + "\n" for row in NEW_PROMPTS))
    added = add_prompt_file(world["cfg"], LINEAGE, new)

    started = datetime.now(UTC)
    decision = retrain(LINEAGE, CONFIG, world["base"] + CYCLE_1)

    assert decision["verdict"] == "promoted", decision["reason"]
    assert_announced("oreal.model.promoted", "retrain-tiny-c0001", "tiny-v2", started)
    assert (decision["cycle_id"], decision["challenger"], decision["champion"]) == ("tiny-c0001", "tiny-v2", "tiny-v2")
    state = registry(world).state(LINEAGE)
    base, challenger = state.models
    assert (base.status, challenger.status) == ("retired", "champion")
    assert base.provenance.parent_model_id is None and challenger.provenance.parent_model_id == "tiny-v1"
    assert challenger.provenance.run_id == "tiny-c0001" and challenger.provenance.step == 79
    assert [e.bench for e in challenger.evals] == ["synthetic"] and challenger.evals[0].problems == 500
    gate = records(world).read("tiny-c0001", "gate")
    gain = gate["comparisons"]["synthetic"]["gain"]
    assert gate["promote"] and gain["low"] > 0, gate["reason"]
    assert gate["comparisons"]["synthetic"]["b_pass1"]["value"] == pytest.approx(challenger.evals[0].pass1)
    plan = records(world).plan("tiny-c0001")
    assert plan.new_incoming == (added.name,) and plan.start_model_id == "tiny-v1"
    prompts = records(world).read("tiny-c0001", "prompts")
    assert (prompts["config_prompts"], prompts["incoming_prompts"]) == (512, len(NEW_PROMPTS))
    assert Lake.open(world["cfg"].store).run("tiny-c0001").prompts_hash == challenger.provenance.prompts_hash


def assert_announced(event: str, artifact_key: str, challenger: str, since: datetime) -> None:
    """The decision reached Prefect (this process's temporary server): the markdown artifact and
    the event automations react to, with the lineage as resource and the challenger related."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.events.filters import (
        EventFilter,
        EventNameFilter,
        EventOccurredFilter,
        EventResourceFilter,
    )

    wanted = EventFilter(occurred=EventOccurredFilter(since=since), event=EventNameFilter(name=[event]),
                         resource=EventResourceFilter(id=[f"oreal.lineage.{LINEAGE}"]))
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key])))
        deadline = time.monotonic() + 30  # events are sent by a background worker
        while not (events := client.read_events(wanted, limit=50).events) and time.monotonic() < deadline:
            time.sleep(1)
    newest = max(artifacts, key=lambda a: a.created)
    assert challenger in newest.data and "| synthetic |" in newest.data and "McNemar" in newest.data
    assert events, f"no {event} event since {since}"
    assert events[0].payload["challenger"] == challenger
    assert f"oreal.model.{challenger}" in [r.id for r in events[0].related]


def _launch(world, *overrides: str) -> subprocess.Popen:
    args = ["retrain", "--lineage", LINEAGE, "--config", CONFIG,
            *(a for o in [*world["base"], *overrides] for a in ("--set", o))]
    err = (world["tmp"] / "cycle2.err").open("ab")
    return subprocess.Popen([sys.executable, "-m", "flows.cli", *args], cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                            stderr=err, env=os.environ.copy(), start_new_session=True)


def test_a_wrecked_challenger_is_killed_resumed_and_rejected_and_the_champion_stays(world):
    lake = Lake.open(world["cfg"].store)
    proc = _launch(world, *CYCLE_2)
    deadline = time.monotonic() + 900
    try:  # kill it as soon as its run has committed a training step
        while ("tiny-c0002", 1, "metrics") not in (lake.committed("tiny-c0002") if "tiny-c0002" in lake.runs() else []):
            assert proc.poll() is None, (world["tmp"] / "cycle2.err").read_text()[-3000:]
            assert time.monotonic() < deadline, "cycle 2 never committed step 1"
            time.sleep(0.5)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert records(world).read("tiny-c0002", "decision") is None
    assert registry(world).state(LINEAGE).champion == "tiny-v2"

    started = datetime.now(UTC)
    decision = retrain(LINEAGE, CONFIG, world["base"] + CYCLE_2)  # re-triggered: resumes tiny-c0002
    assert_announced("oreal.model.rejected", "retrain-tiny-c0002", "tiny-v3", started)

    assert (decision["cycle_id"], decision["verdict"], decision["champion"]) == ("tiny-c0002", "rejected", "tiny-v2")
    gate = records(world).read("tiny-c0002", "gate")["comparisons"]["synthetic"]
    assert gate["gain"]["value"] < 0, gate
    steps = [s for _, s, t in lake.committed("tiny-c0002") if t == "metrics"]
    assert sorted(steps) == [0, 1, 2, 3]  # each step committed once, the killed one redone

    # Killed after the registry decision but before the cycle's record: re-triggering decides nothing again.
    decisions = registry(world).decisions(LINEAGE)
    lake.location.fs.delete_file(lake.location.path(records(world).key("tiny-c0002", "decision.json")))
    assert retrain(LINEAGE, CONFIG, world["base"] + CYCLE_2)["verdict"] == "rejected"
    assert registry(world).decisions(LINEAGE) == decisions
    assert [d.action for d in decisions if d.model_id == "tiny-v3"] == ["register", "reject"]


def test_a_person_promotes_and_rolls_back_recorded_like_the_gate(world, capsys):
    sets = [a for o in world["base"] for a in ("--set", o)]
    assert main(["models", "promote", "tiny-v3", "--reason", "overruled for a test", "--config", CONFIG, *sets]) == 0
    assert registry(world).state(LINEAGE).champion == "tiny-v3"
    assert main(["models", "rollback", LINEAGE, "--reason", "v3 is worse", "--config", CONFIG, *sets]) == 0
    assert registry(world).state(LINEAGE).champion == "tiny-v2"
    capsys.readouterr()
    assert main(["query", "SELECT model_id, status, parent_model_id FROM models ORDER BY model_id", "--format",
                 "json", "--config", CONFIG, *sets]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["model_id"], r["status"], r["parent_model_id"]) for r in rows] == [
        ("tiny-v1", "retired", None), ("tiny-v2", "champion", "tiny-v1"), ("tiny-v3", "retired", "tiny-v2")]


def test_a_second_cycle_of_a_running_lineage_is_refused(world, capsys):
    held = lineage_lock(Lake.open(world["cfg"].store), LINEAGE, str(world["tmp"] / "ckpt"))
    try:
        code = main(["retrain", "--lineage", LINEAGE, "--config", CONFIG,
                     *(a for o in world["base"] for a in ("--set", o))])
    finally:
        held.release()
    assert code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("oreal: lake error: lineage tiny already has a retraining cycle running"), err
    assert records(world).cycles() == ["tiny-c0001", "tiny-c0002"]


def test_a_malformed_incoming_file_is_refused_before_anything_is_trained(world, capsys):
    lake, prefix = incoming_place(world["cfg"], LINEAGE)
    key = f"{prefix}/zz-dropped.jsonl"
    lake.put_document(key, b'{"question": "fine", "gold_answer": "1"}\n{"question": "no answer"}\n')
    before = registry(world).decisions(LINEAGE)
    try:
        code = main(["retrain", "--lineage", LINEAGE, "--config", CONFIG,
                     *(a for o in world["base"] for a in ("--set", o))])
    finally:
        lake.location.fs.delete_file(lake.location.path(key))
    assert code == 2
    assert "zz-dropped.jsonl:2" in capsys.readouterr().err
    assert records(world).cycles() == ["tiny-c0001", "tiny-c0002"]
    assert registry(world).decisions(LINEAGE) == before


def test_the_docs_registry_queries_answer_from_the_cycles(world):
    from oreal_core.store.query import run_query

    queries = re.findall(r'oreal query "([^"]+)"', (REPO_ROOT / "docs" / "retrain.md").read_text())
    assert len(queries) >= 3
    for sql in queries:
        assert json.loads(run_query(world["cfg"].store, sql, "json")), sql
    gains = json.loads(run_query(world["cfg"].store, queries[-1], "json"))
    assert [(r["model_id"], r["action"]) for r in gains] == [("tiny-v2", "promote"), ("tiny-v3", "reject")]
    assert gains[0]["gain_low"] > 0 > gains[1]["gain"]


def test_a_cycle_stopped_by_a_health_alarm_fails_and_the_champion_stays(world, capsys):
    """A stop alarm ends the run: the cycle records `failed` (no challenger to register), says so
    on the terminal with exit 1, and the next trigger starts a new cycle."""
    before = registry(world).decisions(LINEAGE)
    code = main(["retrain", "--lineage", LINEAGE, "--config", CONFIG,
                 *(a for o in [*world["base"], "run.total_steps=2", "run.eval_every=2",
                               "monitor.entropy_collapse={action: stop, below: 100}"] for a in ("--set", o))])
    out = capsys.readouterr().out
    assert code == 1
    assert "cycle tiny-c0003: failed" in out and "training stopped by a health alarm" in out and "entropy" in out
    decision = records(world).read("tiny-c0003", "decision")
    assert (decision["verdict"], decision["challenger"], decision["champion"]) == ("failed", None, "tiny-v2")
    assert registry(world).decisions(LINEAGE) == before
    assert records(world).unfinished() is None
