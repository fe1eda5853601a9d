"""Jastrow factors: exact electron–electron and electron–nucleus cusps, and a neural term."""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp

from vmc.ansatz.layers import positive
from vmc.geometry import distance, offdiag_distance, pair_displacements


def electron_cusp(data, r: jax.Array) -> jax.Array:
    """-sum_{i<j} c a^2 / (a + r_ij): slope c = 1/4 for parallel and 1/2 for antiparallel spins
    at r_ij = 0 (Kato's cusp conditions), decaying to 0; `a` is learned per spin pairing."""
    n, n_up = data.n_electrons, data.n_up
    d = offdiag_distance(r, data.cell)
    spin = jnp.arange(n) < n_up
    same = spin[:, None] == spin[None, :]
    a_same, a_opp = positive("a_parallel", (), 1.0), positive("a_antiparallel", (), 1.0)
    a = jnp.where(same, a_same, a_opp)
    c = jnp.where(same, 0.25, 0.5)
    pairs = jnp.triu(jnp.ones((n, n), bool), k=1)
    return -jnp.sum(jnp.where(pairs, c * a**2 / (a + d), 0.0))


def nuclear_cusp(data, r: jax.Array, n_elements: int) -> jax.Array:
    """-sum_{i,I} Z_I b r_iI / (b + r_iI): slope -Z_I at the nucleus, which Gaussian orbitals
    lack; `b` is learned per element and bounds the term's range."""
    d = distance(pair_displacements(r, data.atoms), data.cell, safe=True)  # (n_el, n_atoms)
    b = positive("b_nuclear", (n_elements,), 0.5)[data.species]
    return -jnp.sum(data.charges * b * d / (b + d))


class NeuralJastrow(hk.Module):
    """sum_i MLP(h_i): symmetric in the electrons; near zero at initialization."""

    def __init__(self, hidden: int, name: str = "neural_jastrow"):
        super().__init__(name=name)
        self.hidden = hidden

    def __call__(self, h: jax.Array) -> jax.Array:
        x = jnp.tanh(hk.Linear(self.hidden)(h))
        # small, not zero: a zero last layer gives the layer before it an identically zero
        # output gradient, so KFAC would leave that layer untrained until this one moves
        # (vmc.optimizers.RepeatedDense keeps such a block finite)
        out = hk.Linear(1, w_init=hk.initializers.VarianceScaling(1e-4))(x)
        return jnp.sum(out)
