import subprocess
import sys

import pytest

from flows.cli import main


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
