"""Which optimization steps are rejected: non-finite results and energy jumps.

A step is rejected when its mean energy or variance is not finite, when its new parameters
are not (checked by the runner), or when its energy jumps: it lies more than `jump` robust
standard deviations from the median energy of the system's last WINDOW accepted steps,

    |E_t - median(E)| > jump * max(1.4826 * MAD(E), sqrt(median(Var E_L))),

over that window. The first scale is the spread of the recent step energies (noise and
drift); the second, the spread of a single local energy, keeps the test meaningful from the
first accepted step on, when the window has no spread yet. A healthy step cannot move the
mean of many walkers by ten standard deviations of one walker's local energy; a diverging
one moves it by orders of magnitude. See docs/robustness.md.
"""

from __future__ import annotations

import numpy as np

WINDOW = 50  # accepted steps per system that the jump test looks back on
MAD_TO_SIGMA = 1.4826  # standard deviation of a normal distribution per median absolute deviation


class StepGuard:
    """Recent accepted (energy, variance) per system and the rejection test."""

    def __init__(self, jump: float | None, history: dict[str, tuple[np.ndarray, np.ndarray]] | None = None):
        """jump: the threshold in robust standard deviations (None: finiteness only).
        history: per system id, the (energies, variances) of accepted steps so far, e.g. read
        back from energies.h5 on resume, so a resumed run decides exactly as an uninterrupted one."""
        self.jump = jump
        self.energies = {k: list(np.asarray(e, float)[-WINDOW:]) for k, (e, _) in (history or {}).items()}
        self.variances = {k: list(np.asarray(v, float)[-WINDOW:]) for k, (_, v) in (history or {}).items()}

    def reason(self, system: str, energy: float, variance: float) -> str | None:
        """Why the step should be rejected, or None to accept it."""
        if not np.isfinite(energy) or not np.isfinite(variance):
            return f"energy {energy:.6g} Ha, variance {variance:.6g}: not finite"
        recent = self.energies.get(system, [])
        if self.jump is None or not recent:
            return None
        center = float(np.median(recent))
        scale = max(MAD_TO_SIGMA * float(np.median(np.abs(np.array(recent) - center))),
                    float(np.sqrt(np.median(self.variances[system]))))
        if scale > 0 and abs(energy - center) > self.jump * scale:
            return (f"energy {energy:.6g} Ha is {abs(energy - center) / scale:.3g} robust standard deviations "
                    f"from the recent median {center:.6g} Ha (limit optimization.reject_jump = {self.jump:g})")
        return None

    def accept(self, system: str, energy: float, variance: float) -> None:
        self.energies.setdefault(system, []).append(float(energy))
        self.variances.setdefault(system, []).append(float(variance))
        del self.energies[system][:-WINDOW], self.variances[system][:-WINDOW]
