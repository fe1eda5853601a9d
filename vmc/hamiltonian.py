"""Local energy E_L = (H psi) / psi for one walker.

With log psi = log|psi| + i theta:
    E_L = -1/2 sum_i [ lap_i log psi + (grad_i log psi)^2 ] + V
        = -1/2 [ lap log|psi| + |grad log|psi||^2 - |grad theta|^2 ]
          - i/2 [ lap theta + 2 grad log|psi| . grad theta ] + V.
The real part is the energy estimator; the imaginary part enters the gradient of the energy
of a complex wavefunction. Laplacians come from folx's forward Laplacian (one pass for
values, gradients and Laplacians); `jax.hessian` is the reference in the tests.
"""

from __future__ import annotations

from typing import Callable

import folx
import jax
import jax.numpy as jnp

from vmc import ewald
from vmc.memory import map_walkers
from vmc.geometry import offdiag_distance, pair_displacements, safe_norm

# folx propagates derivatives of arrays that depend on at most this many input coordinates
# sparsely: per-electron quantities (orbitals, AOs) then cost 3 tangents instead of 3 n_el.
SPARSITY = 6


def coulomb_potential(r: jax.Array, atoms: jax.Array, charges: jax.Array) -> jax.Array:
    """Open-boundary Coulomb energy (hartree): e–e + e–n + n–n for r (n_el, 3), atoms (n_atoms, 3)."""
    n = r.shape[0]
    pairs = jnp.triu(jnp.ones((n, n), bool), k=1)
    d_ee = offdiag_distance(r, None)
    v_ee = jnp.sum(jnp.where(pairs, 1.0 / jnp.where(pairs, d_ee, 1.0), 0.0))
    v_en = -jnp.sum(charges / safe_norm(pair_displacements(r, atoms)))
    m = atoms.shape[0]
    npairs = jnp.triu(jnp.ones((m, m), bool), k=1)
    d_nn = jnp.where(npairs, safe_norm(pair_displacements(atoms, atoms)), 1.0)
    v_nn = jnp.sum(jnp.where(npairs, charges[:, None] * charges[None, :] / d_nn, 0.0))
    return v_ee + v_en + v_nn


def potential_energy(data, r: jax.Array) -> jax.Array:
    """Coulomb energy of one walker: plain sums for molecules, Ewald sums for crystals."""
    if data.ewald is not None:
        return ewald.potential_energy(data.ewald, r)
    return coulomb_potential(r, data.atoms, data.charges)


def log_psi_pair(log_psi: Callable) -> Callable:
    """f(params, data, x (3 n_el,)) -> [log|psi|, theta]: the real-valued function we differentiate."""

    def f(params, data, x):
        phase, logabs = log_psi(params, data, x.reshape(-1, 3))
        return jnp.stack([logabs, phase.astype(logabs.dtype)])

    return f


def kinetic_from_derivatives(grad: jax.Array, lap: jax.Array) -> jax.Array:
    """Complex kinetic energy from grad (3 n_el, 2) and Laplacian (2,) of [log|psi|, theta]."""
    g_abs, g_ph = grad[:, 0], grad[:, 1]
    real = -0.5 * (lap[0] + jnp.sum(g_abs**2) - jnp.sum(g_ph**2))
    imag = -0.5 * (lap[1] + 2 * jnp.sum(g_abs * g_ph))
    return jax.lax.complex(real, imag)


def make_kinetic_energy(log_psi: Callable, sparsity_threshold: int = SPARSITY) -> Callable:
    """kinetic(params, data, r) -> complex kinetic local energy (hartree), by forward Laplacian."""
    f = log_psi_pair(log_psi)

    def kinetic(params, data, r):
        out = folx.forward_laplacian(lambda x: f(params, data, x), sparsity_threshold=sparsity_threshold)(r.reshape(-1))
        return kinetic_from_derivatives(out.jacobian.dense_array, out.laplacian)

    return kinetic


def make_kinetic_energy_hessian(log_psi: Callable) -> Callable:
    """Reference kinetic energy via the full Hessian (brute force, for tests)."""
    f = log_psi_pair(log_psi)

    def kinetic(params, data, r):
        x = r.reshape(-1)
        grad = jax.jacfwd(lambda y: f(params, data, y))(x).T  # (3n, 2)
        hess = jax.hessian(lambda y: f(params, data, y))(x)  # (2, 3n, 3n)
        return kinetic_from_derivatives(grad, jnp.trace(hess, axis1=1, axis2=2))

    return kinetic


def make_local_energy(log_psi: Callable, sparsity_threshold: int = SPARSITY, kinetic: Callable | None = None) -> Callable:
    """local_energy(params, key, data, r) -> complex E_L (hartree, whole simulation cell) of one walker.

    key: a PRNG key for stochastic estimators (none of today's terms draws on it; a
    pseudopotential's quadrature would, as in FermiNet).
    kinetic: the ansatz's own kinetic energy (`Ansatz.kinetic`), if it has one; otherwise
    folx's forward Laplacian of log_psi.
    """
    if kinetic is None:
        kinetic = make_kinetic_energy(log_psi, sparsity_threshold)

    def local_energy(params, key, data, r):
        del key
        return kinetic(params, data, r) + potential_energy(data, r)

    return local_energy


def make_batch_local_energy(log_psi: Callable, batch_size: int | None = None, sparsity_threshold: int = SPARSITY,
                            kinetic: Callable | None = None) -> Callable:
    """local_energies(params, key, data, walkers (B, n_el, 3)) -> (B,) complex E_L (hartree),
    each walker with its own key split from `key`.

    batch_size: walkers whose Laplacians are computed at once (None: all B); bounds the
    memory of the forward Laplacian, which grows with walkers x electrons x basis.
    """
    local_energy = make_local_energy(log_psi, sparsity_threshold, kinetic)

    def local_energies(params, key, data, walkers):
        keys = jax.random.split(key, walkers.shape[0])
        return map_walkers(lambda kr: local_energy(params, kr[0], data, kr[1]), (keys, walkers), batch_size)

    return local_energies
