"""Ansätze on real systems: forward Laplacian = Hessian, and twisted boundary conditions."""

import jax
import numpy as np
import pytest

from vmc.hamiltonian import make_kinetic_energy, make_kinetic_energy_hessian, make_local_energy

CHAIN = {"name": "hydrogen_chain", "supercell": [2, 1, 1], "twists": [[0.25, 0, 0]]}
NO_CUTOFF = {"model.fire.cutoff": None, "model.fire.implementation": "dense"}
FACTORED = {"model.fire.orbital_mlp": "factored", "model.fire.implementation": "dense"}
DENSE = {"model.fire.implementation": "dense"}


@pytest.mark.parametrize("model, system, overrides", [
    ("hf", "LiH", {}), ("slater_jastrow", "H2", {}), ("hf", CHAIN, {}), ("slater_jastrow", CHAIN, {}),
    ("fire", "LiH", {}), ("fire", CHAIN, {}), ("fire", "LiH", NO_CUTOFF), ("fire", CHAIN, NO_CUTOFF), ("fire", CHAIN, FACTORED),
    # the dense network with a cutoff: implied by the sparse cases here and sparse == dense
    # (tests/test_fire_sparse.py), so only in the long suite
    pytest.param("fire", "LiH", DENSE, marks=pytest.mark.slow), pytest.param("fire", CHAIN, DENSE, marks=pytest.mark.slow),
])
def test_forward_laplacian_equals_hessian(x64, wavefunction, model, system, overrides):
    """The kinetic energy the ansatz uses (its own for sparse `fire`, folx's forward Laplacian
    otherwise) against the full Hessian of its log psi."""
    _, ansatz, data, params, r = wavefunction(system, model, overrides=overrides)
    folx_k = jax.jit(ansatz.kinetic or make_kinetic_energy(ansatz.log_psi))(params, data, r[0])
    hess_k = jax.jit(make_kinetic_energy_hessian(ansatz.log_psi))(params, data, r[0])
    np.testing.assert_allclose(folx_k, hess_k, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("model, overrides", [("hf", {}), ("slater_jastrow", {}), ("fire", {}), ("fire", NO_CUTOFF), ("fire", FACTORED)])
def test_twisted_boundary_conditions(x64, wavefunction, model, overrides):
    """psi(r_i + L) = e^{i k.L} psi(r) for a simulation-cell vector L; E_L unchanged."""
    system, ansatz, data, params, r = wavefunction(CHAIN, model, overrides=overrides)
    r = r[0]
    k = system.twist_cartesian
    log_psi, local_energy = jax.jit(ansatz.log_psi), jax.jit(make_local_energy(ansatz.log_psi, kinetic=ansatz.kinetic))
    for i, n in [(0, (1, 0, 0)), (2, (-2, 1, 0)), (3, (0, 0, 1))]:
        shift = np.array(n, dtype=float) @ system.lattice
        moved = r.at[i].add(shift)
        (p0, l0), (p1, l1) = log_psi(params, data, r), log_psi(params, data, moved)
        assert l1 == pytest.approx(float(l0), abs=1e-9)
        expected = np.angle(np.exp(1j * (float(p0) + k @ shift)))
        assert np.angle(np.exp(1j * float(p1))) == pytest.approx(expected, abs=1e-8)
        e0, e1 = local_energy(params, jax.random.PRNGKey(0), data, r), local_energy(params, jax.random.PRNGKey(0), data, moved)
        assert complex(e1) == pytest.approx(complex(e0), abs=1e-8)
    assert abs(k @ system.lattice[0]) > 1  # the twist makes the phase test non-trivial
