"""Optimizers of the energy: SPRING (vmc/spring.py, the default), KFAC (vmc/kfac.py, kfac-jax:
an optional extra) and Adam (optax).

All expose the same two calls, `init(params, key, batch)` and
`step(params, state, key, batch) -> (params, state, EnergyStats)`, with params and state
replicated over local devices and the batch (system data, walkers) split over them; `key`
(one host key) is split over the devices and reaches the loss, `loss(params, key, batch)`.
The learning rate follows lr0 / (1 + t / decay_steps).
"""

from __future__ import annotations

from typing import Callable, Protocol

import jax
import optax

from vmc import parallel
from vmc.config import OptimizationConfig
from vmc.kfac_tags import require as require_kfac
from vmc.spring import Spring


def schedule(lr0: float, decay_steps: float) -> Callable:
    return lambda t: lr0 / (1.0 + t / decay_steps)


class Optimizer(Protocol):
    def init(self, params, key, batch): ...

    def step(self, params, state, key, batch): ...


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
    if config.optimizer == "kfac":
        require_kfac()
        from vmc.kfac import Kfac  # kfac-jax, the optional extra: imported only for KFAC

        return Kfac(loss, config)
    return Adam(loss, config)
