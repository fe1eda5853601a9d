"""Finite-size extrapolation: the energy per atom of a crystal in the thermodynamic limit
(TDL) from twist-averaged energies of several supercell sizes (docs/physics.md, "Finite-size
extrapolation").

    E_N = E_inf + b N^(-p)

N is the number of atoms in the simulation cell, E_N the twist-averaged energy per atom (Ha).
p = 2 when the supercells grow along one lattice direction (a chain: with twist averaging
the remaining error of a one-dimensional system falls as 1/N^2), p = 1 when they grow along
two or three (the leading two-body error of a 3D crystal is ~1/N). The fit is a weighted
linear least-squares fit in x = N^(-p) (weights 1/error^2); its standard errors come from a
parametric bootstrap, as for the equation of state (vmc/eos.py): energies redrawn from
N(E_i, sigma_i^2) with a fixed random stream, refitted, and the standard deviation taken.

Two checks of the form come with every extrapolation: the other power (1 instead of 2, or
2 instead of 1) and the same form without the smallest size. How far E_inf moves between
them is a measure of the extrapolation's own uncertainty, which the bootstrap of the
statistical errors does not contain.

`summary.h5` (written by `vmc report` next to report.html) holds the results: group
/tdl/<crystal>, attributes TDL_ATTRS (energies in Ha per atom).
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from pathlib import Path

import h5py
import numpy as np

from vmc import __version__

N_BOOTSTRAP = 2000
SEED = 0
MIN_SIZES = 3  # two parameters, and one degree of freedom to judge the form


@dataclasses.dataclass
class TdlFit:
    """E_N = e_inf + slope N^(-power), fitted to energies (n,) per atom (Ha) with errors (n,)
    at sizes (n,) (atoms in the simulation cell). `*_error`: bootstrap standard errors (nan
    without error bars)."""

    power: float
    e_inf: float
    e_inf_error: float
    slope: float  # Ha per atom times atoms^power
    slope_error: float
    chi2: float  # sum of squared normalized residuals (nan without error bars)
    dof: int  # sizes - 2
    sizes: np.ndarray
    energies: np.ndarray
    errors: np.ndarray
    n_bootstrap: int

    @property
    def form(self) -> str:
        return f"E_N = E_inf + b / N^{self.power:g}"

    def energy(self, n_atoms) -> np.ndarray:
        """The fitted energy per atom (Ha) at n_atoms (any shape)."""
        return self.e_inf + self.slope * np.asarray(n_atoms, dtype=float) ** -self.power


def fit(sizes, energies, errors=None, power: float = 2.0, n_bootstrap: int = N_BOOTSTRAP, seed: int = SEED) -> TdlFit:
    """Fits E_N = E_inf + b N^(-power) to energies (n,) per atom (Ha) with errors (n,) at
    sizes (n,) atoms. Needs two distinct sizes; ValueError otherwise."""
    n, e = np.asarray(sizes, dtype=float), np.asarray(energies, dtype=float)
    err = np.full_like(e, np.nan) if errors is None else np.asarray(errors, dtype=float)
    if len(np.unique(n)) < 2:
        raise ValueError(f"{len(np.unique(n))} distinct size: the extrapolation needs at least 2")
    if not (np.all(n > 0) and np.all(np.isfinite(e))):
        raise ValueError("sizes must be positive and energies finite")
    weighted = bool(np.all(np.isfinite(err)) and np.all(err > 0))
    w = 1.0 / err if weighted else np.ones_like(e)
    design = np.stack([np.ones_like(n), n**-power], axis=1)  # (n, 2)
    solve = np.linalg.pinv(design * w[:, None]) * w[None, :]  # (2, n): coefficients = solve @ e
    e_inf, slope = solve @ e
    residual = (design @ (solve @ e) - e) * w
    chi2 = float(residual @ residual) if weighted else float("nan")
    errors_out, used = np.full(2, np.nan), 0
    if weighted and n_bootstrap > 1:
        rng = np.random.default_rng(seed)
        samples = e[None, :] + err[None, :] * rng.standard_normal((n_bootstrap, len(e)))
        coefficients = samples @ solve.T  # (n_bootstrap, 2)
        errors_out, used = np.std(coefficients, axis=0, ddof=1), n_bootstrap
    return TdlFit(power=float(power), e_inf=float(e_inf), e_inf_error=float(errors_out[0]), slope=float(slope),
                  slope_error=float(errors_out[1]), chi2=chi2, dof=len(e) - 2, sizes=n, energies=e, errors=err,
                  n_bootstrap=used)


# ----------------------------------------------------------------------------- runs -> points


@dataclasses.dataclass
class SizePoint:
    """One geometry of a crystal: its twist-averaged energy per atom (Ha) at one size."""

    n_atoms: int  # in the simulation cell
    energy: float  # per atom
    error: float
    run: str  # run label
    geometry: str
    supercell: np.ndarray  # (3, 3) int


@dataclasses.dataclass
class SizeSeries:
    """One crystal (a primitive cell: symbols, lattice, positions) at several supercell
    sizes, the lowest energy per size, sorted by size."""

    name: str
    lattice_constant: float | None  # bohr
    points: list[SizePoint]
    replaced: list[SizePoint]  # higher energies of a size given by several runs

    @property
    def sizes(self) -> np.ndarray:
        return np.array([p.n_atoms for p in self.points], dtype=float)

    @property
    def energies(self) -> np.ndarray:
        return np.array([p.energy for p in self.points])

    @property
    def errors(self) -> np.ndarray:
        return np.array([p.error for p in self.points])

    @property
    def dimension(self) -> int:
        """How many lattice directions the supercells grow along (1 for a chain)."""
        rows = np.stack([p.supercell for p in self.points])  # (n, 3, 3)
        return int(np.any(rows != rows[:1], axis=(0, 2)).sum())

    @property
    def power(self) -> float:
        """The leading finite-size power of N: 2 for a chain, 1 otherwise (module docstring)."""
        return 2.0 if self.dimension <= 1 else 1.0


def size_series(runs) -> list[SizeSeries]:
    """Crystals that the runs (vmc/runs.py RunRecord) hold at several supercell sizes, each
    with its evaluated geometries. Geometries of the same primitive cell (symbols, lattice
    and positions to 1e-6 bohr) are one crystal, whatever the runs called it; where several
    runs hold one size, the lowest energy per atom is used (the better wavefunction, by the
    variational principle) and the others are listed as replaced."""
    groups: dict[tuple, dict] = {}
    for run in runs:
        for name, points in run.crystals.items():
            for gid, e, err in zip(points.geometries, points.energies, points.errors):
                if not np.isfinite(e):
                    continue
                s = next((s for s in run.systems if s.geometry == gid and s.primitive_lattice is not None), None)
                if s is None or s.supercell is None or not points.primitive_symbols:
                    continue
                atoms = len(points.primitive_symbols)
                positions = () if s.primitive_positions is None else tuple(np.round(s.primitive_positions, 6).ravel())
                key = (tuple(points.primitive_symbols), tuple(np.round(s.primitive_lattice, 6).ravel()), positions)
                group = groups.setdefault(key, {"names": set(), "a": s.lattice_constant, "by_size": {}})
                group["names"].add(name)
                point = SizePoint(n_atoms=s.n_atoms, energy=float(e) / atoms, error=float(err) / atoms, run=run.label,
                                  geometry=gid, supercell=np.rint(s.supercell).astype(int))
                group["by_size"].setdefault(s.n_atoms, []).append(point)
    out = []
    for g in groups.values():
        if len(g["by_size"]) < 2:
            continue
        points, replaced = [], []
        for size in sorted(g["by_size"]):
            ranked = sorted(g["by_size"][size], key=lambda p: p.energy)
            points.append(ranked[0])
            replaced += ranked[1:]
        # the shortest: a config with several sizes of one crystal names the later ones name_1, name_2, ...
        name = min(g["names"], key=lambda x: (len(x), x))
        out.append(SizeSeries(name=name, lattice_constant=g["a"], points=points, replaced=replaced))
    # one name per crystal in the outputs: a second crystal of the same name gets its lattice constant
    counts: dict[str, int] = {}
    for s in out:
        counts[s.name] = counts.get(s.name, 0) + 1
    for s in out:
        if counts[s.name] > 1 and s.lattice_constant is not None:
            s.name = f"{s.name}_a{s.lattice_constant:g}"
    return out


@dataclasses.dataclass
class Extrapolation:
    """A crystal's size series, its fit in the leading form, and the two checks of the form
    (module docstring); `reason`: why there is no fit (then `fit` is None)."""

    series: SizeSeries
    fit: TdlFit | None
    checks: dict[str, TdlFit]  # label -> fit
    reason: str | None = None


def extrapolate(series: SizeSeries) -> Extrapolation:
    """The series' extrapolation; needs MIN_SIZES sizes for the leading form."""
    n = len(series.points)
    if n < MIN_SIZES:
        return Extrapolation(series, None, {}, f"{n} supercell sizes: the extrapolation needs at least {MIN_SIZES}")
    sizes, e, err = series.sizes, series.energies, series.errors
    p = series.power
    other = 1.0 if p == 2.0 else 2.0
    checks = {f"b / N^{other:g}": fit(sizes, e, err, other),
              f"b / N^{p:g}, without N = {int(sizes[0])}": fit(sizes[1:], e[1:], err[1:], p)}
    return Extrapolation(series, fit(sizes, e, err, p), checks)


# ----------------------------------------------------------------------------- summary.h5

TDL_ATTRS = ["e_inf", "e_inf_error", "form", "power", "slope", "slope_error", "chi2", "dof", "sizes", "energies",
             "errors", "n_bootstrap", "lattice_constant", "runs", "geometries", "check_forms", "check_e_inf",
             "check_e_inf_error", "reference", "unit"]


def write_summary(path: Path, extrapolations: list[Extrapolation], reference: float | None = None) -> None:
    """Writes summary.h5 at path (replacing it whole, atomically): /tdl/<crystal> with
    TDL_ATTRS for every extrapolation that has a fit. `reference`: a literature E_inf (Ha per
    atom), stored as given (nan when none)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(vmc_version=__version__,
                       created=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
        for x in extrapolations:
            if x.fit is None:
                continue
            r, s = x.fit, x.series
            g = f.create_group(f"tdl/{s.name}")
            g.attrs.update(
                e_inf=r.e_inf, e_inf_error=r.e_inf_error, form=r.form, power=r.power, slope=r.slope,
                slope_error=r.slope_error, chi2=r.chi2, dof=r.dof, sizes=r.sizes.astype(np.int64), energies=r.energies,
                errors=r.errors, n_bootstrap=r.n_bootstrap,
                lattice_constant=np.nan if s.lattice_constant is None else s.lattice_constant,
                runs=np.array([p.run for p in s.points], dtype="S"), geometries=np.array([p.geometry for p in s.points], dtype="S"),
                check_forms=np.array([f"E_N = E_inf + {label}" for label in x.checks], dtype="S"),
                check_e_inf=np.array([c.e_inf for c in x.checks.values()]),
                check_e_inf_error=np.array([c.e_inf_error for c in x.checks.values()]),
                reference=np.nan if reference is None else float(reference), unit="Ha per atom",
            )
    tmp.replace(path)
