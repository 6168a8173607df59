import subprocess
import sys

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
    assert "config" in out and "demo" in out
