"""KFAC (kfac-jax's Kronecker-factored natural gradient) behind the optimizers' interface
(vmc/optimizers.py). Imported only for `optimization.optimizer: kfac`, after
`vmc.kfac_tags.require()` has checked that kfac-jax (the optional extra) runs here."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import kfac_jax

from vmc import parallel
from vmc.config import OptimizationConfig
from vmc.optimizers import schedule


class RepeatedDense(kfac_jax.RepeatedDenseKroneckerFactored):
    """kfac-jax's block of a dense layer applied to many repeats (electrons, pairs, ...), safe
    when no repeat carries a gradient.

    kfac-jax takes a repeat whose output gradient is exactly zero for a masked one, and scales
    the block by 1 / (mean number of unmasked repeats). A layer whose output never reaches
    log|psi| on this batch has none: the parallel-spin messages of `fire` on a molecule with at
    most one electron per spin (every same-spin pair is the weightless self pair), its
    antiparallel ones when one spin has no electrons, the pair layer of `slater_jastrow` on a
    one-electron system. Its scale is then 1 / 0, the damping it passes on 0, the
    inverse of its (zero) curvature infinite, and 0 * inf = NaN in the preconditioned gradient
    would reach every parameter through the norm constraint. The curvature of such a block is
    exactly zero, as is its gradient, so any finite scale is right: 1 gives the damped
    identity, and these parameters stay where they are.
    """

    def state_dependent_scale(self, state):
        repeats = state.average_repeats.value
        return jnp.where(repeats > 0, 1.0 / jnp.where(repeats > 0, repeats, 1.0), 1.0)


class Kfac:
    """kfac-jax with the network's dense layers auto-registered (repeated dense under vmap).

    kfac-jax traces the loss once per optimizer object and refuses a batch whose pytree
    structure differs from that first trace, and system data carry their electron counts and
    atom lists as static structure. So systems of different sizes (shared training over 4-
    and 6-atom chains, say) each get a kfac-jax optimizer of their own, all stepping ONE state:
    its curvature blocks depend only on the parameters, which every system shares.
    """

    def __init__(self, loss: Callable, config: OptimizationConfig):
        k = config.kfac
        self.config = k
        self._make = lambda: kfac_jax.Optimizer(
            value_and_grad_func=jax.value_and_grad(loss, has_aux=True),
            l2_reg=0.0,
            norm_constraint=k.norm_constraint,
            value_func_has_aux=True,
            value_func_has_rng=True,
            learning_rate_schedule=schedule(k.learning_rate, config.decay_steps),
            curvature_ema=k.curvature_ema,
            inverse_update_period=k.inverse_update_period,
            min_damping=1e-4,
            num_burnin_steps=0,
            estimation_mode="fisher_exact",
            multi_device=True,
            pmap_axis_name=parallel.AXIS,
            # the batch is (system data, walkers): its size is the walkers' leading axis
            batch_size_extractor=lambda batch: batch[1].shape[0],
            layer_tag_to_block_ctor={"repeated_dense": RepeatedDense},
        )
        self._optimizers = {}
        self._momentum = self._damping = None

    def optimizer_for(self, batch) -> kfac_jax.Optimizer:
        """The kfac-jax optimizer of batches of this structure (made on first use; it traces
        the loss on its first step)."""
        structure = jax.tree.structure(batch)
        if structure not in self._optimizers:
            self._optimizers[structure] = self._make()
        return self._optimizers[structure]

    def init(self, params, key, batch):
        self._momentum = parallel.replicate(jnp.asarray(self.config.momentum))
        self._damping = parallel.replicate(jnp.asarray(self.config.damping))
        return self.optimizer_for(batch).init(params, parallel.replicate(key), batch)

    def step(self, params, state, key, batch):
        params, state, stats = self.optimizer_for(batch).step(
            params, state, parallel.device_keys(key), batch=batch, momentum=self._momentum, damping=self._damping
        )
        return params, state, stats["aux"]
