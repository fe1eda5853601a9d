"""Lattice geometry: reciprocal lattices, supercells, k-point folding and twist sets.

Conventions (docs/physics.md): lattice vectors are the ROWS of a (3, 3) matrix, in bohr;
reciprocal lattice vectors are rows too, with a_i . b_j = 2 pi delta_ij. A twist is given in
fractional coordinates of the supercell reciprocal lattice.
"""

from __future__ import annotations

import itertools
import math

import numpy as np


def reciprocal(lattice: np.ndarray) -> np.ndarray:
    """Reciprocal lattice vectors (rows, bohr^-1) of `lattice` (rows, bohr)."""
    return 2 * np.pi * np.linalg.inv(lattice).T


def supercell_matrix(supercell) -> np.ndarray:
    """(3, 3) integer supercell matrix S from 3 integers or a 3x3 matrix (simulation cell = S A)."""
    s = np.asarray(supercell)
    if s.shape == (3,):
        s = np.diag(s)
    if s.shape != (3, 3) or not np.all(np.equal(np.round(s), s)):
        raise ValueError("the supercell must be 3 integers or a 3x3 integer matrix")
    s = np.round(s).astype(int)
    if round(abs(np.linalg.det(s))) == 0:
        raise ValueError("the supercell matrix is singular")
    return s


def supercell_translations(supercell: np.ndarray, primitive_lattice: np.ndarray) -> np.ndarray:
    """The n_cells primitive translations T = n A inside the simulation cell S A, shape (n_cells, 3).

    n runs over integer vectors whose fractional coordinates in the supercell, n S^-1, lie
    in [0, 1); there are |det S| of them.
    """
    s_inv = np.linalg.inv(supercell)
    n_cells = round(abs(np.linalg.det(supercell)))
    corners = np.array(list(itertools.product((0, 1), repeat=3))) @ supercell
    lo, hi = corners.min(0), corners.max(0)
    grid = np.array(list(itertools.product(*(range(a, b + 1) for a, b in zip(lo, hi)))))
    frac = grid @ s_inv
    eps = 1e-9
    inside = np.all((frac > -eps) & (frac < 1 - eps), axis=1)
    cells = grid[inside]
    assert len(cells) == n_cells, (len(cells), n_cells)
    return cells @ primitive_lattice


def folded_kpoints(supercell: np.ndarray, primitive_lattice: np.ndarray, twist: np.ndarray) -> np.ndarray:
    """Primitive-cell k-points (cartesian, bohr^-1, shape (n_cells, 3)) that the supercell folds onto.

    They are k = k_s + G for the supercell reciprocal vectors G distinct modulo the primitive
    reciprocal lattice, with k_s the twist (fractional in the supercell reciprocal lattice).
    """
    sc_lattice = supercell @ primitive_lattice
    b_sc = reciprocal(sc_lattice)
    # G = m B_S; in primitive fractional coordinates m S^-T. The supercell translations of
    # the transposed problem enumerate exactly the distinct m.
    m = np.rint(supercell_translations(supercell.T, np.eye(3))).astype(int)
    return (m + np.asarray(twist)[None]) @ b_sc


def wrap_fractional(frac: np.ndarray) -> np.ndarray:
    """Fractional coordinates reduced to [0, 1)."""
    return frac - np.floor(frac)


def monkhorst_pack(grid, shift=(0.0, 0.0, 0.0)) -> np.ndarray:
    """Monkhorst–Pack twists (fractional, supercell reciprocal lattice) of an n1 x n2 x n3 grid.

    Coordinates u_r = (2r - n - 1) / (2n), r = 1..n (Gamma included for odd n, offset by half
    a grid spacing for even n), plus `shift` (in units of the grid spacing), wrapped to [-1/2, 1/2).
    """
    grid = np.asarray(grid, dtype=int)
    axes = [(2 * np.arange(1, n + 1) - n - 1) / (2 * n) + s / n for n, s in zip(grid, shift)]
    return wrap_half(np.array(list(itertools.product(*axes))))


def wrap_half(frac: np.ndarray) -> np.ndarray:
    """Fractional coordinates reduced to [-1/2, 1/2)."""
    return frac - np.floor(frac + 0.5)


def _search_bounds(lattice: np.ndarray, radius: float) -> list[int]:
    """Per axis, the largest |n_i| of a lattice vector n A with |n A| <= radius."""
    # |n A| >= |n_i| / |row i of A^-1 (as column)|, which bounds each integer coordinate
    inv = np.linalg.inv(lattice)
    return [int(b) for b in np.ceil(radius * np.linalg.norm(inv, axis=0))]


def lattice_vectors_within(lattice: np.ndarray, radius: float) -> np.ndarray:
    """All lattice vectors L = n A (rows) with |L| <= radius, shortest first; (n_L, 3)."""
    ranges = [np.arange(-b, b + 1) for b in _search_bounds(lattice, radius)]
    n = np.stack(np.meshgrid(*ranges, indexing="ij"), -1).reshape(-1, 3)
    vecs = n @ lattice
    lengths = np.linalg.norm(vecs, axis=1)
    keep = lengths <= radius + 1e-9
    order = np.argsort(lengths[keep], kind="stable")
    return vecs[keep][order]


def lattice_vectors_near_cell(lattice: np.ndarray, radius: float) -> np.ndarray:
    """Lattice vectors L (n_L, 3) within `radius` (bohr) of some point of the cell centred at
    the origin, {f @ lattice : f in [-1/2, 1/2]^3}: the images a sum over |d - L| <= radius
    needs once d is reduced into that cell (`geometry.reduce_displacement`).

    A superset of these is every |L| <= radius + cell_reach; long or flat cells keep far
    fewer (a chain's 20-bohr vacuum needs no images across it for a 5-bohr cutoff).
    """
    from scipy.optimize import lsq_linear

    lattice = np.asarray(lattice, float)
    candidates = lattice_vectors_within(lattice, radius + cell_reach(lattice))
    keep = [lsq_linear(lattice.T, vec, bounds=(-0.5, 0.5)).cost * 2 <= radius**2 + 1e-9 for vec in candidates]
    return candidates[np.array(keep, bool)]


def image_candidates(lattice: np.ndarray, radius: float) -> int:
    """How many lattice vectors `lattice_vectors_near_cell(lattice, radius)` searches (a box
    of integer vectors, each tested one by one), from the box's size alone: no allocation."""
    return math.prod(2 * b + 1 for b in _search_bounds(np.asarray(lattice, float), radius + cell_reach(lattice)))


def cell_reach(lattice: np.ndarray) -> float:
    """Longest displacement reduced to fractional coordinates in [-1/2, 1/2]^3 (bohr)."""
    corners = np.array([[i, j, k] for i in (-0.5, 0.5) for j in (-0.5, 0.5) for k in (-0.5, 0.5)])
    return float(np.max(np.linalg.norm(corners @ lattice, axis=1)))
