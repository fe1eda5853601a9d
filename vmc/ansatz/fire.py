"""`fire`: finite-range embeddings with transferable orbitals (docs/physics.md, "fire").

Embedding. Electron i starts from a sum over the nuclei within the cutoff c (every periodic
image, for crystals) of element-aware filters of the displacement, then passes messages
with the electrons within c, with separate parameters for parallel and antiparallel spins.
Every pair term carries the C^2 cutoff f_c(d / c), so h_i depends on nothing farther than c.
With `cutoff: null` every pair interacts (no f_c); crystals then use the smooth periodic
displacement features of `vmc.geometry` with one image per pair.

Orbitals. For orbital o, described on atom A by the coefficients c_oA of the localized HF
orbital on A's basis functions (fixed per-element slots) and by the geometry of A relative
to the orbital centre,

    Phi_o(r_i) = sum_{A, L} e^{i k_s.(L - L*_oA)} < b(c_oA, g_oA), g(h_i, r_i - R_A - L) >
                 exp(-alpha(c_oA, g_oA) |r_i - R_A - L|) f_c(|r_i - R_A - L| / c_orb),

with L*_oA the image of A nearest the orbital centre (L = 0 only, for molecules). With
`orbital_mlp: factored`, g(h_i, d) = g_geom(d) * g_emb(h_i): the sum over A and L then
depends on r_i alone, and the Laplacian carries 3 tangents through it instead of 3 n_el
(local energy 5.9x cheaper on LiH 2x2x2, benchmarks/RESULTS.md). b is odd
in the coefficients (bias-free, tanh), so real descriptors (molecules) give real orbitals
and flipping an orbital's sign flips its network orbital. No parameter depends on the
number of atoms, electrons or orbitals: one parameter set evaluates every system made of
`model.elements`.

Two implementations of the same function, with the same parameters: `dense` sums every pair
and (atom, image) row, masked by the cutoffs (the reference); `sparse` (SparseFire) only the
terms in per-walker neighbour lists (vmc/neighbours.py; vmc/ansatz/fire_sparse.py), and computes its kinetic energy
electron by electron (vmc/ansatz/fire_laplacian.py; docs/physics.md, "Sparse fire").
"""

from __future__ import annotations

import dataclasses

import haiku as hk
import jax
import jax.numpy as jnp

from vmc.ansatz import Ansatz
from vmc.ansatz.determinants import spin_blocked_log_psi
from vmc.ansatz.jastrow import NeuralJastrow, electron_cusp
from vmc.ansatz.fire_sparse import SparseFire
from vmc.ansatz.layers import dense, mlp, positive, smooth_cutoff, walker_independent
from vmc.config import ModelConfig
from vmc.geometry import displacement_features, distance, reduce_displacement, safe_norm, wrap
from vmc.neighbours import fire_lists, grown, limits

ALPHA_MIN = 0.1  # bohr^-1: the slowest orbital decay; keeps the envelope inside its cutoff
N_GEOMETRY = 4  # features of a displacement (`_pair_features`)


def _pair_features(d: jax.Array, dist: jax.Array) -> jax.Array:
    """Bounded features of displacements d (..., 3) with lengths dist (...)."""
    scale = 1.0 / (1.0 + dist[..., None])
    return jnp.concatenate([d * scale, jnp.log1p(dist)[..., None]], axis=-1)


class Radial(hk.Module):
    """Gaussians exp(-(d / sigma_k)^2) with learned widths sigma_k (bohr)."""

    def __init__(self, n: int, max_width: float, name: str = "radial"):
        super().__init__(name=name)
        self.n, self.max_width = n, max_width

    def __call__(self, dist: jax.Array) -> jax.Array:
        sigma = positive("sigma", (self.n,), jnp.linspace(0.5, self.max_width, self.n))
        return jnp.exp(-((dist[..., None] / sigma) ** 2))


def _displacements(x: jax.Array, y: jax.Array, images: jax.Array, cell, cutoff: float | None, same: bool = False):
    """Displacements x_i - y_j - L for all images L, their lengths and cutoff weights.

    x (n, 3), y (m, 3), images (n_L, 3) -> d (n, m, n_L, 3), dist (n, m, n_L), w (n, m, n_L).
    With a cutoff, d is reduced into the cell first, so a short image list covers every
    image within the cutoff; without one, crystals use periodic features of one image.
    same=True (y is x): the self pairs (i, i, L = 0) get weight 0, and a constant offset keeps
    their length away from 0, where the norm's higher derivatives overflow in folx (0 * inf).
    """
    d = x[:, None, :] - y[None, :, :]
    if cutoff is None:
        images = jnp.zeros((1, 3), d.dtype)
    elif cell is not None:
        d = reduce_displacement(d, cell)[0]
    d = d[:, :, None, :] + images[None, None, :, :]
    self_pair = jnp.zeros(d.shape[:3], bool)
    if same:
        self_pair = jnp.eye(x.shape[0], dtype=bool)[:, :, None] & (jnp.sum(images**2, -1) == 0)[None, None, :]
        d = d + self_pair[..., None]
    if cutoff is None:
        dist = distance(d, cell, safe=True)
        w = jnp.ones_like(dist)
        d = displacement_features(d, cell)
    else:
        dist = safe_norm(d)
        w = smooth_cutoff(dist / cutoff)
    # a product, not a `where`: folx would treat a mask built from traced images as data-
    # dependent indexing and give up sparsity
    return d, dist, w * (1 - self_pair)


def bloch_phase(data, x: jax.Array) -> jax.Array:
    """e^{i x} for x = k_s.L of simulation-cell vectors L; cos x (exactly +-1) for systems
    whose phases are all real, which then compute real orbitals (vmc.descriptors.real_phases)."""
    return jnp.exp(1j * x) if jnp.iscomplexobj(data.features.orbital_phase) else jnp.cos(x)


KINDS = ("parallel", "antiparallel")


def _expand(x: jax.Array, ndim: int) -> jax.Array:
    """x (e, ...) with singleton axes inserted after the first, to `ndim` axes before its last."""
    return x.reshape(x.shape[0], *([1] * (ndim - 1)), *x.shape[1:])


class FiniteRangeEmbedding(hk.Module):
    """h_i (n_el, embedding_dim) from nuclei and electrons within the cutoff.

    The stages (`initial`, `send`, `message_round`, `finish`) act on a batch of electrons e
    and their pairs (e, P..., ...): the dense network gives them every pair (n_el, n_atoms or
    n_el, n_images, ...), the sparse one its neighbour lists (e, capacity); the parameters and
    the arithmetic of each stage are the same.
    """

    def __init__(self, cfg, n_elements: int, name: str = "embedding"):
        super().__init__(name=name)
        self.cfg, self.n_elements = cfg, n_elements
        self.radial_width = cfg.cutoff if cfg.cutoff is not None else 5.0

    @hk.transparent
    def initial(self, data, d: jax.Array, dist: jax.Array, w: jax.Array, atom: jax.Array, spin: jax.Array) -> jax.Array:
        """h0 (e, embedding_dim) from electron–nucleus pairs: displacements d (e, P..., 3),
        lengths and cutoff weights (e, P...), atom indices (e, P...); spin (e,) True for up."""
        cfg = self.cfg
        element = hk.Embed(self.n_elements, cfg.filter_dim, name="element")(data.species)  # (A, F)
        x = jnp.concatenate([_pair_features(d, dist), Radial(cfg.n_gaussians, self.radial_width, "radial_en")(dist)], -1)
        filters = mlp(x, [cfg.filter_dim, cfg.filter_dim], "en_filter") * element[atom]
        h = jnp.sum(filters * w[..., None], axis=tuple(range(1, dist.ndim)))  # (e, F)
        return jnp.tanh(dense(jnp.concatenate([h, spin[:, None].astype(h.dtype)], -1), cfg.embedding_dim, "h0"))

    @hk.transparent
    def pair_inputs(self, d: jax.Array, dist: jax.Array) -> jax.Array:
        """Electron–electron pair features (e, P..., 4 + n_gaussians)."""
        return jnp.concatenate([_pair_features(d, dist), Radial(self.cfg.n_gaussians, self.radial_width, "radial_ee")(dist)], -1)

    @hk.transparent
    def send(self, h: jax.Array, t: int) -> jax.Array:
        """What each electron sends in round t, to parallel and antiparallel receivers: (e, 2, F)."""
        return jnp.stack([dense(h, self.cfg.filter_dim, f"send_{kind}_{t}", with_bias=False) for kind in KINDS], -2)

    @hk.transparent
    def receive(self, h: jax.Array, t: int) -> jax.Array:
        """Each receiver's own term of its messages in round t, from parallel and antiparallel
        senders: (e, 2, F)."""
        return jnp.stack([dense(h, self.cfg.filter_dim, f"receive_{kind}_{t}", with_bias=False) for kind in KINDS], -2)

    @hk.transparent
    def pair_terms(self, pair: jax.Array, w: jax.Array, send: jax.Array, receive: jax.Array, same: jax.Array, t: int) -> jax.Array:
        """The message of every pair in round t, (e, P..., 2, F), of which only the kind of
        the pair's spins is nonzero: pair (e, P..., 4 + n_gaussians), w and same (e, P...)
        (cutoff weights; parallel spins), send (e, P..., 2, F) of each pair's sender,
        receive (e, 2, F) of the receivers. A pair's message depends on its two electrons only."""
        m = jnp.stack([dense(pair, self.cfg.filter_dim, f"pair_{kind}_{t}") for kind in KINDS], -2)
        m = m + send + _expand(receive, w.ndim)
        kind = jnp.stack([same, ~same], -1)
        return jnp.tanh(m) * (w[..., None] * kind)[..., None]

    @hk.transparent
    def update(self, h: jax.Array, messages: jax.Array, t: int) -> jax.Array:
        """h (e, D) after round t, from the summed messages (e, 2, F)."""
        return h + jnp.tanh(dense(jnp.concatenate([h, messages.reshape(h.shape[0], -1)], -1), self.cfg.embedding_dim, f"update_{t}"))

    @hk.transparent
    def message_round(self, h: jax.Array, pair: jax.Array, w: jax.Array, send: jax.Array, same: jax.Array, t: int) -> jax.Array:
        """h (e, D) of the receivers after round t; pair (e, P..., 4 + n_gaussians), w and
        same (e, P...) (cutoff weights; parallel spins), send (e, P..., 2, F) of each pair's sender."""
        terms = self.pair_terms(pair, w, send, self.receive(h, t), same, t)
        return self.update(h, jnp.sum(terms, axis=tuple(range(1, w.ndim))), t)

    @hk.transparent
    def finish(self, h: jax.Array) -> jax.Array:
        for t in range(self.cfg.mlp_layers):
            h = h + jnp.tanh(dense(h, self.cfg.embedding_dim, f"mlp_{t}"))
        return h

    def __call__(self, stage: str, *args):
        """Runs one stage (a method name) inside this module's name scope, where its layers
        live, so the dense and the sparse network read the same parameters."""
        return getattr(self, stage)(*args)

    @hk.transparent
    def dense(self, data, r: jax.Array) -> jax.Array:
        """The dense network: every pair, masked by the cutoff. r (n_el, 3) wrapped."""
        cfg, feats = self.cfg, data.features
        n, n_up = data.n_electrons, data.n_up
        spin = jnp.arange(n) < n_up
        d, dist, w = _displacements(r, data.atoms, feats.images, data.cell, cfg.cutoff)
        atom = jnp.broadcast_to(jnp.arange(data.atoms.shape[0])[None, :, None], dist.shape)
        h = self.initial(data, d, dist, w, atom, spin)
        d, dist, w = _displacements(r, r, feats.images, data.cell, cfg.cutoff, same=True)
        pair = self.pair_inputs(d, dist)
        same = jnp.broadcast_to((spin[:, None] == spin[None, :])[:, :, None], dist.shape)
        for t in range(cfg.message_passing_rounds):
            h = self.message_round(h, pair, w, self.send(h, t)[None, :, None], same, t)
        return self.finish(h)


class Linear(hk.Module):
    """hk.Linear's parameters and arithmetic (so kfac-jax sees the same dense layer), with
    the weights also readable: the sparse Laplacian splits and contracts them."""

    def __init__(self, size: int, name: str):
        super().__init__(name=name)
        self.size = size

    def weights(self, n_in: int) -> tuple[jax.Array, jax.Array]:
        # in the run's precision, as hk.Linear's (which takes its input's dtype)
        dtype = jnp.asarray(0.0).dtype
        w = hk.get_parameter("w", [n_in, self.size], dtype, init=hk.initializers.TruncatedNormal(1.0 / n_in**0.5))
        return w, hk.get_parameter("b", [self.size], dtype, init=jnp.zeros)

    def __call__(self, x: jax.Array) -> jax.Array:
        w, b = self.weights(x.shape[-1])
        out = jnp.dot(x.reshape(-1, x.shape[-1]), w)
        return (out + jnp.broadcast_to(b, out.shape)).reshape(*x.shape[:-1], self.size)


class TransferableOrbitals(hk.Module):
    """Orbital matrices (n_det, n_el_s, n_orb_s) of both spins from HF orbital descriptors."""

    def __init__(self, cfg, n_det: int, n_elements: int, name: str = "orbitals"):
        super().__init__(name=name)
        self.cfg, self.n_det, self.n_elements = cfg, n_det, n_elements

    def descriptor_maps(self, coef: jax.Array, geom: jax.Array, species_onehot: jax.Array):
        """b (n_orb, A, K, O) (odd in coef) and alpha (n_orb, A, K) from descriptors
        coef (n_orb, A, S) and geometry (n_orb, A, G)."""
        cfg, k = self.cfg, self.n_det
        context = jnp.concatenate([geom, jnp.broadcast_to(species_onehot[None], (*geom.shape[:2], species_onehot.shape[-1]))], -1)
        gate = mlp(context, [cfg.descriptor_hidden, cfg.descriptor_hidden], "gate")

        # one odd real map applied to the real and the imaginary part (stacked, so the
        # parameters are the same for real and complex systems)
        parts = jnp.stack([coef.real, coef.imag]) if jnp.iscomplexobj(coef) else coef[None]
        u = jnp.tanh(dense(parts, cfg.descriptor_hidden, "coef_in", with_bias=False)) * gate
        b = dense(u, k * cfg.orbital_dim, "coef_out", with_bias=False)
        b = b[0] + 1j * b[1] if jnp.iscomplexobj(coef) else b[0]
        magnitude = jnp.concatenate([jnp.abs(coef), context], -1)
        alpha = ALPHA_MIN + jax.nn.softplus(mlp(magnitude, [cfg.descriptor_hidden, k], "alpha") + 1.0)
        return b.reshape(*b.shape[:2], k, cfg.orbital_dim), alpha

    @hk.transparent
    def maps(self, data):
        """b (n_orb, A, K, O) with the descriptors' image phases, and alpha (n_orb, A, K), of
        both spins' orbitals (up first): per system, not per walker."""
        feats = data.features
        # Both spins go through each dense layer in one call: kfac-jax registers a layer
        # only when its parameters are used once.
        coef, geom, phase = (jnp.concatenate(x, 0) for x in (feats.coefficients, feats.geometry, feats.image_phase))
        species_onehot = jax.nn.one_hot(data.species, self.n_elements)
        with walker_independent():
            b, alpha = self.descriptor_maps(coef, geom, species_onehot)  # (n_orb, A, K, O), (n_orb, A, K)
        return b * phase[:, :, None, None], alpha

    @staticmethod
    def spin_blocks(data):
        n_orb_up = data.features.coefficients[0].shape[0]
        return ((slice(None, data.n_up), slice(None, n_orb_up)), (slice(data.n_up, None), slice(n_orb_up, None)))

    @hk.transparent
    def orbital_input(self, h: jax.Array) -> jax.Array:
        """p_i = h_i @ w_h (e, orbital_dim): the part of the joint MLP's first layer that
        depends on h_i, computed once per electron."""
        w, _ = Linear(self.cfg.orbital_dim, "electron_0").weights(N_GEOMETRY + h.shape[-1])
        return h @ w[N_GEOMETRY:]

    def _row_geometry(self, data, r, atom, offset, valid):
        """Displacements (e, P, 3), lengths (e, P) and weights (e, P) of the sparse rows: the
        orbital cutoff, the padding mask and the Bloch phase e^{-i k_s.offset}, the phase of
        every lattice vector the row subtracts (the same as the dense image sum's)."""
        d = r[:, None, :] - data.atoms[atom] + offset
        dist = safe_norm(d)
        weight = smooth_cutoff(dist / data.features.orbital_cutoff) * valid
        if data.cell is not None:
            weight = weight * bloch_phase(data, -(offset @ data.cell.twist))
        return d, dist, weight

    def _envelopes(self, alpha, atom, dist, weight):
        """exp(-alpha |d|) times the row weight, (e, P, o, K), atom-major gathers."""
        return jnp.exp(-jnp.moveaxis(alpha, 1, 0)[atom] * dist[:, :, None, None]) * weight[:, :, None, None]

    @hk.transparent
    def rows(self, data, maps, r: jax.Array, h: jax.Array, atom: jax.Array, offset: jax.Array, valid: jax.Array) -> list[jax.Array]:
        """Orbital blocks [up (K, n_up, n_orb_up), down (K, n_down, n_orb_down)] of electrons r
        (n_el, 3) with embeddings h (n_el, D), from their rows within the orbital cutoff: atom
        (n_el, P), offset (n_el, P, 3) (r_i - R_atom + offset is the row's displacement), valid
        (n_el, P). The rows left out have f_c = 0, so this equals the dense sum over atoms and
        images. Both spins go through each layer in one call (kfac-jax, see `maps`)."""
        cfg, k = self.cfg, self.n_det
        b, alpha = maps
        d, dist, weight = self._row_geometry(data, r, atom, offset, valid)
        x = jnp.concatenate([_pair_features(d, dist), jnp.broadcast_to(h[:, None, :], (*dist.shape, h.shape[-1]))], -1)
        z = Linear(cfg.orbital_dim, "electron_0")(x)
        g = Linear(k * cfg.orbital_dim, "electron_1")(jnp.tanh(z)).reshape(*dist.shape, k, cfg.orbital_dim)
        blocks = []
        for el, orb in self.spin_blocks(data):
            # atom-major, so that each row gathers one contiguous block; a fused multiply-and-
            # sum, as a dot it would be one tiny matrix product per row
            bb = jnp.moveaxis(b[orb], 1, 0)[atom[el]]  # (e, P, o, K, O)
            overlap = jnp.sum(bb * g[el][:, :, None].astype(bb.dtype), -1)
            env = self._envelopes(alpha[orb], atom[el], dist[el], weight[el])
            blocks.append(jnp.einsum("epok->keo", overlap * env))
        return blocks

    @hk.transparent
    def row_parts(self, data, maps, r: jax.Array, atom: jax.Array, offset: jax.Array, valid: jax.Array, block: int):
        """The rows of `rows` taken apart around p_i (`orbital_input`): with t = tanh(u + p_i),
            Phi[k, o] = sum_rows E[o, k] (sum_q B[o, k, q] t_q + c[o, k]).
        Returns E (e, P, o, K), u (e, P, Q), B (e, P, o, K, Q) = b . W_2 and c (e, P, o, K) =
        b . b_2 per row (W_2, b_2: the second layer, folded into the descriptors)."""
        cfg, k = self.cfg, self.n_det
        b, alpha = maps
        orb = self.spin_blocks(data)[block][1]
        w1, b1 = Linear(cfg.orbital_dim, "electron_0").weights(N_GEOMETRY + cfg.embedding_dim)
        w2, b2 = Linear(k * cfg.orbital_dim, "electron_1").weights(cfg.orbital_dim)
        d, dist, weight = self._row_geometry(data, r, atom, offset, valid)
        u = _pair_features(d, dist) @ w1[:N_GEOMETRY] + b1
        folded = jnp.einsum("oakp,qkp->aokq", b[orb], w2.reshape(-1, k, cfg.orbital_dim).astype(b.dtype))
        constant = jnp.einsum("oakp,kp->aok", b[orb], b2.reshape(k, cfg.orbital_dim).astype(b.dtype))
        return self._envelopes(alpha[orb], atom, dist, weight), u, folded[atom], constant[atom]

    @staticmethod
    def combine(parts, p: jax.Array) -> jax.Array:
        """Phi (K, e, o) from `row_parts` and p (e, Q)."""
        env, u, folded, constant = parts
        t = jnp.tanh(u + p[:, None, :]).astype(folded.dtype)
        return jnp.einsum("epok->keo", env * (jnp.sum(folded * t[:, :, None, None, :], -1) + constant))

    @staticmethod
    def p_derivatives(parts, p: jax.Array) -> tuple[jax.Array, jax.Array]:
        """(d Phi / d p_q, d^2 Phi / d p_q^2), each (K, e, o, Q); the Hessian in p is diagonal,
        since p enters through an elementwise tanh only."""
        env, u, folded, _ = parts
        t = jnp.tanh(u + p[:, None, :])
        first = (1 - t**2).astype(folded.dtype)
        second = (-2 * t).astype(folded.dtype) * first
        terms = env[..., None] * folded  # (e, P, o, K, Q)
        return tuple(jnp.einsum("epokq,epq->keoq", terms, x) for x in (first, second))

    def __call__(self, stage: str, *args):
        """Runs one stage (a method name) inside this module's name scope (see
        FiniteRangeEmbedding.__call__)."""
        return getattr(self, stage)(*args)

    @hk.transparent
    def dense(self, data, r: jax.Array, h: jax.Array) -> list[jax.Array]:
        """Orbital blocks [up (n_det, n_up, n_orb_up), down (n_det, n_down, n_orb_down)] for
        electrons r (n_el, 3), bohr, anywhere (not wrapped), with embeddings h (n_el,
        embedding_dim) of the wrapped electrons, summed densely over every atom and listed
        image. Crystals: the only Bloch phase of the ansatz is the one of the lattice vector
        that reduces r_i - R_A into the cell, so Phi_o(r_i + L) = e^{i k_s.L} Phi_o(r_i) holds
        exactly for every supercell vector L."""
        cfg, feats = self.cfg, data.features
        b, alpha = self.maps(data)
        # the image sum starts from the nearest image of each atom: the listed images cover the
        # orbital cutoff from there, and the shift's Bloch phase is restored below (this shift
        # also carries an electron outside the cell back, with its twist phase)
        d = r[:, None, :] - data.atoms[None, :, :]
        shift_phase = jnp.ones(d.shape[:2])
        if data.cell is not None:
            d, shift = reduce_displacement(d, data.cell)
            shift_phase = bloch_phase(data, shift @ data.cell.twist)  # (n, A)
        d = d[:, :, None, :] - feats.orbital_images[None, None, :, :]  # (n, A, L, 3)
        dist = safe_norm(d)
        sizes = [cfg.orbital_dim, self.n_det * cfg.orbital_dim]
        factored = cfg.orbital_mlp == "factored"
        if factored:
            g = mlp(_pair_features(d, dist), sizes, "electron_geometry")
            g_emb = mlp(h, sizes, "electron_embedding").reshape(-1, self.n_det, cfg.orbital_dim)  # (n, K, O)
        else:
            g = mlp(jnp.concatenate([_pair_features(d, dist), jnp.broadcast_to(h[:, None, None, :], (*dist.shape, h.shape[-1]))], -1), sizes, "electron")
        g = g.reshape(*dist.shape, self.n_det, cfg.orbital_dim)  # (n, A, L, K, O)
        cut = smooth_cutoff(dist / feats.orbital_cutoff)
        blocks = []
        for el, orb in self.spin_blocks(data):
            env = jnp.exp(-alpha[orb][None, :, :, None, :] * dist[el][:, None, :, :, None])  # (n_s, o_s, A, L, K)
            env = env * cut[el][:, None, :, :, None]
            if factored:
                # everything summed over atoms and images is a function of r_i alone
                local = jnp.einsum("oakq,ialkq,ioalk,l,ia->iokq", b[orb], g[el].astype(b.dtype), env, feats.orbital_phase, shift_phase[el])
                blocks.append(jnp.einsum("ikq,iokq->kio", g_emb[el].astype(b.dtype), local))
            else:
                overlap = jnp.einsum("oakq,ialkq->ioalk", b[orb], g[el].astype(b.dtype))
                blocks.append(jnp.einsum("ioalk,l,ia->kio", overlap * env, feats.orbital_phase, shift_phase[el]))
        return blocks


def make(config: ModelConfig, elements: list[str]) -> Ansatz:
    from vmc.ansatz.fire_laplacian import make_sparse_kinetic
    from vmc.ansatz.fire_moves import make_single_moves
    from vmc.descriptors import prepare_fire

    cfg = config.fire
    n_det, n_elements = config.determinants, len(elements)
    sparse = cfg.implementation == "sparse"

    def forward():
        embed = FiniteRangeEmbedding(cfg, n_elements)
        orbitals = TransferableOrbitals(cfg, n_det, n_elements)
        jastrow = NeuralJastrow(cfg.jastrow_hidden)
        net = SparseFire(cfg, embed, orbitals, jastrow)

        def dense_log_psi(data, r):
            h = embed("dense", data, wrap(r, data.cell))
            phase, logabs = spin_blocked_log_psi(*orbitals("dense", data, r, h))
            return phase, logabs + electron_cusp(data, r) + jastrow(h)

        def orbital_matrices(data, r):
            return orbitals("dense", data, r, embed("dense", data, wrap(r, data.cell)))

        def row_parts(data, maps, r, atom, offset, valid, block):
            return orbitals("row_parts", data, maps, r, atom, offset, valid, block)

        def maps(data):
            return orbitals("maps", data)

        log_psi = net.log_psi if sparse else dense_log_psi
        stages = (net.initial, net.pair_terms, net.local, maps, row_parts, electron_cusp)
        return log_psi, (log_psi, orbital_matrices, *stages)

    network = hk.without_apply_rng(hk.multi_transform(forward))
    log_psi, orbital_matrices, *stages = network.apply

    def prepare(system, baseline):
        return prepare_fire(system, baseline, cfg, elements)

    if not sparse:
        return Ansatz(name="fire", init=network.init, log_psi=log_psi, orbitals=orbital_matrices, prepare=prepare, transferable=True)

    def resize(data, needed):
        feats = data.features
        capacities = grown(feats.capacities, tuple(int(x) for x in needed), limits(data))
        return data if capacities == feats.capacities else dataclasses.replace(data, features=dataclasses.replace(feats, capacities=capacities))

    return Ansatz(name="fire", init=network.init, log_psi=log_psi, orbitals=orbital_matrices, prepare=prepare, transferable=True,
                  kinetic=make_sparse_kinetic(cfg, *stages), neighbour_counts=lambda data, r: fire_lists(data, r, cfg.cutoff)[1],
                  resize=resize, single_moves=make_single_moves(cfg, *stages))
