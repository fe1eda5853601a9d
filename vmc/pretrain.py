"""Pretraining: fit the network's orbitals to the Hartree–Fock orbitals (least squares) on
walkers sampled from the HF density, so that optimization starts from a sensible state."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import optax

from vmc import parallel
from vmc.ansatz import Ansatz
from vmc.ansatz.hf import hf_targets, make_hf
from vmc.mcmc import make_mcmc_step


def orbital_loss(ansatz: Ansatz) -> Callable:
    """mean over walkers and determinants of |Phi_net - Phi_HF|^2 (per matrix element)."""

    def one(params, data, r):
        nets = ansatz.orbitals(params, data, r)
        targets = hf_targets(data, r, ansatz.full_determinant)
        total = sum(jnp.sum(jnp.abs(n - t) ** 2) for n, t in zip(nets, targets))
        return total / sum(n.size for n in nets)

    def loss(params, data, walkers):
        return jnp.mean(jax.vmap(one, in_axes=(None, None, 0))(params, data, walkers))

    return loss


def make_pretrain_step(ansatz: Ansatz, mcmc_steps: int, learning_rate: float):
    """(optax transformation, pmapped step(params, opt_state, data, walkers, key, width) ->
    (params, opt_state, walkers, loss, acceptance))."""
    tx = optax.adam(learning_rate)
    sample_hf = make_mcmc_step(make_hf().log_psi, mcmc_steps)
    loss_fn = orbital_loss(ansatz)

    def step(params, opt_state, data, walkers, key, width):
        walkers, pmove, _ = sample_hf({}, data, walkers, key, width)
        loss, grads = jax.value_and_grad(loss_fn)(params, data, walkers)
        grads = parallel.pmean(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, walkers, parallel.pmean(loss), parallel.pmean(pmove)

    return tx, parallel.pmap(step, in_axes=(0, 0, 0, 0, 0, None))
