"""Local energy against analytic results and the brute-force Hessian."""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmc.hamiltonian import coulomb_potential, make_kinetic_energy, make_kinetic_energy_hessian, make_local_energy
from vmc.system_data import SystemData


def atom_data(positions, charges, n_up, n_down):
    return SystemData(
        atoms=jnp.asarray(positions, dtype=float), charges=jnp.asarray(charges, dtype=float),
        species=jnp.zeros(len(charges), jnp.int32), cell=None, ewald=None, hf=None, features=None,
        n_up=n_up, n_down=n_down,
    )


def test_hydrogen_atom_exact(x64):
    """psi = exp(-r): E_L = -1/2 everywhere."""
    data = atom_data([[0.0, 0.0, 0.0]], [1.0], 1, 0)
    log_psi = lambda params, data, r: (jnp.zeros(()), -jnp.linalg.norm(r[0] - data.atoms[0]))  # noqa: E731
    e_l = jax.vmap(make_local_energy(log_psi), in_axes=(None, None, None, 0))(None, jax.random.PRNGKey(0), data, jnp.asarray(np.random.default_rng(0).normal(size=(50, 1, 3))))
    np.testing.assert_allclose(e_l.real, -0.5, atol=1e-12)
    np.testing.assert_allclose(e_l.imag, 0.0, atol=1e-12)


def test_complex_phase_terms(x64):
    """psi = exp(-r + i k.r): Re E_L = -1/2 + k^2/2, Im E_L = k.r_hat (phase gradient and
    its cross term with the modulus)."""
    k = jnp.array([0.3, -0.2, 0.5])
    data = atom_data([[0.0, 0.0, 0.0]], [1.0], 1, 0)

    def log_psi(params, data, r):
        return jnp.dot(k, r[0]), -jnp.linalg.norm(r[0])

    r = jnp.asarray(np.random.default_rng(1).normal(size=(20, 1, 3)))
    e_l = jax.vmap(make_local_energy(log_psi), in_axes=(None, None, None, 0))(None, jax.random.PRNGKey(0), data, r)
    np.testing.assert_allclose(e_l.real, -0.5 + 0.5 * jnp.dot(k, k), atol=1e-12)
    np.testing.assert_allclose(e_l.imag, (r[:, 0] / jnp.linalg.norm(r[:, 0], axis=-1, keepdims=True)) @ k, atol=1e-12)


def test_coulomb_potential_h2():
    r = jnp.array([[0.0, 0.0, 0.5], [0.3, 0.0, 1.0]])
    atoms = jnp.array([[0.0, 0.0, 0.0], [0.0, 0.0, 1.4]])
    v = coulomb_potential(r, atoms, jnp.array([1.0, 1.0]))
    ref = 1 / np.linalg.norm(r[0] - r[1]) + 1 / 1.4
    ref -= sum(1 / np.linalg.norm(ri - a) for ri in np.asarray(r) for a in np.asarray(atoms))
    assert np.isclose(v, ref, rtol=1e-6)


def test_folx_equals_hessian_for_a_complex_network(x64):
    """A small complex-valued network with a determinant: forward Laplacian = Hessian trace."""

    def net(r):
        h = jnp.tanh(hk.nets.MLP([16, 16])(jnp.concatenate([r, jnp.sum(r**2, -1, keepdims=True)], -1)))
        re, im = hk.Linear(3)(h), hk.Linear(3)(h)
        sign, logdet = jnp.linalg.slogdet((re + 1j * im) * jnp.exp(-jnp.sum(r**2, -1, keepdims=True)))
        return jnp.angle(sign), logdet

    f = hk.without_apply_rng(hk.transform(net))
    r = jnp.asarray(np.random.default_rng(2).normal(size=(3, 3)))
    params = f.init(jax.random.PRNGKey(0), r)
    log_psi = lambda p, data, r: f.apply(p, r)  # noqa: E731
    folx_k = make_kinetic_energy(log_psi)(params, None, r)
    hess_k = make_kinetic_energy_hessian(log_psi)(params, None, r)
    np.testing.assert_allclose(folx_k, hess_k, rtol=1e-10, atol=1e-10)
    assert abs(folx_k.imag) > 1e-3  # the phase terms are exercised
