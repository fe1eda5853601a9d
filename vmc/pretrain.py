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
from vmc.memory import map_walkers


def orbital_loss(ansatz: Ansatz, batch: int | None = None) -> Callable:
    """loss(params, data, walkers (B, n_el, 3)): mean over walkers and determinants of
    |Phi_net - Phi_HF|^2 (per matrix element). batch: walkers whose orbitals (and, in the
    gradient, backward pass) are computed at once (None: all; vmc/memory.py)."""

    def one(params, data, r):
        nets = ansatz.orbitals(params, data, r)
        targets = hf_targets(data, r, ansatz.full_determinant)
        total = sum(jnp.sum(jnp.abs(n - t) ** 2) for n, t in zip(nets, targets))
        return total / sum(n.size for n in nets)

    def loss(params, data, walkers):
        return jnp.mean(map_walkers(lambda r: one(params, data, r), walkers, batch, remat=True))

    return loss


def make_pretrain_step(ansatz: Ansatz, mcmc_steps: int, learning_rate: float, batch: int | None = None,
                       sampling_batch: int | None = None):
    """(optax transformation, pmapped step(params, opt_state, data, walkers, key, width) ->
    (params, opt_state, walkers, loss, acceptance)). batch, sampling_batch: walkers at once in
    the orbital fit and in sampling the HF density (vmc/memory.py)."""
    tx = optax.adam(learning_rate)
    sample_hf = make_mcmc_step(make_hf().log_psi, mcmc_steps, batch=sampling_batch)
    loss_fn = orbital_loss(ansatz, batch)

    def step(params, opt_state, data, walkers, key, width):
        walkers, pmove, _ = sample_hf({}, data, walkers, key, width)
        loss, grads = jax.value_and_grad(loss_fn)(params, data, walkers)
        grads = parallel.pmean(grads)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, walkers, parallel.pmean(loss), parallel.pmean(pmove)

    return tx, parallel.pmap(step, in_axes=(0, 0, 0, 0, 0, None))
