"""Optimizers of the energy: KFAC (kfac-jax, natural gradient), SPRING (vmc/spring.py) and
Adam (optax).

All expose the same two calls, `init(params, key, batch)` and
`step(params, state, key, batch) -> (params, state, EnergyStats)`, with params and state
replicated over local devices and the batch (system data, walkers) split over them; `key`
(one host key) is split over the devices and reaches the loss, `loss(params, key, batch)`.
The learning rate follows lr0 / (1 + t / decay_steps).
"""

from __future__ import annotations

from typing import Callable, Protocol

import jax
import jax.numpy as jnp
import kfac_jax
import optax

from vmc import parallel
from vmc.config import OptimizationConfig
from vmc.spring import Spring


def schedule(lr0: float, decay_steps: float) -> Callable:
    return lambda t: lr0 / (1.0 + t / decay_steps)


class Optimizer(Protocol):
    def init(self, params, key, batch): ...

    def step(self, params, state, key, batch): ...


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


class Adam:
    """optax Adam on the same gradient, averaged over devices."""

    def __init__(self, loss: Callable, config: OptimizationConfig):
        a = config.adam
        self._tx = optax.adam(schedule(a.learning_rate, config.decay_steps), b1=a.b1, b2=a.b2)

        def step(params, state, key, batch):
            (_, stats), grads = jax.value_and_grad(loss, has_aux=True)(params, key, batch)
            grads = parallel.pmean(grads)
            updates, state = self._tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state, stats

        self._step = parallel.pmap(step, donate_argnums=(0, 1))
        self._init = parallel.pmap(self._tx.init)

    def init(self, params, key, batch):
        return self._init(params)

    def step(self, params, state, key, batch):
        return self._step(params, state, parallel.device_keys(key), batch)


def make_optimizer(loss: Callable, log_psi: Callable, config: OptimizationConfig, chunk: int | None = None) -> Optimizer:
    """The configured optimizer of `loss`; SPRING also differentiates `log_psi` per walker,
    `chunk` walkers at a time (vmc/memory.py; default config.spring.chunk)."""
    if config.optimizer == "spring":
        return Spring(loss, log_psi, config, schedule(config.spring.learning_rate, config.decay_steps), chunk)
    return {"kfac": Kfac, "adam": Adam}[config.optimizer](loss, config)
