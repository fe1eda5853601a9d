"""Atomic orbitals and HF orbitals in JAX against PySCF; the on-disk HF cache."""

import h5py
import jax.numpy as jnp
import numpy as np
import pytest

from vmc import baseline as bl
from vmc import lattice as lat
from vmc.config import BaselineConfig
from vmc.errors import InputError
from vmc.gto import basis_from_pyscf, eval_bloch_aos
from vmc.systems import build_systems, resolve_specs


@pytest.mark.parametrize("basis", ["sto-3g", "cc-pVDZ", "cc-pVTZ"])
def test_molecular_aos_equal_pyscf(x64, basis):
    from pyscf import gto

    mol = gto.M(atom="O 0 0 0; H 0 1.4 1.1; H 0 -1.4 1.1", basis=basis, unit="bohr", verbose=0)
    r = np.random.default_rng(0).normal(size=(64, 3)) * 2.0
    r[0] = mol.atom_coords()[1]  # exactly on a nucleus
    basis = basis_from_pyscf(mol)
    ours = eval_bloch_aos(basis, jnp.asarray(r), jnp.asarray(mol.atom_coords()), None, None)[:, np.asarray(basis.order)]
    np.testing.assert_allclose(ours, mol.eval_gto("GTOval_sph", r), rtol=0, atol=1e-10)


def _random_baseline(system, basis, rng):
    """A Baseline with random occupied orbitals at the folded k-points (no SCF needed: the
    test is about evaluating orbitals, not about their content)."""
    spec = bl.pyscf_spec(system, basis, exp_to_discard=None)
    kpts = lat.folded_kpoints(system.supercell, system.primitive_lattice, system.twist)
    n_orb = system.n_up
    k_index = rng.integers(0, len(kpts), n_orb).astype(np.int32)
    n_ao = bl.Baseline(energy=0.0, basis_name=basis, spec=spec, kpoints=kpts, coefficients=(), k_index=(), mo_energy=(),
                       translations=np.zeros((1, 3)), atoms=system.positions).pyscf_object().nao
    coef = rng.normal(size=(n_orb, n_ao)) + 1j * rng.normal(size=(n_orb, n_ao))
    baseline = bl.Baseline(
        energy=0.0, basis_name=basis, spec=spec, kpoints=kpts, coefficients=(coef, coef),
        k_index=(k_index, k_index), mo_energy=(np.zeros(n_orb),) * 2,
        translations=lat.supercell_translations(system.supercell, system.primitive_lattice), atoms=system.positions,
        lattice=system.lattice, twist=system.twist_cartesian,
    )
    cell = baseline.pyscf_object()
    return baseline, cell, kpts, coef, k_index


@pytest.mark.parametrize("twist", [(0.0, 0.0, 0.0), (0.25, -0.5, 0.125)])
def test_crystal_orbitals_equal_pyscf_bloch_orbitals(x64, twist):
    """Supercell orbitals from lattice sums equal sum_mu C_mu chi^k_mu(r) with PySCF's
    Bloch AOs (pbc eval_gto with kpts), at points inside and outside the simulation cell."""
    system = build_systems(resolve_specs({"name": "lih_rocksalt", "supercell": [2, 1, 1], "twists": [list(twist)]}))[0]
    rng = np.random.default_rng(1)
    baseline, cell, kpts, coef, k_index = _random_baseline(system, "sto-3g", rng)
    r = rng.uniform(-1.0, 2.0, size=(12, 3)) @ system.lattice
    up, _ = bl.eval_hf_orbitals(bl.hf_orbitals_data(baseline), jnp.asarray(r))
    reference = cell.copy()
    reference.precision = 1e-16  # PySCF's default lattice sum (1e-8) is itself only good to ~1e-4 here
    reference.build()
    chi = np.asarray(reference.pbc_eval_gto("GTOval_sph", r, kpts=kpts))  # (n_k, n_r, n_ao)
    ref = np.stack([chi[k] @ coef[o] for o, k in enumerate(k_index)], axis=1)
    np.testing.assert_allclose(up, ref, rtol=0, atol=1e-8)


def test_hf_energy_equals_pyscf_and_is_cached(tmp_path, monkeypatch):
    from pyscf import gto, scf

    system = build_systems(resolve_specs("LiH"))[0]
    cfg = BaselineConfig(basis="6-31g", cache_dir=str(tmp_path))
    first = bl.hartree_fock(system, cfg)
    mol = gto.M(atom=[("Li", (0, 0, 0)), ("H", (0, 0, 3.015))], unit="bohr", basis="6-31g", verbose=0)
    assert first.energy == pytest.approx(scf.RHF(mol).kernel(), abs=1e-8)
    (cached,) = list(tmp_path.glob("*.h5"))

    def fail(*args):
        raise AssertionError("HF recomputed although cached")

    monkeypatch.setattr(bl, "_run_molecule", fail)
    second = bl.hartree_fock(system, cfg)
    assert second.energy == first.energy
    np.testing.assert_array_equal(second.coefficients[0], first.coefficients[0])

    # a damaged cache file is recomputed, not trusted
    with h5py.File(cached, "w") as f:
        f.attrs["energy"] = 1.0
    monkeypatch.undo()
    third = bl.hartree_fock(system, cfg)
    assert third.energy == pytest.approx(first.energy, abs=1e-8)


def test_open_shell_uses_uhf(tmp_path):
    from pyscf import gto, scf

    system = build_systems(resolve_specs("Li"))[0]
    baseline = bl.hartree_fock(system, BaselineConfig(basis="6-31g", cache_dir=str(tmp_path)))
    mol = gto.M(atom="Li 0 0 0", basis="6-31g", spin=1, verbose=0)
    assert baseline.energy == pytest.approx(scf.UHF(mol).kernel(), abs=1e-7)
    assert [len(c) for c in baseline.coefficients] == [2, 1]


def _chain_cell(n_atoms=8, twist=0.0, basis="sto-3g"):
    (system,) = build_systems({"name": "hydrogen_chain", "lattice_constant": 3.6, "supercell": [n_atoms // 2, 1, 1],
                               "twists": [[twist, 0, 0]]})
    cell = bl._build_checked(bl.pyscf_spec(system, basis, None), system)
    return system, cell, lat.folded_kpoints(system.supercell, system.primitive_lattice, system.twist)


def test_crystal_scf_falls_back_to_a_level_shift_from_a_smeared_density(monkeypatch):
    """Plain DIIS made to fail (2 cycles): the level-shifted SCF from a Fermi-smeared density
    converges to the same aufbau state as an unhindered KRHF of PySCF."""
    from pyscf.pbc import scf

    _, cell, kpts = _chain_cell()
    ref = scf.KRHF(cell, kpts, exxdiv="ewald").density_fit(auxbasis="weigend")
    ref.conv_tol = 1e-10
    e_ref = ref.kernel()
    calls = []
    krhf = bl._krhf

    def first_fails(cell, kpts):
        kmf = krhf(cell, kpts)
        if not calls:
            kmf.max_cycle = 2
        calls.append(kmf)
        return kmf

    monkeypatch.setattr(bl, "_krhf", first_fails)
    kmf, tried = bl._converge_crystal(cell, kpts)
    assert tried == ["DIIS: not converged"]
    assert kmf.converged and kmf.level_shift == bl.LEVEL_SHIFT
    assert kmf.e_tot == pytest.approx(e_ref, abs=1e-8)
    gap = bl.aufbau_gap(ref.mo_energy, ref.mo_occ)
    assert gap > 0 and bl.aufbau_gap(kmf.mo_energy, kmf.mo_occ) == pytest.approx(gap, abs=1e-6)


def test_crystal_scf_without_an_aufbau_state_is_refused(tmp_path, monkeypatch):
    """Every strategy made to fail: one line naming the system and what each ended with,
    and nothing cached."""
    system, _, _ = _chain_cell()
    krhf = bl._krhf

    def hobbled(cell, kpts):
        kmf = krhf(cell, kpts)
        kmf.max_cycle = 1
        return kmf

    monkeypatch.setattr(bl, "_krhf", hobbled)
    with pytest.raises(InputError) as e:
        bl.hartree_fock(system, BaselineConfig(basis="sto-3g", cache_dir=str(tmp_path)))
    message = str(e.value)
    assert message.startswith("system 'hydrogen_chain': Hartree–Fock found no converged aufbau state (basis 'sto-3g'; DIIS: ")
    assert "level-shifted DIIS" in message and "second-order" in message and "\n" not in message
    assert not list(tmp_path.glob("*.h5"))


def test_aufbau_gap():
    assert bl.aufbau_gap([np.array([-1.0, 0.5]), np.array([-0.8, 0.2])], [np.array([2, 0]), np.array([2, 0])]) == pytest.approx(1.0)
    # an occupied orbital above an empty one (what the second-order solver once stopped at)
    assert bl.aufbau_gap([np.array([-1.0, 0.1]), np.array([-0.8, 0.2])], [np.array([2, 0]), np.array([0, 2])]) == pytest.approx(-1.0)
    assert bl.aufbau_gap([np.array([-1.0])], [np.array([2])]) == float("inf")
