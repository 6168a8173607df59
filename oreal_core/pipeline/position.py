"""Where the run in this process is: its step and the stage under way.

A run stopped from outside (a signal, its orchestrator gone) says where it stopped in one
line; the stages report here as they start. Only the process's own thread of stages writes
it, so a plain module-level record is enough.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Position:
    run_id: str | None = None  # None until the run exists in the lake
    step: int | None = None  # None before the first step starts
    stage: str = "start-up"

    def describe(self) -> str:
        if self.step is None:
            return f"before its first step ({self.stage})"
        return f"at step {self.step} (counted from 0, as in the lake), stage {self.stage}"


_current = Position()


def enter(run_id: str | None, step: int | None, stage: str) -> None:
    """The run ``run_id`` is now in ``stage`` of ``step``."""
    _current.run_id, _current.step, _current.stage = run_id, step, stage


def current() -> Position:
    return Position(_current.run_id, _current.step, _current.stage)


def reset() -> None:
    enter(None, None, "start-up")
