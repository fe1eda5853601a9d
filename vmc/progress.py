"""A progress bar with energy, error bar, acceptance and ETA (tqdm, on stderr).

The first step of a phase compiles its programs (minutes for a large system on a CPU), so
the bar says "compiling" until that step is done, and its speed and ETA come from the steps
after it only. Once TIMED steps have been timed, one line says what the phase will take.
"""

from __future__ import annotations

import datetime
import sys
import time
from typing import Callable

import numpy as np
from tqdm import tqdm

from vmc import parallel, stats


def format_energy(mean: float, error: float) -> str:
    """-1.17345(12): the digits of the error bar in brackets."""
    if not np.isfinite(error) or error <= 0:
        return f"{mean:.6f}"
    digits = max(0, min(8, -int(np.floor(np.log10(error))) + 1))
    return f"{mean:.{digits}f}({round(error * 10**digits):d})"


# timed steps (after the first, which compiles) before the phase's duration is estimated
TIMED = 2
# tqdm's own rate and ETA would count the compilation: the bar shows ours in the postfix
BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}{postfix}]"


def log(message: str) -> None:
    """One line on stderr, above any progress bar, written in one call: a signal landing
    between a line and its newline would glue the next line (the one-line error) to it."""
    tqdm.write(message + "\n", file=sys.stderr, end="")


def format_duration(seconds: float) -> str:
    """3725.2 -> '1:02:05'."""
    return str(datetime.timedelta(seconds=round(seconds)))


class Progress:
    """Bar over `total` steps; `update` takes the energy of the step and shows a running
    estimate over the recent window (autocorrelation-corrected error). Energies of different
    series (the systems of a shared run, whose energies differ) are averaged apart: the bar
    shows the running estimate of the series just updated, next to its name.

    Speed and ETA exclude the first step (compilation). `say(line)`: where the estimate of the
    phase's duration goes, once (default: stderr above the bar); `clock`: seconds (tests)."""

    def __init__(self, total: int, desc: str, initial: int = 0, window: int = 100, enabled: bool = True,
                 say: Callable[[str], None] | None = None, clock: Callable[[], float] = time.perf_counter):
        tty = sys.stderr.isatty()
        enabled = enabled is not False and parallel.is_writer()
        # in a batch job's log, redraw rarely instead of flooding the file; one bar per run
        # (process 0's), not one per host
        self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=True, bar_format=BAR_FORMAT,
                        disable=not enabled, mininterval=0.1 if tty else 30.0, postfix="compiling")
        self.window = window
        self.recent: dict[str | None, list[float]] = {}
        self.desc, self.total, self.done, self.clock = desc, total, initial, clock
        self.say = say if say is not None else log if enabled else (lambda line: None)
        self.started = clock()
        self.first = None  # when this process's first step ended
        self.timed = 0  # steps since the first

    def seconds_per_step(self) -> float | None:
        """Mean wall time of the steps after the first (None before one is timed)."""
        if self.first is None or self.timed == 0:
            return None
        return (self.clock() - self.first) / self.timed

    def timing(self) -> tuple[float | None, float | None]:
        """(seconds of the first step, compilation included; seconds per step after it)."""
        return (None if self.first is None else self.first - self.started), self.seconds_per_step()

    def remaining(self) -> float | None:
        """Seconds left at the current speed (None before a step is timed)."""
        rate = self.seconds_per_step()
        return None if rate is None else rate * (self.total - self.done)

    def _tick(self) -> None:
        if self.first is None:
            self.first = self.clock()
            return
        self.timed += 1
        if self.timed == TIMED and self.done < self.total:
            rate, first = self.seconds_per_step(), self.first - self.started
            self.say(f"{self.desc}: first step {first:.1f} s (with compilation), then {rate:.3g} s per step: "
                     f"about {format_duration(self.remaining())} for the {self.total - self.done} steps left")

    def update(self, energy: float | None = None, series: str | None = None, **fields) -> None:
        """energy (Ha) of this step; series names the system it belongs to (None: the only one)."""
        postfix = {}
        if energy is not None:
            self.recent[series] = (self.recent.get(series, []) + [float(energy)])[-self.window :]
            if series is not None:
                postfix["system"] = series
            postfix["E"] = self.estimate(series)
        postfix.update({k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in fields.items()})
        self.done += 1
        self._tick()
        left = self.remaining()
        postfix["ETA"] = "…" if left is None else format_duration(left)
        self.bar.set_postfix(postfix, refresh=False)
        self.bar.update(1)

    def estimate(self, series: str | None = None) -> str | None:
        """The E field as shown for `series`, None before its first energy."""
        recent = self.recent.get(series)
        if not recent:
            return None
        return format_energy(*stats.mean_and_error(np.array(recent))) if len(recent) > 4 else f"{recent[-1]:.5f}"

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        # also on errors, so that the error's one line starts on a line of its own
        self.close()
