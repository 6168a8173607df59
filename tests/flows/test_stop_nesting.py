"""A RunStopper entered inside another (a retraining cycle's training run) leaves the process's
signals to the outer one, whose line says how to continue the whole cycle."""

from __future__ import annotations

import signal

from flows.stop import RunStopper, _ignore_here


def test_the_outermost_stopper_owns_the_signals():
    before = signal.getsignal(signal.SIGINT)
    with RunStopper("oreal retrain --lineage tiny --config demo-cpu") as outer:
        assert RunStopper._outermost is outer and signal.getsignal(signal.SIGINT) is _ignore_here
        wakeup = signal.set_wakeup_fd(-1)
        signal.set_wakeup_fd(wakeup)
        with RunStopper("oreal resume tiny-c0001 --config demo-cpu") as inner:
            assert RunStopper._outermost is outer and inner._nested
            assert signal.set_wakeup_fd(wakeup) == wakeup  # the inner one did not take the wakeup fd
        assert RunStopper._outermost is outer and signal.getsignal(signal.SIGINT) is _ignore_here
    assert RunStopper._outermost is None and signal.getsignal(signal.SIGINT) is before
