"""Single-electron moves of sparse `fire` with low-rank determinant updates (docs/physics.md,
"Single-electron moves").

Moving electron i changes, through the finite-range embedding, only the electrons within the
cutoff c of its old or new position (and i itself): their messages involve a pair with i,
and nothing else about any other electron changes. So a move recomputes the embeddings, the
Jastrow terms and the orbital rows of that affected set T (|T| <= 2 S - 1 for slot capacity
S, vmc/neighbours.py) and nothing else. With A the orbital matrix of a spin block (rows =
electrons), X = A^-1 and the rows T replaced by new rows Phi_T,

    det A' / det A = det M,   M = Phi_T X[:, T]                        (k x k, k = |T|)
    A'^-1 = X - X[:, T] M^-1 (Phi_T - A_T) X                           (Woodbury, O(k n^2))

per determinant, instead of O(n^3). Every sweep starts from a full evaluation (`init`), so
rounding in the updated inverses never accumulates past one sweep.

The state of one walker is a `MoveState`, behind the interface of vmc/ansatz/moves.py;
`moves.full_recomputation` (log psi recomputed after every move) is the reference this path
is tested against.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from vmc.ansatz.determinants import log_sum_dets
from vmc.ansatz.fire import TransferableOrbitals
from vmc.ansatz.moves import SingleMoves
from vmc.neighbours import N_COUNTS, Capacities, atom_pairs, fire_lists, first, limits, partner_pairs


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class MoveState:
    """One walker of sparse `fire` as the moves update it.

    r (n_el, 3) bohr; logpsi: log|psi|; h0 (n_el, D), send and receive (n_el, 2, F) (None
    without a message round): each electron's first embedding and messages terms; p (n_el, Q):
    orbital inputs; jastrow (n_el,): each electron's neural Jastrow term; cusp: the electron
    cusp factor; per non-empty spin block: matrices (K, n_s, n_s) (rows = electrons),
    inverses (K, n_s, n_s) (X[:, o, i]), signs (K,) and logdets (K,) of the determinants.
    """

    r: jax.Array
    logpsi: jax.Array
    h0: jax.Array
    send: jax.Array | None
    receive: jax.Array | None
    p: jax.Array
    jastrow: jax.Array
    cusp: jax.Array
    matrices: tuple
    inverses: tuple
    signs: tuple
    logdets: tuple


def _blocks(data) -> list[tuple[int, int, int]]:
    """(block, first electron, electrons) of the non-empty spin blocks."""
    n, n_up = data.n_electrons, data.n_up
    return [(b, start, size) for b, (start, size) in enumerate(((0, n_up), (n_up, n - n_up))) if size > 0]


def make_single_moves(cfg, initial: Callable, pair_terms: Callable, local: Callable, maps: Callable, row_parts: Callable,
                      cusp: Callable) -> SingleMoves:
    """Low-rank single-electron moves of sparse `fire`, from the haiku stage functions of
    vmc.ansatz.fire.SparseFire (already transformed: f(params, ...))."""

    def messages(params, x, index, spin, r, pairs, send, receive):
        """Summed messages (e, 2, F) of electrons x (e, 3) = r[index] from their pairs."""
        same = spin[pairs.partner] == spin[index][:, None]
        return jnp.sum(pair_terms(params, x, r[pairs.partner], pairs.offset, pairs.valid, send[pairs.partner], receive, same), 1)

    def per_electron(params, h0, m):
        """(p (e, Q), each electron's Jastrow term (e,)): `local` sums the Jastrow over its batch."""
        p, jastrow = jax.vmap(lambda a, b: local(params, a[None], None if b is None else b[None]))(h0, m)
        return p[:, 0], jastrow

    def rows(params, data, b_alpha, x, p, orbital, block):
        """Orbital rows (K, e, n_orb of the block) of electrons x (e, 3) with inputs p (e, Q)."""
        parts = row_parts(params, data, b_alpha, x, orbital.atom, orbital.offset, orbital.valid, block)
        return TransferableOrbitals.combine(parts, p)

    def logpsi(signs, logdets, cusp_value, jastrow):
        _, logabs = log_sum_dets(jnp.prod(jnp.stack(signs), 0), jnp.sum(jnp.stack(logdets), 0))
        return logabs + cusp_value + jnp.sum(jastrow)

    def init(params, data, b_alpha, r):
        n = data.n_electrons
        lists, needed = fire_lists(data, r, cfg.cutoff)
        spin = jnp.arange(n) < data.n_up
        h0, send, receive = initial(params, data, r, spin, lists.en)
        m = None if send is None else messages(params, r, jnp.arange(n), spin, r, lists.ee, send, receive)
        p, jastrow = per_electron(params, h0, m)
        matrices, inverses, signs, logdets = [], [], [], []
        for block, start, size in _blocks(data):
            el = slice(start, start + size)
            a = rows(params, data, b_alpha, r[el], p[el], jax.tree.map(lambda y: y[el], lists.orbital), block)
            sign, logdet = jnp.linalg.slogdet(a)
            matrices.append(a), inverses.append(jnp.linalg.inv(a)), signs.append(sign), logdets.append(logdet)
        c = cusp(params, data, r)
        state = MoveState(r, logpsi(signs, logdets, c, jastrow), h0, send, receive, p, jastrow, c,
                          tuple(matrices), tuple(inverses), tuple(signs), tuple(logdets))
        return state, needed.astype(jnp.int32)

    def move(params, data, b_alpha, state: MoveState, i, x):
        n, feats = data.n_electrons, data.features
        cap = feats.capacities or Capacities(*limits(data))
        spin = jnp.arange(n) < data.n_up
        r = state.r.at[i].set(x)
        index_i = jnp.reshape(i, (1,))

        # the affected set T: i first, then every electron within the cutoff of i before or after
        _, near_before, _ = partner_pairs(state.r[i][None], index_i, state.r, feats.images, data.cell, cfg.cutoff, 1)
        _, near_after, _ = partner_pairs(x[None], index_i, r, feats.images, data.cell, cfg.cutoff, 1)
        rest, rest_valid = first(near_before[0] | near_after[0], 2 * cap.slots - 2)
        t = jnp.concatenate([index_i, rest])
        valid = jnp.concatenate([jnp.ones((1,), bool), rest_valid])
        xt = r[t]

        en, n_en = atom_pairs(x[None], data.atoms, feats.images, data.cell, cfg.cutoff, cap.en)
        h0_i, send_i, receive_i = initial(params, data, x[None], spin[i][None], en)
        h0 = state.h0.at[i].set(h0_i[0])
        send, receive, m = state.send, state.receive, None
        if send is not None:
            send, receive = send.at[i].set(send_i[0]), receive.at[i].set(receive_i[0])
            pairs, others, n_ee = partner_pairs(xt, t, r, feats.images, data.cell, cfg.cutoff, cap.ee)
            m = messages(params, xt, t, spin, r, pairs, send, receive[t])
            n_slots = 1 + jnp.sum(others, -1)
        else:
            n_ee = n_slots = jnp.zeros((1,), jnp.int32)
        p_t, jastrow_t = per_electron(params, h0[t], m)
        orbital, n_orb = atom_pairs(xt, data.atoms, feats.orbital_images, data.cell, feats.orbital_cutoff, cap.orbital, sign=-1.0)
        needed = jnp.stack([jnp.max(c) for c in (n_en, n_ee, n_slots, n_orb)]).astype(jnp.int32)

        # scatter-adds of differences: padding entries repeat an index and add zero
        p = state.p.at[t].add(jnp.where(valid[:, None], p_t - state.p[t], 0))
        jastrow = state.jastrow.at[t].add(jnp.where(valid, jastrow_t - state.jastrow[t], 0))

        matrices, inverses, signs, logdets = [], [], [], []
        k = t.shape[0]
        for b, (block, start, size) in enumerate(_blocks(data)):
            a, inv = state.matrices[b], state.inverses[b]
            phi = rows(params, data, b_alpha, xt, p_t, orbital, block)  # (K, k, n_s)
            mine = valid & (t >= start) & (t < start + size)
            row = jnp.clip(t - start, 0, size - 1)
            delta = jnp.where(mine[None, :, None], phi - a[:, row], 0)
            both = mine[:, None] & mine[None, :]
            ratio_matrix = jnp.where(both[None], jnp.einsum("kao,kob->kab", phi, inv[:, :, row]), jnp.eye(k, dtype=phi.dtype))
            sign, logdet = jnp.linalg.slogdet(ratio_matrix)
            update = jnp.linalg.solve(ratio_matrix, jnp.einsum("kao,koj->kaj", delta, inv))  # (K, k, n_s)
            matrices.append(a.at[:, row].add(delta))
            inverses.append(inv - jnp.einsum("koa,kaj->koj", inv[:, :, row], update))
            signs.append(state.signs[b] * sign)
            logdets.append(state.logdets[b] + logdet)
        c = cusp(params, data, r)
        new = MoveState(r, logpsi(signs, logdets, c, jastrow), h0, send, receive, p, jastrow, c,
                        tuple(matrices), tuple(inverses), tuple(signs), tuple(logdets))
        return new, needed

    return SingleMoves(maps, init, move, N_COUNTS)
