"""`vmc report`, the Birch–Murnaghan fit (vmc/eos.py), cohesive energies and run comparison.

Most tests build synthetic energies.h5 files with h5py, following the README schema; one
tiny real run checks that `vmc run` leaves report.html in its directory.
"""

import csv
import html.parser
import io
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from vmc import eos
from vmc.cli import main
from vmc.cohesive import cohesive_energy, formula, parse_atom_energies
from vmc.errors import InputError
from vmc.progress import format_energy
from vmc.outputs import TRAIN_DTYPE
from vmc.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
FCC = np.array([[0.0, 0.5, 0.5], [0.5, 0.0, 0.5], [0.5, 0.5, 0.0]])
# a LiH-like equation of state: E per primitive cell (Ha) at fcc lattice constant a (bohr)
TRUE = dict(a0=7.674, e0=-8.07, b0_gpa=32.0, b0_prime=3.5)


def true_energy(a):
    return eos.birch_murnaghan(np.asarray(a) ** 3 / 4, TRUE["e0"], TRUE["a0"] ** 3 / 4,
                               TRUE["b0_gpa"] / eos.GPA_PER_HA_PER_BOHR3, TRUE["b0_prime"])


# the cheapest real run: H2, STO-3G, the bare HF determinant (nothing to train or compile for
# the optimizer), a few evaluation steps
TINY = {
    "system": "H2", "seed": 3,
    "baseline": {"basis": "sto-3g"},
    "model": {"name": "hf"},
    "mcmc": {"walkers": 16, "burn_in": 0, "steps": 2},
    "optimization": {"steps": 3},
    "evaluation": {"steps": 5, "burn_in": 2},
}


# ----------------------------------------------------------------------------- fixtures


def _train_rows(rng, n, final, hf, first_step=0, stride=1):
    """n training rows relaxing from hf to final (whole-cell energies)."""
    rows = np.zeros(n, TRAIN_DTYPE)
    t = np.arange(n)
    rows["step"] = first_step + stride * t
    rows["energy"] = final + (hf - final) * np.exp(-t / max(n / 5, 1)) + 0.003 * rng.standard_normal(n)
    rows["variance"] = 0.05 + 0.5 * np.exp(-t / max(n / 5, 1))
    rows["pmove"] = 0.5 + 0.02 * rng.standard_normal(n)
    rows["wall_time"] = 0.1
    return rows


def _system(f, sid, attrs, train, eval_energies=None, n_cells=1):
    """One /systems/<id> group as the README schema describes it."""
    g = f.create_group(f"systems/{sid}")
    g.attrs.update(attrs)
    g.create_dataset("train", data=train, maxshape=(None,))
    ev = g.create_dataset("eval/energy", data=np.zeros(0) if eval_energies is None else eval_energies, maxshape=(None,))
    if eval_energies is not None:
        m, err = float(np.mean(eval_energies)), float(np.std(eval_energies, ddof=1) / np.sqrt(len(eval_energies)))
        ev.attrs.update(energy=m, energy_error=err, energy_per_cell=m / n_cells, energy_per_cell_error=err / n_cells,
                        autocorrelation_time=1.0)


def write_molecule(run_dir: Path, steps=60, evaluated=True, final=-1.17, seed=0, sid="H2") -> Path:
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    hf = -1.1287
    with h5py.File(run_dir / "energies.h5", "w") as f:
        f.attrs.update(vmc_version="test", created="2025-01-01T00:00:00", config="mcmc: {walkers: 64}\noptimization: {steps: 60}\nmodel: {name: fire}\n")
        attrs = dict(name=sid, geometry=sid, symbols=np.array(["H", "H"], dtype="S"), positions=np.array([[0, 0, 0], [0, 0, 1.4]]),
                     charge=0, spin=0, n_electrons=2, n_up=1, periodic=False, n_cells=1, weight=1.0, hf_energy=hf, hf_energy_per_cell=hf)
        ev = final + 0.002 * rng.standard_normal(40) if evaluated else None
        _system(f, sid, attrs, _train_rows(rng, steps, final, hf), ev)
        if evaluated:
            f.create_group(f"geometries/{sid}").attrs.update(
                energy_per_cell=f[f"systems/{sid}/eval/energy"].attrs["energy"],
                energy_per_cell_error=f[f"systems/{sid}/eval/energy"].attrs["energy_error"],
                systems=np.array([sid], dtype="S"), weights=np.array([1.0]))
    return run_dir


def write_crystal(run_dir: Path, constants=(6.8, 7.2, 7.6, 8.0, 8.4), twists=((0, 0, 0), (0.5, 0.5, 0.5)), steps=40,
                  evaluated=True, seed=0) -> Path:
    """LiH rocksalt 1x1x1 at several lattice constants and twists (E from TRUE + noise)."""
    rng = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(run_dir / "energies.h5", "w") as f:
        f.attrs.update(vmc_version="test", created="2025-01-01T00:00:00",
                       config="mcmc: {walkers: 32}\noptimization: {steps: 40}\nmodel: {name: slater_jastrow}\n")
        for a in constants:
            gid = f"lih_rocksalt_a{a:g}"
            prim = FCC * a
            members, errs, means = [], [], []
            for j, twist in enumerate(twists):
                sid = f"{gid}_t{j}"
                hf = float(true_energy(a)) + 0.03
                attrs = dict(name="lih_rocksalt", geometry=gid, symbols=np.array(["Li", "H"], dtype="S"),
                             positions=np.array([[0, 0, 0], [a / 2] * 3]), charge=0, spin=0, n_electrons=4, n_up=2,
                             periodic=True, n_cells=1, weight=1.0 / len(twists), hf_energy=hf, hf_energy_per_cell=hf,
                             lattice=prim, primitive_lattice=prim, primitive_symbols=np.array(["Li", "H"], dtype="S"),
                             primitive_positions=np.array([[0, 0, 0], [a / 2] * 3]), supercell=np.eye(3, dtype=int),
                             twist=np.array(twist, dtype=float), lattice_constant=float(a))
                target = float(true_energy(a)) + 0.002 * (j - (len(twists) - 1) / 2)
                ev = target + 0.004 * rng.standard_normal(100) if evaluated else None
                _system(f, sid, attrs, _train_rows(rng, steps, target, hf, first_step=j, stride=len(twists)), ev)
                members.append(sid)
                if evaluated:
                    means.append(f[f"systems/{sid}/eval/energy"].attrs["energy"])
                    errs.append(f[f"systems/{sid}/eval/energy"].attrs["energy_error"])
            if evaluated:
                w = np.full(len(twists), 1.0 / len(twists))
                f.create_group(f"geometries/{gid}").attrs.update(
                    energy_per_cell=float(np.sum(w * means)), energy_per_cell_error=float(np.sqrt(np.sum((w * errs) ** 2))),
                    systems=np.array(members, dtype="S"), weights=w, twists=np.array(twists, dtype=float))
    return run_dir


class _Cells(html.parser.HTMLParser):
    """The data-* cells and the images of a report page."""

    def __init__(self):
        super().__init__()
        self.cells, self.images = [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "td" and "data-key" in a:
            self.cells.append(a)
        if tag == "img":
            self.images.append(a["src"])


def parse(report: Path) -> _Cells:
    p = _Cells()
    p.feed(report.read_text())
    return p


def cell(cells, key, system=None, run=None) -> dict:
    found = [c for c in cells.cells if c["data-key"] == key and (system is None or c["data-system"] == system)
             and (run is None or c["data-run"] == run)]
    assert len(found) == 1, (key, system, run, len(found))
    return found[0]


def assert_valid_pngs(report: Path, out_dir: Path):
    import base64

    files = sorted(out_dir.glob("*.png"))
    page = parse(report)
    assert files and len(page.images) == len(files)
    embedded = [base64.b64decode(src.split(",", 1)[1]) for src in page.images]
    for data in embedded + [p.read_bytes() for p in files]:
        assert data[:8] == PNG_MAGIC
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert im.size[0] > 100 and im.size[1] > 100
    assert {bytes(d) for d in embedded} == {p.read_bytes() for p in files}


# ----------------------------------------------------------------------------- the fit


def test_birch_murnaghan_exact():
    a = np.array([6.8, 7.2, 7.6, 8.0, 8.4])
    fit = eos.fit(a, a**3 / 4, true_energy(a), np.full(5, 1e-4))
    assert fit.a0 == pytest.approx(TRUE["a0"], abs=1e-8)
    assert fit.b0 == pytest.approx(TRUE["b0_gpa"], rel=1e-8)
    assert fit.e0 == pytest.approx(TRUE["e0"], abs=1e-10)
    assert fit.b0_prime == pytest.approx(TRUE["b0_prime"], rel=1e-6)
    assert fit.exponent == pytest.approx(3.0)
    assert eos.GPA_PER_HA_PER_BOHR3 == pytest.approx(29421.015, abs=0.01)
    with pytest.raises(ValueError, match="at least 4"):
        eos.fit(a[:3], a[:3] ** 3 / 4, true_energy(a[:3]))


def test_birch_murnaghan_coverage():
    """Over 200 fixed seeds (sigma = 0.5 mHa per point, 5 lattice constants), the true a0, B0
    and E0 lie within 3 reported standard errors for >= 95% of the seeds, and within 1 for
    55-85% (the errors are neither too small nor inflated)."""
    a = np.array([6.8, 7.2, 7.6, 8.0, 8.4])
    sigma = 5e-4
    within3, within1 = np.zeros(3), np.zeros(3)
    for seed in range(200):
        e = true_energy(a) + sigma * np.random.default_rng(10_000 + seed).standard_normal(5)
        fit = eos.fit(a, a**3 / 4, e, np.full(5, sigma), n_bootstrap=500)
        z = np.abs([(fit.a0 - TRUE["a0"]) / fit.a0_error, (fit.b0 - TRUE["b0_gpa"]) / fit.b0_error,
                    (fit.e0 - TRUE["e0"]) / fit.e0_error])
        within3 += z <= 3
        within1 += z <= 1
    assert np.all(within3 / 200 >= 0.95), within3
    assert np.all((within1 / 200 >= 0.55) & (within1 / 200 <= 0.85)), within1


def test_cohesive_and_atom_energies():
    assert parse_atom_energies(["Li=-7.478060", "H=-0.5"]) == {"Li": -7.47806, "H": -0.5}
    for bad in ["Li", "Li=abc", "=1", "Xx=-1", "Li=nan"]:
        with pytest.raises(InputError, match="--atom-energy"):
            parse_atom_energies([bad])
    assert formula(["Li", "H"]) == ("LiH", 1) and formula(["H", "H", "H", "H"]) == ("H", 4)
    assert cohesive_energy(-8.1, 0.002, ["Li", "H"], {"Li": -7.47806, "H": -0.5}) == pytest.approx((-0.12194, 0.002))


# ----------------------------------------------------------------------------- reports


def test_molecule_report_numbers_match_h5(tmp_path):
    run = write_molecule(tmp_path / "h2")
    report = write_report([run])
    assert report == run / "report.html"
    page = parse(report)
    with h5py.File(run / "energies.h5", "r") as f:
        ev = f["systems/H2/eval/energy"].attrs
        c = cell(page, "energy", "H2")
        assert float(c["data-value"]) == ev["energy"] and float(c["data-error"]) == ev["energy_error"]
        assert float(cell(page, "energy_per_cell", "H2")["data-value"]) == ev["energy_per_cell"]
        assert float(cell(page, "hf_energy", "H2")["data-value"]) == f["systems/H2"].attrs["hf_energy"]
        assert float(cell(page, "correlation", "H2")["data-value"]) == ev["energy"] - f["systems/H2"].attrs["hf_energy"]
        assert float(cell(page, "autocorrelation_time", "H2")["data-value"]) == ev["autocorrelation_time"]
        assert int(float(cell(page, "train_steps", "H2")["data-value"])) == f["systems/H2/train"].shape[0]
        assert int(float(cell(page, "walkers", "H2")["data-value"])) == 64
        shown = format_energy(ev["energy"], ev["energy_error"])
    text = report.read_text()
    assert shown in text
    assert "Equation of state" not in text
    assert_valid_pngs(report, run)


def test_crystal_report_eos_and_cohesive(tmp_path):
    run = write_crystal(tmp_path / "lih")
    fits = eos.write_eos(run / "energies.h5")  # what the runner does at the end of a run
    out = tmp_path / "rep"
    assert main(["report", str(run), "--out", str(out), "--atom-energy", "Li=-7.478060", "--atom-energy", "H=-0.5"]) == 0
    report = out / "report.html"
    page = parse(report)
    label = run.name
    with h5py.File(run / "energies.h5", "r") as f:
        stored = dict(f["eos/lih_rocksalt"].attrs)
        for key in ["a0", "e0", "b0", "b0_prime", "v0"]:
            c = cell(page, key, "lih_rocksalt", label)
            assert float(c["data-value"]) == stored[key], key
        assert stored["b0_unit"] == "GPa" and len(stored["lattice_constants"]) == 5
        assert float(cell(page, "e0", "lih_rocksalt")["data-error"]) == stored["e0_error"]
        for gid, g in f["geometries"].items():
            c = cell(page, "energy_per_cell", gid)
            assert float(c["data-value"]) == g.attrs["energy_per_cell"]
            coh = float(cell(page, "cohesive_energy", gid)["data-value"])
            assert coh == pytest.approx(g.attrs["energy_per_cell"] + 7.478060 + 0.5, abs=1e-12)
        coh0 = float(cell(page, "cohesive_energy_a0", "lih_rocksalt")["data-value"])
        assert coh0 == pytest.approx(stored["e0"] + 7.97806, abs=1e-12)
    fit = fits["lih_rocksalt"]
    assert abs(fit.a0 - TRUE["a0"]) < 4 * fit.a0_error and abs(fit.b0 - TRUE["b0_gpa"]) < 4 * fit.b0_error
    assert_valid_pngs(report, out)
    assert len(list(out.glob("eos-*.png"))) == 1

    # the CSV export carries the same fit on every row of the crystal
    csv_path = tmp_path / "all.csv"
    assert main(["export", str(run), "--out", str(csv_path)]) == 0
    rows = list(csv.DictReader(csv_path.open()))
    assert len(rows) == 10
    assert {float(r["eos_a0"]) for r in rows} == {stored["a0"]}
    assert {float(r["eos_b0_gpa_error"]) for r in rows} == {stored["b0_error"]}
    assert sorted({float(r["lattice_constant"]) for r in rows}) == [6.8, 7.2, 7.6, 8.0, 8.4]


def test_few_lattice_constants_say_so(tmp_path):
    run = write_crystal(tmp_path / "lih3", constants=(7.2, 7.6, 8.0), twists=((0, 0, 0),))
    assert eos.write_eos(run / "energies.h5") == {}
    with h5py.File(run / "energies.h5", "r") as f:
        assert "eos" not in f
    text = write_report([run]).read_text()
    assert "3 lattice constants: the Birch–Murnaghan fit needs at least 4" in text
    assert "--atom-energy" in text  # the hint for cohesive energies


def test_run_in_progress(tmp_path):
    """Train rows but no evaluation yet, read while a writer holds the file open."""
    run = write_crystal(tmp_path / "going", constants=(6.8, 7.2, 7.6, 8.0), twists=((0, 0, 0),), evaluated=False, steps=7)
    with h5py.File(run / "energies.h5", "a", locking=False):  # the writer, mid-run
        report = write_report([run])
    text = report.read_text()
    assert "not been evaluated yet" in text and "at least 4" in text
    page = parse(report)
    assert cell(page, "energy", "lih_rocksalt_a7.2_t0")["data-value"] == "nan"
    assert int(float(cell(page, "train_steps", "lih_rocksalt_a7.2_t0")["data-value"])) == 7
    assert_valid_pngs(report, run)
    # no training rows at all yet: a note instead of empty panels
    empty = write_molecule(tmp_path / "empty", steps=0, evaluated=False)
    assert "No optimization or evaluation steps written yet" in write_report([empty]).read_text()
    assert not list(empty.glob("*.png"))


def test_two_run_comparison(tmp_path):
    scratch = write_molecule(tmp_path / "scratch", steps=200, final=-1.172, seed=1)
    finetune = write_molecule(tmp_path / "finetune", steps=60, final=-1.171, seed=2)
    out = tmp_path / "cmp"
    assert main(["report", str(scratch), str(finetune), "--out", str(out), "--tolerance", "2"]) == 0
    report = out / "report.html"
    page = parse(report)
    for label in ("scratch", "finetune"):
        assert cell(page, "zero_shot", "H2", label)
        with h5py.File(tmp_path / label / "energies.h5", "r") as f:
            assert float(cell(page, "final", "H2", label)["data-value"]) == f["systems/H2/eval/energy"].attrs["energy"]
            first = f["systems/H2/train"]["energy"][:20]
        assert float(cell(page, "zero_shot", "H2", label)["data-value"]) == pytest.approx(np.mean(first), rel=1e-12)
    share = float(cell(page, "share_final", "H2", "scratch")["data-value"])
    assert share == 1.0 or float(cell(page, "share_final", "H2", "finetune")["data-value"]) == 1.0
    steps = cell(page, "steps_to_target", "H2", "scratch")["data-value"]
    assert steps == "nan" or 1 <= float(steps) <= 200
    assert (out / "compare.png").is_file()
    assert_valid_pngs(report, out)


def test_bad_input(tmp_path, capsys):
    assert main(["report", str(tmp_path / "missing")]) == 2
    assert "no such run directory" in capsys.readouterr().err
    run = write_molecule(tmp_path / "h2")
    assert main(["report", str(run), "--atom-energy", "Li:-7.4"]) == 2
    err = capsys.readouterr().err
    assert "--atom-energy" in err and len(err.strip().splitlines()) == 1
    assert main(["report", str(run), str(run)]) == 2  # several runs need --out
    with pytest.raises(InputError):
        write_report([tmp_path])  # a directory without energies.h5


def test_end_of_run_report(tmp_path):
    """A real (tiny) `vmc run` leaves report.html; a failing report is one warning, not a failure."""
    import vmc
    from vmc import report as report_module

    run_dir = vmc.run(TINY, out=tmp_path / "run")
    assert (run_dir / "report.html").is_file()
    page = parse(run_dir / "report.html")
    with h5py.File(run_dir / "energies.h5", "r") as f:
        assert float(cell(page, "energy", "H2")["data-value"]) == f["systems/H2/eval/energy"].attrs["energy"]
    assert_valid_pngs(run_dir / "report.html", run_dir)
    messages = []
    report_module.finish_run(tmp_path / "nowhere", messages.append)
    assert len(messages) == 2 and all(m.startswith("warning:") for m in messages)
