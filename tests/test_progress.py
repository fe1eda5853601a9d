"""The progress bar's running energy: digits of the error bar, and systems kept apart."""

import numpy as np

from vmc.progress import Progress, format_energy
from vmc.stats import mean_and_error


def test_format_energy_brackets_the_error_digits():
    assert format_energy(-1.173451, 0.00012) == "-1.17345(12)"
    assert format_energy(-63.0, 0.1) == "-63.00(10)"
    assert format_energy(-1.5, 0.0) == "-1.500000"


def test_shared_run_systems_are_averaged_apart():
    """A shared run alternates a 2-electron and a 16-electron system: each keeps its own
    running estimate instead of one mean of both (about -5.5 Ha, nobody's energy)."""
    rng = np.random.default_rng(0)
    small, large = -1.17 + 0.01 * rng.standard_normal(30), -8.1 + 0.05 * rng.standard_normal(30)
    progress = Progress(60, "optimize", window=20, enabled=False)
    for e_small, e_large in zip(small, large):
        progress.update(energy=e_small, series="h2")
        progress.update(energy=e_large, series="h16")
    assert progress.estimate("h2") == format_energy(*mean_and_error(small[-20:]))
    assert progress.estimate("h16") == format_energy(*mean_and_error(large[-20:]))
    assert progress.estimate(None) is None
    progress.close()


def test_eta_leaves_out_the_first_step_that_compiles():
    """A first step of 60 s (compilation) and then 2 s per step: the ETA and the phase's
    estimate count 2 s per step, not the average with the first."""
    now = [0.0]
    said = []
    progress = Progress(10, "optimize", enabled=False, say=said.append, clock=lambda: now[0])
    assert progress.remaining() is None
    for dt in [60.0, 2.0, 2.0, 2.0]:
        now[0] += dt
        progress.update(energy=-1.0)
    assert progress.seconds_per_step() == 2.0
    assert progress.remaining() == 2.0 * 6
    assert len(said) == 1 and "first step 60.0 s (with compilation), then 2 s per step" in said[0]
    assert "0:00:14 for the 7 steps left" in said[0]
    progress.close()
