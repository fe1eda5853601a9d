"""Optimizers of the energy: KFAC (kfac-jax, natural gradient) and Adam (optax).

Both expose the same two calls, `init(params, key, batch)` and
`step(params, state, key, batch) -> (params, state, EnergyStats)`, with params and state
replicated over local devices and the batch (system data, walkers) split over them.
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


def schedule(lr0: float, decay_steps: float) -> Callable:
    return lambda t: lr0 / (1.0 + t / decay_steps)


class Optimizer(Protocol):
    def init(self, params, key, batch): ...

    def step(self, params, state, key, batch): ...


class Kfac:
    """kfac-jax with the network's dense layers auto-registered (repeated dense under vmap)."""

    def __init__(self, loss: Callable, config: OptimizationConfig):
        k = config.kfac
        self.config = k
        self._opt = kfac_jax.Optimizer(
            value_and_grad_func=jax.value_and_grad(loss, has_aux=True),
            l2_reg=0.0,
            norm_constraint=k.norm_constraint,
            value_func_has_aux=True,
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
        )
        self._momentum = self._damping = None

    def init(self, params, key, batch):
        self._momentum = parallel.replicate(jnp.asarray(self.config.momentum))
        self._damping = parallel.replicate(jnp.asarray(self.config.damping))
        return self._opt.init(params, parallel.replicate(key), batch)

    def step(self, params, state, key, batch):
        params, state, stats = self._opt.step(
            params, state, parallel.device_keys(key), batch=batch, momentum=self._momentum, damping=self._damping
        )
        return params, state, stats["aux"]


class Adam:
    """optax Adam on the same gradient, averaged over devices."""

    def __init__(self, loss: Callable, config: OptimizationConfig):
        a = config.adam
        self._tx = optax.adam(schedule(a.learning_rate, config.decay_steps), b1=a.b1, b2=a.b2)

        def step(params, state, batch):
            (_, stats), grads = jax.value_and_grad(loss, has_aux=True)(params, batch)
            grads = parallel.pmean(grads)
            updates, state = self._tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state, stats

        self._step = jax.pmap(step, axis_name=parallel.AXIS, donate_argnums=(0, 1))
        self._init = jax.pmap(self._tx.init)

    def init(self, params, key, batch):
        return self._init(params)

    def step(self, params, state, key, batch):
        return self._step(params, state, batch)


def make_optimizer(loss: Callable, config: OptimizationConfig) -> Optimizer:
    return {"kfac": Kfac, "adam": Adam}[config.optimizer](loss, config)
