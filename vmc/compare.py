"""Comparing runs of the same systems (e.g. from scratch against fine-tuned): zero-shot
energy, share of the correlation energy recovered, steps to come within a tolerance.

For each system id present in two or more runs, per run (energies per primitive cell for
crystals, whole molecule otherwise, in Ha):

- zero-shot: the mean of the first `window` training energies (the fine-tune's energy
  before it learned anything about the target) with its error; a run without training rows
  (`vmc evaluate`) contributes its evaluated energy;
- final: the evaluated energy, or the mean of the last `window` training energies while the
  run has not been evaluated;
- share of the correlation energy: (E - E_HF) / (E_ref - E_HF), E_ref the lowest final
  energy among the compared runs;
- steps to tolerance: the first optimization step (counted from 1) whose trailing
  `window`-step mean of the training energy is within tolerance x atoms of the best final
  energy of the *other* runs.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from vmc import stats
from vmc.runs import RunRecord, SystemRecord

WINDOW = 20


@dataclasses.dataclass
class RunComparison:
    """One run's row for one system. Energies in Ha per cell; shares dimensionless (nan
    where undefined); steps None where never reached or no training."""

    run: str
    zero_shot: float
    zero_shot_error: float
    final: float
    final_error: float
    final_from_training: bool
    hf: float
    share_zero_shot: float
    share_final: float
    tolerance: float  # Ha per cell
    target: float  # the other runs' best final energy + tolerance (Ha per cell)
    steps_to_target: int | None
    steps_done: int


def trailing_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of x[t - window + 1 : t + 1] for t >= window - 1, nan before; x (n,)."""
    x = np.asarray(x, dtype=float)
    out = np.full(len(x), np.nan)
    if len(x) >= window:
        c = np.concatenate([[0.0], np.cumsum(x)])
        out[window - 1:] = (c[window:] - c[:-window]) / window
    return out


def _mean(x: np.ndarray) -> tuple[float, float]:
    return stats.mean_and_error(x) if len(x) else (float("nan"), float("nan"))


def per_cell_train(s: SystemRecord) -> np.ndarray:
    return s.train["energy"] / s.n_cells


def final_energy(s: SystemRecord, window: int = WINDOW) -> tuple[float, float, bool]:
    """(E, error, from_training) per cell: the evaluation, else the last training window."""
    if s.evaluation is not None:
        return s.evaluation["energy"] / s.n_cells, s.evaluation["energy_error"] / s.n_cells, False
    return (*_mean(per_cell_train(s)[-window:]), True)


def zero_shot_energy(s: SystemRecord, window: int = WINDOW) -> tuple[float, float]:
    """The first training window's mean energy per cell, or the evaluation without training."""
    if len(s.train["energy"]) == 0 and s.evaluation is not None:
        return s.evaluation["energy"] / s.n_cells, s.evaluation["energy_error"] / s.n_cells
    return _mean(per_cell_train(s)[:window])


def shared_systems(runs: list[RunRecord]) -> list[str]:
    """System ids present in at least two runs, in the order of first appearance."""
    counts: dict[str, int] = {}
    for r in runs:
        for s in r.systems:
            counts[s.id] = counts.get(s.id, 0) + 1
    return [sid for sid, n in counts.items() if n >= 2]


def compare(runs: list[RunRecord], system_id: str, tolerance_mha_per_atom: float = 1.0, window: int = WINDOW) -> list[RunComparison]:
    """The rows of one shared system (one per run that has it)."""
    members = [(r, s) for r in runs for s in r.systems if s.id == system_id]
    finals = [final_energy(s, window) for _, s in members]
    e_ref = min((f[0] for f in finals if np.isfinite(f[0])), default=np.nan)
    rows = []
    for i, (r, s) in enumerate(members):
        tol = tolerance_mha_per_atom * 1e-3 * s.n_atoms / s.n_cells
        others = [f[0] for j, f in enumerate(finals) if j != i and np.isfinite(f[0])]
        target = min(others) + tol if others else np.nan
        zs, zs_err = zero_shot_energy(s, window)
        hf = s.hf_energy_per_cell
        share = lambda e: (e - hf) / (e_ref - hf) if np.isfinite(e_ref) and e_ref != hf else np.nan  # noqa: E731
        steps = None
        if np.isfinite(target) and len(s.train["energy"]):
            below = trailing_mean(per_cell_train(s), min(window, len(s.train["energy"]))) <= target
            if below.any():
                steps = int(s.train["step"][int(np.argmax(below))]) + 1
        rows.append(RunComparison(
            run=r.label, zero_shot=zs, zero_shot_error=zs_err, final=finals[i][0], final_error=finals[i][1],
            final_from_training=finals[i][2], hf=hf, share_zero_shot=share(zs), share_final=share(finals[i][0]),
            tolerance=tol, target=target, steps_to_target=steps, steps_done=int(s.train["step"][-1]) + 1 if len(s.train["step"]) else 0,
        ))
    return rows
