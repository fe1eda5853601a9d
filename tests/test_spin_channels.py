"""Spin channels with one electron or none: H2 (one electron per spin), the H atom and H2
with spin +-2 (no electron of one spin). Every ansatz builds its system data, samples,
pretrains and trains with KFAC, and the bare HF determinant reproduces the UHF energy of H.
"""

import jax
import numpy as np
import pytest

from vmc import parallel
from vmc.config import make_config
from vmc.evaluation import make_eval_step
from vmc.hamiltonian import make_batch_local_energy, potential_energy
from vmc.loss import make_energy_loss
from vmc.mcmc import make_mcmc_step
from vmc.optimizers import make_optimizer
from vmc.pretrain import orbital_loss
from vmc.stats import mean_and_error

H2_SPIN_UP = {"atoms": [["H", [0, 0, 0]], ["H", [0, 0, 1.4]]], "spin": 2}
H2_SPIN_DOWN = dict(H2_SPIN_UP, spin=-2)


def _potential_energies(params, key, data, walkers):
    """A stand-in for the local energies in the KFAC tests: the curvature and the layer
    registration depend only on log psi, and the kinetic energy's forward Laplacian would
    dominate the compile time."""
    return jax.vmap(potential_energy, in_axes=(None, 0))(data, walkers) + 0j


def _kfac_steps(ansatz, data, params, r, n_steps):
    """n_steps KFAC steps (default settings) on fixed walkers r; params (host) after each."""
    loss = make_energy_loss(ansatz.log_psi, _potential_energies, clip_width=5.0)
    optimizer = make_optimizer(loss, ansatz.log_psi, make_config(None, {"optimization.optimizer": "kfac"}).optimization)
    batch = parallel.replicate(data), parallel.shard(np.asarray(r))
    params = parallel.replicate(params)
    state = optimizer.init(params, jax.random.PRNGKey(0), batch)
    history = []
    for t in range(n_steps):
        params, state, stats = optimizer.step(params, state, jax.random.PRNGKey(t), batch)
        assert np.isfinite(float(stats.energy[0])), t
        history.append(jax.tree.map(lambda a: np.asarray(a[0]), params))
    return history


def _names(tree):
    return {jax.tree_util.keystr(path): leaf for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.mark.kfac
def test_fire_kfac_trains_h2_with_one_electron_per_spin(wavefunction):
    """H2 has no same-spin pair but the weightless self pairs, so the parallel-spin message
    layers of `fire` never reach log|psi|. kfac-jax masks every one of their repeats; their
    blocks must still give finite (zero) updates instead of NaN in every parameter."""
    _, ansatz, data, params, r = wavefunction("H2", "fire", walkers=4)
    before = _names(params)
    after = [_names(p) for p in _kfac_steps(ansatz, data, params, r, n_steps=2)]
    for step in after:
        assert not [k for k, v in step.items() if not np.all(np.isfinite(v))]
    parallel_messages = [k for k in before if "parallel" in k and "antiparallel" not in k]
    assert len(parallel_messages) == 5  # pair (w, b), send, receive; the parallel cusp
    for k in parallel_messages:
        np.testing.assert_array_equal(after[-1][k], before[k])
    assert np.max(np.abs(after[-1]["['embedding/h0']['w']"] - before["['embedding/h0']['w']"])) > 0


@pytest.mark.parametrize("system, model, kfac", [
    ("H", "hf", False), ("H", "slater_jastrow", False), (H2_SPIN_UP, "fire", False), (H2_SPIN_DOWN, "hf", False),
    pytest.param("H", "slater_jastrow", True, marks=pytest.mark.kfac),
], ids=["H-hf", "H-slater_jastrow", "H2_spin2-fire", "H2_spin-2-hf", "H-slater_jastrow-kfac"])
def test_empty_spin_channel(wavefunction, system, model, kfac):
    """A system without electrons of one spin: HF baseline, orbitals (an empty block), log psi,
    local energies, the pretraining loss and its gradient, all finite; and a KFAC step (its
    pair layer never reaches log psi of one electron). fire's KFAC blocks with no gradient
    are tested on H2 above: a KFAC step here would double this test's time."""
    sys_, ansatz, data, params, r = wavefunction(system, model, walkers=4)
    assert sys_.n_up * sys_.n_down == 0 and sys_.n_up + sys_.n_down == data.n_electrons
    blocks = ansatz.orbitals(params, data, r[0])
    assert [b.shape[1:] for b in blocks] == [(data.n_up, data.n_up), (data.n_down, data.n_down)]
    e_l = jax.jit(make_batch_local_energy(ansatz.log_psi, kinetic=ansatz.kinetic))(params, jax.random.PRNGKey(0), data, r)
    assert np.all(np.isfinite(np.asarray(e_l)))
    loss, grads = jax.jit(jax.value_and_grad(orbital_loss(ansatz)))(params, data, r)
    assert np.isfinite(float(loss)) and all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    if kfac:
        (trained,) = _kfac_steps(ansatz, data, params, r, n_steps=1)
        assert all(np.all(np.isfinite(p)) for p in jax.tree.leaves(trained))


def test_hf_energy_of_hydrogen_atom(wavefunction):
    """VMC of the bare HF determinant of H (no spin-down electron) reproduces PySCF's UHF
    energy, -0.49928 Ha in cc-pVDZ (exact -1/2), within 4 standard errors (seed fixed)."""
    from pyscf import gto, scf

    uhf = scf.UHF(gto.M(atom="H 0 0 0", basis="cc-pVDZ", spin=1, verbose=0)).kernel()
    _, ansatz, data, params, r = wavefunction("H", "hf", walkers=2048, overrides={"baseline.basis": "cc-pVDZ"})
    local_energy = make_batch_local_energy(ansatz.log_psi, kinetic=ansatz.kinetic)
    burn_in = make_eval_step(make_mcmc_step(ansatz.log_psi, 40), local_energy)
    step = make_eval_step(make_mcmc_step(ansatz.log_psi, 4), local_energy)
    data, walkers = parallel.replicate(data), parallel.shard(np.asarray(r))
    keys = jax.random.split(jax.random.PRNGKey(0), 81)
    walkers, *_ = burn_in(params, data, walkers, parallel.device_keys(keys[0]), 0.5)
    energies = []
    for key in keys[1:]:
        walkers, _, energy, *_ = step(params, data, walkers, parallel.device_keys(key), 0.5)
        energies.append(float(energy[0]))
    mean, error = mean_and_error(np.array(energies))
    assert error < 2.5e-3, error
    assert abs(mean - uhf) < 4 * error, (mean, error, uhf)
