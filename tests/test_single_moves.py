"""Single-electron moves (`mcmc.moves: single`): the low-rank updates of sparse `fire` against
a full recomputation, and the sampled distribution against exact densities."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmc import stats
from vmc.ansatz.moves import full_recomputation
from vmc.geometry import wrap
from vmc.mcmc import adapt_width, make_single_electron_step
from vmc.system_data import SystemData

LONG_CHAIN = {"name": "hydrogen_chain", "supercell": [8, 1, 1], "twists": [[0.3, 0, 0]]}  # 16 e, general twist
LIH_CELL = {"name": "lih_rocksalt", "lattice_constant": 7.674, "twists": [[0.5, 0.25, 0]]}

CASES = [
    # a cutoff short against the cell: each move's affected set is a strict subset
    pytest.param(LONG_CHAIN, {"model.fire.cutoff": 3.0}, id="chain-16e-twist"),
    pytest.param(LIH_CELL, {"model.determinants": 2}, id="lih-cell-twist-2det"),
    pytest.param("LiH", {}, id="lih-molecule"),
    pytest.param("H", {}, id="h-atom-one-spin-block"),
]


def _setup(wavefunction, system, overrides):
    _, ansatz, data, params, walkers = wavefunction(system, "fire", walkers=2, seed=3, overrides=overrides)
    # hk.Embed keeps float32 parameters even in float64 runs; moved off their initial values
    params = jax.tree.map(lambda x: x.astype(jnp.float64) + 0.1 * jax.random.normal(jax.random.PRNGKey(1), x.shape, jnp.float64), params)
    needed = jax.vmap(lambda r: ansatz.neighbour_counts(data, r))(walkers)
    return ansatz, ansatz.resize(data, np.max(np.asarray(needed), 0)), params, walkers


@pytest.mark.parametrize("system, overrides", CASES)
def test_low_rank_updates_equal_full_recomputation(x64, wavefunction, system, overrides):
    """60 moves of one walker, without the sweep's fresh start, about 60 % accepted: every
    proposal's log|psi| equals the network's to 1e-10, and at the end the updated matrices,
    inverses and determinants equal a full evaluation's to 1e-10 (relative to the largest entry)."""
    ansatz, data, params, walkers = _setup(wavefunction, system, overrides)
    moves = ansatz.single_moves
    context = moves.context(params, data)
    init, move = jax.jit(moves.init), jax.jit(moves.move)
    log_psi = jax.jit(lambda r: ansatz.log_psi(params, data, r)[1])
    state, _ = init(params, data, context, walkers[0])
    key, accepted, affected = jax.random.PRNGKey(0), 0, []
    for _ in range(60):
        key, k_i, k_x, k_u = jax.random.split(key, 4)
        i = int(jax.random.randint(k_i, (), 0, data.n_electrons))
        x = wrap(state.r[i] + 0.4 * jax.random.normal(k_x, (3,), jnp.float64), data.cell)
        proposal, _ = move(params, data, context, state, i, x)
        assert abs(float(proposal.logpsi - log_psi(proposal.r))) < 1e-10
        changed = np.any(np.asarray(proposal.p != state.p), axis=1)
        affected.append(int(np.sum(changed)))
        if float(jax.random.uniform(k_u)) < 0.6:
            state, accepted = proposal, accepted + 1
    assert 20 < accepted < 50
    assert min(affected) >= 1  # every move changed at least its own electron's orbital input
    if system is LONG_CHAIN:  # the update touched a strict subset of the electrons
        assert max(affected) < data.n_electrons
    fresh, _ = init(params, data, context, state.r)
    for got, want in [(state.matrices, fresh.matrices), (state.inverses, fresh.inverses)]:
        for a, b in zip(got, want):
            assert float(jnp.max(jnp.abs(a - b))) < 1e-10 * float(jnp.max(jnp.abs(b)))
    for a, b in zip(state.logdets, fresh.logdets):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    for a, b in zip(state.signs, fresh.signs):
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-10)
    np.testing.assert_allclose(state.logpsi, fresh.logpsi, rtol=0, atol=1e-10)


@pytest.mark.parametrize("system, overrides", CASES[:1])
def test_sampler_walks_the_same_path_as_full_recomputation(x64, wavefunction, system, overrides):
    """Two sweeps with the same keys: the low-rank sampler and the full recomputation accept
    the same moves, end at the same walkers and report the same neighbour-list needs."""
    ansatz, data, params, walkers = _setup(wavefunction, system, overrides)
    fast = jax.jit(make_single_electron_step(ansatz.single_moves, 2))
    slow = jax.jit(make_single_electron_step(full_recomputation(ansatz.log_psi, ansatz.neighbour_counts), 2))
    got = fast(params, data, walkers, jax.random.PRNGKey(5), 0.3)
    want = slow(params, data, walkers, jax.random.PRNGKey(5), 0.3)
    np.testing.assert_allclose(got[0], want[0], rtol=0, atol=1e-12)
    assert float(got[1]) == float(want[1]) and 0.2 < float(got[1]) < 1.0
    np.testing.assert_array_equal(got[2], want[2])


def test_sweeps_sample_independent_hydrogenic_electrons(x64):
    """|psi|^2 = exp(-2 r_1) exp(-4 r_2): <r_1> = 3/2 and <r_2> = 3/4 bohr, each within 4
    autocorrelation-corrected errors, so every electron of a sweep is moved with its own ratio."""
    data = SystemData(atoms=jnp.zeros((1, 3)), charges=jnp.ones(1), species=jnp.zeros(1, jnp.int32), cell=None,
                      ewald=None, hf=None, features=None, n_up=1, n_down=1)
    log_psi = lambda params, data, r: (jnp.zeros(()), -jnp.linalg.norm(r[0]) - 2 * jnp.linalg.norm(r[1]))  # noqa: E731
    sample = jax.jit(make_single_electron_step(full_recomputation(log_psi), 3))
    walkers = jnp.asarray(np.random.default_rng(0).normal(size=(256, 2, 3)))
    key, width, means, accept = jax.random.PRNGKey(0), 0.5, [], []
    for t in range(250):
        key, sub = jax.random.split(key)
        walkers, pmove, _ = sample(None, data, walkers, sub, width)
        width = adapt_width(width, float(pmove), 0.5)
        if t >= 50:
            means.append(np.mean(np.linalg.norm(np.asarray(walkers), axis=-1), 0))
            accept.append(float(pmove))
    means = np.array(means)
    for electron, exact in [(0, 1.5), (1, 0.75)]:
        mean, err = stats.mean_and_error(means[:, electron])
        assert abs(mean - exact) < 4 * err, (electron, mean, err)
    assert 0.35 < np.mean(accept) < 0.65
