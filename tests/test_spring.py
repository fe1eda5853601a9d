"""SPRING (vmc/spring.py) against its formula evaluated directly with numpy, in float64.

The optimizer runs on 2 devices (tests/conftest.py), so its all-to-all over parameter
slices, its Gram matrix summed over devices and its gathered update are all exercised; the
reference holds every walker in one numpy array."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from vmc import parallel
from vmc.config import make_config
from vmc.hamiltonian import log_psi_pair, make_batch_local_energy
from vmc.loss import make_energy_loss
from vmc.optimizers import make_optimizer

TWISTED_CHAIN = {"name": "hydrogen_chain", "supercell": [2, 1, 1], "twists": [[0.25, 0, 0]]}  # complex psi
CLIP = 5.0


def _one_step(wavefunction, system, settings, walkers=8):
    """One SPRING step from a random φ_{t−1} at step count 3 -> (theta before, theta after,
    φ_t, J (N, 2, P), ε (N, 2) centred and clipped, lr_t), all numpy; N walkers."""
    _, ansatz, data, params, r = wavefunction(system, "slater_jastrow", walkers=walkers)
    config = make_config(None, {"optimization.optimizer": "spring", "optimization.decay_steps": 10.0,
                                **{f"optimization.spring.{k}": v for k, v in settings.items()}}).optimization
    local_energies = make_batch_local_energy(ansatz.log_psi, kinetic=ansatz.kinetic)
    optimizer = make_optimizer(make_energy_loss(ansatz.log_psi, local_energies, CLIP), ansatz.log_psi, config)
    batch = parallel.replicate(data), parallel.shard(np.asarray(r))
    replicated = parallel.replicate(params)
    theta, unravel = ravel_pytree(params)
    phi_before = np.random.default_rng(0).normal(size=theta.shape) * 0.1
    state = optimizer.init(replicated, jax.random.PRNGKey(0), batch)
    state = dataclasses.replace(state, phi=parallel.replicate(jnp.asarray(phi_before)), count=parallel.replicate(jnp.asarray(3)))
    new_params, new_state, stats = optimizer.step(replicated, state, jax.random.PRNGKey(1), batch)

    pair = log_psi_pair(ansatz.log_psi)
    jac = jax.jacrev(lambda t: jax.vmap(lambda x: pair(unravel(t), data, x.reshape(-1)))(r))(theta)  # (N, 2, P)
    e_l = np.asarray(stats.local_energy).reshape(-1)  # device-major, as r was sharded
    eps = np.stack([_clipped_centred(e_l.real), _clipped_centred(e_l.imag)], axis=1)
    lr = config.spring.learning_rate / (1 + 3 / config.decay_steps)
    after = ravel_pytree(jax.tree.map(lambda a: a[0], new_params))[0]
    return (np.asarray(theta), np.asarray(after), np.asarray(new_state.phi[0]), np.asarray(jac), eps, lr, phi_before,
            int(new_state.count[0]))


def _clipped_centred(x):
    center = np.median(x)
    spread = np.mean(np.abs(x - center))
    x = np.clip(x, center - CLIP * spread, center + CLIP * spread)
    return x - x.mean()


def _stacked(jac, eps, phase=True):
    """J̄ (2N or N, P) and ε (2N or N,): centred, divided by √N, log|psi| rows then phase rows."""
    n = jac.shape[0]
    parts = [0, 1] if phase else [0]
    j_bar = np.concatenate([(jac[:, k] - jac[:, k].mean(0)) / np.sqrt(n) for k in parts])
    return j_bar, np.concatenate([eps[:, k] / np.sqrt(n) for k in parts])


def _spring(j_bar, eps, phi, damping, momentum):
    rhs = eps - momentum * j_bar @ phi
    return j_bar.T @ np.linalg.solve(j_bar @ j_bar.T + damping * np.eye(len(eps)), rhs) + momentum * phi


@pytest.mark.parametrize("system, max_norm", [("H2", 100.0), (TWISTED_CHAIN, 100.0), (TWISTED_CHAIN, 0.05)])
def test_update_is_the_formula(x64, wavefunction, system, max_norm):
    """φ_t = J̄ᵀ(J̄J̄ᵀ + λI)⁻¹(ε − μJ̄φ_{t−1}) + μφ_{t−1} and θ − η_t min(1, c/|φ_t|) φ_t, from the
    same J and ε in numpy. The chain's psi is complex: its phase rows enter (without them
    the update differs). The last case has the norm constraint active."""
    damping, momentum = 1e-3, 0.9
    theta, after, phi, jac, eps, lr, phi_before, count = _one_step(
        wavefunction, system, {"damping": damping, "momentum": momentum, "max_norm": max_norm})
    want = _spring(*_stacked(jac, eps), phi_before, damping, momentum)
    np.testing.assert_allclose(phi, want, rtol=1e-8, atol=1e-10 * np.abs(want).max())
    scale = min(1.0, max_norm / np.linalg.norm(want))
    assert (scale < 1) == (max_norm < 1)
    np.testing.assert_allclose(after, theta - lr * scale * want, rtol=1e-10, atol=1e-12)
    assert count == 4
    if system == TWISTED_CHAIN:  # complex psi: the phase rows enter
        assert np.abs(jac[:, 1]).max() > 1e-2 and np.abs(eps[:, 1]).max() > 0
        without_phase = _spring(*_stacked(jac, eps, phase=False), phi_before, damping, momentum)
        assert np.linalg.norm(want - without_phase) > 1e-2 * np.linalg.norm(want)


def test_without_momentum_it_is_the_damped_minimum_norm_natural_gradient(x64, wavefunction):
    """μ = 0: φ = (J̄ᵀJ̄ + λI)⁻¹ J̄ᵀ ε, the stochastic-reconfiguration step in parameter space
    (a P x P solve: another formula than SPRING's N x N one)."""
    damping = 1e-3
    _, _, phi, jac, eps, *_ = _one_step(wavefunction, "H2", {"damping": damping, "momentum": 0.0})
    j_bar, e = _stacked(jac, eps)
    want = np.linalg.solve(j_bar.T @ j_bar + damping * np.eye(j_bar.shape[1]), j_bar.T @ e)
    np.testing.assert_allclose(phi, want, rtol=1e-7, atol=1e-9 * np.abs(want).max())

