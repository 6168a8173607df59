import shutil
import subprocess
import sys

import pytest

from flows.cli import main
from oreal_core.config import StoreConfig
from oreal_core.models.tiny import build_tiny_policy
from oreal_core.store import Lake
from tests.read_only import read_only


def test_config_command_prints_resolved_yaml(capsys):
    assert main(["config", "--set", "loss.kl_coef=0.02"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# config hash ") and "kl_coef: 0.02" in out


def test_config_error_exits_2_with_the_field(capsys):
    assert main(["config", "--set", "loss.kl_cof=1"]) == 2
    assert "loss.kl_cof: unknown key" in capsys.readouterr().err


def test_console_script_is_installed():
    bin_dir = __import__("pathlib").Path(sys.executable).parent
    out = subprocess.run([str(bin_dir / "oreal"), "--help"], capture_output=True, text=True, check=True).stdout
    for command in ("config", "demo", "train", "resume", "sft", "prepare", "eval", "query", "report", "serve-judge",
                    "import-gguf"):
        assert command in out


def test_prepare_refuses_a_non_positive_count_before_any_work(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["prepare", "--out", "rated.jsonl", "--samples", "0"])
    assert exited.value.code == 2 and "--samples: 0: must be >= 1" in capsys.readouterr().err


def test_query_refuses_writes_and_reads_an_empty_lake(tmp_path, capsys):
    store = f"store.uri={tmp_path}"
    assert main(["query", "--set", store, "DROP TABLE samples"]) == 1
    assert "lake error" in capsys.readouterr().err
    assert main(["query", "--set", store, "--format", "json", "SELECT count(*) AS n FROM samples"]) == 0
    assert '"n": 0' in capsys.readouterr().out


def test_report_of_unknown_run_is_a_clear_error(tmp_path, capsys):
    assert main(["report", "--set", f"store.uri={tmp_path}", "no-such-run"]) == 1
    assert "no-such-run" in capsys.readouterr().err


# ---------------------------------------------------------------- bad input, refused before any work


def _truncate_weights(model_dir):
    weights = model_dir / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])


BROKEN_MODEL_DIRS = {  # how a copy of a good folder is broken -> what the one line says
    "missing": (shutil.rmtree, "no such directory"),
    "empty": (lambda d: [f.unlink() for f in d.iterdir()], "the directory is empty"),
    "no-config": (lambda d: (d / "config.json").unlink(), "no config.json"),
    "config-not-json": (lambda d: (d / "config.json").write_text('{"vocab_size": '), "config.json is not JSON"),
    "no-weights": (lambda d: (d / "model.safetensors").unlink(), "no weights file"),
    "truncated-weights": (_truncate_weights, "model.safetensors: truncated"),
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return build_tiny_policy(tmp_path_factory.mktemp("cli-policy") / "policy")


def _runs(lake_dir) -> list:
    return Lake.open(StoreConfig(uri=str(lake_dir))).runs()


def _one_line(err: str, start: str) -> bool:
    return err.startswith(start) and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("key", ["model.policy", "model.reference"])
@pytest.mark.parametrize("broken", list(BROKEN_MODEL_DIRS))
def test_train_refuses_a_broken_model_folder_in_one_line_before_the_run_exists(tmp_path, tiny_dir, capsys,
                                                                              key, broken):
    bad = shutil.copytree(tiny_dir, tmp_path / "bad")
    breaks, says = BROKEN_MODEL_DIRS[broken]
    breaks(bad)
    policy = bad if key == "model.policy" else tiny_dir
    reference = [] if key == "model.policy" else ["--set", f"model.reference={bad}"]
    assert main(["train", "--config", "tiny-cpu", "--set", f"store.uri={tmp_path}/lake", "--set",
                 f"train.checkpoint_dir={tmp_path}/ckpt", "--set", f"model.policy={policy}", *reference]) == 2
    err = capsys.readouterr().err
    assert _one_line(err, f"oreal: model error: {key}='{bad}': {says}"), err
    assert _runs(tmp_path / "lake") == []


def test_train_refuses_a_read_only_lake_at_once(tmp_path, tiny_dir, capsys):
    with read_only(tmp_path / "lake") as lake:
        assert main(["train", "--config", "tiny-cpu", "--set", f"store.uri={lake}", "--set", f"model.policy={tiny_dir}",
                     "--set", f"train.checkpoint_dir={tmp_path}/ckpt"]) == 1
    err = capsys.readouterr().err
    assert _one_line(err, f"oreal: lake error: store.uri='{lake}': cannot write in {lake} ("), err
    assert not (tmp_path / "ckpt").exists()  # refused before the SFT warm-up, the engine, the run


def test_train_refuses_a_lake_under_a_regular_file(tmp_path, tiny_dir, capsys):
    (tmp_path / "a-file").write_text("not a folder")
    assert main(["train", "--config", "tiny-cpu", "--set", f"store.uri={tmp_path}/a-file/lake",
                 "--set", f"model.policy={tiny_dir}", "--set", f"train.checkpoint_dir={tmp_path}/ckpt"]) == 1
    assert _one_line(capsys.readouterr().err, f"oreal: lake error: store.uri='{tmp_path}/a-file/lake': "
                                              f"{tmp_path}/a-file is not a directory")


def test_eval_refuses_a_negative_step_before_sampling(tmp_path, tiny_dir, capsys):
    with pytest.raises(SystemExit) as exited:
        main(["eval", "--checkpoint", str(tiny_dir), "--step", "-1", "--set", f"store.uri={tmp_path}/lake"])
    assert exited.value.code == 2 and "--step: -1: must be >= 0" in capsys.readouterr().err
    assert _runs(tmp_path / "lake") == []


def test_eval_refuses_a_truncated_checkpoint_in_one_line(tmp_path, tiny_dir, capsys):
    bad = shutil.copytree(tiny_dir, tmp_path / "bad")
    _truncate_weights(bad)
    assert main(["eval", "--checkpoint", str(bad), "--bench", "synthetic", "--set", f"store.uri={tmp_path}/lake",
                 "--set", "rollout.engine=hf"]) == 2
    err = capsys.readouterr().err
    assert _one_line(err, f"oreal: eval input error: checkpoint {bad}: model.safetensors: truncated"), err
    assert _runs(tmp_path / "lake") == []


def test_eval_refuses_a_read_only_lake_before_the_engine_starts(tmp_path, tiny_dir, capsys):
    with read_only(tmp_path / "lake") as lake:
        assert main(["eval", "--checkpoint", str(tiny_dir), "--bench", "synthetic", "--set", f"store.uri={lake}",
                     "--set", "rollout.engine=hf"]) == 1
    assert _one_line(capsys.readouterr().err, f"oreal: lake error: store.uri='{lake}': cannot write in {lake} (")
