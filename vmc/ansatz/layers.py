"""Small building blocks shared by the neural ansätze."""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp

from vmc.kfac_tags import tag_walker_independent


def dense(x: jax.Array, size: int, name: str, with_bias: bool = True, w_init=None) -> jax.Array:
    """hk.Linear on the last axis of x (..., d), applied to the leading axes folded into one.

    Folding keeps every dense layer of a walker a "repeated dense" layer with one repeated
    axis, which kfac-jax recognizes (it matches at most two repeated axes).
    """
    lead = x.shape[:-1]
    y = hk.Linear(size, with_bias=with_bias, w_init=w_init, name=name)(x.reshape(-1, x.shape[-1]))
    return y.reshape(*lead, size)


def mlp(x: jax.Array, sizes: list[int], name: str, activate_last: bool = False) -> jax.Array:
    """tanh MLP over the last axis."""
    for i, size in enumerate(sizes):
        x = dense(x, size, name=f"{name}_{i}")
        if i < len(sizes) - 1 or activate_last:
            x = jnp.tanh(x)
    return x


def smooth_cutoff(u: jax.Array) -> jax.Array:
    """f(u) = 1 - 15u^4 + 24u^5 - 10u^6 for u < 1, else 0: value, first and second derivative
    vanish at u = 1 (C^2), so the Laplacian of anything it multiplies stays continuous."""
    u = jnp.clip(u, 0.0, 1.0)
    return 1 - u**4 * (15 - 24 * u + 10 * u**2)


def positive(name: str, shape, init: float | jax.Array) -> jax.Array:
    """A positive parameter (softplus of a free one) initialized to `init`."""
    init = jnp.broadcast_to(jnp.asarray(init, dtype=float), shape)
    # in the precision of the run (haiku's default parameter dtype is float32 even under x64)
    dtype = jnp.asarray(0.0).dtype
    raw = hk.get_parameter(name, shape, dtype=dtype, init=lambda s, d: jnp.log(jnp.expm1(init)).astype(d))
    return jax.nn.softplus(raw)


def walker_independent():
    """Context for layers whose inputs do not depend on the walker (per-system descriptors).

    kfac-jax would take such a layer's leading axis for the walker batch; a generic tag on its
    parameters gives them a diagonal curvature block instead of a dense Kronecker one.
    """
    return hk.custom_getter(lambda next_getter, value, context: tag_walker_independent(next_getter(value)))
