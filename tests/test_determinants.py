"""Sums of determinants in log form (vmc/ansatz/determinants.py) against direct sums, and a
wavefunction that is exactly zero (every determinant zero) giving log|psi| = -inf, not NaN."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmc.ansatz.determinants import log_sum_dets


@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_log_sum_dets_is_the_direct_sum(x64, dtype):
    rng = np.random.default_rng(0)
    signs = rng.choice([-1.0, 1.0], 5) if dtype == np.float64 else np.exp(1j * rng.uniform(0, 2 * np.pi, 5))
    logdets = rng.normal(size=5) * 3
    logdets[2] = -np.inf  # one zero determinant among non-zero ones
    total = np.sum(signs * np.exp(logdets))
    phase, logabs = log_sum_dets(jnp.asarray(signs), jnp.asarray(logdets))
    np.testing.assert_allclose(logabs, np.log(np.abs(total)), rtol=1e-12)
    np.testing.assert_allclose(np.exp(1j * phase), total / abs(total), rtol=1e-12)


def test_every_determinant_zero_gives_log_zero(x64):
    phase, logabs = log_sum_dets(jnp.array([1.0, -1.0, 1.0]), jnp.full(3, -jnp.inf))
    assert logabs == -np.inf and np.isfinite(phase)


def test_electron_beyond_every_orbital_row_gives_zero_psi_not_nan(wavefunction):
    """`fire` with K = 2 on a molecule: an electron farther than `orbital_cutoff` from every
    atom has no orbital rows, so every determinant is zero. log|psi| must be -inf (as with
    K = 1): a Metropolis move then leaves the point, whereas a NaN froze the walker there and
    made every step's energy NaN."""
    from vmc.mcmc import make_mcmc_step

    system, ansatz, data, params, walkers = wavefunction("LiH", "fire", walkers=4, overrides={"model.determinants": 2})
    log_abs = jax.jit(jax.vmap(lambda r: ansatz.log_psi(params, data, r)[1]))
    li, h = system.positions  # H on the z axis: 8.1 bohr beyond it, just past the default orbital_cutoff (8 bohr)
    far = walkers.at[:, 0].set(jnp.asarray(h + 8.1 * (h - li) / np.linalg.norm(h - li), walkers.dtype))
    assert np.all(np.asarray(log_abs(far)) == -np.inf)
    moved, _, _ = make_mcmc_step(ansatz.log_psi, 20)(params, data, far, jax.random.PRNGKey(0), 0.5)
    assert np.all(np.isfinite(log_abs(moved)))
