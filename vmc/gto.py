"""Gaussian atomic orbitals evaluated in JAX, in PySCF's order and normalization.

An AO is a contracted Gaussian  chi(r) = sum_p c_p exp(-a_p |d|^2) P_lm(d),  d = r - R, with
P_lm the real solid harmonic of PySCF (cartesian monomials times `cart2sph`). Shells are
grouped by angular momentum so that one call evaluates all of them with a few dense array
operations (jit/vmap/pmap-able, and free of 0**0 so derivatives stay finite at nuclei).

Crystals use Bloch sums over simulation-cell images,
    chi~_nu(r) = sum_L e^{i k.L} chi_nu(r - L),
with the displacement to every atom first reduced to the cell around it so that one short,
precomputed list of images L covers the range of the most diffuse primitive.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from vmc.geometry import reduce_displacement


def cartesian_powers(l: int) -> list[tuple[int, int, int]]:
    """PySCF's order of the cartesian monomials x^i y^j z^k of degree l (xx, xy, xz, yy, ...)."""
    return [(lx, ly, l - lx - ly) for lx in range(l, -1, -1) for ly in range(l - lx, -1, -1)]


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class ShellGroup:
    """The shells of angular momentum l (static) on every atom, padded to the same count.

    exponents, coefficients: (n_atoms, n_shells, n_prim) in bohr^-2 and PySCF's normalized
    contraction coefficients (padding: coefficient 0, exponent 1); c2s: (n_cart, 2l+1)
    cartesian-to-spherical transform. Atom-major arrays instead of a list of shell centres
    keep every operation a broadcast: no gathers, which lets folx keep the per-electron
    sparsity of the Laplacian.
    """

    exponents: jax.Array
    coefficients: jax.Array
    c2s: jax.Array
    l: int = dataclasses.field(metadata=dict(static=True))


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class Basis:
    """A basis set on a set of atoms as shell groups. Values come out in a padded,
    group-major order of n_padded functions; `order` (n_ao,) static, maps PySCF's AO mu
    to its position there (use `to_padded` on coefficient matrices)."""

    groups: tuple[ShellGroup, ...]
    order: tuple[int, ...] = dataclasses.field(metadata=dict(static=True))

    @property
    def n_ao(self) -> int:
        return len(self.order)

    @property
    def n_padded(self) -> int:
        return sum(g.exponents.shape[0] * g.exponents.shape[1] * (2 * g.l + 1) for g in self.groups)

    def to_padded(self, coefficients: np.ndarray) -> np.ndarray:
        """Coefficient rows (..., n_ao) over PySCF's AOs -> (..., n_padded), zeros on padding."""
        out = np.zeros((*coefficients.shape[:-1], self.n_padded), dtype=coefficients.dtype)
        out[..., np.asarray(self.order)] = coefficients
        return out


def basis_from_pyscf(mol, n_copies: int = 1) -> Basis:
    """The spherical basis of a `pyscf.gto.Mole` or `pyscf.pbc.gto.Cell`.

    n_copies > 1 repeats it on n_copies consecutive blocks of atoms (atom index c * natm + a,
    AO index c * nao + mu): the simulation cell of a crystal built from its primitive cell.
    """
    from pyscf import gto

    if mol.cart:
        raise ValueError("cartesian basis sets are not supported")
    n_atoms = n_copies * mol.natm
    # per (l, atom): list of (exponents, coefficients) of single contractions, PySCF order
    shells: dict[int, list[list]] = {}
    ao_of_shell = []  # (l, atom, index on that atom) of every contraction in PySCF AO order
    for c in range(n_copies):
        for i in range(mol.nbas):
            l = mol.bas_angular(i)
            atom = c * mol.natm + mol.bas_atom(i)
            coefs = mol._libcint_ctr_coeff(i)  # (n_prim, n_ctr), normalized as libcint uses them
            per_atom = shells.setdefault(l, [[] for _ in range(n_atoms)])[atom]
            for j in range(coefs.shape[1]):
                ao_of_shell.append((l, atom, len(per_atom)))
                per_atom.append((mol.bas_exp(i), coefs[:, j]))
    ls = sorted(shells)
    n_shells = {l: max(len(a) for a in shells[l]) for l in ls}
    n_prim = {l: max(len(e) for a in shells[l] for e, _ in a) for l in ls}
    offsets = dict(zip(ls, np.cumsum([0] + [n_atoms * n_shells[l] * (2 * l + 1) for l in ls])[:-1]))
    order = np.concatenate([
        offsets[l] + (atom * n_shells[l] + k) * (2 * l + 1) + np.arange(2 * l + 1) for l, atom, k in ao_of_shell
    ]).astype(np.int64)
    groups = []
    for l in ls:
        exps = np.ones((n_atoms, n_shells[l], n_prim[l]))
        coefs = np.zeros((n_atoms, n_shells[l], n_prim[l]))
        for atom, per_atom in enumerate(shells[l]):
            for k, (e, cf) in enumerate(per_atom):
                exps[atom, k, : len(e)] = e
                coefs[atom, k, : len(cf)] = cf
        groups.append(ShellGroup(jnp.asarray(exps), jnp.asarray(coefs), jnp.asarray(gto.mole.cart2sph(l)), l))
    return Basis(groups=tuple(groups), order=tuple(int(i) for i in order))


def _group_values(group: ShellGroup, d: jax.Array) -> jax.Array:
    """Values (..., n_atoms, n_shells, 2l+1) of one shell group at displacements d (..., n_atoms, 3)."""
    r2 = jnp.sum(d * d, axis=-1)[..., None, None]
    radial = jnp.sum(group.coefficients * jnp.exp(-group.exponents * r2), axis=-1)  # (..., n_atoms, n_shells)
    if group.l == 0:
        return (radial * group.c2s[0, 0])[..., None]
    x, y, z = d[..., 0], d[..., 1], d[..., 2]
    monomials = []
    for lx, ly, lz in cartesian_powers(group.l):
        term = None
        for factor, n in ((x, lx), (y, ly), (z, lz)):
            for _ in range(n):  # repeated products: no 0**0 and finite derivatives everywhere
                term = factor if term is None else term * factor
        monomials.append(term)
    cart = jnp.stack(monomials, axis=-1)  # (..., n_atoms, n_cart)
    return radial[..., None] * (cart @ group.c2s)[..., None, :]


def eval_aos(basis: Basis, displacements: jax.Array, atom_weights: jax.Array | None = None) -> jax.Array:
    """Padded AO values (..., n_padded) from electron–atom displacements (..., n_atoms, 3),
    each atom's functions optionally multiplied by atom_weights (..., n_atoms)."""
    parts = []
    for g in basis.groups:
        v = _group_values(g, displacements)
        if atom_weights is not None:
            v = v * atom_weights[..., None, None]
        parts.append(v.reshape(*v.shape[:-3], -1))
    return jnp.concatenate(parts, axis=-1)


def eval_bloch_aos(basis: Basis, r: jax.Array, atoms: jax.Array, images: jax.Array, cell) -> jax.Array:
    """Padded AOs (n_el, n_padded) of electrons r (n_el, 3) on `atoms` (n_atoms, 3): plain
    values for molecules (cell None, images ignored), Bloch sums sum_L e^{i k.L} chi(r - L)
    for crystals, with images (n_L, 3) covering the basis range around a cell (complex)."""
    d = r[:, None, :] - atoms[None, :, :]
    if cell is None:
        return eval_aos(basis, d)
    d_cell, shift = reduce_displacement(d, cell)
    # chi~(d) = e^{ik.shift} sum_L e^{ik.L} chi(d_cell - L)
    values = eval_aos(basis, d_cell[:, None, :, :] - images[None, :, None, :])  # (n_el, n_L, n_padded)
    image_phase = jnp.exp(1j * (images @ cell.twist))
    summed = jnp.einsum("elm,l->em", values.astype(image_phase.dtype), image_phase)
    atom_phase = jnp.exp(1j * (shift @ cell.twist))  # (n_el, n_atoms)
    return summed * spread_over_aos(basis, atom_phase)


def spread_over_aos(basis: Basis, atom_phase: jax.Array) -> jax.Array:
    """Per-atom factors (n_el, n_atoms) spread onto the padded AO axis (n_el, n_padded)."""
    parts = []
    for g in basis.groups:
        n_atoms, n_shells = g.exponents.shape[:2]
        per = jnp.broadcast_to(atom_phase[..., None, None], (*atom_phase.shape, n_shells, 2 * g.l + 1))
        parts.append(per.reshape(*atom_phase.shape[:-1], -1))
    return jnp.concatenate(parts, axis=-1)


def basis_radius(mol, precision: float = 1e-12) -> float:
    """Distance (bohr) beyond which every primitive of the basis, with its coefficient and
    angular factor, is below `precision`."""
    radius = 0.0
    for i in range(mol.nbas):
        l = mol.bas_angular(i)
        for a, c in zip(mol.bas_exp(i), np.abs(mol._libcint_ctr_coeff(i)).max(axis=1)):
            r = np.sqrt(max(np.log(max(c, 1e-300) / precision), 1.0) / a)
            for _ in range(5):  # fixed point of c r^l exp(-a r^2) = precision
                r = np.sqrt(max(np.log(max(c, 1e-300) * max(r, 1.0) ** l / precision), 1e-3) / a)
            radius = max(radius, r)
    return float(radius)
