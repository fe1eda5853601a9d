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
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp

from vmc.ansatz import Ansatz, haiku_ansatz
from vmc.ansatz.determinants import spin_blocked_log_psi
from vmc.ansatz.jastrow import NeuralJastrow, electron_cusp
from vmc.ansatz.layers import dense, mlp, positive, smooth_cutoff, walker_independent
from vmc.config import ModelConfig
from vmc.geometry import displacement_features, distance, reduce_displacement, safe_norm, wrap

ALPHA_MIN = 0.1  # bohr^-1: the slowest orbital decay; keeps the envelope inside its cutoff


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


class FiniteRangeEmbedding(hk.Module):
    """h_i (n_el, embedding_dim) from nuclei and electrons within the cutoff."""

    def __init__(self, cfg, n_elements: int, name: str = "embedding"):
        super().__init__(name=name)
        self.cfg, self.n_elements = cfg, n_elements

    def __call__(self, data, r: jax.Array) -> jax.Array:
        cfg, feats = self.cfg, data.features
        n, n_up = data.n_electrons, data.n_up
        radial_width = cfg.cutoff if cfg.cutoff is not None else 5.0
        element = hk.Embed(self.n_elements, cfg.filter_dim, name="element")(data.species)  # (A, F)

        # electron–nucleus filters
        d, dist, w = _displacements(r, data.atoms, feats.images, data.cell, cfg.cutoff)
        x = jnp.concatenate([_pair_features(d, dist), Radial(cfg.n_gaussians, radial_width, "radial_en")(dist)], -1)
        filters = mlp(x, [cfg.filter_dim, cfg.filter_dim], "en_filter") * jnp.broadcast_to(element[None, :, None, :], (*dist.shape, cfg.filter_dim))
        h = jnp.sum(filters * w[..., None], axis=(1, 2))  # (n, F)
        spin = (jnp.arange(n) < n_up).astype(h.dtype)[:, None]
        h = jnp.tanh(dense(jnp.concatenate([h, spin], -1), cfg.embedding_dim, "h0"))

        # electron–electron messages
        d, dist, w = _displacements(r, r, feats.images, data.cell, cfg.cutoff, same=True)
        pair = jnp.concatenate([_pair_features(d, dist), Radial(cfg.n_gaussians, radial_width, "radial_ee")(dist)], -1)
        spins = jnp.arange(n) < n_up
        same = (spins[:, None] == spins[None, :])[:, :, None]
        for t in range(cfg.message_passing_rounds):
            messages = []
            for kind, mask in (("parallel", same), ("antiparallel", ~same)):
                m = dense(pair, cfg.filter_dim, f"pair_{kind}_{t}")
                m = m + dense(h, cfg.filter_dim, f"send_{kind}_{t}", with_bias=False)[None, :, None, :]
                m = m + dense(h, cfg.filter_dim, f"receive_{kind}_{t}", with_bias=False)[:, None, None, :]
                messages.append(jnp.sum(jnp.tanh(m) * (w * mask)[..., None], axis=(1, 2)))
            h = h + jnp.tanh(dense(jnp.concatenate([h, *messages], -1), cfg.embedding_dim, f"update_{t}"))
        for t in range(cfg.mlp_layers):
            h = h + jnp.tanh(dense(h, cfg.embedding_dim, f"mlp_{t}"))
        return h


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

    def __call__(self, data, r: jax.Array, h: jax.Array) -> list[jax.Array]:
        """Orbital blocks [up (n_det, n_up, n_orb_up), down (n_det, n_down, n_orb_down)] for
        electrons r (n_el, 3), bohr, anywhere (not wrapped), with embeddings h (n_el,
        embedding_dim) of the wrapped electrons. Crystals: the only Bloch phase of the ansatz
        is the one of the lattice vector that reduces r_i - R_A into the cell, so
        Phi_o(r_i + L) = e^{i k_s.L} Phi_o(r_i) holds exactly for every supercell vector L."""
        cfg, feats = self.cfg, data.features
        # Both spins go through each dense layer in one call: kfac-jax registers a layer
        # only when its parameters are used once.
        coef, geom, phase = (jnp.concatenate(x, 0) for x in (feats.coefficients, feats.geometry, feats.image_phase))
        species_onehot = jax.nn.one_hot(data.species, self.n_elements)
        with walker_independent():
            b, alpha = self.descriptor_maps(coef, geom, species_onehot)  # (n_orb, A, K, O), (n_orb, A, K)
        b = b * phase[:, :, None, None]
        # the image sum starts from the nearest image of each atom: the listed images cover the
        # orbital cutoff from there, and the shift's Bloch phase is restored below (this shift
        # also carries an electron outside the cell back, with its twist phase)
        d = r[:, None, :] - data.atoms[None, :, :]
        shift_phase = jnp.ones(d.shape[:2])
        if data.cell is not None:
            d, shift = reduce_displacement(d, data.cell)
            shift_phase = jnp.exp(1j * (shift @ data.cell.twist))  # (n, A)
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
        n_orb_up = feats.coefficients[0].shape[0]
        blocks = []
        for el, orb in ((slice(None, data.n_up), slice(None, n_orb_up)), (slice(data.n_up, None), slice(n_orb_up, None))):
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


def make_fire(config: ModelConfig, elements: list[str]) -> Ansatz:
    from vmc.descriptors import prepare_fire

    cfg = config.fire
    n_det, n_elements = config.determinants, len(elements)

    def forward():
        embed = FiniteRangeEmbedding(cfg, n_elements)
        orbitals = TransferableOrbitals(cfg, n_det, n_elements)
        jastrow = NeuralJastrow(cfg.jastrow_hidden)

        def log_psi(data, r):
            h = embed(data, wrap(r, data.cell))
            phase, logabs = spin_blocked_log_psi(*orbitals(data, r, h))
            return phase, logabs + electron_cusp(data, r) + jastrow(h)

        def orbital_matrices(data, r):
            return orbitals(data, r, embed(data, wrap(r, data.cell)))

        return log_psi, (log_psi, orbital_matrices)

    return haiku_ansatz("fire", forward, prepare=lambda system, baseline: prepare_fire(system, baseline, cfg, elements))

