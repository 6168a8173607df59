"""A tracker backend that raises on every call: the double for a tracker that is down."""

from __future__ import annotations

from oreal_core.tracking.backend import Backend


class TrackerDown(RuntimeError):
    pass


class RaisingBackend(Backend):
    name = "raising"
    calls = 0  # every call, across instances: proves the run really called it

    def _raise(self, *_args, **_kwargs):
        type(self).calls += 1
        raise TrackerDown("tracker down")

    open = log_params = log_scalars = log_text = close = _raise


class RaisingAfterOpen(RaisingBackend):
    """Opens fine, then raises on every write (a tracker that goes down mid-run)."""

    def open(self) -> dict[str, int]:
        return {}
