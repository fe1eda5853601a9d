"""Ansätze on real systems: forward Laplacian = Hessian, and twisted boundary conditions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmc.ansatz import make_ansatz
from vmc.baseline import hartree_fock
from vmc.config import make_config
from vmc.hamiltonian import make_kinetic_energy, make_kinetic_energy_hessian, make_local_energy
from vmc.mcmc import init_walkers
from vmc.system_data import make_system_data
from vmc.systems import build_systems, resolve_specs

CHAIN = {"name": "hydrogen_chain", "supercell": [2, 1, 1], "twists": [[0.25, 0, 0]]}


def setup(system_spec, model, tmp_path, seed=0):
    cfg = make_config(None, {"system": system_spec, "model.name": model, "baseline.basis": "sto-3g",
                             "baseline.cache_dir": str(tmp_path), "model.slater_jastrow.hidden": 8})
    (system,) = build_systems(resolve_specs(cfg.system))
    elements = sorted(set(system.symbols))
    ansatz = make_ansatz(cfg.model, elements)
    data = make_system_data(system, *ansatz.prepare(system, hartree_fock(system, cfg.baseline)), elements)
    r = jnp.asarray(init_walkers(system, 2, np.random.default_rng(seed), 1.0))
    params = ansatz.init(jax.random.PRNGKey(seed), data, r[0])
    return system, ansatz, data, params, r


@pytest.mark.parametrize("model, system", [("hf", "LiH"), ("slater_jastrow", "H2"), ("hf", CHAIN), ("slater_jastrow", CHAIN)])
def test_forward_laplacian_equals_hessian(x64, tmp_path, model, system):
    _, ansatz, data, params, r = setup(system, model, tmp_path)
    folx_k = make_kinetic_energy(ansatz.log_psi)(params, data, r[0])
    hess_k = make_kinetic_energy_hessian(ansatz.log_psi)(params, data, r[0])
    np.testing.assert_allclose(folx_k, hess_k, rtol=1e-8, atol=1e-8)


@pytest.mark.parametrize("model", ["hf", "slater_jastrow"])
def test_twisted_boundary_conditions(x64, tmp_path, model):
    """psi(r_i + L) = e^{i k.L} psi(r) for a simulation-cell vector L; E_L unchanged."""
    system, ansatz, data, params, r = setup(CHAIN, model, tmp_path)
    r = r[0]
    k = system.twist_cartesian
    for i, n in [(0, (1, 0, 0)), (2, (-2, 1, 0)), (3, (0, 0, 1))]:
        shift = np.array(n, dtype=float) @ system.lattice
        moved = r.at[i].add(shift)
        (p0, l0), (p1, l1) = ansatz.log_psi(params, data, r), ansatz.log_psi(params, data, moved)
        assert l1 == pytest.approx(float(l0), abs=1e-9)
        expected = np.angle(np.exp(1j * (float(p0) + k @ shift)))
        assert np.angle(np.exp(1j * float(p1))) == pytest.approx(expected, abs=1e-8)
        e0, e1 = make_local_energy(ansatz.log_psi)(params, data, r), make_local_energy(ansatz.log_psi)(params, data, moved)
        assert complex(e1) == pytest.approx(complex(e0), abs=1e-8)
    assert abs(k @ system.lattice[0]) > 1  # the twist makes the phase test non-trivial
