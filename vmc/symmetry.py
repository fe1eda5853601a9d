"""Crystal symmetry: point-group operations and the irreducible set of supercell twists.

Conventions (lattice vectors are ROWS, bohr; fractional coordinates are row vectors):

* Cartesian r = f A for a primitive lattice A (3, 3).
* A symmetry operation acts on fractional coordinates as f -> f W + t, with W a (3, 3)
  integer matrix and t a fractional translation (possibly non-lattice: nonsymmorphic
  operations are allowed). Row i of W is the image of the lattice vector a_i, in units of A.
  The Cartesian rotation is R with r -> r R^T, i.e. W = A R^T A^-1.
* W maps the lattice onto itself and preserves lengths iff W is unimodular and
  W G W^T = G with the metric G = A A^T.
* A twist theta (row, fractional in the supercell reciprocal lattice B_S = 2 pi (S A)^-T)
  transforms as k -> R k, i.e. theta -> theta W_S^-T with W_S = S W S^-1 the operation in
  supercell fractional coordinates. W_S must be an integer matrix, otherwise the operation
  does not map the supercell (the simulation cell) onto itself and cannot relate twists.
  Fractional translations t only change phases, so they do not enter the twist mapping.
* The Hamiltonian is real, so time reversal k -> -k is added on top of the point group.

No spglib: the search is by brute force, which is cheap for the few-atom cells used here.
"""

from __future__ import annotations

import numpy as np

SYMPREC = 1e-3  # bohr: atoms closer than this after an operation count as coinciding
METRIC_TOL = 1e-4  # relative tolerance on the metric W G W^T = G
TWIST_TOL = 1e-6  # fractional tolerance when comparing twists modulo the reciprocal lattice


def _vectors_of_length(lattice: np.ndarray, length: float, tol: float) -> np.ndarray:
    """Integer vectors n (k, 3) with |n A| = length within tol (bohr)."""
    # |n_j| <= |n A| * |column j of A^-1|, which bounds the search box exactly
    inv = np.linalg.inv(lattice)
    bounds = np.floor((length + tol) * np.linalg.norm(inv, axis=0) + 1e-9).astype(int)
    ranges = [np.arange(-b, b + 1) for b in bounds]
    n = np.stack(np.meshgrid(*ranges, indexing="ij"), -1).reshape(-1, 3)
    lengths = np.linalg.norm(n @ lattice, axis=1)
    return n[np.abs(lengths - length) <= tol]


def lattice_point_group(lattice: np.ndarray) -> np.ndarray:
    """Integer matrices W (n_ops, 3, 3) with W G W^T = G, G = A A^T, for a lattice A (rows, bohr).

    These are the rotations (proper and improper) that map the lattice onto itself, written
    in its fractional coordinates (f -> f W). The identity comes first.
    """
    lattice = np.asarray(lattice, dtype=float)
    g = lattice @ lattice.T
    scale = np.max(np.diag(g))
    tol = METRIC_TOL * scale
    lengths = np.sqrt(np.diag(g))
    # row i of W is the image of a_i: a lattice vector of the same length
    cands = [_vectors_of_length(lattice, lengths[i], METRIC_TOL * np.sqrt(scale)) for i in range(3)]
    # prune pairwise on the angles first so the triple product stays small
    pairs = [
        (r0, r1)
        for r0 in cands[0]
        for r1 in cands[1]
        if abs(r0 @ g @ r1 - g[0, 1]) <= tol
    ]
    ops = []
    for r0, r1 in pairs:
        for r2 in cands[2]:
            w = np.array([r0, r1, r2])
            if np.all(np.abs(w @ g @ w.T - g) <= tol) and round(abs(np.linalg.det(w))) == 1:
                ops.append(w)
    ops = np.array(ops, dtype=int).reshape(-1, 3, 3)
    # identity first (it is always present)
    is_id = np.array([np.array_equal(w, np.eye(3, dtype=int)) for w in ops])
    return np.concatenate([ops[is_id], ops[~is_id]])


def space_group_operations(symbols, frac_positions: np.ndarray, lattice: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Space-group operations (W, t) of a crystal: f -> f W + t maps the atoms onto themselves.

    symbols (n_atoms,), frac_positions (n_atoms, 3) fractional in `lattice` (rows, bohr).
    Returns one (W (3, 3) int, t (3,) fractional in [0, 1)) per point-group operation W of
    the crystal (the translation is any one that works; pure lattice translations and
    additional centring translations are not listed separately).
    """
    symbols = list(symbols)
    frac = np.asarray(frac_positions, dtype=float).reshape(-1, 3)
    lattice = np.asarray(lattice, dtype=float)
    species = np.array([symbols.index(s) for s in symbols])
    ops = []
    for w in lattice_point_group(lattice):
        moved = frac @ w
        # candidate translations: atom 0 must land on some atom of its own species
        for b in np.flatnonzero(species == species[0]):
            t = frac[b] - moved[0]
            if _maps_onto(moved + t, frac, species, lattice):
                ops.append((w, t - np.floor(t)))
                break
    return ops


def _maps_onto(moved: np.ndarray, frac: np.ndarray, species: np.ndarray, lattice: np.ndarray) -> bool:
    """Whether every moved atom coincides (mod lattice) with an original atom of its species."""
    d = moved[:, None, :] - frac[None, :, :]
    d -= np.round(d)
    dist = np.linalg.norm(d @ lattice, axis=-1)
    match = (dist < SYMPREC) & (species[:, None] == species[None, :])
    # each moved atom must match, and distinct atoms must not collapse onto one
    return bool(np.all(match.any(axis=1)) and np.all(match.any(axis=0)))


def supercell_twist_operations(symbols, frac_positions, primitive_lattice, supercell) -> np.ndarray:
    """Matrices M (n_ops, 3, 3) acting on supercell twists as theta -> theta M.

    They are W_S^-T for the crystal's point operations W whose supercell form W_S = S W S^-1
    is integer, together with their negatives (time reversal). Identity first.
    """
    s = np.asarray(supercell, dtype=float)
    s_inv = np.linalg.inv(s)
    mats = []
    for w, _ in space_group_operations(symbols, frac_positions, primitive_lattice):
        ws = s @ w @ s_inv
        if np.all(np.abs(ws - np.round(ws)) < 1e-8):
            mats.append(np.round(np.linalg.inv(np.round(ws)).T).astype(int))
    mats = np.array(mats, dtype=int).reshape(-1, 3, 3)
    return np.concatenate([mats, -mats])


def irreducible_twists(
    twists: np.ndarray,
    symbols: tuple[str, ...],
    frac_positions: np.ndarray,
    primitive_lattice: np.ndarray,
    supercell: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a twist set by the crystal symmetry and time reversal.

    twists (n, 3): fractional in the supercell reciprocal lattice (e.g. a Monkhorst–Pack grid);
    symbols (n_atoms,), frac_positions (n_atoms, 3): primitive-cell atoms, fractional in the
    primitive lattice (3, 3, rows, bohr); supercell (3, 3) integer S (simulation cell S A).

    Two twists are equivalent if theta' = theta M modulo integers for a symmetry M (see
    `supercell_twist_operations`). Returns (representatives (m, 3), weights (m,)): the first
    twist of each class in input order, and class size / n (weights sum to 1).
    """
    twists = np.asarray(twists, dtype=float).reshape(-1, 3)
    n = len(twists)
    mats = supercell_twist_operations(symbols, frac_positions, primitive_lattice, supercell)
    # equivalent[i, j] if some image twists[i] M_o equals j mod 1; one operation at a time,
    # so that memory grows as n^2, not n^2 times the (up to 96) operations
    equivalent = np.zeros((n, n), bool)
    for m in mats:
        d = (twists @ m)[:, None, :] - twists[None, :, :]
        d -= np.round(d)
        equivalent |= np.all(np.abs(d) < TWIST_TOL, axis=-1)
    label = np.full(n, -1)
    reps = []
    for i in range(n):
        if label[i] >= 0:
            continue
        # the operations form a group, so the orbit of i is its whole class
        members = equivalent[i] & (label < 0)
        label[members] = len(reps)
        reps.append(i)
    weights = np.bincount(label, minlength=len(reps)) / n
    return twists[reps], weights


__all__ = [
    "irreducible_twists",
    "lattice_point_group",
    "space_group_operations",
    "supercell_twist_operations",
]
