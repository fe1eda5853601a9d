"""SIGINT and SIGTERM during a run: stop at a point that can be resumed.

While `handled()` is active the two signals raise `Interrupted` (exit status 130 or 143)
instead of killing the process or raising KeyboardInterrupt. Inside `deferred()` (the
optimization loop) the first signal is only recorded: the loop finishes its step, writes a
checkpoint at the current step and then raises, so no finished step is lost. A second signal
while one is pending raises at once.

Every signal is also recorded as `pending()`, and every phase calls `check()` at each step:
an `Interrupted` raised where it cannot propagate (a garbage-collection callback of JAX, where
Python only prints "Exception ignored") or swallowed by a library still stops the run at the
next step (docs/robustness.md).
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading

from vmc.errors import Interrupted

SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state = {"deferring": False, "pending": None}


def name(signum: int) -> str:
    return signal.Signals(signum).name


def _not_a_stop(record: logging.LogRecord) -> bool:
    """Drops log records of an Interrupted passing through a library: folx logs every
    exception leaving its tracer, with a traceback, before it reaches the CLI's one line."""
    info = record.exc_info
    return not (info and isinstance(info[1], Interrupted))


def _handler(signum, frame):
    first = _state["pending"] is None
    if first:
        _state["pending"] = signum
    if _state["deferring"] and first:
        return
    raise Interrupted(signum, f"stopped by {name(signum)}")


@contextlib.contextmanager
def handled():
    """Installs the handlers (main thread only: elsewhere Python cannot) and restores the
    previous ones afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _handler) for s in SIGNALS}
    _state["pending"] = None
    root = logging.getLogger()  # a logger's filters apply whatever handlers a library installs
    root.addFilter(_not_a_stop)
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        root.removeFilter(_not_a_stop)
        _state["pending"] = None


@contextlib.contextmanager
def deferred():
    """Signals inside this block only set `pending()`."""
    before = _state["deferring"]
    _state["deferring"] = True
    try:
        yield
    finally:
        _state["deferring"] = before


def pending() -> int | None:
    """The signal number received since `handled()` began, if any."""
    return _state["pending"]


def check() -> None:
    """Raises `Interrupted` if a signal arrived (outside `deferred()`, where the caller decides)."""
    if _state["pending"] is not None:
        raise Interrupted(_state["pending"], f"stopped by {name(_state['pending'])}")
