"""Localized Hartree–Fock orbitals and the per-(orbital, atom) descriptors of the `fire` ansatz.

Canonical Bloch orbitals are delocalized and change with the supercell; localized ones
transfer. We localize the occupied space of each spin by selected columns of the density
matrix (SCDM, Damle, Lin and Ying 2015): one non-iterative, deterministic method for
molecules and for supercells at any twist.

Supercell orbitals. A crystal's occupied orbital o is a primitive Bloch orbital (k_o, band):
    phi_o(r) = sum_T e^{i k_o.T} sum_mu C_o,mu chi_mu(r - T).
Splitting T = t + L (t: primitive translations inside the simulation cell, L: simulation-
cell vectors, e^{i k_o.L} = e^{i k_s.L}) gives phi_o(r) = sum_L e^{i k_s.L} u_o(r - L) with
    u_o = sum_{t, mu} D_o,(t,mu) chi_mu(r - t),  D_o,(t,mu) = e^{i k_o.t} C_o,mu,
a function expanded in the AOs of the simulation cell's atoms. Localizing the rows of D
(w = U^T D) localizes every orbital; molecules are the case n_cells = 1, k = 0.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import scipy.linalg

from vmc import lattice as lat
from vmc.neighbours import Capacities
from vmc.systems import System


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class FireFeatures:
    """What the `fire` network reads about a system (bohr; per-spin tuples (up, down)).

    images: (n_L, 3) simulation-cell vectors covering the embedding cutoff ([0] for molecules);
    orbital_images: (n_M, 3) vectors covering the orbital cutoff, orbital_phase: (n_M,) e^{i k_s.L};
        real, as are the coefficients and image phases, where the twist and the coefficients
        are real (`real_phases`): the network then computes real orbitals;
    orbital_cutoff: () bohr;
    capacities: neighbour-list sizes of the sparse network (vmc/neighbours.py), static; None:
        every candidate (no walker can overflow), until `vmc.ansatz.fire` sizes them to walkers.
    coefficients: (n_orb, n_atoms, n_slots) localized-orbital coefficients on each atom's AOs;
    geometry: (n_orb, n_atoms, 4) atom image nearest the orbital centre minus the centre, and
        its length; image_phase: (n_orb, n_atoms) e^{-i k_s.L*} of that image.
    """

    images: jax.Array
    orbital_images: jax.Array
    orbital_phase: jax.Array
    orbital_cutoff: jax.Array
    coefficients: tuple
    geometry: tuple
    image_phase: tuple
    capacities: Capacities | None = dataclasses.field(default=None, metadata=dict(static=True))


@functools.lru_cache(maxsize=None)
def element_ao_count(element: str, basis: str) -> int:
    """Number of spherical AOs of one atom of `element` in `basis` (the descriptor slots)."""
    from pyscf import gto

    z = gto.charge(element)
    return gto.M(atom=f"{element} 0 0 0", basis=basis, spin=z % 2, verbose=0).nao


def scdm(rows: np.ndarray) -> np.ndarray:
    """Unitary U (n_orb, n_orb) such that U^T rows is localized; rows (n_orb, n_basis).

    QR with column pivoting of the orbital matrix picks the n_orb most representative basis
    functions; projecting them onto the occupied space and orthonormalizing (Löwdin) gives
    the localized orbitals.
    """
    n = rows.shape[0]
    _, _, pivots = scipy.linalg.qr(rows, pivoting=True, mode="economic")
    c = rows[:, pivots[:n]]  # (n_orb, n_orb)
    # polar factor: U = C (C^H C)^-1/2 is the unitary closest to C
    w, s, vh = np.linalg.svd(c)
    return (w @ vh).conj()


def _atom_ao_slices(system: System, baseline) -> list[slice]:
    """AO ranges of the simulation cell's atoms in the (cell t, primitive AO) ordering."""
    mol = baseline.pyscf_object()
    n_ao = mol.nao
    slices = [slice(int(a[2]), int(a[3])) for a in mol.aoslice_by_atom()]
    if not system.periodic:
        return slices
    return [slice(t * n_ao + s.start, t * n_ao + s.stop) for t in range(system.n_cells) for s in slices]


def _nearest_images(positions: np.ndarray, center: np.ndarray, lattice: np.ndarray | None) -> np.ndarray:
    """Integer-lattice shifts L bringing each position nearest to `center`; (n, 3) bohr."""
    if lattice is None:
        return np.zeros_like(positions)
    f = (positions - center) @ np.linalg.inv(lattice)
    shifts = -np.round(f) @ lattice
    # the rounded image is nearest for near-orthogonal cells; check the neighbours for others
    candidates = np.array([[i, j, k] for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ lattice
    trial = positions[:, None, :] + shifts[:, None, :] + candidates[None] - center
    best = np.argmin(np.linalg.norm(trial, axis=-1), axis=1)
    return shifts + candidates[best]


def orbital_descriptors(system: System, rows: np.ndarray, slices: list[slice], slots: int):
    """Coefficients on each atom in fixed slots, geometry relative to the orbital centre and
    the image phases; rows: localized orbitals (n_orb, n_cells * n_ao)."""
    n_orb, n_atoms = rows.shape[0], len(slices)
    coef = np.zeros((n_orb, n_atoms, slots), dtype=rows.dtype)
    for a, s in enumerate(slices):
        coef[:, a, : s.stop - s.start] = rows[:, s]
    weight = np.sum(np.abs(coef) ** 2, axis=-1)
    weight = weight / weight.sum(axis=1, keepdims=True)
    geometry = np.zeros((n_orb, n_atoms, 4))
    phase = np.ones((n_orb, n_atoms), dtype=complex)
    for o in range(n_orb):
        center = system.positions[np.argmax(weight[o])]
        for _ in range(3):  # centroid of the nearest images, refined
            shifts = _nearest_images(system.positions, center, system.lattice)
            center = weight[o] @ (system.positions + shifts)
        shifts = _nearest_images(system.positions, center, system.lattice)
        rel = system.positions + shifts - center
        geometry[o] = np.concatenate([rel, np.linalg.norm(rel, axis=-1, keepdims=True)], -1)
        phase[o] = np.exp(-1j * (shifts @ system.twist_cartesian))
    return coef, geometry, phase


def localize(system: System, baseline, spin: int) -> tuple[np.ndarray, np.ndarray]:
    """(U, D): SCDM rotation of the occupied orbitals of one spin and the supercell coefficients."""
    rows = baseline.orbital_rows(spin)
    if rows.shape[0] == 0:
        return np.zeros((0, 0), rows.dtype), rows
    u = scdm(rows)
    if not np.iscomplexobj(rows):
        u = u.real
    localized = u.T @ rows
    # gauge: the largest coefficient of every orbital real and positive
    big = localized[np.arange(len(localized)), np.argmax(np.abs(localized), axis=1)]
    gauge = np.conj(big) / np.abs(big)
    return u * gauge[None, :], rows


def real_phases(system: System) -> bool:
    """Whether every Bloch phase e^{i k_s.L} of the system is +-1: molecules, and twists at
    half a supercell reciprocal vector (Gamma and the other time-reversal-invariant points).
    There the Hamiltonian is real, and so can the wavefunction be."""
    if not system.periodic:
        return True
    x = system.lattice @ system.twist_cartesian / np.pi
    return bool(np.all(np.abs(x - np.round(x)) < 1e-9))


def _real_if_possible(coefficients: list[np.ndarray], system: System) -> list[np.ndarray]:
    """The coefficients as real arrays where the phases and the coefficients are real (to
    1e-10 of their largest), so that the network's orbitals are real and its arithmetic
    real, with the same values (docs/physics.md, "fire"). Left complex otherwise."""
    def real(c):
        return not np.iscomplexobj(c) or c.size == 0 or np.max(np.abs(c.imag)) <= 1e-10 * np.max(np.abs(c))

    if real_phases(system) and all(real(c) for c in coefficients):
        return [c.real for c in coefficients]
    return coefficients


def prepare_fire(system: System, baseline, cfg, elements: list[str]):
    """Localized HF baseline (the pretraining targets) and the FireFeatures of a system."""
    slots = max(element_ao_count(e, baseline.basis_name) for e in elements)
    slices = _atom_ao_slices(system, baseline)
    coefficients, geometry, image_phase, rotations = [], [], [], []
    for spin in (0, 1):
        u, rows = localize(system, baseline, spin)
        c, g, p = orbital_descriptors(system, u.T @ rows, slices, slots)
        coefficients.append(c)
        geometry.append(g)
        image_phase.append(p)
        rotations.append(u)
    coefficients = _real_if_possible(coefficients, system)
    real = not np.iscomplexobj(coefficients[0])
    if real:
        image_phase = [p.real for p in image_phase]
    orbital_cutoff = cfg.orbital_cutoff
    if system.periodic:
        images = lat.lattice_vectors_near_cell(system.lattice, cfg.cutoff) if cfg.cutoff is not None else np.zeros((1, 3))
        orbital_images = lat.lattice_vectors_near_cell(system.lattice, orbital_cutoff)
        orbital_phase = np.exp(1j * (orbital_images @ system.twist_cartesian))
        if real:
            orbital_phase = orbital_phase.real
    else:
        images = orbital_images = np.zeros((1, 3))
        orbital_phase = np.ones(1)
    features = FireFeatures(
        images=jnp.asarray(images),
        orbital_images=jnp.asarray(orbital_images),
        orbital_phase=jnp.asarray(orbital_phase),
        orbital_cutoff=jnp.asarray(orbital_cutoff),
        coefficients=tuple(jnp.asarray(c) for c in coefficients),
        geometry=tuple(jnp.asarray(g) for g in geometry),
        image_phase=tuple(jnp.asarray(p) for p in image_phase),
    )
    return baseline.rotated(rotations), features
