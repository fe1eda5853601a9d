"""Which system an optimization step trains: weighted, deterministic, never stale.

Smooth weighted round robin: every step each system earns its weight in credit, the system
with the most credit is trained and pays back the total weight. Over T steps system i is
picked T w_i / sum(w) times to within one, and never waits much longer than sum(w) / w_i
steps. The state is one float per system, saved in checkpoints, so a resumed run picks the
same sequence.
"""

from __future__ import annotations

import numpy as np

from vmc.systems import System


def system_weights(systems: list[System]) -> np.ndarray:
    """Twist weight x geometry weight; every geometry counts equally."""
    geometries = sorted({s.geometry for s in systems})
    per_geometry = {g: sum(s.weight for s in systems if s.geometry == g) for g in geometries}
    w = np.array([s.weight / per_geometry[s.geometry] / len(geometries) for s in systems])
    return w / w.sum()


def pick(weights: np.ndarray, credit: np.ndarray) -> tuple[int, np.ndarray]:
    """The system the next step trains and the credit after it (a new array)."""
    credit = np.asarray(credit, dtype=float) + weights
    i = int(np.argmax(credit))
    credit[i] -= weights.sum()
    return i, credit


class Scheduler:
    """`pick` with the credit held (pretraining keeps its own sequence this way)."""

    def __init__(self, weights: np.ndarray, credit: np.ndarray | None = None):
        self.weights = np.asarray(weights, dtype=float)
        self.credit = np.zeros_like(self.weights) if credit is None else np.asarray(credit, dtype=float).copy()

    def next(self) -> int:
        i, self.credit = pick(self.weights, self.credit)
        return i
