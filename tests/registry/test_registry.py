"""The registry's log and fold: transitions, one champion per lineage, racing writers, crash
safety, corrupt files, on a local lake and on a real S3 API."""

from __future__ import annotations

import logging
import os
import uuid

import pytest

from oreal_core.config import StoreConfig
from oreal_core.registry import DecisionConflict, EvalResult, Registry, RegistryError
from oreal_core.registry.log import manifest_key
from oreal_core.store.query import run_query
from tests.registry.conftest import provenance
from tests.store.conftest import BUCKET

EVAL = EvalResult(bench="synthetic", pass1=0.5, pass1_low=0.4, pass1_high=0.6, problems=100, samples_per_problem=1,
                  eval_run_id="r1", eval_step=3, eval_checkpoint="/ckpt/step=000003")


def statuses(registry: Registry, lineage: str = "tiny") -> dict[str, str]:
    return {m.model_id: m.status for m in registry.state(lineage).models}


def test_the_state_is_a_fold_over_the_log(registry):
    a = registry.register("tiny", provenance("/m/a", run_id="r1", step=3, config_hash="c1"), (EVAL,))
    b = registry.register("tiny", provenance("/m/b", parent_model_id=a.model_id))
    c = registry.register("tiny", provenance("/m/c"))
    assert (a.model_id, b.model_id, c.model_id) == ("tiny-v1", "tiny-v2", "tiny-v3")
    assert registry.model("tiny-v1").evals == (EVAL,) and registry.model("tiny-v2").provenance.parent_model_id == "tiny-v1"
    registry.promote("tiny-v1", "first model")
    registry.promote("tiny-v2", "gate: +0.1")
    registry.reject("tiny-v3", "gate: no gain")
    assert statuses(registry) == {"tiny-v1": "retired", "tiny-v2": "champion", "tiny-v3": "rejected"}
    assert registry.state("tiny").previous_champions == ("tiny-v1",)
    registry.rollback("tiny", "v2 misbehaves in production")
    assert statuses(registry) == {"tiny-v1": "champion", "tiny-v2": "retired", "tiny-v3": "rejected"}
    assert registry.model("tiny-v2").reason == "v2 misbehaves in production"
    actions = [(d.seq, d.follows, d.action, d.model_id, d.displaced) for d in registry.decisions("tiny")]
    assert actions == [(1, 0, "register", "tiny-v1", None), (2, 1, "register", "tiny-v2", None),
                       (3, 2, "register", "tiny-v3", None), (4, 3, "promote", "tiny-v1", None),
                       (5, 4, "promote", "tiny-v2", "tiny-v1"), (6, 5, "reject", "tiny-v3", None),
                       (7, 6, "rollback", "tiny-v1", "tiny-v2")]
    # a fresh handle (another process) folds the same state from the files alone
    assert Registry(registry.log.location).state("tiny") == registry.state("tiny")


def test_one_champion_per_lineage_and_the_refusals(registry):
    for uri in ("/m/a", "/m/b"):
        registry.register("tiny", provenance(uri))
    registry.register("other", provenance("/m/z"))
    with pytest.raises(RegistryError, match="no previous champion"):
        registry.rollback("tiny", "nothing to roll back")
    registry.promote("tiny-v1", "first")
    registry.promote("other-v1", "another lineage has its own champion")
    with pytest.raises(RegistryError, match="already the champion"):
        registry.promote("tiny-v1", "again")
    with pytest.raises(RegistryError, match="only a candidate can be rejected"):
        registry.reject("tiny-v1", "no")
    with pytest.raises(RegistryError, match="needs a reason"):
        registry.promote("tiny-v2", "  ")
    with pytest.raises(RegistryError, match="no model tiny-v9"):
        registry.promote("tiny-v9", "unknown")
    registry.promote("tiny-v2", "second")
    champions = [m.model_id for lineage in registry.lineages() for m in registry.state(lineage).models
                 if m.status == "champion"]
    assert champions == ["other-v1", "tiny-v2"]


def test_a_racing_promote_is_refused(registry):
    """Two writers decide on the same state: the second is refused, nothing of it is kept."""
    for uri in ("/m/a", "/m/b", "/m/c"):
        registry.register("tiny", provenance(uri))
    registry.promote("tiny-v1", "first")
    seen_by_both = registry.state("tiny")
    other = Registry(registry.log.location)  # another process
    other.promote("tiny-v2", "gate of cycle 7", based_on=seen_by_both)
    with pytest.raises(DecisionConflict, match="decision 5 was committed by someone else"):
        registry.promote("tiny-v3", "manual", based_on=seen_by_both)
    assert statuses(registry) == {"tiny-v1": "retired", "tiny-v2": "champion", "tiny-v3": "candidate"}
    folder = registry.log.location.path("registry/tiny")
    assert len([f for f in os.listdir(folder) if f.startswith("000005-")]) == 1  # the loser's file is gone
    # a register is retried on a conflict: it does not depend on the state it read
    assert registry.register("tiny", provenance("/m/d")).model_id == "tiny-v4"


def test_a_decision_without_its_manifest_is_invisible(registry):
    registry.register("tiny", provenance("/m/a"))
    registry.register("tiny", provenance("/m/b"))
    location = registry.log.location
    os.remove(location.path(manifest_key("tiny", 2)))  # a writer killed before its commit
    assert statuses(registry) == {"tiny-v1": "candidate"}
    # the next decision takes the free slot; the orphan data file is never read
    assert registry.register("tiny", provenance("/m/c")).model_id == "tiny-v2"
    assert registry.model("tiny-v2").provenance.checkpoint_uri == "/m/c"


def test_a_corrupt_decision_is_skipped_by_the_views_and_blocks_new_decisions(registry, store_cfg, caplog):
    for uri in ("/m/a", "/m/b"):
        registry.register("tiny", provenance(uri))
    registry.promote("tiny-v1", "first")
    folder = registry.log.location.path("registry/tiny")
    data = next(f for f in os.listdir(folder) if f.startswith("000002-"))
    with open(os.path.join(folder, data), "r+b") as f:  # a flipped byte
        f.seek(40)
        byte = f.read(1)
        f.seek(40)
        f.write(bytes([byte[0] ^ 0xFF]))
    with caplog.at_level(logging.WARNING):
        shown = run_query(store_cfg, "SELECT model_id, status FROM models ORDER BY model_id", "json")
        logged = run_query(store_cfg, "SELECT seq FROM model_decisions ORDER BY seq", "json")
    assert shown == '[{"model_id": "tiny-v1", "status": "champion"}]'
    assert logged == '[{"seq": 1}, {"seq": 3}]'
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"registry/tiny/{data} does not match its manifest (sha256" in w and "views skip it" in w
               for w in warnings), warnings
    with pytest.raises(RegistryError, match="refuses new decisions in lineage tiny"):
        registry.promote("tiny-v2", "on a damaged history")


def test_the_views_answer_oreal_query(registry, store_cfg):
    assert run_query(store_cfg, "SELECT count(*) AS n FROM models", "json") == '[{"n": 0}]'
    registry.register("tiny", provenance("/m/a", run_id="r1", step=3), (EVAL,))
    registry.promote("tiny-v1", "first")
    rows = run_query(store_cfg, "SELECT model_id, status, e.bench, e.pass1, e.eval_run_id FROM models, "
                                "UNNEST(evals) AS t(e) WHERE lineage = 'tiny'", "json")
    assert rows == ('[{"model_id": "tiny-v1", "status": "champion", "bench": "synthetic", "pass1": 0.5, '
                    '"eval_run_id": "r1"}]')
    assert "promote" in run_query(store_cfg, "SELECT action, reason FROM model_decisions", "csv")


def test_on_s3_a_racing_promote_is_refused_too(s3_server):
    cfg = StoreConfig(uri=f"s3://{BUCKET}/{uuid.uuid4().hex}", endpoint_url=s3_server, max_retries=1)
    registry = Registry.open(cfg)
    for uri in ("/m/a", "/m/b"):
        registry.register("tiny", provenance(uri))
    seen = registry.state("tiny")
    Registry.open(cfg).promote("tiny-v1", "first", based_on=seen)
    with pytest.raises(DecisionConflict):
        registry.promote("tiny-v2", "racing", based_on=seen)
    assert statuses(registry) == {"tiny-v1": "champion", "tiny-v2": "candidate"}
    assert '"champion"' in run_query(cfg, "SELECT status FROM models WHERE model_id = 'tiny-v1'", "json")
