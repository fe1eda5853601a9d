"""Kinetic energy of sparse `fire` from per-electron Jacobians (docs/physics.md, "Sparse fire").

The kinetic local energy needs, for every electron coordinate x_c, d log psi / dx_c and the
sum of d^2 log psi / dx_c^2. folx's forward Laplacian of the whole log psi carries all 3 n_el
tangents through every intermediate, because it cannot see that the neighbour lists make
electron i's row of the orbital matrix depend on a few electrons only. Here each stage is
differentiated electron by electron, with folx, on the coordinates it depends on:

1. h0_j, what j sends and its own term of what it receives: on r_j alone (3 tangents).
2. The message of each pair (i, j) within the cutoff: on r_i and r_j (6 tangents; 3 for a
   pair of i with its own image), with the stage-1 results entering as folx arrays that
   carry their Jacobians. Summed over j, the messages of i get their Jacobian on the S
   distinct electrons among its pairs (slots, 3 S coordinates, i's own first).
3. h_i, its orbital input p_i and its Jastrow term, from h0_i and the summed messages: on
   the 3 S slot coordinates, the pair-sized work being done in 2.
4. The orbital row Phi_i(r_i, p_i), p_i = h_i @ w_h. r_i's own 3 coordinates move r_i and
   p_i: folx, 3 tangents. The other slots' coordinates x_c move p_i only, and p_i enters the
   rows through tanh(u_row + p_i) elementwise, so the Hessian H of Phi in p_i is diagonal:
       d Phi / dx_c = (d Phi / dp) . dp/dx_c,  sum_c d^2 Phi / dx_c^2 (through p) =
       sum_q H_qq sum_c (dp_q/dx_c)^2,
   two sums over the rows as costly as ONE tangent, instead of 3 (S - 1) tangents.
5. The determinants: with A = Phi (per spin and determinant), X = A^-1 and the sparse row
   Jacobians dA_i / dx_c,
       d log det A / dx_c = sum_i (dA_i / dx_c) . X[:, i],
       sum_c d^2 log det A / dx_c^2 = tr(X lap A) - sum_c tr(X dA/dx_c X dA/dx_c),
   the last sum running over pairs of electrons (i, j) that share a coordinate c.

Several determinants and the Jastrow factor J combine as
    lap psi / psi = lap J + (grad J)^2 + sum_k w_k [lap_k + (g_k)^2 + 2 grad J . g_k],
with D_k the k-th determinant product, w_k = D_k / sum_l D_l, g_k = grad log D_k and
lap_k = lap log D_k (complex, not conjugated); E_kin = -lap psi / (2 psi).
"""

from __future__ import annotations

from typing import Callable

import folx
import jax
import jax.numpy as jnp
from folx.api import FwdJacobian, FwdLaplArray

from vmc.ansatz.fire import TransferableOrbitals
from vmc.hamiltonian import SPARSITY
from vmc.neighbours import fire_lists


def _lapl(x: jax.Array, jacobian: jax.Array, laplacian: jax.Array | None = None) -> FwdLaplArray:
    """A folx input with a given dense Jacobian (T, *x.shape) and Laplacian (x.shape)."""
    return FwdLaplArray(x, FwdJacobian(jacobian), jnp.zeros_like(x) if laplacian is None else laplacian)


def _determinant_terms(a: jax.Array, jac: jax.Array, lap: jax.Array, coord: jax.Array, n_coords: int):
    """Per determinant k: (sign, log|det|, gradient (n_coords,), Laplacian) of log det A_k.

    a: (K, n, n) rows = electrons; jac: (n, T, K, n) d A[k, i, :] / d x_{coord[i, t]};
    lap: (n, K, n) the rows' Laplacians; coord: (n, T) global coordinate index of each
    tangent, n_coords for padding.
    """
    n, t_count = coord.shape
    sign, logdet = jnp.linalg.slogdet(a)
    inv = jnp.linalg.inv(a)  # (K, o, i)
    # pos[j, c]: the tangent of electron j on coordinate c (t_count: none)
    pos = jnp.full((n, n_coords + 1), t_count, jnp.int32).at[jnp.arange(n)[:, None], coord].set(jnp.arange(t_count, dtype=jnp.int32)[None, :])

    def one(inv_k, jac_k, lap_k):
        grad_terms = jnp.einsum("ito,oi->it", jac_k, inv_k)
        grad = jnp.zeros(n_coords + 1, grad_terms.dtype).at[coord].add(grad_terms)[:n_coords]
        r = jnp.einsum("ito,oj->itj", jac_k, inv_k)  # (n, T, n)
        r = jnp.concatenate([r, jnp.zeros((n, 1, n), r.dtype)], 1)  # a zero row for "no tangent"
        partner_t = pos[:, coord]  # (j, i, t): tangent of j on the coordinate of (i, t)
        partner = r[jnp.arange(n)[:, None, None], partner_t, jnp.arange(n)[None, :, None]]  # (j, i, t) = R[j, t', i]
        cross = jnp.einsum("itj,jit->", r[:, :t_count], partner)
        return grad, jnp.einsum("io,oi->", lap_k, inv_k) - cross

    grads, laps = jax.vmap(one)(inv, jnp.moveaxis(jac, 2, 0), jnp.moveaxis(lap, 1, 0))
    return sign, logdet, grads, laps


def make_sparse_kinetic(cfg, initial: Callable, pair_terms: Callable, local: Callable, maps: Callable, row_parts: Callable,
                        cusp: Callable) -> Callable:
    """kinetic(params, data, r (n_el, 3)) -> complex kinetic local energy (hartree), from the
    haiku stage functions of vmc.ansatz.fire.SparseFire (already transformed: f(params, ...))."""

    def kinetic(params, data, r):
        n, n_up = data.n_electrons, data.n_up
        n_coords = 3 * n
        lists, _ = fire_lists(data, r, cfg.cutoff)
        spin = jnp.arange(n) < n_up
        eye3 = jnp.eye(3, dtype=r.dtype)
        zero3 = jnp.zeros((3, 3), r.dtype)

        # 1. per electron, on its own coordinates
        def stage1(r_j, spin_j, en_j):
            f = lambda x: jax.tree.map(lambda y: y[0], initial(params, data, x[None], spin_j[None], jax.tree.map(lambda y: y[None], en_j)))
            return folx.forward_laplacian(f)(r_j)

        h0, send, receive = jax.vmap(stage1)(r, spin, lists.en)
        ee = lists.ee
        n_slots = ee.slots.shape[1]

        # 2. per pair (i, j): its message depends on r_i and r_j only, 6 coordinates. A pair
        # of i with itself (an image, or padding) has 3: its partner's Jacobians go on the own
        # coordinates, so that the Laplacian holds the mixed terms.
        def stage2(i, j, offset, valid):
            own = jnp.concatenate([eye3, zero3])
            partner = jnp.where(i == j, own, jnp.concatenate([zero3, eye3]))

            def on(x, rows):  # a stage-1 output of one electron, its Jacobian placed on `rows`
                return _lapl(x.x, jnp.einsum("ta,a...->t...", rows, x.jacobian.data), x.laplacian)

            def f(r_i, r_j, send_j, receive_i):
                return pair_terms(params, r_i[None], r_j[None, None], offset[None, None], valid[None, None],
                                  send_j[None, None], receive_i[None], (spin[i] == spin[j])[None, None])[0, 0]

            pick = lambda x, k: jax.tree.map(lambda y: y[k], x)
            return folx.forward_laplacian(f)(_lapl(r[i], own), _lapl(r[j], partner), on(pick(send, j), partner), on(pick(receive, i), own))

        if send is None:
            messages = None
        else:
            electron = jnp.broadcast_to(jnp.arange(n)[:, None], ee.partner.shape)
            terms = jax.vmap(jax.vmap(stage2))(electron, ee.partner, ee.offset, ee.valid)  # values (n, C, 2, F)
            jac = terms.jacobian.data  # (n, C, 6, 2, F)
            onehot = jax.nn.one_hot(ee.slot, n_slots, dtype=jac.dtype)  # (n, C, S)
            slot_jac = jnp.einsum("ics,icaxf->isaxf", onehot, jac[:, :, 3:]).at[:, 0].add(jnp.sum(jac[:, :, :3], 1))
            messages = (jnp.sum(terms.x, 1), slot_jac.reshape(n, 3 * n_slots, *jac.shape[3:]), jnp.sum(terms.laplacian, 1))

        # 3. per electron, h_i, its orbital input p_i and its Jastrow term, on the
        # coordinates of its slots (3 S tangents, the first 3 its own)
        def stage3(i):
            h0_in = _lapl(h0.x[i], jnp.zeros((3 * n_slots, *h0.x.shape[1:]), r.dtype).at[:3].set(h0.jacobian.data[i]), h0.laplacian[i])
            m_in = None if messages is None else _lapl(messages[0][i], messages[1][i], messages[2][i])

            def f(h0_i, m):
                p, jastrow = local(params, h0_i[None], None if m is None else m[None])
                return p[0], jastrow

            return folx.forward_laplacian(f)(h0_in, m_in)

        p, jastrow = jax.vmap(stage3)(jnp.arange(n))
        slot_coords = 3 * ee.slots[:, :, None] + jnp.arange(3)
        coord = jnp.where(ee.slot_valid[:, :, None], slot_coords, n_coords).reshape(n, -1)  # (n, 3 S)

        # 4. per electron, its orbital row from (r_i, p_i): folx on the own coordinates, which
        # move both; the other slots move p_i only, through an elementwise tanh
        b_alpha = maps(params, data)
        o = lists.orbital

        def stage4(i, block):
            jp = p.jacobian.data[i]  # (3 S, Q)
            parts = lambda x: row_parts(params, data, b_alpha, x[None], o.atom[i][None], o.offset[i][None], o.valid[i][None], block)
            r_in = _lapl(r[i], eye3)
            p_in = _lapl(p.x[i], jp[:3], p.laplacian[i])
            out = folx.forward_laplacian(lambda x, q: TransferableOrbitals.combine(parts(x), q[None])[:, 0])(r_in, p_in)
            first, second = (x[:, 0] for x in TransferableOrbitals.p_derivatives(parts(r[i]), p.x[i][None]))  # (K, o, Q)
            others = jnp.einsum("koq,cq->cko", first, jp[3:].astype(first.dtype))
            lap = out.laplacian + second @ jnp.sum(jp[3:] ** 2, 0).astype(second.dtype)
            return out.x, jnp.concatenate([out.jacobian.data, others]), lap

        signs, logdets, grads, laps = [], [], [], []
        for block, electrons in enumerate((jnp.arange(n_up), jnp.arange(n_up, n))):
            if electrons.shape[0] == 0:
                continue
            a, jac, lap = jax.vmap(lambda i: stage4(i, block))(electrons)  # (n_s, K, n_orb), (n_s, T, K, n_orb), ...
            terms = _determinant_terms(jnp.moveaxis(a, 0, 1), jac, lap, coord[electrons], n_coords)
            for lst, x in zip((signs, logdets, grads, laps), terms):
                lst.append(x)
        sign = jnp.prod(jnp.stack(signs), 0)
        logdet = jnp.sum(jnp.stack(logdets), 0)
        grad_k = sum(grads)  # (K, 3 n)
        lap_k = sum(laps)  # (K,)
        weights = sign * jnp.exp(logdet - jax.lax.stop_gradient(jnp.max(logdet)))
        weights = weights / jnp.sum(weights)

        # the Jastrow factor: the neural term per electron, and the electron cusp (pairs: folx
        # keeps its 6-coordinate sparsity)
        jastrow_grad = jnp.zeros(n_coords + 1, r.dtype).at[coord].add(jastrow.jacobian.data)[:n_coords]
        jastrow_lap = jnp.sum(jastrow.laplacian)
        # Without folx's own jit: when the cusp's Jacobian stays sparse to the end (it depends
        # on at most SPARSITY coordinates: one electron, no pair), that jit would hand back its
        # index map, a static numpy array, as a traced output, and `dense_array` needs it
        # concrete. Traced inline, it stays static; the caller's jit compiles it either way.
        c = folx.forward_laplacian(lambda x: cusp(params, data, x.reshape(n, 3)), sparsity_threshold=SPARSITY,
                                   disable_jit=True)(r.reshape(-1))
        grad_j = jastrow_grad + c.jacobian.dense_array
        lap_j = jastrow_lap + c.laplacian

        per_det = lap_k + jnp.sum(grad_k * grad_k, -1) + 2 * grad_k @ grad_j.astype(grad_k.dtype)
        lap_psi = lap_j + jnp.sum(grad_j * grad_j) + jnp.sum(weights * per_det)
        return (-0.5 * lap_psi).astype(jnp.result_type(lap_psi, 1j))

    return kinetic
