"""A progress bar with energy, error bar, acceptance and ETA (tqdm, on stderr)."""

from __future__ import annotations

import sys

import numpy as np
from tqdm import tqdm

from vmc import parallel, stats


def format_energy(mean: float, error: float) -> str:
    """-1.17345(12): the digits of the error bar in brackets."""
    if not np.isfinite(error) or error <= 0:
        return f"{mean:.6f}"
    digits = max(0, min(8, -int(np.floor(np.log10(error))) + 1))
    return f"{mean:.{digits}f}({round(error * 10**digits):d})"


class Progress:
    """Bar over `total` steps; `update` takes the energy of the step and shows a running
    estimate over the recent window (autocorrelation-corrected error). Energies of different
    series (the systems of a shared run, whose energies differ) are averaged apart: the bar
    shows the running estimate of the series just updated, next to its name."""

    def __init__(self, total: int, desc: str, initial: int = 0, window: int = 100, enabled: bool = True):
        tty = sys.stderr.isatty()
        # in a batch job's log, redraw rarely instead of flooding the file; one bar per run
        # (process 0's), not one per host
        self.bar = tqdm(total=total, initial=initial, desc=desc, dynamic_ncols=True, leave=True,
                        disable=enabled is False or not parallel.is_writer(), mininterval=0.1 if tty else 30.0)
        self.window = window
        self.recent: dict[str | None, list[float]] = {}

    def update(self, energy: float | None = None, series: str | None = None, **fields) -> None:
        """energy (Ha) of this step; series names the system it belongs to (None: the only one)."""
        postfix = {}
        if energy is not None:
            self.recent[series] = (self.recent.get(series, []) + [float(energy)])[-self.window :]
            if series is not None:
                postfix["system"] = series
            postfix["E"] = self.estimate(series)
        postfix.update({k: (f"{v:.2f}" if isinstance(v, float) else v) for k, v in fields.items()})
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
