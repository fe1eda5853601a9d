"""An evaluated energy far above Hartree–Fock is flagged, never called a correlation energy.

The wavefunction starts from the Hartree–Fock orbitals (pretraining) and the energy is
variational, so a converged run ends at or below E_HF; one that ends more than
`stats.HF_WARNING_SIGMAS` standard errors above it has not converged. (A short CPU smoke run
of LiH 2x2x2 once ended 2.5 Ha per cell above HF, and the report called the difference the
correlation energy "the wavefunction recovers".)
"""

from pathlib import Path

import h5py
import numpy as np
import pytest

from vmc import stats
from vmc.outputs import TRAIN_DTYPE
from vmc.report import write_report

HF = -7.916  # Ha per cell, LiH 2x2x2 at 7.674 bohr, STO-3G


@pytest.mark.parametrize("energy, error", [
    (-5.416, 0.045),              # that smoke run: 2.5 Ha, 56 error bars above
    (HF + 3.5 * 0.01, 0.01),      # just beyond 3 error bars
])
def test_warns_above_hartree_fock(energy, error):
    line = stats.hartree_fock_warning("LiH", energy, error, HF)
    assert line is not None and "\n" not in line
    assert line.startswith("warning: LiH: ")
    assert "above Hartree–Fock" in line and f"{HF:.3f}" in line
    assert f"{energy - HF:.2f} Ha above" in line
    assert "not converged" in line


@pytest.mark.parametrize("energy, error", [
    (HF - 0.05, 0.001),           # below HF: correlation energy
    (HF + 2.5 * 0.01, 0.01),      # above, but within 3 error bars
    (HF, 0.01),
    (HF + 1.0, float("nan")),     # no error bar: no statement of significance
    (float("nan"), 0.01),         # not evaluated
])
def test_silent_below_or_within_three_standard_errors(energy, error):
    assert stats.hartree_fock_warning("LiH", energy, error, HF) is None


def test_unit_is_named():
    line = stats.hartree_fock_warning("lih_a7.674_t0", -5.416, 0.045, HF, unit="Ha per cell")
    assert "Ha per cell above Hartree–Fock" in line and f"({HF:.3f} Ha per cell)" in line


def _molecule_run(run_dir: Path, final: float, hf: float = -1.1287, seed: int = 0) -> Path:
    """A synthetic finished H2 run (README schema) whose evaluation averages to `final`."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True)
    train = np.zeros(20, TRAIN_DTYPE)
    train["step"] = np.arange(20)
    train["energy"] = final + 0.01 * rng.standard_normal(20)
    train["variance"], train["pmove"], train["wall_time"] = 0.1, 0.5, 0.1
    ev = final + 0.002 * rng.standard_normal(40)
    m, err = float(np.mean(ev)), float(np.std(ev, ddof=1) / np.sqrt(len(ev)))
    with h5py.File(run_dir / "energies.h5", "w") as f:
        f.attrs.update(vmc_version="test", created="2025-01-01T00:00:00",
                       config="mcmc: {walkers: 16}\noptimization: {steps: 20}\nmodel: {name: fire}\n")
        g = f.create_group("systems/H2")
        g.attrs.update(name="H2", geometry="H2", symbols=np.array(["H", "H"], dtype="S"),
                       positions=np.array([[0, 0, 0], [0, 0, 1.4]]), charge=0, spin=0, n_electrons=2, n_up=1,
                       periodic=False, n_cells=1, weight=1.0, hf_energy=hf, hf_energy_per_cell=hf)
        g.create_dataset("train", data=train, maxshape=(None,))
        g.create_dataset("eval/energy", data=ev, maxshape=(None,)).attrs.update(
            energy=m, energy_error=err, energy_per_cell=m, energy_per_cell_error=err, autocorrelation_time=1.0)
        f.create_group("geometries/H2").attrs.update(energy_per_cell=m, energy_per_cell_error=err,
                                                      systems=np.array(["H2"], dtype="S"), weights=np.array([1.0]))
    return run_dir


def test_report_warns_and_does_not_call_a_positive_difference_recovered(tmp_path):
    page = write_report([_molecule_run(tmp_path / "above", final=-0.9)]).read_text()
    assert "warning: H2: the evaluated energy" in page and "above Hartree–Fock" in page
    assert "recovers" not in page and "recovered" not in page


def test_report_below_hartree_fock_has_no_warning(tmp_path):
    page = write_report([_molecule_run(tmp_path / "below", final=-1.17)]).read_text()
    assert "warning:" not in page and "not converged" not in page
    assert "correlation energy" in page
