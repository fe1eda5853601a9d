"""Neighbour lists of static capacity for the finite-range `fire` network (docs/physics.md,
"Sparse fire").

Everything `fire` computes about electron i involves only the nuclei and electrons within
its cutoff, and its orbitals only the atom images within the orbital cutoff. These lists
name them, per walker, in arrays of fixed size (a *capacity*), so that one compiled function
serves every walker; the entries past a list's end are padding with `valid = False`, and
every term they enter carries that mask as a factor (an exact zero).

The lists are integer selections made from the current positions (no derivative flows
through them). A term leaves a list only where its smooth cutoff f_c and f_c's first two
derivatives vanish, so the network built on the lists is as smooth as the dense one.

A walker that needs more entries than a capacity holds is never truncated silently: `counts`
reports what each walker needs, the caller compares that with the capacities and, if one is
short, recomputes with larger ones (`grown`), which recompiles (vmc/runner.py).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp

from vmc.geometry import reduce_displacement

HEADROOM = 1.25  # capacities hold 25 % more entries than the walkers they were chosen from ...
QUANTUM = 4  # ... rounded up to a multiple of 4, so that a recompile is rare


@dataclasses.dataclass(frozen=True)
class Capacities:
    """List sizes per electron (static: part of the compiled function's shapes).

    en: (atom, image) pairs within the embedding cutoff; ee: (electron, image) pairs within
    the embedding cutoff; slots: distinct electrons among those pairs, plus the electron
    itself (slot 0); orbital: (atom, image) rows within the orbital cutoff.
    """

    en: int
    ee: int
    slots: int
    orbital: int

    FIELDS = ("en", "ee", "slots", "orbital")

    def as_tuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, f) for f in self.FIELDS)

    def __str__(self) -> str:
        return ", ".join(f"{f} {getattr(self, f)}" for f in self.FIELDS)


N_COUNTS = len(Capacities.FIELDS)  # the length of every `needed` array of list sizes


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class AtomPairs:
    """Per electron (leading axes (..., n_el)): the first `capacity` (atom, image) pairs
    within a radius. atom: (..., C) int; offset: (..., C, 3) bohr, with r_i - R_atom + offset
    the pair's displacement (it holds the image, and so its Bloch phase); valid: (..., C) bool."""

    atom: jax.Array
    offset: jax.Array
    valid: jax.Array


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ElectronPairs:
    """Per electron i: the (j, image) pairs within the cutoff, the self pair (i, i, L = 0)
    excluded, and the distinct electrons they involve.

    slots: (..., S) electron indices, slots[..., 0] = i; slot_valid: (..., S) bool;
    partner: (..., C) electron j of each pair; slot: (..., C) position of j in `slots`;
    offset: (..., C, 3) bohr, with r_i - r_j + offset the pair's displacement; valid: (..., C).
    An image of i itself (a cutoff beyond half the cell) is a pair with j = i, slot 0.
    """

    slots: jax.Array
    slot_valid: jax.Array
    partner: jax.Array
    slot: jax.Array
    offset: jax.Array
    valid: jax.Array


def _reduced(d: jax.Array, cell) -> tuple[jax.Array, jax.Array]:
    """(d reduced into the cell, the lattice vector subtracted); molecules: (d, 0)."""
    if cell is None:
        return d, jnp.zeros_like(d)
    return reduce_displacement(d, cell)


def first(mask: jax.Array, capacity: int) -> tuple[jax.Array, jax.Array]:
    """Indices of the first `capacity` True entries of a 1-d mask (padding: index 0) and
    their validity."""
    (idx,) = jnp.nonzero(mask, size=capacity, fill_value=mask.shape[0])
    valid = idx < mask.shape[0]
    return jnp.where(valid, idx, 0), valid


def _atom_candidates(r: jax.Array, atoms: jax.Array, images: jax.Array, cell, sign: float):
    """d (n, A, L, 3) = reduce(r_i - R_a) + sign * images[L] and the part added to r_i - R_a."""
    d, shift = _reduced(r[:, None, :] - atoms[None, :, :], cell)
    offset = sign * images[None, None, :, :] - shift[:, :, None, :]
    return d[:, :, None, :] + sign * images[None, None, :, :], offset


def atom_pairs(r, atoms, images, cell, radius, capacity: int, sign: float = 1.0) -> tuple[AtomPairs, jax.Array]:
    """(AtomPairs (n_el, capacity), needed (n_el,) counts) of the (atom, image) pairs with
    |reduce(r_i - R_a) + sign * images[L]| < radius; r (n_el, 3), atoms (A, 3), images (n_L, 3).
    A padding entry's displacement is (2 radius, 0, 0): outside the cutoff, away from 0."""
    r = jax.lax.stop_gradient(r)
    d, offset = _atom_candidates(r, atoms, images, cell, sign)
    n_l = images.shape[0]
    inside = (jnp.sum(d * d, -1) < radius**2).reshape(r.shape[0], -1)  # (n, A * n_L)
    idx, valid = jax.vmap(lambda m: first(m, capacity))(inside)
    atom = idx // n_l
    off = jnp.take_along_axis(offset.reshape(r.shape[0], -1, 3), idx[..., None], axis=1)
    far = atoms[atom] - r[:, None, :] + _far(radius, r.dtype)
    return AtomPairs(atom, jnp.where(valid[..., None], off, far), valid), jnp.sum(inside, -1)


def _far(radius, dtype) -> jax.Array:
    return jnp.array([2.0, 0.0, 0.0], dtype) * radius


def partner_pairs(x, index, r, images, cell, radius, capacity: int) -> tuple[ElectronPairs, jax.Array, jax.Array]:
    """The (j, image) pairs of electrons x (e, 3), which are electrons `index` (e,) of the
    walker r (n_el, 3), with |reduce(x_e - r_j) + images[L]| < radius, the self pair
    (index_e, index_e, L = 0) excluded: (ElectronPairs without slots (slots: index (e, 1)),
    others (e, n_el) bool: the electrons j != index_e with an image inside, needed pairs (e,)).
    A padding entry pairs e with itself at a displacement (2 radius, 0, 0), constant and far."""
    x, r = jax.lax.stop_gradient(x), jax.lax.stop_gradient(r)
    e, n, n_l = x.shape[0], r.shape[0], images.shape[0]
    d, shift = _reduced(x[:, None, :] - r[None, :, :], cell)
    d = d[:, :, None, :] + images[None, None, :, :]  # (e, n, n_L, 3)
    offset = images[None, None, :, :] - shift[:, :, None, :]
    itself = index[:, None] == jnp.arange(n)[None, :]  # (e, n)
    self_pair = itself[:, :, None] & (jnp.sum(images**2, -1) == 0)[None, None, :]
    inside = (jnp.sum(d * d, -1) < radius**2) & ~self_pair  # (e, n, n_L)
    idx, valid = jax.vmap(lambda m: first(m, capacity))(inside.reshape(e, -1))
    partner = jnp.where(valid, idx // n_l, index[:, None])
    off = jnp.take_along_axis(offset.reshape(e, -1, 3), idx[..., None], axis=1)
    off = jnp.where(valid[..., None], off, _far(radius, r.dtype))
    pairs = ElectronPairs(index[:, None], jnp.ones((e, 1), bool), partner, jnp.zeros_like(partner), off, valid)
    return pairs, jnp.any(inside, -1) & ~itself, jnp.sum(inside, (1, 2))


def electron_pairs(r, images, cell, radius, capacity: int, slot_capacity: int) -> tuple[ElectronPairs, jax.Array, jax.Array]:
    """(ElectronPairs (n_el, ...), needed pairs (n_el,), needed slots (n_el,)) for
    |reduce(r_i - r_j) + images[L]| < radius; r (n_el, 3)."""
    n = r.shape[0]
    pairs, others, needed = partner_pairs(r, jnp.arange(n), r, images, cell, radius, capacity)
    rest, rest_valid = jax.vmap(lambda m: first(m, slot_capacity - 1))(others)
    slots = jnp.concatenate([jnp.arange(n)[:, None], rest], 1)
    slot_valid = jnp.concatenate([jnp.ones((n, 1), bool), rest_valid], 1)
    # position of each electron in row i's slots (0 for i itself and for absent electrons)
    position = jax.vmap(lambda s, v: jnp.zeros(n, jnp.int32).at[s].max(jnp.where(v, jnp.arange(s.shape[0]), 0).astype(jnp.int32)))(slots, slot_valid)
    slot = jnp.take_along_axis(position, pairs.partner, axis=1)
    needed_slots = 1 + jnp.sum(others, -1)
    return dataclasses.replace(pairs, slots=slots, slot_valid=slot_valid, slot=slot), needed, needed_slots


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FireLists:
    """Every list of one walker: en (embedding cutoff), ee (embedding cutoff), orbital
    (orbital cutoff)."""

    en: AtomPairs
    ee: ElectronPairs
    orbital: AtomPairs


def limits(data) -> tuple[int, ...]:
    """The largest useful capacities of a system (every candidate), in Capacities order.
    (Shapes are read from the last axes: `data` may be replicated over devices.)"""
    n_atoms, n_el = data.atoms.shape[-2], data.n_electrons
    n_l, n_m = data.features.images.shape[-2], data.features.orbital_images.shape[-2]
    return n_atoms * n_l, n_el * n_l, n_el, n_atoms * n_m


def fire_lists(data, r: jax.Array, cutoff: float) -> tuple[FireLists, jax.Array]:
    """(FireLists, needed (4,) int) of one walker r (n_el, 3) bohr (not necessarily wrapped):
    needed holds the largest count per electron of each list, in Capacities order, to be
    compared with the capacities used (data.features.capacities; None: every candidate)."""
    feats = data.features
    cap = feats.capacities or Capacities(*limits(data))
    en, n_en = atom_pairs(r, data.atoms, feats.images, data.cell, cutoff, cap.en)
    ee, n_ee, n_slots = electron_pairs(r, feats.images, data.cell, cutoff, cap.ee, cap.slots)
    orbital, n_orb = atom_pairs(r, data.atoms, feats.orbital_images, data.cell, feats.orbital_cutoff, cap.orbital, sign=-1.0)
    needed = jnp.stack([jnp.max(x) for x in (n_en, n_ee, n_slots, n_orb)])
    return FireLists(en, ee, orbital), needed


def grown(capacities: Capacities | None, needed: tuple[int, ...], limits: tuple[int, ...]) -> Capacities:
    """Capacities that hold `needed` (one count per field, the maximum over walkers) with
    headroom, never below the current ones and never above `limits` (every candidate)."""
    current = (0,) * len(Capacities.FIELDS) if capacities is None else capacities.as_tuple()
    sizes = []
    for have, need, limit in zip(current, needed, limits):
        if need <= have:
            sizes.append(have)
        else:
            sizes.append(max(1, min(limit, QUANTUM * math.ceil(need * HEADROOM / QUANTUM))))
    return Capacities(*sizes)
