"""Stop signals in every phase (vmc/signals.py): a signal whose exception a library swallows
still stops the run at the next step, and the exception is not one that `except Exception`
catches (folx catches Exception during tracing and then calls exit(), which exited 0)."""

import os
import signal

import pytest

from vmc import signals
from vmc.errors import Interrupted


def test_interrupted_is_not_an_exception_that_libraries_catch():
    caught = None
    with signals.handled():
        try:
            try:
                os.kill(os.getpid(), signal.SIGTERM)
            except Exception:  # what folx and others do around the code a signal lands in
                pytest.fail("Interrupted was caught by `except Exception`")
        except Interrupted as e:
            caught = e
    assert caught is not None and caught.exit_status == 143


def test_a_swallowed_signal_stops_at_the_next_check():
    """Raised where Python can only print it ("Exception ignored in _xla_gc_callback"), or
    swallowed: the next step's check raises it again."""
    with signals.handled():
        try:
            os.kill(os.getpid(), signal.SIGINT)
        except BaseException:
            pass  # swallowed
        with pytest.raises(Interrupted) as stopped:
            signals.check()
    assert stopped.value.exit_status == 130
    signals.check()  # outside handled(): nothing pending any more


def test_deferred_signal_is_pending_and_a_second_raises():
    with signals.handled(), signals.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        assert signals.pending() == signal.SIGTERM
        with pytest.raises(Interrupted):
            os.kill(os.getpid(), signal.SIGINT)


def test_a_stop_passing_through_a_library_logs_no_traceback(caplog):
    """folx logs every exception that leaves its tracer, traceback included, through the
    root logger: a stop must reach the CLI as its one line only."""
    import logging

    with signals.handled():
        try:
            try:
                raise Interrupted(signal.SIGTERM, "stopped by SIGTERM")
            except BaseException as e:
                logging.error("Exception occurred", exc_info=(type(e), e, e.__traceback__))
                raise
        except Interrupted:
            pass
        logging.error("an ordinary error", exc_info=(ValueError, ValueError("x"), None))
    assert [r.getMessage() for r in caplog.records] == ["an ordinary error"]
