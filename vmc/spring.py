"""SPRING: natural gradient in the space of samples, with momentum (Goldshmidt et al. 2024).

With N walkers over all devices and P parameters,

    J̄  (2N, P): rows d log|psi(r_k)| / dθ and d phase(r_k) / dθ, each centred over the
                walkers and divided by √N (real and imaginary part of d log psi stacked),
    ε  (2N,):   the clipped local energies' real and imaginary parts, centred, divided by √N
                (vmc/loss.py: the same cotangents the gradient of the energy uses),
    φ_t = J̄ᵀ (J̄J̄ᵀ + λI)⁻¹ (ε − μ J̄ φ_{t−1}) + μ φ_{t−1},
    θ_{t+1} = θ_t − η_t φ_t · min(1, max_norm / |φ_t|),   η_t = lr0 / (1 + t / decay_steps).

With μ = 0, φ is the damped minimum-norm solution of the natural-gradient equations
(J̄ᵀJ̄ + λ) φ = J̄ᵀ ε, the stochastic reconfiguration step. The state is φ_{t−1} (one vector
of the parameters' size) and t; nothing depends on the system's shape, so one SPRING
optimizer steps every system of a shared training (see docs/physics.md).

Distribution over devices: each device computes the Jacobian rows of its own walkers (in
chunks of `chunk` walkers, which bounds the memory of the backward passes), then an
all-to-all gives every device ALL walkers' rows for 1/D of the parameters. The Gram matrix is
summed over the devices' parameter slices in float64 and solved on every device (it is
2N x 2N); J̄ φ and J̄ᵀ x are done slice by slice, and φ is gathered back whole.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from vmc import parallel
from vmc.config import OptimizationConfig
from vmc.hamiltonian import log_psi_pair
from vmc.loss import energy_cotangents
from vmc.memory import map_walkers


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SpringState:
    phi: jax.Array  # (P,) the last update direction φ_{t−1}, in the parameters' dtype
    count: jax.Array  # () steps taken (drives the learning-rate schedule)


def walker_gradients(log_psi: Callable, params, data) -> Callable:
    """one(r) -> (2, P): d[log|psi|, phase]/dθ of one walker r (n_el, 3), the parameters
    raveled (ravel_pytree order). The two rows are separate gradients, not one Jacobian: for a
    real psi the phase's is a symbolic zero and costs nothing."""
    flat, unravel = ravel_pytree(params)
    pair = log_psi_pair(log_psi)

    def one(r):
        part = lambda k: jax.grad(lambda p: pair(unravel(p), data, r.reshape(-1))[k])(flat)
        return jnp.stack([part(0), part(1)])

    return one


def sample_jacobian(log_psi: Callable, params, data, walkers: jax.Array, chunk: int | None) -> jax.Array:
    """(B, 2, P) `walker_gradients` of each walker, `chunk` walkers at a time (None: all)."""
    return map_walkers(walker_gradients(log_psi, params, data), walkers, chunk)


def spring_direction(jac: jax.Array, eps: jax.Array, phi: jax.Array, damping: float, momentum: float) -> jax.Array:
    """φ_t from this device's raw Jacobian rows jac (B, 2, P), cotangents eps (B, 2) (centred,
    not yet divided by √N) and φ_{t−1} (P,); under pmap over parallel.AXIS, returns φ_t (P,)
    on every device."""
    devices = jax.lax.psum(1, parallel.AXIS)
    b, _, p = jac.shape
    n = b * devices
    slice_size = -(-p // devices)
    pad = slice_size * devices - p
    rows = jnp.pad(jac, ((0, 0), (0, 0), (0, pad)))
    # every device: all walkers' rows (device-major, like all_gather) for its parameter slice
    rows = jax.lax.all_to_all(rows, parallel.AXIS, split_axis=2, concat_axis=0, tiled=True)
    mine = jax.lax.axis_index(parallel.AXIS)
    phi_slice = jax.lax.dynamic_slice(jnp.pad(phi, (0, pad)), (mine * slice_size,), (slice_size,))
    eps_all = jax.lax.all_gather(eps, parallel.AXIS, tiled=True)  # (N, 2)
    with jax.enable_x64(True):
        f64 = jnp.float64
        rows = rows.astype(f64)
        rows = (rows - jnp.mean(rows, axis=0)) / jnp.sqrt(n)
        a, b_ = rows[:, 0], rows[:, 1]  # log|psi| rows, phase rows (N, slice)
        # A real psi has no phase rows (exactly zero): skip three quarters of the Gram matrix,
        # its cost (N² P) being the step's largest after the local energy.
        ab, bb = jax.lax.cond(jnp.any(b_ != 0), lambda: (a @ b_.T, b_ @ b_.T),
                              lambda: (jnp.zeros((n, n), f64), jnp.zeros((n, n), f64)))
        gram = jax.lax.psum(jnp.block([[a @ a.T, ab], [ab.T, bb]]), parallel.AXIS)
        # Centred rows make the all-ones vector of the log|psi| rows (and of the phase rows) a
        # null vector of J̄ᵀ: adding it to the Gram matrix lifts that eigenvalue from λ to λ + 1
        # without changing J̄ᵀ(·)⁻¹ (exactly), only the conditioning.
        ones = jnp.kron(jnp.eye(2, dtype=f64), jnp.ones((n, n), f64) / n)
        gram = gram + damping * jnp.eye(2 * n, dtype=f64) + ones
        decayed = momentum * phi_slice.astype(f64)
        j_phi = jax.lax.psum(jnp.concatenate([a @ decayed, b_ @ decayed]), parallel.AXIS)
        rhs = jnp.concatenate([eps_all[:, 0], eps_all[:, 1]]).astype(f64) / jnp.sqrt(n) - j_phi
        x = jax.scipy.linalg.cho_solve(jax.scipy.linalg.cho_factor(gram), rhs)
        new_slice = (a.T @ x[:n] + b_.T @ x[n:] + decayed).astype(phi.dtype)
    return jax.lax.all_gather(new_slice, parallel.AXIS, tiled=True)[:p]


class Spring:
    """SPRING behind the optimizers' `init` / `step` (vmc/optimizers.py)."""

    def __init__(self, loss: Callable, log_psi: Callable, config: OptimizationConfig, rate: Callable, chunk: int | None = None):
        """rate(t): the learning rate of step t (optimizers.schedule); chunk: walkers whose
        parameter gradients are computed at once (default: config.spring.chunk)."""
        s = config.spring
        chunk = chunk or s.chunk

        def step(params, state, key, batch):
            data, walkers = batch
            _, stats = loss(params, key, batch)
            d_re, d_im = energy_cotangents(stats.local_energy, config.clip_width)
            jac = sample_jacobian(log_psi, params, data, walkers, chunk)
            phi = spring_direction(jac, jnp.stack([d_re, d_im], axis=1), state.phi, s.damping, s.momentum)
            scale = jnp.minimum(1.0, s.max_norm / (jnp.linalg.norm(phi) + 1e-30))
            flat, unravel = ravel_pytree(params)
            params = unravel(flat - rate(state.count) * scale * phi)
            return params, SpringState(phi, state.count + 1), stats

        self._step = parallel.pmap(step, donate_argnums=(0, 1))
        self._init = parallel.pmap(lambda p: SpringState(jnp.zeros_like(ravel_pytree(p)[0]), jnp.zeros((), jnp.int32)))

    def init(self, params, key, batch):
        return self._init(params)

    def step(self, params, state, key, batch):
        return self._step(params, state, parallel.device_keys(key), batch)
