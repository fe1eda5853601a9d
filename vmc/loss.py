"""The energy loss and its gradient for complex or real wavefunctions.

    dE/dtheta = 2 Re < (E_L - <E_L>)^* ... >  ->  we return half of it:
    g = < Re(dE_L) d log|psi| + Im(dE_L) d phase >,   dE_L = clip(E_L) - mean(clip(E_L)),
which is what stochastic reconfiguration pairs with the Fisher matrix (natural gradient
S^-1 g). The gradient is defined by a custom JVP so that kfac-jax sees the network's
[log|psi|, phase] registered as the mean of a normal predictive distribution: its Fisher is
then Re <d log psi^* d log psi>, the metric of the wavefunction (as in FermiNet and DeepErwin).
Local energies are clipped to median +- width * mean absolute deviation for the gradient
only; the reported energy is the plain mean.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from vmc import parallel
from vmc.hamiltonian import log_psi_pair
from vmc.kfac_tags import tag_predictive_distribution
from vmc.memory import map_walkers


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EnergyStats:
    """Per-step statistics over all walkers of all devices (hartree, whole simulation cell)."""

    energy: jax.Array  # mean Re E_L
    variance: jax.Array  # variance of Re E_L
    imaginary: jax.Array  # mean Im E_L (zero within noise for a good wavefunction)
    local_energy: jax.Array  # (walkers per device,) complex E_L of this device


def clip_around_median(x: jax.Array, width: float) -> jax.Array:
    """x clipped to median +- width * mean |x - median|, median over all devices' walkers."""
    everything = parallel.gather_flat(x)
    center = jnp.median(everything)
    spread = jnp.mean(jnp.abs(everything - center))
    return jnp.clip(x, center - width * spread, center + width * spread)


def centered(x: jax.Array) -> jax.Array:
    return x - parallel.pmean(jnp.mean(x))


def energy_cotangents(e_l: jax.Array, clip_width: float) -> tuple[jax.Array, jax.Array]:
    """(Re, Im) of the clipped local energies, centred over all devices' walkers: the weights
    of d log|psi| and d phase in the energy gradient (and SPRING's right-hand side)."""
    return centered(clip_around_median(e_l.real, clip_width)), centered(clip_around_median(e_l.imag, clip_width))


def energy_stats(e_l: jax.Array) -> EnergyStats:
    energy = parallel.pmean(jnp.mean(e_l.real))
    variance = parallel.pmean(jnp.mean((e_l.real - energy) ** 2))
    return EnergyStats(energy, variance, parallel.pmean(jnp.mean(e_l.imag)), e_l)


def make_energy_loss(log_psi: Callable, batch_local_energy: Callable, clip_width: float, gradient_batch: int | None = None) -> Callable:
    """loss(params, key, batch=(data, walkers)) -> (energy, EnergyStats), with the gradient
    above; `key` reaches the local energy (kfac-jax's `value_func_has_rng` convention).

    Must run under pmap with axis name `parallel.AXIS`; walkers (per device) (B, n_el, 3).
    gradient_batch: walkers whose log psi is differentiated at once (None: all; vmc/memory.py).
    kfac-jax finds the network's layers in the traced loss, so KFAC keeps None.
    """
    pair = log_psi_pair(log_psi)

    def batch_pair(params, data, walkers):
        return map_walkers(lambda r: pair(params, data, r.reshape(-1)), walkers, gradient_batch, remat=True)

    @jax.custom_jvp
    def loss(params, key, batch):
        data, walkers = batch
        stats = energy_stats(batch_local_energy(params, key, data, walkers))
        return stats.energy, stats

    @loss.defjvp
    def loss_jvp(primals, tangents):
        params, key, batch = primals
        data, walkers = batch
        energy, stats = loss(params, key, batch)
        d_re, d_im = energy_cotangents(stats.local_energy, clip_width)
        out, out_tangent = jax.jvp(lambda p: batch_pair(p, data, walkers), (params,), (tangents[0],))
        tag_predictive_distribution(out)  # (B, 2): [log|psi|, phase]
        grad = jnp.mean(out_tangent[:, 0] * d_re + out_tangent[:, 1] * d_im)
        zeros = jax.tree.map(jnp.zeros_like, stats)
        return (energy, stats), (grad, zeros)

    return loss
