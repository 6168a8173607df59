"""What a person sees in the terminal while ``oreal train``, ``resume`` or ``demo`` runs.

By default: one live status line (step, ETA, accuracy, loss, KL, stage seconds, alarms so
far, and the long phase under way: SFT warm-up, engine start-up, evaluation), plus
warnings, errors and results (evaluations, the best checkpoint) as lines of their own.
Everything else goes to the run's log file: vLLM's engine and worker processes, DeepSpeed
and transformers progress bars, Prefect's per-task "Finished in state" lines. Prefect's
API gets the flow and task logs as before. ``-v`` shows everything in the terminal.

Why file descriptors and not only logging: vLLM's engine processes inherit stdout and
stderr and write to them directly, and C++ warnings and tqdm bars bypass logging.
Pointing fd 1 and 2 at the log file before any engine starts catches all of it; the
terminal keeps a duplicate of the original stdout for this module alone.

The run's code tells the console what a record means through ``extra`` keys (see
``oreal_core.pipeline.progress``): ``oreal_step`` (a finished step), ``oreal_result`` (a
line to keep) and ``oreal_alarm``; INFO records of ``oreal_core`` loggers are phases.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from oreal_core.config import OrealConfig
from oreal_core.pipeline.progress import ALARM, RESULT, STEP, status_text

LOG_FILE = "oreal.log"
_saved_stderr: int | None = None  # a copy of fd 2 as it was before output_to moved it


def run_log_path(cfg: OrealConfig, run_id: str) -> Path:
    """The run's log file, beside its checkpoints (appended to by every resume)."""
    return Path(cfg.train.checkpoint_dir) / run_id / LOG_FILE


@contextmanager
def console(log_path: Path, verbose: bool = False) -> Iterator[None]:
    """Route the process's output to ``log_path`` and show the live status instead; ``verbose``
    leaves the terminal as it is (no log file)."""
    if verbose:
        yield
        return
    with output_to(log_path) as (terminal, log):
        # The root logger's handlers are the console's while it runs: every record into the
        # log file once (the handlers it replaces printed to stdout/stderr, i.e. into the file
        # too), and the status handler. Prefect's API handlers sit on its own loggers and stay.
        to_file = logging.StreamHandler(log)
        to_file.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        status = StatusHandler(terminal, live=terminal.isatty(), log_path=log_path)
        root = logging.getLogger()
        replaced, root.handlers = root.handlers, [to_file, status]
        library = logging.getLogger("oreal_core")
        if library.getEffectiveLevel() > logging.INFO:  # its INFO records are the phases shown
            library.setLevel(logging.INFO)
        try:
            yield
        finally:
            root.handlers = replaced
            status.end()


@contextmanager
def output_to(log_path: Path) -> Iterator[tuple[TextIO, TextIO]]:
    """Point fd 1 and 2 (and so every child process started meanwhile) at ``log_path``, appended
    to; yields (the original stdout, the log file) as text streams."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    terminal = os.fdopen(os.dup(1), "w", buffering=1)
    log = open(log_path, "a", buffering=1)  # noqa: SIM115 - closed below, after the fds are restored
    log.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(sys.argv)}\n")
    os.dup2(log.fileno(), 1)
    os.dup2(log.fileno(), 2)
    global _saved_stderr
    _saved_stderr = saved[1]
    try:
        yield terminal, log
    finally:
        _saved_stderr = None
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
        terminal.close()
        log.close()


def terminal_stderr() -> int:
    """The fd of the person's stderr: fd 2, unless ``output_to`` moved it to the run's log."""
    return 2 if _saved_stderr is None else _saved_stderr


class StatusHandler(logging.Handler):
    """Turns the run's log records into the status line and the lines worth keeping.

    ``live`` (a terminal): the status line is redrawn in place. Otherwise (CI, a pipe) a
    status line is printed every tenth of the run and at its end, and a phase line when a new
    phase starts: its first record, not the progress records that follow from the same logger
    (the SFT warm-up logs each of its ~30 checks; a terminal shows them in place).
    """

    def __init__(self, out: TextIO, live: bool, log_path: Path) -> None:
        super().__init__(level=logging.INFO)
        self.out, self.live, self.log_path = out, live, log_path
        self.step_seconds: list[float] = []
        self.progress = ""  # the last step's status
        self.phase = ""  # the long phase under way, shown after the progress
        self._phase_logger = ""  # the logger of the phase last printed (not live)
        self.alarms = 0
        self._drawn = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._route(record)
        except Exception:  # noqa: BLE001 - a display problem must never stop a run
            self.handleError(record)

    def _route(self, record: logging.LogRecord) -> None:
        step = getattr(record, STEP, None)
        if step is not None:
            self.step_seconds.append(step["seconds"])
            self.progress, self.phase, self._phase_logger = status_text(step, self.step_seconds, self.alarms), "", ""
            done, total = step["step"] + 1, step["total"]
            self._status(print_line=done == 1 or done == total or done % max(1, total // 10) == 0)
        elif getattr(record, RESULT, False):
            self._line(record.getMessage())
        elif record.levelno >= logging.WARNING:
            self.alarms += bool(getattr(record, ALARM, None))
            self._line(f"{record.levelname.lower()}: {record.getMessage()}"
                       + (f" (details: {self.log_path})" if record.levelno >= logging.ERROR else ""))
        elif record.name.startswith("oreal_core"):
            self.phase = record.getMessage()
            if self.live:
                self._status(print_line=False)
            elif record.name != self._phase_logger:  # a line per phase, without the last step's status
                self._phase_logger = record.name
                self.out.write(self.phase + "\n")

    def _status(self, print_line: bool) -> None:
        text = " | ".join(part for part in (self.progress, self.phase) if part)
        if self.live:
            width = _width(self.out)
            self.out.write("\r\x1b[2K" + (text if len(text) < width else text[:width - 2] + "…"))
            self.out.flush()
            self._drawn = True
        elif print_line:
            self.out.write(text + "\n")

    def _line(self, text: str) -> None:
        if self._drawn:
            self.out.write("\r\x1b[2K")
        self.out.write(text + "\n")
        if self._drawn:
            self._status(print_line=False)

    def end(self) -> None:
        """Leave the last status on its own line (the caller prints the summary after it)."""
        if self._drawn:
            self.out.write("\n")
            self.out.flush()
            self._drawn = False


def _width(out: TextIO) -> int:
    try:
        return os.get_terminal_size(out.fileno()).columns
    except OSError:  # not a terminal after all: nothing to fit
        return 1 << 16
