import numpy as np
import pytest

from vmc import lattice as lat
from vmc.symmetry import (
    irreducible_twists,
    lattice_point_group,
    space_group_operations,
    supercell_twist_operations,
)

A_LIH = 7.674
FCC = A_LIH / 2 * (np.ones((3, 3)) - np.eye(3))
LIH = (("Li", "H"), np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]))
CUBIC = 5.0 * np.eye(3)
ONE_ATOM = (("H",), np.zeros((1, 3)))


def _assert_partition(twists, reps, weights, mats):
    """Every twist is equivalent to exactly one representative (mod the reciprocal lattice)."""
    np.testing.assert_allclose(weights.sum(), 1.0)
    for theta in twists:
        images = np.einsum("a,oab->ob", theta, mats)
        hits = 0
        for r in reps:
            d = images - r
            d -= np.round(d)
            hits += bool(np.any(np.all(np.abs(d) < 1e-8, axis=1)))
        assert hits == 1


def test_simple_cubic_has_48_operations():
    assert len(lattice_point_group(CUBIC)) == 48
    assert len(space_group_operations(*ONE_ATOM, CUBIC)) == 48
    # identity first, every matrix integer, unimodular, metric preserving
    ops = lattice_point_group(CUBIC)
    assert np.array_equal(ops[0], np.eye(3))
    g = CUBIC @ CUBIC.T
    for w in ops:
        np.testing.assert_allclose(w @ g @ w.T, g)


def test_cubic_2x2x2_grid_is_one_twist():
    twists = lat.monkhorst_pack((2, 2, 2))
    reps, weights = irreducible_twists(twists, *ONE_ATOM, CUBIC, np.eye(3, dtype=int))
    assert reps.shape == (1, 3)
    np.testing.assert_allclose(np.abs(reps), 0.25)
    np.testing.assert_allclose(weights, [1.0])


def test_cubic_4x4x4_grid_weights():
    twists = lat.monkhorst_pack((4, 4, 4))
    reps, weights = irreducible_twists(twists, *ONE_ATOM, CUBIC, np.eye(3, dtype=int))
    assert len(reps) == 4
    # classes are labelled by how many coordinates have |u| = 3/8
    n_far = np.sum(np.isclose(np.abs(reps), 3 / 8), axis=1)
    expected = {0: 8 / 64, 1: 24 / 64, 2: 24 / 64, 3: 8 / 64}
    for k, w in zip(n_far, weights):
        assert w == pytest.approx(expected[int(k)])
    assert sorted(np.round(weights * 64).astype(int)) == [8, 8, 24, 24]
    mats = supercell_twist_operations(*ONE_ATOM, CUBIC, np.eye(3, dtype=int))
    _assert_partition(twists, reps, weights, mats)


def test_lih_rocksalt_has_48_point_operations():
    assert len(lattice_point_group(FCC)) == 48
    ops = space_group_operations(*LIH, FCC)
    assert len(ops) == 48
    # rocksalt is symmorphic with Li at the origin: no fractional translations needed
    for _, t in ops:
        np.testing.assert_allclose(np.minimum(t, 1 - t), 0.0, atol=1e-9)


def test_lih_supercell_twists():
    supercell = 2 * np.eye(3, dtype=int)
    twists = lat.monkhorst_pack((2, 2, 2))
    reps, weights = irreducible_twists(twists, *LIH, FCC, supercell)
    mats = supercell_twist_operations(*LIH, FCC, supercell)
    assert len(mats) == 96  # S = 2I keeps all 48 operations, times time reversal
    assert 1 <= len(reps) < len(twists)
    assert np.all(weights > 0)
    _assert_partition(twists, reps, weights, mats)


def test_supercell_that_breaks_symmetry_drops_operations():
    # a 2x1x1 supercell of simple cubic only keeps the tetragonal operations (D4h, 16)
    mats = supercell_twist_operations(*ONE_ATOM, CUBIC, np.diag([2, 1, 1]))
    assert len(mats) == 2 * 16


def test_hydrogen_chain_time_reversal_pairs():
    prim = np.array([[3.6, 0, 0], [0, 20, 0], [0, 0, 20]])
    frac = np.array([[0.0, 0, 0], [0.5, 0, 0]])
    twists = np.array([[-3 / 8, 0, 0], [-1 / 8, 0, 0], [1 / 8, 0, 0], [3 / 8, 0, 0]])
    reps, weights = irreducible_twists(twists, ("H", "H"), frac, prim, np.eye(3, dtype=int))
    np.testing.assert_allclose(reps, twists[:2])  # first of each class in input order
    np.testing.assert_allclose(weights, [0.5, 0.5])


def test_triclinic_has_identity_and_inversion_only():
    prim = np.array([[4.0, 0.3, 0.2], [0.7, 5.1, 0.4], [0.5, 0.9, 6.3]])
    ops = space_group_operations(*ONE_ATOM, prim)
    ws = sorted(tuple(w.ravel()) for w, _ in ops)
    assert ws == sorted([tuple(np.eye(3, dtype=int).ravel()), tuple(-np.eye(3, dtype=int).ravel())])
    twists = lat.monkhorst_pack((2, 2, 2))
    reps, weights = irreducible_twists(twists, *ONE_ATOM, prim, np.eye(3, dtype=int))
    # inversion coincides with time reversal, so the classes are the pairs {u, -u} (distinct
    # mod 1 for u in {+-1/4}^3): 8 points -> 4 classes of 2
    assert len(reps) == 4
    np.testing.assert_allclose(weights, 0.25)


def test_basis_breaks_symmetry():
    # two different atoms along the cube diagonal at (0,0,0) and (1/4,1/4,1/4): C3v-like, no
    # inversion through an atom; the point group is smaller than Oh but contains the identity
    frac = np.array([[0.0, 0, 0], [0.25, 0.25, 0.25]])
    ops = space_group_operations(("Li", "H"), frac, CUBIC)
    assert 1 < len(ops) < 48
    assert len(ops) == 6  # the operations fixing the [111] axis: C3v
