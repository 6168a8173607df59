"""`oreal models` in-process through flows.cli.main, over a tmp lake."""

from __future__ import annotations

import json

from flows.cli import main
from oreal_core.store import EvalRecord, Lake, eval_table


def oreal(capsys, lake_uri: str, *args: str) -> tuple[int, str, str]:
    code = main([*args, "--set", f"store.uri={lake_uri}"])
    out, err = capsys.readouterr()
    return code, out, err


def write_eval(lake_uri: str, checkpoint: str, correct: list[bool], run_id: str = "cycle-1", step: int = 4) -> None:
    from oreal_core.config import StoreConfig

    lake = Lake.open(StoreConfig(uri=lake_uri))
    lake.open_run(run_id, "cfg0123456789abc", prompts_hash="sha256:prompts")
    records = [EvalRecord(checkpoint=checkpoint, bench="synthetic", problem_id=f"p{i}", sample_idx=0, response="r",
                          num_tokens=3, finish_reason="stop", outcome="correct" if ok else "incorrect",
                          extracted_answer="1", reward=1.0 if ok else -1.0) for i, ok in enumerate(correct)]
    lake.write(run_id, step, "eval", eval_table(run_id, records))


def test_register_promote_rollback_through_the_cli(capsys, tmp_path, checkpoint):
    lake = str(tmp_path / "lake")
    write_eval(lake, checkpoint, [True] * 6 + [False] * 4)
    code, out, _ = oreal(capsys, lake, "models", "register", "--lineage", "tiny", "--checkpoint", checkpoint,
                         "--run-id", "cycle-1", "--step", "4")
    assert code == 0 and "registered tiny-v1 as a candidate of tiny" in out
    assert "synthetic 0.600 [" in out
    code, out, _ = oreal(capsys, lake, "models", "register", "--lineage", "tiny", "--checkpoint", checkpoint)
    assert code == 0 and "tiny-v2" in out
    assert oreal(capsys, lake, "models", "promote", "tiny-v1", "--reason", "the SFT policy")[0] == 0
    code, out, _ = oreal(capsys, lake, "models", "promote", "tiny-v2", "--reason", "hand-checked")
    assert code == 0 and "tiny-v2 is now the champion of tiny" in out
    code, out, _ = oreal(capsys, lake, "models")
    lines = {line.split()[1]: line.split()[2] for line in out.splitlines()[1:]}
    assert lines == {"tiny-v1": "retired", "tiny-v2": "champion"}

    code, out, _ = oreal(capsys, lake, "models", "rollback", "tiny", "--reason", "v2 answers in French")
    assert code == 0 and "rolled back: tiny-v1 is again the champion of tiny" in out
    code, out, err = oreal(capsys, lake, "models", "rollback", "tiny")
    assert code == 2 and err.strip() == ("oreal: registry: lineage tiny has no previous champion to roll back to "
                                         "(champion: tiny-v1)")

    code, out, _ = oreal(capsys, lake, "models", "show", "tiny-v1")
    assert code == 0
    assert "run         cycle-1 step 4" in out and "config      cfg0123456789abc" in out
    assert "synthetic: pass@1 0.600" in out and "(records: eval run cycle-1 step 4)" in out
    assert "rollback tiny-v1 (retires tiny-v2) by cli: v2 answers in French" in out

    code, out, _ = oreal(capsys, lake, "query", "--format", "json",
                         "SELECT model_id, status, reason FROM models ORDER BY model_id")
    assert json.loads(out) == [{"model_id": "tiny-v1", "status": "champion", "reason": "v2 answers in French"},
                               {"model_id": "tiny-v2", "status": "retired", "reason": "v2 answers in French"}]
    code, out, _ = oreal(capsys, lake, "query", "--format", "json",
                         "SELECT seq, action, model_id, decided_by FROM model_decisions ORDER BY seq")
    assert [r["action"] for r in json.loads(out)] == ["register", "register", "promote", "promote", "rollback"]


def test_cli_refusals(capsys, tmp_path, checkpoint):
    lake = str(tmp_path / "lake")
    code, out, _ = oreal(capsys, lake, "models")
    assert code == 0 and "no models registered" in out
    code, _, err = oreal(capsys, lake, "models", "register", "--lineage", "tiny", "--checkpoint", str(tmp_path))
    assert code == 2 and "--checkpoint=" in err and "the directory is empty" in err
    code, _, err = oreal(capsys, lake, "models", "register", "--lineage", "../x", "--checkpoint", checkpoint)
    assert code == 2 and "lineage '../x'" in err
    code, _, err = oreal(capsys, lake, "models", "register", "--lineage", "tiny", "--checkpoint", checkpoint,
                         "--run-id", "r1")
    assert code == 2 and "give --run-id and --step together" in err
    assert oreal(capsys, lake, "models", "register", "--lineage", "tiny", "--checkpoint", checkpoint)[0] == 0
    code, _, err = oreal(capsys, lake, "models", "promote", "tiny-v1")
    assert code == 2 and "--reason TEXT is required" in err
    code, _, err = oreal(capsys, lake, "models", "promote", "nonsense", "--reason", "x")
    assert code == 2 and "expected <lineage>-v<n>" in err
    code, _, err = oreal(capsys, lake, "models", "show")
    assert code == 2 and "name the model id" in err


def test_register_with_a_parent_and_reject_through_the_cli(capsys, tmp_path, checkpoint):
    lake = str(tmp_path / "lake")
    assert oreal(capsys, lake, "models", "register", "--lineage", "tiny", "--checkpoint", checkpoint)[0] == 0
    assert oreal(capsys, lake, "models", "promote", "tiny-v1", "--reason", "base")[0] == 0
    code, out, _ = oreal(capsys, lake, "models", "register", "--lineage", "tiny", "--checkpoint", checkpoint,
                         "--parent", "tiny-v1")
    assert code == 0 and "tiny-v2" in out
    code, out, _ = oreal(capsys, lake, "models", "show", "tiny-v2")
    assert "parent      tiny-v1" in out
    code, _, err = oreal(capsys, lake, "models", "reject", "tiny-v2")
    assert code == 2 and "--reason TEXT is required" in err
    code, out, _ = oreal(capsys, lake, "models", "reject", "tiny-v2", "--reason", "fails the support tickets")
    assert code == 0 and "tiny-v2 is rejected; the champion of tiny stays tiny-v1" in out
    code, _, err = oreal(capsys, lake, "models", "register", "--lineage", "other", "--checkpoint", checkpoint,
                         "--parent", "tiny-v1")
    assert code == 2 and "--parent tiny-v1 is of another lineage than other" in err
    code, _, err = oreal(capsys, lake, "models", "register", "--lineage", "tiny", "--checkpoint", checkpoint,
                         "--parent", "tiny-v9")
    assert code == 2 and "no model tiny-v9" in err
