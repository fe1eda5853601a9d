"""Sparse `fire` (neighbour lists, per-electron Laplacian) against the dense reference: the
same parameters give the same log|psi|, phase, local energy and parameter gradient; and a
walker that outgrows a neighbour list is recomputed with a longer one, never truncated."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmc import neighbours
from vmc.ansatz import make_ansatz
from vmc.config import make_config
from vmc.hamiltonian import make_local_energy
from vmc.mcmc import make_mcmc_step

CHAIN = {"name": "hydrogen_chain", "supercell": [2, 1, 1], "twists": [[0.25, 0, 0]]}  # 7.2-bohr cell, complex
REAL_CHAIN = dict(CHAIN, twists=[[0.5, 0, 0]])  # every Bloch phase +-1: real orbitals
LIH_CELL = {"name": "lih_rocksalt", "lattice_constant": 7.674, "twists": [[0.5, 0.25, 0]]}


def _dense_twin(system, model_overrides: dict):
    """The dense ansatz with the same hyperparameters (so the same parameter tree)."""
    from conftest import TINY_NETWORKS

    cfg = make_config(None, {"model.name": "fire", **TINY_NETWORKS, **model_overrides, "model.fire.implementation": "dense"})
    return make_ansatz(cfg.model, sorted(set(system.symbols)))


def _sized(ansatz, data, walkers):
    """data whose capacities are fitted to `walkers` (as the runner does)."""
    needed = jax.vmap(lambda r: ansatz.neighbour_counts(data, r))(walkers)
    return ansatz.resize(data, np.max(np.asarray(needed), 0))


def _compare(sparse, dense, params, data, walkers):
    """[log|psi|, phase], E_L and the parameter gradient of [log|psi|, phase], walker by walker."""

    def everything(ansatz, kinetic):
        pair = lambda p, r: jnp.stack(ansatz.log_psi(p, data, r)[::-1])  # noqa: E731
        e_l = make_local_energy(ansatz.log_psi, kinetic=kinetic)
        return jax.jit(jax.vmap(lambda p, r: (pair(p, r), e_l(p, jax.random.PRNGKey(0), data, r), jax.jacrev(pair)(p, r)), in_axes=(None, 0)))

    got = everything(sparse, sparse.kinetic)(params, walkers)
    want = everything(dense, None)(params, walkers)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got[1], want[1], rtol=1e-8, atol=1e-8)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8), got[2], want[2])


@pytest.mark.parametrize("system, overrides", [
    pytest.param("LiH", {}, marks=pytest.mark.slow),
    pytest.param(CHAIN, {"model.fire.cutoff": 3.0}, marks=pytest.mark.slow),  # below half the cell
    (REAL_CHAIN, {"model.fire.cutoff": 5.0}),  # beyond half the cell: images of i and of j are pairs too
    (LIH_CELL, {"model.determinants": 2}),
    pytest.param(dict(LIH_CELL, supercell=[2, 2, 2]), {}, marks=pytest.mark.slow),
])
def test_sparse_equals_dense(x64, wavefunction, system, overrides):
    """float64, random walkers, parameters moved off their initial values."""
    built, sparse, data, params, walkers = wavefunction(system, "fire", walkers=2, seed=3, overrides=overrides)
    dense = _dense_twin(built, overrides)
    # hk.Embed keeps float32 parameters even in float64 runs: cast, to compare at 1e-8
    params = jax.tree.map(lambda x: x.astype(jnp.float64) + 0.1 * jax.random.normal(jax.random.PRNGKey(1), x.shape, jnp.float64), params)
    data = _sized(sparse, data, walkers)
    _compare(sparse, dense, params, data, walkers)


def test_real_twist_computes_real_orbitals_with_the_complex_values(x64, wavefunction):
    """At a twist where every Bloch phase is +-1 the features are real, and the network's
    real arithmetic gives what the complex arithmetic gives for the same features held as
    complex numbers: log|psi|, the sign as a phase, and E_L. (The dense network's real
    path is checked against the sparse one in test_sparse_equals_dense, REAL_CHAIN.)"""
    from vmc.descriptors import real_phases

    system, sparse, data, params, walkers = wavefunction(REAL_CHAIN, "fire", walkers=2, seed=3, overrides={"model.fire.cutoff": 3.0})
    assert real_phases(system)
    feats = data.features
    assert not any(jnp.iscomplexobj(x) for x in (feats.orbital_phase, *feats.coefficients, *feats.image_phase))
    as_complex = lambda x: x.astype(jnp.complex128)  # noqa: E731
    complex_data = dataclasses.replace(data, features=dataclasses.replace(
        feats, orbital_phase=as_complex(feats.orbital_phase), coefficients=tuple(map(as_complex, feats.coefficients)),
        image_phase=tuple(map(as_complex, feats.image_phase))))
    params = jax.tree.map(lambda x: x.astype(jnp.float64) + 0.1 * jax.random.normal(jax.random.PRNGKey(1), x.shape, jnp.float64), params)
    e_l = make_local_energy(sparse.log_psi, kinetic=sparse.kinetic)

    def everything(d):
        d = _sized(sparse, d, walkers)
        return jax.vmap(lambda r: (*sparse.log_psi(params, d, r), e_l(params, jax.random.PRNGKey(0), d, r)))(walkers)

    real, cplx = everything(data), everything(complex_data)
    assert not any(jnp.iscomplexobj(b) for b in sparse.orbitals(params, data, walkers[0]))
    np.testing.assert_allclose(real[1], cplx[1], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.exp(1j * real[0]), np.exp(1j * cplx[0]), atol=1e-10)
    np.testing.assert_allclose(real[2], cplx[2], rtol=1e-8, atol=1e-8)
    assert not real_phases(wavefunction(CHAIN, "fire")[0])  # twist 1/4: complex


def test_overflowing_walker_is_recomputed_not_truncated(x64, wavefunction, monkeypatch):
    """Lists sized (without headroom) for spread-out walkers are too short for a walker whose
    electrons crowd together: its neighbour counts say so, the MCMC step reports it, and with
    the lists grown (what the runner does before it uses anything computed) the result equals
    the dense one."""
    monkeypatch.setattr(neighbours, "HEADROOM", 1.0)
    monkeypatch.setattr(neighbours, "QUANTUM", 1)
    overrides = {"model.fire.cutoff": 3.0}
    built, sparse, data, params, walkers = wavefunction(CHAIN, "fire", walkers=2, seed=3, overrides=overrides)
    dense = _dense_twin(built, overrides)
    spread = walkers.at[:, :, 0].set(jnp.array([0.0, 1.8, 3.6, 5.4]))
    small = _sized(sparse, data, spread)
    crowded = walkers[0].at[:, 0].set(jnp.array([0.0, 0.3, 0.6, 0.9]))
    needed = np.asarray(sparse.neighbour_counts(small, crowded))
    assert np.any(needed > np.array(small.features.capacities.as_tuple()))
    # truncated lists would give a different |psi|: the check above is what protects us
    truncated = float(sparse.log_psi(params, small, crowded)[1])
    exact = float(dense.log_psi(params, small, crowded)[1])
    assert abs(truncated - exact) > 1e-6
    # the sampler reports the largest need over every configuration it evaluated
    sample = jax.jit(make_mcmc_step(sparse.log_psi, 2, sparse.neighbour_counts))
    _, _, reported = sample(params, small, crowded[None], jax.random.PRNGKey(0), 0.01)
    assert np.all(np.asarray(reported) >= needed)
    grown = sparse.resize(small, np.asarray(reported))
    assert np.all(np.array(grown.features.capacities.as_tuple()) >= needed)
    _compare(sparse, dense, params, grown, crowded[None])
    assert sparse.resize(grown, needed) is grown  # enough: no new capacities, no recompile


def test_capacities_from_headroom_and_limits():
    """Grown capacities hold the need with 25 % headroom in steps of 4, never shrink, and never
    exceed the number of candidates."""
    caps = neighbours.grown(None, (10, 3, 2, 50), (16, 100, 4, 40))
    assert caps.as_tuple() == (16, 4, 4, 40)
    assert neighbours.grown(caps, (12, 3, 2, 10), (16, 100, 4, 40)) is not None
    assert neighbours.grown(caps, (12, 5, 2, 10), (16, 100, 4, 40)).as_tuple() == (16, 8, 4, 40)
