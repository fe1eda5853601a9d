import numpy as np
import pytest

from vmc import lattice as lat
from vmc.errors import InputError
from vmc.systems import build_systems, catalog_names
from vmc.units import BOHR_PER_ANGSTROM


def test_catalog_has_required_entries():
    names = set(catalog_names())
    assert {"H", "H2", "LiH", "Li", "Be", "N2", "H2O", "H4_chain", "lih_rocksalt", "hydrogen_chain", "h_bcc"} <= names
    for name in names:
        for s in build_systems(name):
            assert s.n_up + s.n_down == s.n_electrons


def test_molecule_geometry_and_spin():
    (h2,) = build_systems("H2")
    assert np.isclose(np.linalg.norm(h2.positions[1] - h2.positions[0]), 1.4011)
    (li,) = build_systems("Li")
    assert (li.n_up, li.n_down) == (2, 1)
    (cation,) = build_systems({"atoms": [["Li", [0, 0, 0]]], "charge": 1})
    assert (cation.n_up, cation.n_down) == (1, 1)


def test_angstrom_and_bond_length_list():
    systems = build_systems({"name": "H2", "bond_length": [0.7, 0.74], "unit": "angstrom"})
    assert [s.id for s in systems] == ["H2_b0.7", "H2_b0.74"]
    assert np.isclose(np.linalg.norm(systems[1].positions[1]), 0.74 * BOHR_PER_ANGSTROM)


def test_lih_supercell():
    systems = build_systems({"name": "lih_rocksalt", "supercell": [2, 2, 2], "lattice_constant": [7.0, 7.674], "twists": [[0, 0, 0], [0.5, 0, 0]]})
    assert len(systems) == 4
    s = systems[-1]
    assert (s.n_electrons, s.n_cells, len(s.positions)) == (32, 8, 16)
    assert np.allclose(s.lattice, 2 * s.primitive_lattice)
    assert s.geometry == "lih_rocksalt_a7.674" and s.id == "lih_rocksalt_a7.674_t1"
    # all atoms distinct modulo the simulation cell
    frac = lat.wrap_fractional(s.positions @ np.linalg.inv(s.lattice) + 1e-9)
    assert len(np.unique(np.round(frac, 6), axis=0)) == 16


@pytest.mark.parametrize("supercell", [[2, 2, 2], [[1, 1, 0], [0, 1, 1], [1, 0, 1]], [3, 1, 1]])
def test_folded_kpoints_satisfy_supercell_bloch_condition(supercell):
    (s,) = build_systems({"name": "lih_rocksalt", "supercell": supercell, "twists": [[0.1, 0.2, 0.3]]})
    k = lat.folded_kpoints(s.supercell, s.primitive_lattice, s.twist)
    assert len(k) == s.n_cells
    # e^{i k.L} = e^{i k_s.L} for every supercell vector L: the orbitals share the twist
    phase = (k - s.twist_cartesian) @ s.lattice.T / (2 * np.pi)
    assert np.allclose(phase, np.round(phase), atol=1e-9)
    # distinct modulo the primitive reciprocal lattice
    frac = lat.wrap_fractional(k @ s.primitive_lattice.T / (2 * np.pi) + 1e-9)
    assert len(np.unique(np.round(frac, 6), axis=0)) == s.n_cells


def test_monkhorst_pack():
    assert np.allclose(lat.monkhorst_pack([2, 1, 1])[:, 0], [-0.25, 0.25])
    assert np.allclose(sorted(lat.monkhorst_pack([3, 1, 1])[:, 0]), [-1 / 3, 0, 1 / 3])


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"atoms": [["H", [0, 0, 0]], ["H", [0, 0, 0.01]]]}, "atoms 0 \\(H\\) and 1 \\(H\\) are 0.010 bohr apart"),
        ({"atoms": [["H", [0, 0, 0]]], "spin": 0}, "spin 0 is impossible with 1 electrons"),
        ({"atoms": [["Xx", [0, 0, 0]]]}, "unknown element 'Xx'"),
        ("NoSuchMolecule", "unknown system 'NoSuchMolecule'"),
        ({"name": "H2", "charge": 2}, "leaves 0 electrons"),
        ({"atoms": [["H", [0, 0, 0]]], "spin": 1, "colour": "red"}, "config key 'system.colour': unknown key"),
        ({"name": "lih_rocksalt", "supercell": [0, 1, 1]}, "supercell matrix is singular"),
        ({"name": "lih_rocksalt", "atoms": [["Li", [0, 0, 0]], ["H", [1, 0, 0]]]}, "on top of each other"),
    ],
)
def test_bad_systems(spec, message):
    with pytest.raises(InputError, match=message):
        build_systems(spec)


@pytest.mark.parametrize("lattice, radius", [
    (np.diag([7.2, 20.0, 20.0]), 5.0),  # chain with vacuum
    (np.diag([115.2, 20.0, 20.0]), 8.0),  # long chain supercell
    (7.674 * (np.ones((3, 3)) - np.eye(3)), 8.0),  # LiH 2x2x2 (fcc)
    (np.array([[4.0, 0, 0], [3.5, 2.0, 0], [0.3, 0.4, 5.0]]), 6.0),  # oblique
])
def test_images_near_cell(lattice, radius):
    """The pruned image list holds every image within `radius` of sampled points of the cell
    (brute force over the unpruned list) and nothing beyond radius + cell_reach."""
    pruned = lat.lattice_vectors_near_cell(lattice, radius)
    full = lat.lattice_vectors_within(lattice, radius + lat.cell_reach(lattice))
    points = np.random.default_rng(0).uniform(-0.5, 0.5, (20000, 3)) @ lattice
    needed = {tuple(np.round(v, 6)) for v in full if np.min(np.linalg.norm(points - v, axis=1)) <= radius}
    assert needed <= {tuple(np.round(v, 6)) for v in pruned}
    assert len(pruned) <= len(full) and np.allclose(pruned[0], 0)
