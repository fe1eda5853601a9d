"""Ewald sums (vmc/ewald.py) against pyscf's Ewald code and known Madelung constants."""

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vmc import ewald as ew

pbcgto = pytest.importorskip("pyscf.pbc.gto")

A_LIH = 7.674


def lih_cell():
    lattice = A_LIH / 2 * (np.ones((3, 3)) - np.eye(3))
    return lattice, np.array([[0.0, 0.0, 0.0], [A_LIH / 2] * 3]), np.array([3.0, 1.0])


def lih_supercell():
    lattice, pos, z = lih_cell()
    shifts = np.array(list(itertools.product((0, 1), repeat=3))) @ lattice
    return 2 * lattice, np.concatenate([pos + s for s in shifts]), np.tile(z, 8)


def bcc_h():
    return 3.0 * np.eye(3), np.array([[0.0, 0.0, 0.0], [1.5, 1.5, 1.5]]), np.array([1.0, 1.0])


def h_chain():
    """4-atom hydrogen chain along x with 20 bohr of vacuum in y and z."""
    pos = np.array([[x, 0.0, 0.0] for x in (0.0, 1.8, 3.6, 5.4)])
    return np.diag([7.2, 20.0, 20.0]), pos, np.ones(4)


CELLS = {"lih": lih_cell, "lih_2x2x2": lih_supercell, "bcc_h": bcc_h, "h_chain_vacuum": h_chain}
SYMBOLS = {1: "H", 3: "Li"}


def pyscf_cell(lattice, positions, charges):
    cell = pbcgto.Cell()
    cell.a = lattice
    cell.unit = "B"
    cell.atom = [(SYMBOLS[int(z)], tuple(r)) for z, r in zip(charges, positions)]
    cell.basis = "sto-3g"
    cell.spin = int(round(sum(charges))) % 2
    cell.precision = 1e-12
    cell.verbose = 0
    cell.build()
    return cell


def pyscf_point_charge_energy(lattice, positions, charges, eta=0.35, tol=1e-15):
    """Reference Ewald energy of arbitrary point charges from pyscf's own `ewald`.

    Every charge is placed as an H atom and the instance's `atom_charges` is replaced. pyscf
    sizes its G mesh from log(precision / sum(q)), undefined for a neutral set of charges,
    so we fix eta, the real-space cutoff and the mesh ourselves, all converged to ~tol.
    """
    cell = pbcgto.Cell()
    cell.a = lattice
    cell.unit = "B"
    cell.atom = [("H", tuple(r)) for r in positions]
    cell.basis = "sto-3g"
    cell.spin = len(positions) % 2
    cell.verbose = 0
    cell.build()
    q = np.asarray(charges, float)
    cell.atom_charges = lambda: q
    x = np.sqrt(-np.log(tol))  # erfc(x) ~ exp(-x^2); exp(-G^2 / 4 eta^2) at G = 2 eta x
    reach = 0.5 * max(np.linalg.norm(np.array(s) @ lattice) for s in itertools.product((-1, 1), repeat=3))
    rcut = x / eta + 2 * reach
    gcut = 2 * eta * x
    mesh = [2 * int(np.ceil(gcut * np.linalg.norm(a) / (2 * np.pi))) + 1 for a in lattice]
    cell.cutoff_to_mesh = lambda ke: np.array(mesh)
    return cell.energy_nuc(ew_eta=eta, ew_cut=rcut)


def random_electrons(lattice, n, seed):
    """n electron positions spread over a 3x3x3 block of cells (so wrapping is exercised)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(-1.0, 2.0, size=(n, 3)) @ lattice


@pytest.mark.parametrize("name", list(CELLS))
def test_nuclear_energy_matches_pyscf(x64, name):
    lattice, pos, z = CELLS[name]()
    data = ew.make_ewald(lattice, pos, z)
    ref = pyscf_cell(lattice, pos, z).energy_nuc()
    assert abs(float(ew.nuclear_energy(data)) - ref) < 1e-7


@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")
@pytest.mark.parametrize("name", ["lih", "bcc_h", "h_chain_vacuum"])
def test_potential_energy_matches_pyscf_point_charges(x64, name):
    lattice, pos, z = CELLS[name]()
    n_el = int(z.sum())
    data = ew.make_ewald(lattice, pos, z)
    f = jax.jit(ew.potential_energy)
    for seed in range(2):
        r = random_electrons(lattice, n_el, seed)
        ref = pyscf_point_charge_energy(lattice, np.concatenate([pos, r]), np.concatenate([z, -np.ones(n_el)]))
        assert abs(float(f(data, jnp.asarray(r))) - ref) < 1e-6


def test_nuclear_energy_independent_of_pyscf_parameters(x64):
    """The point-charge reference itself reproduces pyscf's default energy_nuc (a sanity check)."""
    lattice, pos, z = h_chain()
    ref = pyscf_cell(lattice, pos, z).energy_nuc()
    assert abs(pyscf_point_charge_energy(lattice, pos, z) - ref) < 1e-8


def test_lattice_translation_invariance(x64):
    lattice, pos, z = lih_supercell()
    data = ew.make_ewald(lattice, pos, z)
    f = jax.jit(ew.potential_energy)
    r = random_electrons(lattice, 16, 3)
    e0 = float(f(data, jnp.asarray(r)))
    rng = np.random.default_rng(4)
    for i in (0, 7, 15):
        shifted = r.copy()
        shifted[i] += rng.integers(-3, 4, size=3) @ lattice
        assert abs(float(f(data, jnp.asarray(shifted))) - e0) < 1e-9


@pytest.mark.parametrize("name", ["lih", "h_chain_vacuum"])
def test_accuracy_setting_independence(x64, name):
    lattice, pos, z = CELLS[name]()
    r = jnp.asarray(random_electrons(lattice, int(z.sum()), 5))
    f = jax.jit(ew.potential_energy)
    energies = [float(f(ew.make_ewald(lattice, pos, z, accuracy=acc), r)) for acc in (1e-6, 1e-8, 1e-10)]
    assert max(energies) - min(energies) < 1e-5


def test_float32_agrees_with_float64():
    lattice, pos, z = h_chain()
    r = random_electrons(lattice, 4, 6)
    previous = jax.config.jax_enable_x64
    try:
        jax.config.update("jax_enable_x64", True)
        e64 = float(ew.potential_energy(ew.make_ewald(lattice, pos, z), jnp.asarray(r)))
        jax.config.update("jax_enable_x64", False)
        data32 = ew.make_ewald(lattice, pos, z)
        r32 = jnp.asarray(r, jnp.float32)
        e32 = jax.jit(ew.potential_energy)(data32, r32)
        assert e32.dtype == jnp.float32
    finally:
        jax.config.update("jax_enable_x64", previous)
    assert abs(float(e32) - e64) < 1e-4 * max(1.0, abs(e64))


def test_vmap_and_finite_gradients(x64):
    lattice, pos, z = bcc_h()
    data = ew.make_ewald(lattice, pos, z)
    rs = jnp.asarray(np.stack([random_electrons(lattice, 2, s) for s in range(4)]))
    batched = jax.jit(jax.vmap(ew.potential_energy, in_axes=(None, 0)))(data, rs)
    f = jax.jit(ew.potential_energy)
    single = jnp.stack([f(data, r) for r in rs])
    np.testing.assert_allclose(batched, single, rtol=0, atol=1e-12)
    grad = jax.jit(jax.vmap(jax.grad(ew.potential_energy, argnums=1), in_axes=(None, 0)))
    grads = grad(data, rs)
    assert np.all(np.isfinite(np.asarray(grads)))
    # The force is periodic too.
    shifted = rs.at[:, 1].add(jnp.asarray(lattice[2]))
    np.testing.assert_allclose(grad(data, shifted), grads, atol=1e-9)


def test_rocksalt_madelung_constant(x64):
    """NaCl structure, conventional cubic cell, charges +-1: E per ion pair = -M / d_nn."""
    a = 2.0
    fcc = np.array([[0, 0, 0], [0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]) * a
    pos = np.concatenate([fcc, fcc + np.array([a / 2, 0, 0])])
    charges = np.array([1.0] * 4 + [-1.0] * 4)
    data = ew.make_ewald(a * np.eye(3), pos, charges)
    madelung = -float(ew.nuclear_energy(data)) / 4 * (a / 2)
    assert abs(madelung - 1.747564594633) < 1e-7


def test_vector_counts_are_moderate(x64):
    for name in CELLS:
        data = ew.make_ewald(*CELLS[name]())
        assert 1 <= data.n_images <= 3000 and 1 <= data.n_gvectors <= 3000, (name, data.n_images, data.n_gvectors)
