"""The memory plan (vmc/memory.py): the upper estimate of the local energy's memory is above
XLA's own figure, the batch follows from the budget, the split local energy is the same as the
whole, and on a device too small for its walkers every phase (sampling, pretraining, local
energy, SPRING's Jacobian) splits them so that XLA's own figure for it fits, with the same
results as unsplit."""

import h5py
import jax
import numpy as np
import pytest

from vmc import memory
from vmc.hamiltonian import make_batch_local_energy

CHAIN = {"name": "hydrogen_chain", "supercell": [2, 1, 1], "twists": [[0.25, 0, 0]]}  # complex, periodic


@pytest.mark.parametrize("system, model", [
    ("LiH", "fire"),
    (CHAIN, "fire"),
    ("LiH", "slater_jastrow"),
], ids=["lih-sparse", "chain-sparse", "lih-slater-jastrow"])
def test_estimate_is_above_what_xla_assigns(wavefunction, system, model):
    """The estimate that lets small runs skip the measurement must not be below the truth:
    per walker, above XLA's temporaries for a batch of walkers."""
    _, ansatz, data, params, r = wavefunction(system, model, walkers=3)
    estimate = memory.estimate_per_walker(ansatz.log_psi, params, data, r[0])
    energies = make_batch_local_energy(ansatz.log_psi, None, kinetic=ansatz.kinetic)
    assert estimate * 3 >= memory.measure(lambda p, d, w: energies(p, jax.random.PRNGKey(0), d, w), params, data, r) > 0


def test_choose_batch_from_budget():
    mib = 2**20
    never = lambda i, b: pytest.fail("measured although the estimate fits")  # noqa: E731
    # everything fits: all walkers at once, up to MAX_BATCH, without compiling anything
    assert memory.choose_batch(16, [mib], never, 2**30) == memory.PhaseMemory(None, mib, False, 2**30)
    assert memory.choose_batch(4 * memory.MAX_BATCH, [mib], never, 2**30).batch == memory.MAX_BATCH
    # the largest system's estimate does not fit: that system is measured at the capped batch
    asked = []

    def measure(i, b):
        asked.append((i, b))
        return b * 3 * mib

    chosen = memory.choose_batch(1000, [mib, 10 * mib, 2 * mib], measure, 100 * mib)
    assert asked == [(1, memory.MAX_BATCH)]
    assert chosen == memory.PhaseMemory(33, 3 * mib, True, 100 * mib)  # 128 * 100 // 384
    # measured to fit after all
    assert memory.choose_batch(64, [10 * mib], measure, 300 * mib) == memory.PhaseMemory(None, 3 * mib, True, 300 * mib)
    # one walker at a time is the least
    assert memory.choose_batch(8, [2**30], lambda i, b: b * 2**40, 2**30).batch == 1


def test_auto_batch_splits_the_run_and_changes_no_energy(tmp_path, monkeypatch):
    """A run whose device is too small for its walkers' local energies at once: auto measures,
    records the split in energies.h5, and the split local energies equal the unsplit ones."""
    from conftest import TINY_NETWORKS
    from vmc import parallel
    from vmc.api import build_config
    from vmc.runner import Run

    settings = {"system": "H2", "model.name": "fire", "baseline.basis": "sto-3g", "precision": "float64",
                "baseline.cache_dir": str(tmp_path / "hf"), "mcmc.walkers": 16, **TINY_NETWORKS,
                # no optimizer: SPRING's rows alone would exceed this test's tiny device (see below)
                "optimization.steps": 0}
    assert build_config(None, settings).local_energy_batch == "auto"
    # the same parameters, data and walkers as the run below (same seed), to measure them first
    probe = Run(build_config(None, {**settings, "local_energy_batch": 1}), tmp_path / "probe")
    params, data = parallel.unreplicate(probe.state.params), parallel.unreplicate(probe.data[0])
    n = probe.n_per_device
    walkers = parallel.unshard(probe.state.walkers[0])[:n]
    whole = make_batch_local_energy(probe.ansatz.log_psi, None, kinetic=probe.ansatz.kinetic)
    total = memory.measure(lambda p, d, w: whole(p, jax.random.PRNGKey(0), d, w), params, data, walkers)
    probe.close()

    budget = 5 * total // (2 * n)  # 2.5 walkers' worth
    monkeypatch.setattr(memory, "device_memory", lambda: int(budget / memory.SHARE) + 1)
    run = Run(build_config(None, settings), tmp_path / "run")
    assert run.trainer.memory.phases["local energy"] == memory.PhaseMemory(2, -(-total // n), True, budget)
    with h5py.File(tmp_path / "run" / "energies.h5") as f:
        assert (f.attrs["local_energy_batch"], f.attrs["local_energy_bytes_per_walker"]) == (2, -(-total // n))
        assert f.attrs["local_energy_bytes_measured"] and f.attrs["local_energy_budget_bytes"] == budget

    key = jax.random.PRNGKey(1)
    split = run.trainer.local_energy(params, key, data, walkers)
    np.testing.assert_allclose(np.asarray(split), np.asarray(whole(params, key, data, walkers)), rtol=0, atol=1e-10)
    run.close()


def test_every_phase_fits_a_device_too_small_for_all_walkers_at_once(tmp_path, monkeypatch):
    """A device 10 % too small for the pretraining gradient of its walkers at once (the
    phase that needed 168 GiB for LiH 2x2x2 at 4096 walkers): pretraining, the local energy
    and the loss gradient split the walkers, XLA's temporaries of every phase's program as
    split stay within the device while unsplit pretraining does not, and the split
    pretraining loss, its gradient and sampling's log psi equal the unsplit ones."""
    import jax.numpy as jnp

    from conftest import TINY_NETWORKS
    from vmc import parallel
    from vmc.api import build_config
    from vmc.hamiltonian import log_psi_pair
    from vmc.pretrain import orbital_loss
    from vmc.runner import Run

    settings = {"system": "LiH", "model.name": "fire", "baseline.basis": "sto-3g", "precision": "float64",
                "baseline.cache_dir": str(tmp_path / "hf"), "mcmc.walkers": 32, "optimization.optimizer": "adam",
                **TINY_NETWORKS}
    probe = Run(build_config(None, settings), tmp_path / "probe")
    params, data = parallel.unreplicate(probe.state.params), parallel.unreplicate(probe.data[0])
    n = probe.n_per_device
    walkers = jnp.asarray(parallel.unshard(probe.state.walkers[0])[:n])
    ansatz = probe.ansatz
    probe.close()
    pair = log_psi_pair(ansatz.log_psi)

    def program(name, batch):
        """The phase's program over one device's walkers, `batch` at a time."""
        if name == "sampling":
            return lambda p, w: memory.map_walkers(lambda r: ansatz.log_psi(p, data, r)[1], w, batch)
        if name == "pretraining":
            return lambda p, w: jax.grad(orbital_loss(ansatz, batch))(p, data, w)
        if name == "local energy":
            energies = make_batch_local_energy(ansatz.log_psi, batch, kinetic=ansatz.kinetic)
            return lambda p, w: energies(p, jax.random.PRNGKey(0), data, w)
        assert name == "gradient"
        return lambda p, w: jax.grad(lambda q: jnp.sum(memory.map_walkers(lambda r: pair(q, data, r.reshape(-1))[0], w, batch, remat=True)))(p)

    device = int(0.9 * memory.measure(program("pretraining", None), params, walkers))
    monkeypatch.setattr(memory, "device_memory", lambda: device)
    run = Run(build_config(None, settings), tmp_path / "run")
    plan = run.trainer.memory
    assert set(plan.phases) == {"sampling", "pretraining", "local energy", "gradient"}
    for name in ("pretraining", "local energy", "gradient"):
        assert plan.batch(name) is not None and plan.batch(name) < n, name
    for name in plan.phases:
        assert memory.measure(program(name, plan.batch(name)), params, walkers) <= device, name
    with h5py.File(tmp_path / "run" / "energies.h5") as f:
        assert f.attrs["pretraining_batch"] == plan.batch("pretraining")

    split, unsplit = orbital_loss(ansatz, plan.batch("pretraining")), orbital_loss(ansatz)
    np.testing.assert_allclose(split(params, data, walkers), unsplit(params, data, walkers), rtol=1e-12)
    for g1, g2 in zip(jax.tree.leaves(jax.grad(split)(params, data, walkers)), jax.tree.leaves(jax.grad(unsplit)(params, data, walkers))):
        # the chunks sum in another order: equal to the rounding of the leaf's own dtype
        # (some of haiku's leaves stay float32 under x64)
        np.testing.assert_allclose(g1, g2, rtol=1e-9 if g1.dtype == np.float64 else 1e-5, atol=1e-12)
    np.testing.assert_allclose(program("sampling", 3)(params, walkers), program("sampling", None)(params, walkers), rtol=1e-12)
    run.close()
