"""`fire` where a spin channel holds one electron or the whole system does:
the H atom (one electron: no electron–electron pair, an empty neighbour list), the Li atom
(the down channel's one electron has no parallel partner) and H2 stretched beyond the cutoff
(one electron per spin, and again no pair within the cutoff). In float64, sparse against
dense (the reference): log psi, and E_L against the dense network's with its kinetic energy
from jax.hessian; and a whole `vmc run` of the H atom."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY_NETWORKS

from vmc.ansatz import make_ansatz
from vmc.baseline import hartree_fock
from vmc.config import make_config
from vmc.hamiltonian import make_kinetic_energy_hessian, make_local_energy
from vmc.mcmc import init_walkers
from vmc.system_data import make_system_data
from vmc.systems import build_systems, resolve_specs

STRETCHED_H2 = {"atoms": [["H", [0, 0, 0]], ["H", [0, 0, 12.0]]]}  # bohr; the cutoff is 5


def _fire(system_spec, tmp_path, walkers: int = 3):
    """(sparse, dense, data sized to the walkers as the runner sizes it, float64 params, walkers)."""
    settings = {"system": system_spec, "model.name": "fire", "baseline.basis": "sto-3g", "baseline.cache_dir": str(tmp_path / "hf"), **TINY_NETWORKS}
    cfg = make_config(None, settings)
    (system,) = build_systems(resolve_specs(cfg.system))
    elements = sorted(set(system.symbols))
    sparse = make_ansatz(cfg.model, elements)
    dense = make_ansatz(make_config(None, {**settings, "model.fire.implementation": "dense"}).model, elements)
    data = make_system_data(system, *sparse.prepare(system, hartree_fock(system, cfg.baseline)), elements)
    r = jnp.asarray(init_walkers(system, walkers, np.random.default_rng(3), 1.0))
    params = jax.jit(sparse.init)(jax.random.PRNGKey(3), data, r[0])  # jitted: haiku's eager init compiles op by op
    # hk.Embed keeps float32 parameters even in float64 runs: cast, to compare at 1e-8
    params = jax.tree.map(lambda x: x.astype(jnp.float64) + 0.1 * jax.random.normal(jax.random.PRNGKey(1), x.shape, jnp.float64), params)
    needed = jax.jit(jax.vmap(lambda x: sparse.neighbour_counts(data, x)))(r)
    return sparse, dense, sparse.resize(data, np.max(np.asarray(needed), 0)), params, r


@pytest.mark.parametrize("system, n_up, n_down", [("H", 1, 0), ("Li", 2, 1), (STRETCHED_H2, 1, 1)],
                         ids=["H", "Li", "stretched_H2"])
def test_sparse_equals_dense_and_hessian(x64, tmp_path, system, n_up, n_down):
    """Under jit, as the runner calls it (folx's sparse Jacobian of the one-electron cusp
    failed only there), on lists sized from the walkers."""
    sparse, dense, data, params, walkers = _fire(system, tmp_path)
    assert (data.n_up, data.n_down) == (n_up, n_down)
    if system != "Li":
        assert data.features.capacities.ee == 0  # sized from the walkers: no pair to list
    key = jax.random.PRNGKey(0)
    sparse_e = make_local_energy(sparse.log_psi, kinetic=sparse.kinetic)
    reference_e = make_local_energy(dense.log_psi, kinetic=make_kinetic_energy_hessian(dense.log_psi))

    def one(r):
        psi = [jnp.stack(a.log_psi(params, data, r)) for a in (sparse, dense)]
        return psi, [e(params, key, data, r) for e in (sparse_e, reference_e)]

    (s_psi, d_psi), (s_e, ref_e) = jax.jit(jax.vmap(one))(walkers)
    np.testing.assert_allclose(s_psi, d_psi, rtol=1e-10, atol=1e-10)
    assert np.all(np.isfinite(np.asarray(ref_e)))
    np.testing.assert_allclose(s_e, ref_e, rtol=1e-8, atol=1e-8)


def test_hydrogen_atom_run(tmp_path):
    """`vmc run configs/h2.yaml --set system=H --set model.name=fire`, sized down
    (no pretraining, 2 Adam steps of 8 walkers), finishes with a finite energy loosely near
    the exact -1/2 Ha (HF/STO-3G: -0.4666)."""
    from vmc import cli
    from vmc.runs import read_run

    settings = {"system": "H", "model.name": "fire", "baseline.basis": "sto-3g", "baseline.cache_dir": str(tmp_path / "hf"),
                "mcmc.walkers": 8, "mcmc.steps": 2, "mcmc.burn_in": 0, "pretraining.steps": 0, "optimization.steps": 2,
                "optimization.optimizer": "adam", "evaluation.steps": 3, "evaluation.burn_in": 0, **TINY_NETWORKS}
    overrides = [x for key, value in settings.items() for x in ("--set", f"{key}={value}")]
    assert cli.main(["run", "configs/h2.yaml", *overrides, "--out", str(tmp_path / "r")]) == 0
    (record,) = read_run(tmp_path / "r").systems
    assert -1.0 < record.evaluation["energy"] < 0.0, record.evaluation
