"""Statistics of Monte Carlo time series: means with autocorrelation-corrected error bars.

Successive MCMC steps are correlated, so the naive standard error sigma / sqrt(n) is too
small by sqrt(tau_int), with tau_int the integrated autocorrelation time (1 for independent
samples). We estimate tau_int from the normalized autocorrelation function with Sokal's
self-consistent window, and cross-check with Flyvbjerg–Petersen blocking in the tests.
"""

from __future__ import annotations

import numpy as np

SOKAL_C = 5.0  # window M is the smallest with M >= C * tau(M)


def autocorrelation(x: np.ndarray) -> np.ndarray:
    """Normalized autocorrelation function rho(t), t = 0..n-1, of a series x (n,) (by FFT)."""
    x = np.asarray(x, dtype=float) - np.mean(x)
    n = len(x)
    f = np.fft.rfft(x, n=2 * n)
    acf = np.fft.irfft(f * np.conj(f))[:n]
    return acf / acf[0]


def integrated_autocorrelation_time(x) -> float:
    """tau_int = 1 + 2 sum_{t=1}^{M} rho(t) >= 1, with Sokal's automatic window M."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2 or np.var(x) == 0:
        return 1.0
    rho = autocorrelation(x)
    taus = 2.0 * np.cumsum(rho) - 1.0  # taus[M] = 1 + 2 sum_{t=1}^{M} rho(t)
    window = np.arange(len(taus)) >= SOKAL_C * taus
    m = int(np.argmax(window)) if window.any() else len(taus) - 1
    return float(max(taus[m], 1.0))


def blocking_error(x) -> float:
    """Flyvbjerg–Petersen blocking estimate of the standard error of the mean of x (n,).

    Pairs of neighbours are averaged repeatedly; the error estimate rises until blocks are
    longer than the correlation time and then plateaus. We take the largest estimate among
    the levels that keep at least 32 blocks (their own relative uncertainty is <= 1/8).
    """
    x = np.asarray(x, dtype=float)
    best = np.std(x, ddof=1) / np.sqrt(len(x)) if len(x) > 1 else float("nan")
    while len(x) >= 64:
        x = 0.5 * (x[: len(x) // 2 * 2 : 2] + x[1 : len(x) // 2 * 2 : 2])
        best = max(best, np.std(x, ddof=1) / np.sqrt(len(x)))
    return float(best)


def mean_and_error(x) -> tuple[float, float]:
    """Mean of a series x (n,) and its standard error sqrt(var * tau_int / n) (nan for n < 2)."""
    x = np.asarray(x, dtype=float)
    if len(x) < 2:
        return float(np.mean(x)) if len(x) else float("nan"), float("nan")
    tau = integrated_autocorrelation_time(x)
    return float(np.mean(x)), float(np.sqrt(np.var(x, ddof=1) * tau / len(x)))


def weighted_mean(means, errors, weights) -> tuple[float, float]:
    """Weighted average of independent estimates (twist averaging): sum w m / sum w, with
    error sqrt(sum (w e)^2) / sum w; means, errors, weights (n,)."""
    m, e, w = (np.asarray(a, dtype=float) for a in (means, errors, weights))
    total = np.sum(w)
    return float(np.sum(w * m) / total), float(np.sqrt(np.sum((w * e) ** 2)) / total)


HF_WARNING_SIGMAS = 3.0  # standard errors above E_HF that make an evaluated energy unconverged


def hartree_fock_warning(name: str, energy: float, error: float, hf_energy: float, unit: str = "Ha") -> str | None:
    """One warning line when the evaluated energy of system `name` lies above its
    Hartree–Fock energy by more than HF_WARNING_SIGMAS = 3 standard errors, else None.

    energy, error (autocorrelation-corrected standard error) and hf_energy in the same unit,
    named by `unit` ("Ha", "Ha per cell"). The wavefunction is pretrained to the Hartree–Fock
    orbitals and the energy is variational, so a converged run ends at or below E_HF; a
    converged one lands more than 3 standard errors above it by chance with probability
    0.13 % (one-sided, Gaussian). No warning without a finite energy and error bar: then
    there is no significance to state. The difference is shown to the error bar's first
    significant digit (at least two decimals), E_HF to as many or at least three.
    """
    values = np.array([energy, error, hf_energy], dtype=float)
    if not np.all(np.isfinite(values)) or error <= 0 or energy - hf_energy <= HF_WARNING_SIGMAS * error:
        return None
    from vmc.progress import format_energy  # vmc.progress imports this module

    digits = max(2, -int(np.floor(np.log10(error))))
    return (f"warning: {name}: the evaluated energy {format_energy(energy, error)} {unit} lies "
            f"{energy - hf_energy:.{digits}f} {unit} above Hartree–Fock ({hf_energy:.{max(3, digits)}f} {unit}): the wavefunction is not "
            f"converged (more pretraining, burn-in or optimization steps)")
