"""The terminal of `oreal train|resume|demo`: child processes, raw fd writes and library
INFO lines go to the run's log file; the status, warnings and results reach the person."""

from __future__ import annotations

import logging
import os
import subprocess

from flows.console import StatusHandler, console
from oreal_core.pipeline.progress import ALARM, RESULT, status_text, step_record

STAGES = {"time/rollout_s": 1.72, "time/verify_s": 0.3, "time/score_s": 0.02, "time/train_s": 0.76}


def _step(step: int, total: int, seconds: float = 3.0) -> dict:
    return step_record(step, total, {"accuracy": 0.5, "loss": 0.25, "kl": 1e-3, "kept_samples": 8.0, **STAGES},
                       seconds)


def test_engine_output_goes_to_the_log_and_the_status_to_the_terminal(tmp_path, capfd):
    log_path = tmp_path / "run" / "oreal.log"
    lib = logging.getLogger("oreal_core.test_console")
    prefect_like = logging.getLogger("prefect.task_runs.test_console")
    prefect_like.setLevel(logging.INFO)  # as Prefect's logging config sets its loggers
    with console(log_path):
        os.write(1, b"(Worker pid=1) INFO reloading weights inplace\n")
        os.write(2, b"Writing model shards: 100%\n")
        subprocess.run(["echo", "(EngineCore pid=2) INFO engine started"], check=True)
        prefect_like.info("Finished in state Completed()")
        sft = logging.getLogger("oreal_core.models.sft")
        sft.info("SFT warm-up of the tiny policy")
        for check in (100, 200, 300):
            sft.info("sft step %d: loss 0.2", check)  # the same phase going on: no new line
        lib.info("starting the vllm rollout engine on runs/sft/tiny")
        lib.info("run r: steps 0..2 of 3", extra={RESULT: True})
        for step in range(3):
            lib.info("progress", extra=_step(step, 3))
        lib.warning("judge host h1 is down", extra={ALARM: None})
        lib.warning("entropy_collapse: health/entropy 0.01 < 0.02", extra={ALARM: "entropy_collapse"})
        lib.error("the verify stage failed")
    out, err = capfd.readouterr()
    logged = log_path.read_text()
    for noise in ("reloading weights inplace", "Writing model shards", "engine started", "Finished in state"):
        assert noise in logged and noise not in out + err
    lines = out.splitlines()
    assert "sft step 300" in logged and "sft step" not in out
    assert lines[:2] == ["SFT warm-up of the tiny policy", "starting the vllm rollout engine on runs/sft/tiny"]
    assert lines[2] == "run r: steps 0..2 of 3"
    assert [line.split(" [")[0] for line in lines[3:6]] == ["step 1/3", "step 2/3", "step 3/3"]
    assert "ETA 0m06s | accuracy 0.5 loss 0.25 kl 0.001 | rollout 1.7s verify 0.3s score 0.0s train 0.8s" in lines[3]
    assert lines[6:] == ["warning: judge host h1 is down", "warning: entropy_collapse: health/entropy 0.01 < 0.02",
                         f"error: the verify stage failed (details: {log_path})"]
    # After the console: the terminal is the terminal again.
    os.write(1, b"back on the terminal\n")
    assert capfd.readouterr().out == "back on the terminal\n"


def test_a_long_run_prints_a_status_line_every_tenth_of_the_run(tmp_path):
    with open(tmp_path / "terminal", "w") as out:
        handler = StatusHandler(out, live=False, log_path=tmp_path / "oreal.log")
        for step in range(120):
            handler.handle(logging.makeLogRecord({"msg": "p", "levelno": logging.INFO, **_step(step, 120)}))
    shown = [line.split(" [")[0] for line in (tmp_path / "terminal").read_text().splitlines()]
    assert shown == ["step 1/120"] + [f"step {n}/120" for n in range(12, 121, 12)]


def test_live_status_is_redrawn_in_place_and_counts_alarms(tmp_path):
    with open(tmp_path / "terminal", "w") as out:
        handler = StatusHandler(out, live=True, log_path=tmp_path / "oreal.log")
        handler.handle(logging.makeLogRecord({"msg": "p", "levelno": logging.INFO, **_step(0, 4)}))
        handler.handle(logging.makeLogRecord({"msg": "length_blowup fired", "levelno": logging.WARNING,
                                              "levelname": "WARNING", ALARM: "length_blowup"}))
        handler.handle(logging.makeLogRecord({"msg": "p", "levelno": logging.INFO, **_step(1, 4)}))
        handler.end()
    text = (tmp_path / "terminal").read_bytes().decode()  # not read_text: it turns "\r" into "\n"
    assert "\n" not in text.split("warning: length_blowup fired\n")[1][:-1]  # one line, redrawn
    assert text.count("\r\x1b[2K") == 4 and text.endswith("| rollout 1.7s verify 0.3s score 0.0s train 0.8s\n")
    assert "step 2/4 [#####.....] ETA 0m06s | accuracy 0.5 loss 0.25 kl 0.001 | 1 alarm(s) |" in text


def test_eta_forgets_the_first_steps_start_up():
    seconds = [60.0] + [2.0] * 10  # the first step starts the engine and the trainer
    text = status_text(_step(10, 20)["oreal_step"], seconds, alarms=0)
    assert "ETA 0m18s" in text  # 9 steps left x 2 s
