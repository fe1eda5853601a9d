"""User-facing errors and the exit status of each.

The CLI prints the message of any of these as one line on stderr, without a traceback, and
exits with the status of its class:

    2    InputError     bad input: a config key, a file, a system, a checkpoint, a path
    3    Diverged       optimization.max_rejected consecutive steps were rejected; the newest
                        checkpoint holds the last good state
    4    OutputError    a file of the run could not be written (full disk, permissions); what
                        was written before is intact
    130  Interrupted    SIGINT: during optimization after a checkpoint at the current step;
                        in any other phase at once (the message says what `vmc run RUN_DIR` resumes)
    143  Interrupted    SIGTERM, likewise
"""

from __future__ import annotations

import os
import re


class VmcError(Exception):
    """An error the CLI reports as one line with `exit_status`."""

    exit_status = 1


class InputError(VmcError):
    """Bad input: the message names the config key, file or system at fault."""

    exit_status = 2


class Diverged(VmcError):
    """Training cannot go on: too many consecutive steps were rejected."""

    exit_status = 3


class OutputError(VmcError):
    """Writing a run's files failed (e.g. no space left on the device)."""

    exit_status = 4


class Interrupted(BaseException):
    """A stop signal arrived; `exit_status` is 128 + the signal number (130, 143).

    Not an `Exception`, like KeyboardInterrupt: libraries that catch `Exception` around the
    code a signal lands in (folx does, during tracing, and then calls exit()) must not swallow
    it. The CLI reports it like a VmcError."""

    def __init__(self, signum: int, message: str):
        super().__init__(message)
        self.signum = signum
        self.exit_status = 128 + signum


def os_reason(error: BaseException) -> str:
    """A short reason for a failed file operation: 'No space left on device', not HDF5's
    multi-line error stack."""
    number = getattr(error, "errno", None)
    if number:
        return os.strerror(number)
    found = re.search(r"error message = '([^']*)'", str(error))
    if found:
        return found.group(1)
    lines = str(error).strip().splitlines()
    return lines[0][:200] if lines else type(error).__name__
