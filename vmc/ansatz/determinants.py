"""Determinants and their sums, for real and complex orbital matrices, in log form."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def phase_of(sign: jax.Array) -> jax.Array:
    """Angle of a sign: 0 or pi for real signs (with zero derivative), arg(sign) for complex."""
    if jnp.iscomplexobj(sign):
        return jnp.angle(sign)
    return jnp.where(sign < 0, jnp.pi, 0.0).astype(sign.dtype)


def slogdet(matrices: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(sign, log|det|) of (..., n, n) matrices; an empty (n = 0) block has det 1."""
    if matrices.shape[-1] == 0:
        shape = matrices.shape[:-2]
        return jnp.ones(shape, matrices.dtype), jnp.zeros(shape, jnp.real(matrices).dtype)
    return jnp.linalg.slogdet(matrices)


def log_sum_dets(signs: jax.Array, logdets: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(phase, log|sum_k sign_k exp(logdet_k)|) of K determinants given as (K,) arrays."""
    if signs.shape[0] == 1:
        return phase_of(signs[0]), logdets[0]
    shift = jax.lax.stop_gradient(jnp.max(logdets))
    # every determinant zero (e.g. an electron beyond every orbital row's cutoff): psi = 0,
    # log|psi| = -inf as for K = 1, which MCMC leaves at its next move; -inf - -inf would be NaN
    shift = jnp.where(jnp.isfinite(shift), shift, 0.0)
    total = jnp.sum(signs * jnp.exp(logdets - shift))
    # |total| from its real and imaginary parts: folx's rule for abs of a complex number casts
    # complex to real, which JAX 0.10 deprecates (an error in a coming release)
    magnitude = jnp.hypot(jnp.real(total), jnp.imag(total)) if jnp.iscomplexobj(total) else jnp.abs(total)
    return phase_of(total), shift + jnp.log(magnitude)


def spin_blocked_log_psi(up: jax.Array, down: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(phase, log|psi|) of psi = sum_k det(up_k) det(down_k); up (K, n_up, n_up), down (K, n_dn, n_dn)."""
    s_up, l_up = slogdet(up)
    s_dn, l_dn = slogdet(down)
    return log_sum_dets(s_up * s_dn, l_up + l_dn)


def full_log_psi(matrices: jax.Array) -> tuple[jax.Array, jax.Array]:
    """(phase, log|psi|) of psi = sum_k det(M_k) for full (K, n_el, n_el) orbital matrices."""
    signs, logdets = slogdet(matrices)
    return log_sum_dets(signs, logdets)
