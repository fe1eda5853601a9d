"""Evaluation: parameters frozen, sample and average the local energy."""

from __future__ import annotations

from typing import Callable

import jax

from vmc import parallel
from vmc.loss import energy_stats


def make_eval_step(sample: Callable, batch_local_energy: Callable):
    """pmapped step(params, data, walkers, key, width) -> (walkers, acceptance, mean E_L,
    variance, needed neighbour-list sizes (see vmc.mcmc.make_mcmc_step))."""

    def step(params, data, walkers, key, width):
        walkers, pmove, needed = sample(params, data, walkers, key, width)
        stats = energy_stats(batch_local_energy(params, jax.random.fold_in(key, 1), data, walkers))
        return walkers, parallel.pmean(pmove), stats.energy, stats.variance, parallel.pmax(needed)

    return parallel.pmap(step, in_axes=(0, 0, 0, 0, None))
