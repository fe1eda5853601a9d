"""Distances and displacement features for molecules and periodic simulation cells.

For a crystal every feature must be periodic in the simulation cell and smooth, because the
wavefunction built from it must satisfy the (twisted) periodic boundary conditions and have
a continuous Laplacian. We use the smooth periodic metric of DeepSolid-type networks: with
fractional coordinates f = d A^-1 of a displacement d,

    |d|_p^2 = ( |sum_a sin(2 pi f_a) a_a|^2 + |sum_a (1 - cos(2 pi f_a)) a_a|^2 ) / (2 pi)^2,

which equals |d|^2 to leading order near d = 0 (so cusp conditions carry over), is periodic,
and vanishes only on lattice points.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Cell:
    """Simulation cell of a crystal: lattice vectors as rows (bohr), their inverse, and the twist.

    lattice: (3, 3); inv_lattice: (3, 3) with f = r @ inv_lattice; twist: (3,) k_s in bohr^-1.
    """

    lattice: jax.Array
    inv_lattice: jax.Array
    twist: jax.Array

    @staticmethod
    def make(lattice: np.ndarray, twist_cartesian: np.ndarray) -> "Cell":
        return Cell(jnp.asarray(lattice), jnp.asarray(np.linalg.inv(lattice)), jnp.asarray(twist_cartesian))


def wrap(r: jax.Array, cell: Cell | None) -> jax.Array:
    """Positions (..., 3) mapped into the simulation cell (unchanged for molecules)."""
    if cell is None:
        return r
    f = r @ cell.inv_lattice
    return (f - jnp.floor(f)) @ cell.lattice


def reduce_displacement(d: jax.Array, cell: Cell) -> tuple[jax.Array, jax.Array]:
    """d (..., 3) minus the lattice vector L (..., 3) that brings its fractional coordinates
    into [-1/2, 1/2]; returns (d - L, L). A sum over images of d then only needs the lattice
    vectors within (its range + `lattice.cell_reach`)."""
    f = d @ cell.inv_lattice
    shift = jnp.round(f) @ cell.lattice
    return d - shift, shift


def periodic_vector(d: jax.Array, cell: Cell) -> jax.Array:
    """Smooth periodic stand-in for a displacement d (..., 3): sum_a sin(2 pi f_a) a_a / 2pi."""
    s = jnp.sin(2 * jnp.pi * (d @ cell.inv_lattice))
    return s @ cell.lattice / (2 * jnp.pi)


def _norm(v: jax.Array) -> jax.Array:
    # sqrt has an infinite derivative at 0; the epsilon-free form is kept where the caller
    # guarantees d != 0 (pairs i != j), and `safe_norm` is used otherwise.
    return jnp.sqrt(jnp.sum(v * v, axis=-1))


def safe_norm(v: jax.Array) -> jax.Array:
    """|v| over the last axis with finite derivatives at v = 0.

    sqrt(|v|^2 + tiny): differs from |v| only below ~1e-15 bohr, and unlike a `where` guard
    it is a plain elementwise function, so folx keeps per-electron sparsity through it.
    """
    return jnp.sqrt(jnp.sum(v * v, axis=-1) + 1e4 * jnp.finfo(v.dtype).tiny)


def distance(d: jax.Array, cell: Cell | None, safe: bool = False) -> jax.Array:
    """|d| for molecules, the smooth periodic distance for crystals; d (..., 3) -> (...)."""
    norm = safe_norm if safe else _norm
    if cell is None:
        return norm(d)
    f = 2 * jnp.pi * (d @ cell.inv_lattice)
    s = jnp.sin(f) @ cell.lattice
    c = (1 - jnp.cos(f)) @ cell.lattice
    return norm(jnp.concatenate([s, c], axis=-1)) / (2 * jnp.pi)


def displacement_features(d: jax.Array, cell: Cell | None) -> jax.Array:
    """Features of displacements d (..., 3): the vector itself for molecules, and for crystals
    the periodic vector; shape (..., 3)."""
    return d if cell is None else periodic_vector(d, cell)


def pair_displacements(x: jax.Array, y: jax.Array) -> jax.Array:
    """x_i - y_j for x (n, 3), y (m, 3) -> (n, m, 3)."""
    return x[:, None, :] - y[None, :, :]


def offdiag_distance(r: jax.Array, cell: Cell | None) -> jax.Array:
    """Electron–electron distances (n, n) with zeros on the diagonal and derivatives that
    stay finite there (the diagonal is masked, not differentiated through sqrt(0))."""
    n = r.shape[0]
    d = pair_displacements(r, r) + jnp.eye(n)[..., None]  # keep the diagonal away from 0
    return distance(d, cell) * (1 - jnp.eye(n))
