"""Finite-size extrapolation (vmc/finite_size.py) and its report section: the fit against
exact and least-squares references, the coverage of its error bars over seeds, and `vmc
report` on chains of several sizes in several runs (table, plot, summary.h5)."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from test_report import _system, _train_rows, assert_valid_pngs, cell, parse

from vmc import finite_size
from vmc.cli import main

E_INF, SLOPE = -0.5657, 0.35  # Ha per atom; Ha per atom x atoms^2
SIZES = np.array([8.0, 12.0, 16.0, 24.0])


def chain_energy(n_atoms):
    return E_INF + SLOPE / np.asarray(n_atoms, dtype=float) ** 2


def test_exact_data_give_the_limit():
    for power in (1.0, 2.0):
        e = E_INF + SLOPE * SIZES**-power
        r = finite_size.fit(SIZES, e, np.full(4, 1e-4), power)
        assert r.e_inf == pytest.approx(E_INF, abs=1e-12)
        assert r.slope == pytest.approx(SLOPE, rel=1e-10)
        assert r.chi2 == pytest.approx(0.0, abs=1e-12) and r.dof == 2
        assert r.energy(1e12) == pytest.approx(E_INF, abs=1e-12)


def test_bootstrap_errors_equal_the_least_squares_covariance():
    """For a linear fit the standard errors are sqrt(diag((A^T W A)^-1)); 2000 resamples
    estimate them to ~1.6 %, so 5 % is 3 of its standard errors."""
    err = np.array([4e-4, 3e-4, 5e-4, 8e-4])
    r = finite_size.fit(SIZES, chain_energy(SIZES), err, 2.0)
    a = np.stack([np.ones(4), SIZES**-2.0], axis=1)
    cov = np.linalg.inv(a.T @ (a / err[:, None] ** 2))
    assert r.e_inf_error == pytest.approx(np.sqrt(cov[0, 0]), rel=0.05)
    assert r.slope_error == pytest.approx(np.sqrt(cov[1, 1]), rel=0.05)
    assert r.n_bootstrap == finite_size.N_BOOTSTRAP


def test_error_bars_cover_the_true_limit():
    """Over 400 fixed seeds (0.3 mHa per atom per point), the true E_inf lies within one
    reported standard error for 61-76 % of them (68.3 % ± 3 binomial standard errors) and
    within three for >= 98 %."""
    sigma = np.full(4, 3e-4)
    z = []
    for seed in range(400):
        e = chain_energy(SIZES) + sigma * np.random.default_rng(20_000 + seed).standard_normal(4)
        r = finite_size.fit(SIZES, e, sigma, 2.0, n_bootstrap=400)
        z.append(abs(r.e_inf - E_INF) / r.e_inf_error)
    z = np.array(z)
    assert 0.61 <= np.mean(z <= 1) <= 0.76, np.mean(z <= 1)
    assert np.mean(z <= 3) >= 0.98


def test_too_few_sizes():
    with pytest.raises(ValueError, match="at least 2"):
        finite_size.fit([8, 8], [-0.5, -0.51], [1e-3, 1e-3])


# ----------------------------------------------------------------------------- report

BOND = 1.8  # bohr
PRIM = np.array([[2 * BOND, 0, 0], [0, 20.0, 0], [0, 0, 20.0]])
PRIM_POS = np.array([[0, 0, 0], [BOND, 0, 0]])


def write_chain(run_dir: Path, n_atoms_list, shifts=(), seed=0) -> Path:
    """An energies.h5 of periodic H chains (2 atoms per primitive cell) of the given sizes,
    two twists each, evaluated at chain_energy(N) + shifts[k] per atom (0 by default) with
    ~0.15 mHa per atom of noise."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(run_dir / "energies.h5", "w") as f:
        f.attrs.update(vmc_version="test", created="2025-01-01T00:00:00",
                       config="mcmc: {walkers: 32}\noptimization: {steps: 40}\nmodel: {name: fire}\n")
        for k, n_atoms in enumerate(n_atoms_list):
            cells = n_atoms // 2
            name = "hydrogen_chain" if k == 0 else f"hydrogen_chain_{k}"  # as vmc/systems.py names repeated specs
            supercell = np.diag([cells, 1, 1])
            members, means, errs = [], [], []
            for j, twist in enumerate([(0, 0, 0), (0.5, 0, 0)]):
                sid = f"{name}_t{j}"
                per_cell = 2 * (chain_energy(n_atoms) + (shifts[k] if k < len(shifts) else 0.0))
                hf = cells * (per_cell + 0.05)
                attrs = {"name": name, "geometry": name, "symbols": np.array(["H"] * n_atoms, dtype="S"),
                         "positions": np.zeros((n_atoms, 3)), "charge": 0, "spin": 0, "n_electrons": n_atoms,
                         "n_up": n_atoms // 2, "periodic": True, "n_cells": cells, "weight": 0.5, "hf_energy": hf,
                         "hf_energy_per_cell": hf / cells, "lattice": supercell @ PRIM, "primitive_lattice": PRIM,
                         "primitive_symbols": np.array(["H", "H"], dtype="S"), "primitive_positions": PRIM_POS,
                         "supercell": supercell, "twist": np.array(twist, dtype=float), "lattice_constant": 2 * BOND}
                ev = cells * per_cell + cells * 2 * 2e-4 * np.sqrt(100) * rng.standard_normal(100)
                _system(f, sid, attrs, _train_rows(rng, 20, cells * per_cell, hf), ev, n_cells=cells)
                members.append(sid)
                means.append(f[f"systems/{sid}/eval/energy"].attrs["energy_per_cell"])
                errs.append(f[f"systems/{sid}/eval/energy"].attrs["energy_per_cell_error"])
            f.create_group(f"geometries/{name}").attrs.update(
                energy_per_cell=float(np.mean(means)), energy_per_cell_error=float(np.sqrt(np.sum(np.square(errs))) / 2),
                systems=np.array(members, dtype="S"), weights=np.array([0.5, 0.5]), twists=np.array([(0, 0, 0), (0.5, 0, 0)], dtype=float))
    return run_dir


def test_report_extrapolates_chains_of_several_runs(tmp_path, capsys):
    """Fine-tunes of 12, 16 and 24 atoms in runs of their own, a pretraining run holding 8 and
    12, and a zero-shot run of 16 (higher energy): one crystal, the lowest energy per size,
    extrapolated as 1/N^2 (a chain), the fit's numbers in the page and in summary.h5."""
    runs = [write_chain(tmp_path / "pretrain", [8, 12], shifts=[0, 2e-3], seed=1),
            write_chain(tmp_path / "zeroshot16", [16], shifts=[5e-3], seed=2)]
    runs += [write_chain(tmp_path / f"finetune{n}", [n], seed=10 + n) for n in (12, 16, 24)]
    out = tmp_path / "report"
    assert main(["report", *map(str, runs), "--out", str(out), "--reference", "-0.5657"]) == 0
    report = Path(capsys.readouterr().out.strip())
    page = parse(report)
    assert_valid_pngs(report, out)
    text = report.read_text()
    assert "Thermodynamic limit" in text and "E_N = E_inf + b / N^2" in text
    assert "N = 16 of zeroshot16" in text and "N = 12 of pretrain" in text  # replaced by the fine-tunes

    # the points used: 8 from pretraining, 12/16/24 from the fine-tunes
    used = {int(float(c["data-value"])): c["data-run"] for c in page.cells if c["data-key"] == "n_atoms"}
    assert used == {8: "pretrain", 12: "finetune12", 16: "finetune16", 24: "finetune24"}
    sizes, energies, errors = [], [], []
    for n, run in sorted(used.items()):
        c = cell(page, "energy_per_atom", run=run, system="hydrogen_chain")
        sizes.append(n), energies.append(float(c["data-value"])), errors.append(float(c["data-error"]))
    expected = finite_size.fit(sizes, energies, errors, 2.0)
    shown = cell(page, "tdl_e_inf", system="hydrogen_chain")
    assert float(shown["data-value"]) == pytest.approx(expected.e_inf, abs=1e-12)
    assert float(shown["data-error"]) == pytest.approx(expected.e_inf_error, rel=1e-12)
    assert abs(expected.e_inf - E_INF) < 4 * expected.e_inf_error  # the synthetic truth, 4 sigma
    diff = cell(page, "tdl_minus_reference", system="hydrogen_chain")
    assert float(diff["data-value"]) == pytest.approx(1e3 * (expected.e_inf + 0.5657), abs=1e-9)

    with h5py.File(out / "summary.h5", "r") as f:
        a = f["tdl/hydrogen_chain"].attrs
        assert a["e_inf"] == pytest.approx(expected.e_inf, abs=1e-12)
        assert a["e_inf_error"] == pytest.approx(expected.e_inf_error, rel=1e-12)
        assert a["form"] == "E_N = E_inf + b / N^2" and a["unit"] == "Ha per atom"
        assert list(a["sizes"]) == [8, 12, 16, 24]
        np.testing.assert_allclose(a["energies"], energies, rtol=0, atol=1e-15)
        np.testing.assert_allclose(a["errors"], errors, rtol=1e-15)
        assert a["reference"] == -0.5657 and a["lattice_constant"] == pytest.approx(3.6)
        assert len(a["check_forms"]) == len(a["check_e_inf"]) == 2
        without_8 = finite_size.fit(sizes[1:], energies[1:], errors[1:], 2.0)
        assert a["check_e_inf"][1] == pytest.approx(without_8.e_inf, abs=1e-12)


def test_two_sizes_say_why_and_write_no_summary(tmp_path, capsys):
    runs = [write_chain(tmp_path / f"r{n}", [n], seed=n) for n in (8, 12)]
    out = tmp_path / "report"
    assert main(["report", *map(str, runs), "--out", str(out)]) == 0
    text = Path(capsys.readouterr().out.strip()).read_text()
    assert "2 supercell sizes: the extrapolation needs at least 3" in text
    assert not (out / "summary.h5").exists()


def test_bad_reference(tmp_path, capsys):
    run = write_chain(tmp_path / "r", [8, 12, 16])
    assert main(["report", str(run), "--reference", "nan"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == "vmc: error: --reference nan: must be a finite energy (Ha per atom)"
