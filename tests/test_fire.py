"""The `fire` ansatz: antisymmetry, finite range, smoothness at the cutoff, transferability,
and training (pretraining, KFAC blocks, fine-tuning across supercell sizes).

Its forward Laplacian and Bloch condition are tested with the other ansätze in
test_wavefunction.py.
"""

import haiku as hk
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import vmc
from vmc import checkpoint, parallel
from vmc.ansatz import fire, fire_sparse
from vmc.config import make_config
from vmc.hamiltonian import make_batch_local_energy, make_local_energy, potential_energy
from vmc.loss import make_energy_loss
from vmc.optimizers import make_optimizer

CHAIN = {"name": "hydrogen_chain", "supercell": [2, 1, 1], "twists": [[0.25, 0, 0]]}


def _phase_and_logabs(ansatz, params, data, r):
    phase, logabs = jax.jit(ansatz.log_psi)(params, data, r)
    return complex(np.exp(1j * float(phase))), float(logabs)


@pytest.mark.parametrize("system", ["LiH", CHAIN])
def test_antisymmetry(x64, wavefunction, system):
    """Swapping two same-spin electrons flips the sign (phase + pi), |psi| unchanged."""
    _, ansatz, data, params, r = wavefunction(system, "fire")
    r = r[0]
    sign0, log0 = _phase_and_logabs(ansatz, params, data, r)
    for i, j in [(0, 1), (data.n_up, data.n_up + 1)]:
        swapped = r.at[jnp.array([i, j])].set(r[jnp.array([j, i])])
        sign1, log1 = _phase_and_logabs(ansatz, params, data, swapped)
        assert log1 == pytest.approx(log0, abs=1e-10)
        assert sign1 == pytest.approx(-sign0, abs=1e-10)
    # an opposite-spin swap is not a symmetry: the check above is not vacuous
    swapped = r.at[jnp.array([0, data.n_up])].set(r[jnp.array([data.n_up, 0])])
    assert abs(_phase_and_logabs(ansatz, params, data, swapped)[1] - log0) > 1e-6


@pytest.mark.parametrize("overrides", [{}, {"model.fire.cutoff": None, "model.fire.implementation": "dense"}])
def test_continuous_across_cell_corners(x64, wavefunction, overrides):
    """psi is continuous where an electron leaves the simulation cell through a corner and
    re-enters at the opposite one: the orbital image sums must reach the atoms near the
    origin from the far corner (here across the 20-bohr vacuum of the chain)."""
    system, ansatz, data, params, r = wavefunction(CHAIN, "fire", overrides=overrides)
    corner = np.ones(3) @ system.lattice
    for sign in [(1, 1, 1), (1, -1, 1), (-1, 1, -1)]:
        step = 1e-7 * np.array(sign)
        base = np.where(np.array(sign) > 0, 1.0, 0.0) @ system.lattice  # a corner the step leaves through
        before = _phase_and_logabs(ansatz, params, data, r[0].at[0].set(base - step))
        after = _phase_and_logabs(ansatz, params, data, r[0].at[0].set(base + step))
        assert after[1] == pytest.approx(before[1], abs=1e-5), sign
        assert after[0] == pytest.approx(before[0], abs=1e-5), sign
    assert np.isfinite(_phase_and_logabs(ansatz, params, data, r[0].at[0].set(corner - 1e-3))[1])


def _embedding(cutoff, rounds=1):
    """The embedding network alone, h (n_el, embedding_dim), at the tiny test sizes."""
    cfg = make_config(None, {"model.fire.embedding_dim": 8, "model.fire.filter_dim": 4, "model.fire.n_gaussians": 4,
                             "model.fire.cutoff": cutoff, "model.fire.message_passing_rounds": rounds,
                             "model.fire.implementation": "dense"}).model.fire
    return hk.without_apply_rng(hk.transform(lambda data, r: fire.FiniteRangeEmbedding(cfg, n_elements=2)("dense", data, r)))


@pytest.mark.parametrize("system, direction", [("LiH", (0.6, 0.8, 0.0)), (CHAIN, (0.0, 1.0, 0.0))])
def test_embedding_is_local(x64, wavefunction, system, direction):
    """Moving electron j anywhere beyond the cutoff c from electron i (and from all of i's
    periodic images) leaves h_i unchanged; moving it within c changes h_i. For the chain the
    direction is across the vacuum, where the nearest image is 20 bohr away."""
    cutoff = 3.0
    _, _, data, _, r = wavefunction(system, "fire", overrides={"model.fire.cutoff": cutoff})
    embed = _embedding(cutoff)
    r = r[0].at[0].set(jnp.array([0.1, 0.2, 0.3]))
    u = jnp.array(direction)
    params = embed.init(jax.random.PRNGKey(1), data, r)

    def h_at(s):  # electron 3 (opposite spin to 0 in both systems) at distance s from electron 0
        return embed.apply(params, data, r.at[3].set(r[0] + s * u))

    far_a, far_b = h_at(cutoff + 0.01), h_at(cutoff + 2.5)
    np.testing.assert_array_equal(far_a[0], far_b[0])
    near_a, near_b = h_at(cutoff - 1.0), h_at(cutoff - 0.5)
    assert np.max(np.abs(near_a[0] - near_b[0])) > 1e-6


def test_receptive_field_grows_with_rounds(x64, wavefunction):
    """With two message-passing rounds, j at 1.5 c from i reaches h_i through an electron k
    within c of both, and does not once k is moved away."""
    cutoff = 3.0
    _, _, data, _, r = wavefunction("LiH", "fire", overrides={"model.fire.cutoff": cutoff})
    embed = _embedding(cutoff, rounds=2)
    ex = jnp.array([1.0, 0.0, 0.0])
    # electron 2 far from everyone, so electron 1 is the only possible relay
    r = r[0].at[0].set(jnp.zeros(3)).at[1].set(0.75 * cutoff * ex).at[2].set(jnp.array([0.0, -3 * cutoff, 0.0]))
    params = embed.init(jax.random.PRNGKey(1), data, r)
    h = lambda r: embed.apply(params, data, r)[0]  # noqa: E731
    relayed = [h(r.at[3].set(s * cutoff * ex)) for s in (1.5, 1.6)]
    assert np.max(np.abs(relayed[0] - relayed[1])) > 1e-8
    r = r.at[1].set(-2.0 * cutoff * ex)  # k out of reach of j
    isolated = [h(r.at[3].set(s * cutoff * ex)) for s in (1.5, 1.6)]
    np.testing.assert_array_equal(isolated[0], isolated[1])


def _c1_cutoff(u):
    u = jnp.clip(u, 0.0, 1.0)
    return 1 - u**2 * (3 - 2 * u)


@pytest.mark.parametrize("cutoff_function", ["c2", "c1"])
def test_local_energy_continuous_across_cutoff(x64, wavefunction, monkeypatch, cutoff_function):
    """E_L stays finite and continuous while electron j crosses the cutoff sphere of electron i:
    its jump over [c - delta, c + delta] shrinks in proportion to delta. The same check on a
    cutoff that is only C^1 (a jump in the Laplacian) must fail, so the check has teeth."""
    if cutoff_function == "c1":  # wherever the (sparse, default) network applies the cutoff
        monkeypatch.setattr(fire, "smooth_cutoff", _c1_cutoff)
        monkeypatch.setattr(fire_sparse, "smooth_cutoff", _c1_cutoff)
    cutoff = 3.0
    _, ansatz, data, params, r = wavefunction("LiH", "fire", seed=2, overrides={"model.fire.cutoff": cutoff})
    e_l = jax.jit(lambda r: make_local_energy(ansatz.log_psi, kinetic=ansatz.kinetic)(params, jax.random.PRNGKey(0), data, r).real)
    r = r[0]
    u = jnp.array([0.0, 0.6, 0.8])
    at = lambda s: float(e_l(r.at[3].set(r[0] + s * u)))  # noqa: E731
    values = {s: at(s) for s in np.linspace(cutoff - 0.2, cutoff + 0.2, 41)}
    assert all(np.isfinite(v) for v in values.values())
    jump = {delta: abs(at(cutoff + delta) - at(cutoff - delta)) for delta in (1e-2, 1e-5)}
    continuous = jump[1e-5] < 0.01 * jump[1e-2] + 1e-9
    assert continuous == (cutoff_function == "c2"), jump


LIH_CRYSTAL = {"name": "lih_rocksalt", "lattice_constant": 7.674}


@pytest.mark.parametrize("supercells", [
    [[1, 1, 1], [2, 1, 1]],
    pytest.param([[2, 2, 2], [3, 3, 3]], marks=pytest.mark.slow),
])
def test_same_parameters_on_systems_of_different_size(wavefunction, supercells):
    """Parameters initialized on the LiH molecule evaluate LiH crystals of several sizes: the
    parameter tree depends only on hyperparameters and the element set. (Local energies of
    crystals are checked in test_wavefunction.py.)"""
    elements = {"model.elements": ["H", "Li"]}
    _, ansatz, data, params, r = wavefunction("LiH", "fire", overrides=elements)
    shapes = jax.tree.map(jnp.shape, params)
    assert np.isfinite(_phase_and_logabs(ansatz, params, data, r[0])[1])
    for supercell in supercells:
        _, ansatz_c, data_c, params_c, r_c = wavefunction(dict(LIH_CRYSTAL, supercell=supercell), "fire", overrides=elements)
        assert jax.tree.map(jnp.shape, params_c) == shapes, supercell
        assert r_c.shape[1] == 4 * int(np.prod(supercell))
        assert np.isfinite(_phase_and_logabs(ansatz_c, params, data_c, r_c[0])[1]), supercell


@pytest.mark.kfac
@pytest.mark.parametrize("orbital_mlp", ["joint", "factored"])
def test_kfac_registers_dense_layers(wavefunction, orbital_mlp):
    """Every weight matrix of `fire` applied per electron, per pair or per (electron, atom,
    image) lands in a Kronecker-factored (repeated) dense block of kfac-jax; the descriptor
    maps, which do not depend on the walker, get diagonal blocks."""
    overrides = {"model.fire.orbital_mlp": orbital_mlp, "model.fire.implementation": "sparse" if orbital_mlp == "joint" else "dense"}
    _, ansatz, data, params, r = wavefunction(CHAIN, "fire", walkers=4, overrides=overrides)
    loss = make_energy_loss(ansatz.log_psi, make_batch_local_energy(ansatz.log_psi, kinetic=ansatz.kinetic), clip_width=5.0)
    optimizer = make_optimizer(loss, ansatz.log_psi, make_config(None, {"optimization.optimizer": "kfac"}).optimization)
    batch = parallel.replicate(data), parallel.shard(np.asarray(r))
    optimizer.init(parallel.replicate(params), jax.random.PRNGKey(0), batch)
    estimator = optimizer.optimizer_for(batch)._estimator
    block_of = jax.tree.map(lambda i: type(estimator.blocks[int(i)]), estimator.params_block_index)
    weights = {"/".join(str(getattr(k, "key", k)) for k in path): block
               for path, block in jax.tree_util.tree_leaves_with_path(block_of) if path[-1].key == "w"}
    per_walker = {name: block for name, block in weights.items() if "descriptor_maps" not in name}
    per_system = {name: block for name, block in weights.items() if "descriptor_maps" in name}
    assert len(per_walker) >= 10 and len(per_system) >= 4
    import kfac_jax

    dense_blocks = (kfac_jax.DenseTwoKroneckerFactored, kfac_jax.RepeatedDenseKroneckerFactored)
    assert not {name for name, block in per_walker.items() if not issubclass(block, dense_blocks)}
    assert all(issubclass(block, kfac_jax.NaiveDiagonal) for block in per_system.values()), per_system


@pytest.mark.parametrize("name", [pytest.param("kfac", marks=pytest.mark.kfac), "spring"])
def test_optimizer_shares_one_state_across_system_sizes(wavefunction, name):
    """Shared training steps ONE optimizer state over chains of 2 and 6 electrons in turn
    (their system data differ in static structure: kfac-jax needs an optimizer per structure
    behind one state, SPRING's state is one parameter-sized vector). The local energy is the
    potential alone: the curvature depends on log psi only, and the kinetic energy's
    compilation per shape would dominate the test."""
    systems = [wavefunction(dict(CHAIN, supercell=[n, 1, 1]), "fire", walkers=4) for n in (1, 3)]

    def potential_energies(params, key, data, walkers):
        return jax.vmap(potential_energy, in_axes=(None, 0))(data, walkers) + 0j

    loss = make_energy_loss(systems[0][1].log_psi, potential_energies, clip_width=5.0)
    optimizer = make_optimizer(loss, systems[0][1].log_psi, make_config(None, {"optimization.optimizer": name}).optimization)
    batches = [(parallel.replicate(data), parallel.shard(np.asarray(r))) for _, _, data, _, r in systems]
    params = parallel.replicate(systems[0][3])
    state = optimizer.init(params, jax.random.PRNGKey(0), batches[0])
    for t, i in enumerate([0, 1, 0, 1]):
        before = jax.tree.map(np.asarray, params)  # the step donates params
        params, state, stats = optimizer.step(params, state, jax.random.PRNGKey(t), batches[i])
        assert np.isfinite(float(stats.energy[0])), (t, i)
        moved = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - b))), params, before))
        assert max(moved) > 0, (t, i)
    assert int((state.step_counter if name == "kfac" else state.count)[0]) == 4


CHAIN_RUN = {
    "system": {"name": "hydrogen_chain", "supercell": [1, 1, 1]}, "seed": 1,
    "baseline": {"basis": "sto-3g"},
    "model": {"name": "fire", "fire": {"embedding_dim": 8, "filter_dim": 4, "n_gaussians": 4, "orbital_dim": 4,
                                       "descriptor_hidden": 8, "jastrow_hidden": 8, "mlp_layers": 1}},
    "mcmc": {"walkers": 32, "burn_in": 5, "steps": 3},
    "pretraining": {"steps": 5},
    "optimization": {"steps": 4, "optimizer": "adam"},
    "evaluation": {"steps": 5, "burn_in": 2},
    "checkpoint": {"every": 4, "keep": 2},
}


def test_pretrain_train_and_fine_tune_to_a_larger_supercell(tmp_path):
    """Pretraining and training on a 2-atom chain cell, then the same parameters fine-tune the
    4-atom supercell: only the network parameters cross over. Adam: `fire` with KFAC is
    tested above and in test_spin_channels.py, and compiles for minutes per shape."""
    import h5py

    small = vmc.run(CHAIN_RUN, out=tmp_path / "small", evaluation={"steps": 0})  # one evaluation (below) is enough
    ckpt = checkpoint.list_checkpoints(small / "checkpoints")[0]
    large = vmc.run(CHAIN_RUN, out=tmp_path / "large", params_from=ckpt, pretraining={"steps": 0},
                    system={"name": "hydrogen_chain", "supercell": [2, 1, 1]})
    for run_dir in (small, large):
        with h5py.File(run_dir / "energies.h5", "r") as f:
            (name,) = list(f["systems"])
            g = f[f"systems/{name}"]
            assert g.attrs["n_electrons"] == (2 if run_dir == small else 4)
            assert np.all(np.isfinite(g["train"]["energy"])) and g["train"].shape == (4,)
            if run_dir == large:
                assert np.isfinite(g["eval/energy"].attrs["energy"])
