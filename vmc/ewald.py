"""Ewald summation of the Coulomb energy of electrons and nuclei in a periodic simulation cell.

Atomic units throughout: positions in bohr, energies in hartree per simulation cell.
Lattice vectors are the ROWS of `lattice` (3, 3); reciprocal vectors are rows with
a_i . b_j = 2 pi delta_ij. Electrons carry charge -1, nuclei charge Z.

For point charges q_i at r_i the energy per cell is (alpha: splitting parameter)

    E = sum_{i<j} q_i q_j sum_L erfc(alpha |r_ij + L|) / |r_ij + L|          (real space)
      + 1/2 sum_i q_i^2 sum_{L != 0} erfc(alpha |L|) / |L|                   (own images)
      + (2 pi / V) sum_{G != 0} exp(-G^2 / 4 alpha^2) / G^2 |S(G)|^2          (reciprocal)
      - alpha / sqrt(pi) sum_i q_i^2                                          (self)
      - pi (sum_i q_i)^2 / (2 V alpha^2)                                      (background)

with S(G) = sum_i q_i exp(i G . r_i). Everything that involves only nuclei is precomputed
once per cell by `make_ewald` (host, numpy); `potential_energy` adds the electron terms for
one walker and is jit- and vmap-able.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from scipy.special import erfc as _erfc_np

from vmc import lattice as lat


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class EwaldData:
    """Precomputed Ewald sums of one simulation cell (a pytree of arrays; bohr, hartree).

    lattice: (3, 3) lattice vectors as rows; inv_lattice: (3, 3), fractional f = r @ inv_lattice.
    volume: () cell volume (bohr^3). alpha: () splitting parameter (bohr^-1).
    images: (n_L, 3) real-space lattice vectors L (L = 0 included), all |L| <= r_cut + reach,
        so that every |d + L| < r_cut is present for d reduced to fractional [-1/2, 1/2).
    gvecs_frac: (n_G, 3) integer reciprocal coordinates m (G = m @ B) of one G of each +-G pair.
    gweights: (n_G,) 4 pi / V exp(-G^2 / 4 alpha^2) / G^2 (the factor 2 of the +-G pair included).
    nuc_positions: (n_atoms, 3); nuc_charges: (n_atoms,).
    nuc_sk_re, nuc_sk_im: (n_G,) nuclear structure factor sum_I Z_I exp(i G . R_I).
    nuclear_real: () nucleus-nucleus real-space + own-image + self terms (hartree).
    nuclear_energy: () full nucleus-nucleus Ewald energy (hartree), reciprocal and background included.
    electron_self: () per-electron constant 1/2 sum_{L!=0} erfc(alpha|L|)/|L| - alpha/sqrt(pi).
    """

    lattice: jax.Array
    inv_lattice: jax.Array
    volume: jax.Array
    alpha: jax.Array
    images: jax.Array
    gvecs_frac: jax.Array
    gweights: jax.Array
    nuc_positions: jax.Array
    nuc_charges: jax.Array
    nuc_sk_re: jax.Array
    nuc_sk_im: jax.Array
    nuclear_real: jax.Array
    nuclear_energy: jax.Array
    electron_self: jax.Array

    @property
    def n_images(self) -> int:
        return self.images.shape[0]

    @property
    def n_gvectors(self) -> int:
        return self.gweights.shape[0]


def nuclear_energy(ewald: EwaldData) -> jax.Array:
    """Nucleus-nucleus Ewald energy per simulation cell (hartree), a constant of the cell."""
    return ewald.nuclear_energy


# ----------------------------------------------------------------------------------------------
# Host-side parameter choice
# ----------------------------------------------------------------------------------------------


def _integer_box(radius: float, dual: np.ndarray) -> np.ndarray:
    """All integer n with |n_i| <= radius |dual_i| / 2pi: covers every n @ basis of norm <= radius.

    `dual` is the basis dual to the one the integers multiply (n_i = v . dual_i / 2 pi).
    """
    nmax = np.floor(radius * np.linalg.norm(dual, axis=1) / (2 * np.pi) + 1e-9).astype(int)
    axes = [np.arange(-k, k + 1) for k in nmax]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)


def _box_size(radius: float, dual: np.ndarray) -> int:
    nmax = np.floor(radius * np.linalg.norm(dual, axis=1) / (2 * np.pi) + 1e-9)
    return int(np.prod(2 * nmax + 1))


def _real_tail(rc: float, alpha: float, volume: float) -> float:
    """Truncation error estimate of sum_{|L|>rc} erfc(alpha|d+L|)/|d+L| for unit charges:
    one image just outside rc plus the continuum integral (4pi/V) int_rc^inf r erfc(alpha r) dr."""
    x = alpha * rc
    single = _erfc_np(x) / rc
    continuum = 2 * math.sqrt(math.pi) * math.exp(-x * x) / (volume * alpha**3 * rc)
    return single + continuum


def _recip_tail(gc: float, alpha: float, volume: float) -> float:
    """Truncation error estimate of (2pi/V) sum_{|G|>gc} exp(-G^2/4alpha^2)/G^2 for |S|^2 ~ 1:
    one vector just outside gc plus the continuum integral (1/pi) int_gc^inf exp(-G^2/4alpha^2) dG."""
    e = math.exp(-(gc * gc) / (4 * alpha * alpha))
    return 4 * math.pi / volume * e / gc**2 + 2 * alpha**2 / (math.pi * gc) * e


def _solve_cutoff(tail, target: float, start: float) -> float:
    """Smallest cutoff c (to 0.1%) with tail(c) <= target; tail decreases monotonically."""
    lo, hi = start * 1e-3, start
    while tail(hi) > target:
        hi *= 2.0
    while hi - lo > 1e-3 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if tail(mid) <= target else (mid, hi)
    return hi


def choose_parameters(lattice: np.ndarray, charges: np.ndarray, accuracy: float, n_electrons: int | None = None):
    """(alpha, r_cut, g_cut) for a cell; see `make_ewald` for the rule."""
    lattice = np.asarray(lattice, float)
    volume = abs(float(np.linalg.det(lattice)))
    recip = 2 * np.pi * np.linalg.inv(lattice).T
    reach = lat.cell_reach(lattice)
    z_abs = float(np.sum(np.abs(charges)))
    n_el = int(round(float(np.sum(charges)))) if n_electrons is None else n_electrons
    n_el = max(n_el, 1)
    # Total error <~ (pairwise truncation error) x (number of charge pairs it can hit): the
    # summed |q| of nuclei and electrons, squared, is a conservative multiplier.
    q_tot = max(z_abs + n_el, 1.0)
    target = accuracy / q_tot**2

    # Cost per walker: each image costs one erfc per e-e pair and e-n pair; each G vector one
    # cos and sin per electron (counted twice, the structure factor's complex arithmetic).
    real_weight = n_el * (n_el - 1) / 2 + n_el * len(charges) + 1
    recip_weight = 2.0 * n_el
    a_min = math.sqrt(math.pi) / max(volume ** (1 / 3), reach)  # very small alpha: huge r_cut
    alphas = a_min * np.geomspace(0.25, 40.0, 81)
    cuts = []
    for alpha in alphas:
        rc = _solve_cutoff(lambda c: _real_tail(c, alpha, volume), target, 1.0 / alpha)
        gc = _solve_cutoff(lambda c: _recip_tail(c, alpha, volume), target, alpha)
        # Box sizes bound the enumeration work; drop hopeless alphas before enumerating.
        if _box_size(rc + reach, recip) <= 1_000_000 and _box_size(gc, lattice) <= 1_000_000:
            cuts.append((float(alpha), rc, gc))
    if not cuts:
        raise ValueError("could not choose Ewald parameters for this cell")
    # Count vectors exactly: enumerate once to the largest radius, then search sorted norms.
    l_norms = _sorted_norms(lattice, recip, max(c[1] for c in cuts) + reach)
    g_norms = _sorted_norms(recip, lattice, max(c[2] for c in cuts))
    best = None
    for alpha, rc, gc in cuts:
        n_l = np.searchsorted(l_norms, rc + reach, side="right")
        n_g = (np.searchsorted(g_norms, gc, side="right") - 1) // 2
        cost = real_weight * n_l + recip_weight * n_g
        if best is None or cost < best[0]:
            best = (cost, alpha, rc, gc)
    return best[1:]


def _sorted_norms(basis: np.ndarray, dual: np.ndarray, radius: float) -> np.ndarray:
    """Sorted norms of all lattice vectors n @ basis inside the integer box of `radius`."""
    n = _integer_box(radius, dual)
    return np.sort(np.linalg.norm(n @ basis, axis=1))


def _real_space_sum(d: np.ndarray, images: np.ndarray, alpha: float) -> np.ndarray:
    """sum_L erfc(alpha|d+L|)/|d+L| for displacements d (..., 3) (none may hit a lattice point)."""
    x = np.linalg.norm(d[..., None, :] + images, axis=-1)
    return np.sum(_erfc_np(alpha * x) / x, axis=-1)


def _wrap_half_np(d: np.ndarray, lattice: np.ndarray, inv_lattice: np.ndarray) -> np.ndarray:
    f = d @ inv_lattice
    return (f - np.floor(f + 0.5)) @ lattice


def make_ewald(
    lattice: np.ndarray,
    positions: np.ndarray,
    charges: np.ndarray,
    accuracy: float = 1e-8,
    n_electrons: int | None = None,
) -> EwaldData:
    """Precompute the Ewald sums of a cell (host, numpy); arrays come back as jnp (x64 flag).

    lattice: (3, 3) rows, bohr; positions: (n_atoms, 3) bohr; charges: (n_atoms,) (nuclear Z,
    any sign allowed); accuracy: target absolute error of the energy (hartree per cell);
    n_electrons: used only to weigh the cost (default: sum of charges, a neutral cell).

    Parameter rule. For a trial alpha the cutoffs r_cut and g_cut are the smallest with
        erfc(a rc)/rc + 2 sqrt(pi) exp(-a^2 rc^2) / (V a^3 rc)                    <= eps,
        (4pi/V) exp(-gc^2/4a^2)/gc^2 + 2 a^2 exp(-gc^2/4a^2) / (pi gc)          <= eps,
    (one term just outside the cutoff plus the continuum integral of the tail), with
    eps = accuracy / (sum|Z| + n_el)^2 so the error summed over all pairs of charges stays
    below `accuracy`. Real-space images are all L with |L| <= r_cut + reach, reach = half the
    longest body diagonal, which covers |d + L| < r_cut for any d reduced to fractional
    [-1/2, 1/2); G vectors are |G| <= g_cut, one per +-G pair. alpha is then chosen on a
    log grid around sqrt(pi) / max(V^(1/3), reach) to minimise the evaluation cost per walker,
    n_L (n_el^2/2 + n_el n_atoms) + 2 n_G n_el (erfc per pair and image vs. cos/sin per
    electron and G). The true (counted) numbers of vectors enter the cost, so elongated cells
    with vacuum get a small alpha: few images despite the long reach, and a moderate G set.
    """
    lattice = np.asarray(lattice, float)
    positions = np.asarray(positions, float).reshape(-1, 3)
    charges = np.asarray(charges, float).reshape(-1)
    volume = abs(float(np.linalg.det(lattice)))
    inv_lattice = np.linalg.inv(lattice)
    recip = 2 * np.pi * inv_lattice.T
    alpha, rc, gc = choose_parameters(lattice, charges, accuracy, n_electrons)

    reach = lat.cell_reach(lattice)
    n = _integer_box(rc + reach, recip)
    images = n @ lattice
    images = images[np.linalg.norm(images, axis=1) <= rc + reach]
    images = images[np.argsort(np.linalg.norm(images, axis=1), kind="stable")]  # L = 0 first

    m = _integer_box(gc, lattice)
    g = m @ recip
    g2 = np.sum(g * g, axis=1)
    # One of each +-G pair: the first nonzero integer coordinate is positive.
    first = np.where(m[:, 0] != 0, m[:, 0], np.where(m[:, 1] != 0, m[:, 1], m[:, 2]))
    keep = (first > 0) & (g2 <= gc * gc)
    m, g, g2 = m[keep], g[keep], g2[keep]
    gweights = 4 * np.pi / volume * np.exp(-g2 / (4 * alpha**2)) / g2

    # Nuclear structure factor, phases in fractional coordinates (G . R = 2 pi m . f).
    phase = 2 * np.pi * (positions @ inv_lattice) @ m.T  # (n_atoms, n_G)
    sk_re = charges @ np.cos(phase)
    sk_im = charges @ np.sin(phase)

    own = _real_space_sum(np.zeros(3), images[1:], alpha) if len(images) > 1 else 0.0
    self_const = 0.5 * own - alpha / math.sqrt(math.pi)
    nn_real = float(np.sum(charges**2)) * self_const
    iu, ju = np.triu_indices(len(charges), k=1)
    if len(iu):
        d = _wrap_half_np(positions[iu] - positions[ju], lattice, inv_lattice)
        nn_real += float(np.sum(charges[iu] * charges[ju] * _real_space_sum(d, images, alpha)))
    nn_recip = float(np.sum(gweights * (sk_re**2 + sk_im**2)))
    nn_background = -np.pi * float(np.sum(charges)) ** 2 / (2 * volume * alpha**2)

    return EwaldData(
        lattice=jnp.asarray(lattice),
        inv_lattice=jnp.asarray(inv_lattice),
        volume=jnp.asarray(volume),
        alpha=jnp.asarray(alpha),
        images=jnp.asarray(images),
        gvecs_frac=jnp.asarray(m.astype(float)),
        gweights=jnp.asarray(gweights),
        nuc_positions=jnp.asarray(positions),
        nuc_charges=jnp.asarray(charges),
        nuc_sk_re=jnp.asarray(sk_re),
        nuc_sk_im=jnp.asarray(sk_im),
        nuclear_real=jnp.asarray(nn_real),
        nuclear_energy=jnp.asarray(nn_real + nn_recip + nn_background),
        electron_self=jnp.asarray(self_const),
    )


# ----------------------------------------------------------------------------------------------
# Per-walker evaluation (JAX)
# ----------------------------------------------------------------------------------------------


def _wrap_half(d: jax.Array, ewald: EwaldData) -> jax.Array:
    """Displacements (..., 3) reduced to fractional [-1/2, 1/2) (cartesian out)."""
    f = d @ ewald.inv_lattice
    return (f - jnp.floor(f + 0.5)) @ ewald.lattice


def _image_sum(d: jax.Array, ewald: EwaldData) -> jax.Array:
    """sum_L erfc(alpha|d+L|)/|d+L| for wrapped d (..., 3) -> (...).

    A displacement on a lattice point (coinciding particles) is a true singularity; the double
    `where` keeps such a zero distance from producing NaN derivatives elsewhere in the batch.
    """
    v = d[..., None, :] + ewald.images
    x2 = jnp.sum(v * v, axis=-1)
    ok = x2 > 0
    x = jnp.sqrt(jnp.where(ok, x2, 1.0))
    alpha = ewald.alpha.astype(x.dtype)
    term = jnp.where(ok, jax.scipy.special.erfc(alpha * x) / x, jnp.inf)
    return jnp.sum(term, axis=-1)


def potential_energy(ewald: EwaldData, r: jax.Array) -> jax.Array:
    """Total Coulomb energy (hartree per simulation cell) of one walker: e-e + e-n + n-n.

    r: (n_el, 3) electron positions in bohr, anywhere in space (images are equivalent).
    Returns a scalar in r's dtype. jit- and vmap-able; the shape of r is static.
    """
    n_el = r.shape[0]
    dtype = r.dtype
    e = ewald.nuclear_real.astype(dtype) + n_el * ewald.electron_self.astype(dtype)

    # Electron-electron real space over the static upper-triangle pairs (no i == j terms).
    if n_el > 1:
        iu, ju = np.triu_indices(n_el, k=1)
        d_ee = _wrap_half(r[iu] - r[ju], ewald)
        e = e + jnp.sum(_image_sum(d_ee, ewald))

    # Electron-nucleus real space: charges -1 and Z.
    d_en = _wrap_half(r[:, None, :] - ewald.nuc_positions[None, :, :].astype(dtype), ewald)
    e = e - jnp.sum(ewald.nuc_charges.astype(dtype) * _image_sum(d_en, ewald))

    # Reciprocal space: S(G) = S_nuc(G) - sum_el exp(i G . r). Phases from fractional
    # coordinates wrapped to [0, 1), so they stay small and accurate in float32.
    f = r @ ewald.inv_lattice.astype(dtype)
    f = f - jnp.floor(f)
    phase = (2 * jnp.pi) * (f @ ewald.gvecs_frac.T.astype(dtype))  # (n_el, n_G)
    s_re = ewald.nuc_sk_re.astype(dtype) - jnp.sum(jnp.cos(phase), axis=0)
    s_im = ewald.nuc_sk_im.astype(dtype) - jnp.sum(jnp.sin(phase), axis=0)
    e = e + jnp.sum(ewald.gweights.astype(dtype) * (s_re**2 + s_im**2))

    # Neutralising background for a charged cell (zero when sum Z = n_el).
    q = jnp.sum(ewald.nuc_charges).astype(dtype) - n_el
    e = e - jnp.pi * q**2 / (2 * ewald.volume.astype(dtype) * ewald.alpha.astype(dtype) ** 2)
    return e
