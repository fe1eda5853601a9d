"""Hartree–Fock baseline with PySCF, cached on disk, and its occupied orbitals in JAX.

Molecules: RHF for closed shells, UHF otherwise. Crystals: KRHF on the PRIMITIVE cell at the
k-points that the simulation cell folds onto (shifted by the twist), Gaussian density fitting
and `exxdiv='ewald'` (docs/physics.md, "Hartree–Fock baseline"); a KRHF supercell calculation would cost orders of
magnitude more for the same orbitals.

Every occupied orbital is stored as rows D of coefficients over the AOs of the simulation
cell's atoms, ordered (primitive translation t, primitive AO mu):
    phi_o(r) = sum_L e^{i k_s.L} sum_{t, mu} D_o,(t, mu) chi_mu(r - t - L),
    D_o,(t, mu) = e^{i k_o.t} C_o,mu  for a Bloch orbital (k_o, C_o) of the primitive cell,
where L runs over simulation-cell vectors and k_s is the twist. A molecule is the case of one
cell, no images and k = 0, so one evaluation path serves both.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path

import h5py
import jax
import jax.numpy as jnp
import numpy as np

from vmc import lattice as lat
from vmc.errors import InputError
from vmc.geometry import Cell
from vmc.gto import Basis, basis_from_pyscf, basis_radius, eval_bloch_aos
from vmc.systems import System

CACHE_FORMAT = 1  # bump when the cached content changes meaning


@dataclasses.dataclass(frozen=True, eq=False)
class Baseline:
    """Occupied HF orbitals of one system (host side, numpy).

    energy: HF total energy of the simulation cell (hartree); per primitive cell for crystals
    is energy / n_cells. spec: the arguments that rebuild the PySCF Mole/Cell (primitive cell
    for crystals). kpoints: (n_k, 3) bohr^-1 ([0] for molecules). coefficients, k_index,
    mo_energy: per spin (up, down) the occupied orbitals' AO coefficients (n_orb, n_ao),
    k-point index (n_orb,) and energy (n_orb,). translations: (n_cells, 3) primitive
    translations of the simulation cell, in the order of the system's atoms. lattice:
    simulation cell (rows, bohr) or None; twist: (3,) bohr^-1. rotations: optional per-spin
    (n_orb, n_orb) unitary mixing the occupied orbitals (localization): new rows = U^T D.
    """

    energy: float
    basis_name: str
    spec: dict
    kpoints: np.ndarray
    coefficients: tuple
    k_index: tuple
    mo_energy: tuple
    translations: np.ndarray
    atoms: np.ndarray
    lattice: np.ndarray | None = None
    twist: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(3))
    rotations: tuple | None = None

    @property
    def periodic(self) -> bool:
        return self.lattice is not None

    @property
    def n_cells(self) -> int:
        return len(self.translations)

    @property
    def energy_per_cell(self) -> float:
        return self.energy / self.n_cells

    def pyscf_object(self):
        """The PySCF Mole (molecules) or primitive Cell (crystals) of this baseline."""
        return _build_pyscf(json.dumps(self.spec, sort_keys=True))

    def orbital_rows(self, spin: int) -> np.ndarray:
        """D (n_orb, n_cells * n_ao) of one spin over the simulation cell's AOs, rotated."""
        coef = self.coefficients[spin]
        phases = np.exp(1j * (self.kpoints[self.k_index[spin]] @ self.translations.T))  # (n_orb, n_cells)
        # explicit width: a spin without electrons has (0, n_cells * n_ao) rows
        rows = (phases[:, :, None] * coef[:, None, :]).reshape(coef.shape[0], self.n_cells * coef.shape[1])
        if not self.periodic:
            rows = rows.real
        if self.rotations is not None:
            rows = self.rotations[spin].T @ rows
        return rows

    def rotated(self, rotations) -> "Baseline":
        """The same occupied space with orbitals U^T D (per spin); determinants change by a constant."""
        return dataclasses.replace(self, rotations=tuple(np.asarray(u) for u in rotations))


# ----------------------------------------------------------------------------- PySCF


@functools.lru_cache(maxsize=32)
def _build_pyscf(spec_json: str):
    spec = json.loads(spec_json)
    if spec.get("a") is None:
        from pyscf import gto

        return gto.M(atom=spec["atom"], basis=spec["basis"], unit="bohr", charge=spec["charge"], spin=spec["spin"], verbose=0)
    from pyscf.pbc import gto as pbcgto

    cell = pbcgto.Cell()
    cell.atom = spec["atom"]
    cell.a = np.array(spec["a"])
    cell.basis = spec["basis"]
    cell.unit = "bohr"
    cell.spin = spec["spin"]
    cell.exp_to_discard = spec["exp_to_discard"]
    cell.dimension = 3
    cell.verbose = 0
    cell.build()
    return cell


def pyscf_spec(system: System, basis: str, exp_to_discard: float | None) -> dict:
    """JSON-able arguments of the PySCF object: the molecule, or the crystal's primitive cell."""
    if not system.periodic:
        atoms = [[s, [float(x) for x in p]] for s, p in zip(system.symbols, system.positions)]
        return dict(atom=atoms, basis=basis, charge=system.charge, spin=system.spin, a=None)
    atoms = [[s, [float(x) for x in p]] for s, p in zip(system.primitive_symbols, system.primitive_positions)]
    return dict(atom=atoms, basis=basis, charge=0, spin=0, a=system.primitive_lattice.tolist(), exp_to_discard=exp_to_discard)


def _build_checked(spec: dict, system: System):
    try:
        return _build_pyscf(json.dumps(spec, sort_keys=True))
    except (KeyError, RuntimeError, ValueError, OSError) as e:
        raise InputError(f"config key 'baseline.basis': cannot build basis {spec['basis']!r} for system {system.id!r} ({e})") from None


def _run_molecule(mol):
    from pyscf import scf

    mf = (scf.RHF if mol.spin == 0 else scf.UHF)(mol)
    mf.conv_tol = 1e-10
    mf.kernel()
    if not mf.converged:
        dm = mf.make_rdm1()
        mf = mf.newton()
        mf.kernel(dm0=dm)  # its first positional argument is orbitals, not a density
    if mol.spin == 0:
        occ = mf.mo_occ > 0
        coefs = [mf.mo_coeff[:, occ].T] * 2
        energies = [mf.mo_energy[occ]] * 2
    else:
        coefs = [mf.mo_coeff[s][:, mf.mo_occ[s] > 0].T for s in (0, 1)]
        energies = [mf.mo_energy[s][mf.mo_occ[s] > 0] for s in (0, 1)]
    k_index = [np.zeros(len(c), dtype=np.int32) for c in coefs]
    return float(mf.e_tot), bool(mf.converged), coefs, k_index, energies


# Crystal SCF strategies, tried in this order until one converges to an aufbau state: plain
# DIIS; DIIS with a level shift from the density of a Fermi-smeared SCF (a metal-like chain
# whose gap closes as the k-mesh grows oscillates between occupations under plain DIIS); the
# second-order solver from the best density so far. PySCF diagonalizes once more without the
# shift after convergence, so orbital energies and occupations are those of the plain Fock matrix.
SMEARING_SIGMA = 0.01  # Ha
LEVEL_SHIFT = 0.25  # Ha
AUFBAU_TOLERANCE = 1e-6  # Ha: an occupied orbital this far above an empty one is not a ground state


def aufbau_gap(mo_energy, mo_occ) -> float:
    """Lowest empty minus highest occupied orbital energy over all k-points (Ha); negative
    when the occupations are not aufbau; inf when no orbital is empty (or none occupied)."""
    e = np.concatenate([np.asarray(x, dtype=float).ravel() for x in mo_energy])
    occ = np.concatenate([np.asarray(x).ravel() > 0 for x in mo_occ])
    if occ.all() or not occ.any():
        return float("inf")
    return float(e[~occ].min() - e[occ].max())


def _krhf(cell, kpts: np.ndarray):
    from pyscf.pbc import scf

    kmf = scf.KRHF(cell, kpts, exxdiv="ewald").density_fit(auxbasis="weigend")
    kmf.conv_tol = 1e-9
    return kmf


def _converge_crystal(cell, kpts: np.ndarray):
    """The KRHF object of the first strategy above that converges to an aufbau state, and a
    list of what the failed ones ended with."""
    from pyscf.pbc import scf

    tried = []

    def accept(kmf, name):
        gap = aufbau_gap(kmf.mo_energy, kmf.mo_occ)
        if kmf.converged and gap >= -AUFBAU_TOLERANCE:
            return True
        tried.append(f"{name}: {'converged to a non-aufbau state (gap ' + f'{gap:.4f} Ha)' if kmf.converged else 'not converged'}")
        return False

    kmf = _krhf(cell, kpts)
    kmf.kernel()
    if accept(kmf, "DIIS"):
        return kmf, tried
    smeared = scf.addons.smearing_(_krhf(cell, kpts), sigma=SMEARING_SIGMA, method="fermi")
    smeared.kernel()
    shifted = _krhf(cell, kpts)
    shifted.level_shift = LEVEL_SHIFT
    shifted.max_cycle *= 2  # a level shift slows convergence
    shifted.kernel(smeared.make_rdm1())
    if accept(shifted, "level-shifted DIIS from a Fermi-smeared density"):
        return shifted, tried
    second = _krhf(cell, kpts).newton()
    second.kernel(dm0=shifted.make_rdm1())  # its first positional argument is orbitals, not a density
    if accept(second, "second-order"):
        return second, tried
    return None, tried


def _run_crystal(cell, kpts: np.ndarray):
    kmf, tried = _converge_crystal(cell, kpts)
    if kmf is None:
        return None, tried
    rows, k_index, energies = [], [], []
    for k in range(len(kpts)):
        occ = np.asarray(kmf.mo_occ[k]) > 0
        rows.append(np.asarray(kmf.mo_coeff[k])[:, occ].T)
        k_index.append(np.full(int(occ.sum()), k, dtype=np.int32))
        energies.append(np.asarray(kmf.mo_energy[k])[occ])
    coef = np.concatenate(rows).astype(complex)
    order = np.argsort(np.concatenate(energies), kind="stable")
    coef, k_idx, e = coef[order], np.concatenate(k_index)[order], np.concatenate(energies)[order]
    return (float(kmf.e_tot), [coef, coef], [k_idx, k_idx], [e, e]), tried


# ----------------------------------------------------------------------------- cache


def cache_key(spec: dict, kpoints: np.ndarray) -> str:
    import pyscf

    payload = dict(spec=spec, kpoints=np.round(kpoints, 12).tolist(), format=CACHE_FORMAT, pyscf=pyscf.__version__)
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def _read_cache(path: Path):
    try:
        with h5py.File(path, "r") as f:
            spins = [f[f"spin{s}"] for s in (0, 1)]
            return (
                float(f.attrs["energy"]),
                [s["coefficients"][()] for s in spins],
                [s["k_index"][()] for s in spins],
                [s["mo_energy"][()] for s in spins],
            )
    except (OSError, KeyError):  # unreadable or partial: recompute
        return None


def _write_cache(path: Path, energy: float, coefs, k_index, energies, spec: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    with h5py.File(tmp, "w") as f:
        f.attrs["energy"] = energy
        f.attrs["spec"] = json.dumps(spec)
        for s in (0, 1):
            g = f.create_group(f"spin{s}")
            g["coefficients"] = coefs[s]
            g["k_index"] = k_index[s]
            g["mo_energy"] = energies[s]
    os.replace(tmp, path)


def hartree_fock(system: System, cfg) -> Baseline:
    """HF baseline of `system` with the options of `cfg` (BaselineConfig), from the cache
    when the same system, basis and k-points were computed before."""
    spec = pyscf_spec(system, cfg.basis, cfg.exp_to_discard)
    obj = _build_checked(spec, system)
    if system.periodic:
        if system.spin != 0:
            raise InputError(f"system {system.id!r}: spin-polarized crystals are not supported (spin {system.spin})")
        kpoints = lat.folded_kpoints(system.supercell, system.primitive_lattice, system.twist)
        translations = lat.supercell_translations(system.supercell, system.primitive_lattice)
    else:
        kpoints = np.zeros((1, 3))
        translations = np.zeros((1, 3))
    path = Path(os.path.expanduser(cfg.cache_dir)) / f"{cache_key(spec, kpoints)}.h5"
    cached = _read_cache(path) if path.exists() else None
    if cached is None:
        if system.periodic:
            result, tried = _run_crystal(obj, kpoints)
            if result is None:
                raise InputError(f"system {system.id!r}: Hartree–Fock found no converged aufbau state (basis {cfg.basis!r}; "
                                 + "; ".join(tried) + "): nothing was written; a twist grid of another size may avoid the "
                                 "degeneracy (docs/physics.md, Hartree–Fock baseline)")
            energy, coefs, k_index, energies = result
        else:
            energy, converged, coefs, k_index, energies = _run_molecule(obj)
            if not converged:
                raise InputError(f"system {system.id!r}: Hartree–Fock did not converge (basis {cfg.basis!r})")
        _write_cache(path, energy, coefs, k_index, energies, spec)
    else:
        energy, coefs, k_index, energies = cached
    for spin, n in enumerate((system.n_up, system.n_down)):
        if len(coefs[spin]) != n:
            raise InputError(f"system {system.id!r}: HF occupies {len(coefs[spin])} orbitals of spin {spin}, expected {n}")
    return Baseline(
        energy=energy * system.n_cells,
        basis_name=cfg.basis,
        spec=spec,
        kpoints=kpoints,
        coefficients=tuple(coefs),
        k_index=tuple(k_index),
        mo_energy=tuple(energies),
        translations=translations,
        atoms=np.asarray(system.positions),
        lattice=system.lattice,
        twist=system.twist_cartesian,
    )


# ----------------------------------------------------------------------------- JAX side


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class HFOrbitals:
    """Occupied HF orbitals as arrays: basis on the simulation cell's atoms (n_atoms, 3),
    images (n_L, 3) for the Bloch sums (one zero vector for molecules), cell (None for
    molecules), and the rows D of each spin in the basis' padded AO order, (n_up, n_padded)
    and (n_down, n_padded)."""

    basis: Basis
    atoms: jax.Array
    images: jax.Array
    cell: Cell | None
    up: jax.Array
    down: jax.Array


def hf_orbitals_data(baseline: Baseline, precision: float = 1e-12) -> HFOrbitals:
    """Device arrays of the baseline's occupied orbitals (dtype follows jax's x64 flag)."""
    obj = baseline.pyscf_object()
    basis = basis_from_pyscf(obj, baseline.n_cells)
    cell, images = None, np.zeros((1, 3))
    if baseline.periodic:
        cell = Cell.make(baseline.lattice, baseline.twist)
        images = lat.lattice_vectors_near_cell(baseline.lattice, basis_radius(obj, precision))
    return HFOrbitals(
        basis=basis,
        atoms=jnp.asarray(baseline.atoms),
        images=jnp.asarray(images),
        cell=cell,
        up=jnp.asarray(basis.to_padded(baseline.orbital_rows(0))),
        down=jnp.asarray(basis.to_padded(baseline.orbital_rows(1))),
    )


def eval_hf_orbitals(hf: HFOrbitals, r: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Occupied orbitals at electrons r (n_el, 3): (n_el, n_up) and (n_el, n_down)."""
    aos = eval_bloch_aos(hf.basis, r, hf.atoms, hf.images, hf.cell)
    return aos @ hf.up.T, aos @ hf.down.T
