"""Single-electron moves behind one interface (docs/physics.md, "Single-electron moves").

The sampler (vmc.mcmc.make_single_electron_step) keeps a per-walker state that an ansatz
updates move by move; sparse `fire` updates it in O(k n^2) (vmc/ansatz/fire_moves.py), and
`full_recomputation` serves every other ansatz by recomputing log psi.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from vmc.neighbours import N_COUNTS


@dataclasses.dataclass(frozen=True)
class SingleMoves:
    """What the single-electron sampler needs of an ansatz, for one walker.

    context(params, data) -> what every walker's moves share (computed once per call).
    init(params, data, context, r (n_el, 3)) -> (state, needed (n_counts,)): a full evaluation;
        state.r is r and state.logpsi log|psi(r)|.
    move(params, data, context, state, i, x (3,)) -> (state, needed): the state with electron
        i at x (bohr, wrapped), whether or not the move is then accepted.
    needed: neighbour-list sizes the evaluated configurations needed (vmc/neighbours.py).
    """

    context: Callable[..., Any]
    init: Callable[..., tuple[Any, jax.Array]]
    move: Callable[..., tuple[Any, jax.Array]]
    n_counts: int


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class RecomputedState:
    """A walker r (n_el, 3), bohr, and its log|psi|."""

    r: jax.Array
    logpsi: jax.Array


def full_recomputation(log_psi: Callable, counts: Callable | None = None) -> SingleMoves:
    """Single-electron moves of any ansatz, log psi recomputed in full after each (O(n^3)
    per move): for ansätze without a low-rank path, and the reference the low-rank moves are
    tested against."""

    def needed(data, r):
        return jnp.zeros((0,), jnp.int32) if counts is None else counts(data, r).astype(jnp.int32)

    def init(params, data, context, r):
        return RecomputedState(r, log_psi(params, data, r)[1]), needed(data, r)

    def move(params, data, context, state, i, x):
        return init(params, data, context, state.r.at[i].set(x))

    return SingleMoves(lambda params, data: None, init, move, 0 if counts is None else N_COUNTS)
