"""Equation of state: a third-order Birch–Murnaghan fit of E(V) with bootstrapped errors.

E(V) = E0 + 9 V0 B0 / 16 {[(V0/V)^(2/3) - 1]^3 B0' + [(V0/V)^(2/3) - 1]^2 [6 - 4 (V0/V)^(2/3)]}

is a cubic polynomial in u = (V / V_ref)^(-2/3) (V_ref: the mean sampled volume, for
conditioning), with four coefficients for the four parameters (E0, V0, B0, B0'). The fit is
therefore a weighted linear least-squares fit of that cubic (weights 1/error^2), and the
parameters follow from the cubic's minimum:

    p'(u0) = 0, p''(u0) > 0,  V0 = V_ref u0^(-3/2),  E0 = p(u0),
    B0 = V E''(V0) = (4/9) u0^2 p''(u0) / V0,  B0' = 4 + (2/3) u0 p'''(u0) / p''(u0).

Standard errors are propagated from the energies' error bars by a parametric bootstrap:
energies are redrawn from N(E_i, sigma_i^2), refitted, and the standard deviation of each
parameter over the resamples is its error (resamples whose cubic has no minimum are dropped
and counted). The random stream is fixed (seed 0), so the same energies give the same errors
everywhere (energies.h5, `vmc report`, `vmc export`).

V is the primitive-cell volume (bohr^3) and E the twist-averaged energy per primitive cell
(Ha), as stored under /geometries of energies.h5. The lattice constant a0 follows from V0
through V = c a^k, k fitted on the sampled points (k = 3 for a crystal scaled as a whole,
1 for a chain with fixed vacuum). B0 is reported in GPa.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from pyscf.data import nist

GPA_PER_HA_PER_BOHR3 = nist.HARTREE2J / (nist.BOHR * 1e-10) ** 3 / 1e9  # 29421.015 GPa
MIN_POINTS = 4  # four parameters
N_BOOTSTRAP = 2000
SEED = 0


@dataclasses.dataclass
class EosFit:
    """A Birch–Murnaghan fit. Lengths in bohr, energies in Ha per primitive cell, B0 in GPa;
    each `*_error` is a bootstrap standard error (nan without error bars)."""

    a0: float
    a0_error: float
    v0: float
    v0_error: float
    e0: float
    e0_error: float
    b0: float  # GPa
    b0_error: float
    b0_prime: float
    b0_prime_error: float
    chi2: float  # sum of squared normalized residuals (nan without error bars)
    dof: int  # points - 4
    exponent: float  # k in V = c a^k
    coefficients: np.ndarray  # (4,) of the cubic in u, lowest order first
    v_ref: float  # bohr^3
    n_bootstrap: int  # resamples used (those with a minimum)
    n_failed: int  # resamples without a minimum

    def energy(self, volume) -> np.ndarray:
        """The fitted E(V) (Ha per cell) at volumes (bohr^3), any shape."""
        u = (np.asarray(volume, dtype=float) / self.v_ref) ** (-2.0 / 3.0)
        return np.polynomial.polynomial.polyval(u, self.coefficients)

    def volume(self, lattice_constant) -> np.ndarray:
        """V(a) (bohr^3) of the power law fitted to the sampled points."""
        return self.v0 * (np.asarray(lattice_constant, dtype=float) / self.a0) ** self.exponent


def birch_murnaghan(volume, e0: float, v0: float, b0: float, b0_prime: float) -> np.ndarray:
    """E(V) of the third-order Birch–Murnaghan equation; V, V0 in bohr^3, E0 in Ha, B0 in
    Ha/bohr^3 (not GPa), B0' dimensionless."""
    f = (v0 / np.asarray(volume, dtype=float)) ** (2.0 / 3.0) - 1.0
    return e0 + 9.0 * v0 * b0 / 16.0 * (f**3 * b0_prime + f**2 * (2.0 - 4.0 * f))


def _parameters(c: np.ndarray, v_ref: float) -> np.ndarray:
    """(E0, V0, B0 [Ha/bohr^3], B0') from cubic coefficients c (..., 4); nan where the cubic
    has no minimum at positive u."""
    c0, c1, c2, c3 = np.moveaxis(np.asarray(c, dtype=float), -1, 0)
    disc = 4.0 * c2**2 - 12.0 * c1 * c3
    s = np.sqrt(np.where(disc >= 0, disc, np.nan))
    with np.errstate(divide="ignore", invalid="ignore"):
        u0 = -2.0 * c1 / (2.0 * c2 + s)  # the root of p' with p'' = s > 0, stable as c3 -> 0
        ok = (u0 > 0) & (s > 0) & np.isfinite(u0)
        u0 = np.where(ok, u0, np.nan)
        e0 = c0 + c1 * u0 + c2 * u0**2 + c3 * u0**3
        v0 = v_ref * u0**-1.5
        p2 = 2.0 * c2 + 6.0 * c3 * u0
        b0 = 4.0 / 9.0 * u0**2 * p2 / v0
        b0_prime = 4.0 + 2.0 / 3.0 * u0 * 6.0 * c3 / p2
    return np.stack([e0, v0, b0, b0_prime], axis=-1)


def _power_law(lattice_constants: np.ndarray, volumes: np.ndarray) -> tuple[float, float]:
    """(k, log c) of V = c a^k, least squares in log-log."""
    k, log_c = np.polyfit(np.log(lattice_constants), np.log(volumes), 1)
    return float(k), float(log_c)


def fit(lattice_constants, volumes, energies, errors=None, n_bootstrap: int = N_BOOTSTRAP, seed: int = SEED) -> EosFit:
    """Birch–Murnaghan fit of energies (n,) per cell (Ha) with errors (n,) at volumes (n,)
    (bohr^3) and lattice constants (n,) (bohr). Needs n >= 4 distinct volumes. Raises
    ValueError when there are too few points or the fitted curve has no minimum."""
    a, v, e = (np.asarray(x, dtype=float) for x in (lattice_constants, volumes, energies))
    err = np.full_like(e, np.nan) if errors is None else np.asarray(errors, dtype=float)
    if len(np.unique(np.round(v, 10))) < MIN_POINTS:
        raise ValueError(f"{len(np.unique(np.round(v, 10)))} distinct volumes; the fit needs at least {MIN_POINTS}")
    weighted = bool(np.all(np.isfinite(err)) and np.all(err > 0))
    w = 1.0 / err if weighted else np.ones_like(e)
    v_ref = float(np.mean(v))
    design = ((v / v_ref) ** (-2.0 / 3.0))[:, None] ** np.arange(4)  # (n, 4)
    solve = np.linalg.pinv(design * w[:, None]) * w[None, :]  # (4, n): coefficients = solve @ e
    coefficients = solve @ e
    e0, v0, b0, b0p = _parameters(coefficients, v_ref)
    if not np.isfinite(v0):
        raise ValueError("the fitted E(V) has no minimum")
    k, log_c = _power_law(a, v)
    to_a = lambda vol: np.exp((np.log(vol) - log_c) / k)  # noqa: E731
    residual = (design @ coefficients - e) * w
    chi2 = float(residual @ residual) if weighted else float("nan")

    errors_out = np.full(5, np.nan)
    n_ok = n_failed = 0
    if weighted and n_bootstrap > 0:
        rng = np.random.default_rng(seed)
        samples = e[None, :] + err[None, :] * rng.standard_normal((n_bootstrap, len(e)))
        params = _parameters(samples @ solve.T, v_ref)  # (n_bootstrap, 4)
        good = np.all(np.isfinite(params), axis=1)
        n_ok, n_failed = int(good.sum()), int((~good).sum())
        if n_ok > 1:
            p = params[good]
            columns = [to_a(p[:, 1]), p[:, 1], p[:, 0], p[:, 2] * GPA_PER_HA_PER_BOHR3, p[:, 3]]
            errors_out = np.array([np.std(x, ddof=1) for x in columns])
    return EosFit(
        a0=float(to_a(v0)), a0_error=float(errors_out[0]), v0=float(v0), v0_error=float(errors_out[1]),
        e0=float(e0), e0_error=float(errors_out[2]), b0=float(b0 * GPA_PER_HA_PER_BOHR3), b0_error=float(errors_out[3]),
        b0_prime=float(b0p), b0_prime_error=float(errors_out[4]), chi2=chi2, dof=len(e) - 4, exponent=k,
        coefficients=coefficients, v_ref=v_ref, n_bootstrap=n_ok, n_failed=n_failed,
    )


# ----------------------------------------------------------------------------- energies.h5


@dataclasses.dataclass
class EosPoints:
    """The twist-averaged geometries of one crystal (`name`) in energies.h5, by lattice
    constant: arrays (n,) of lattice constants (bohr), primitive-cell volumes (bohr^3),
    energies per cell and their errors (Ha; nan before evaluation)."""

    name: str
    geometries: list[str]
    lattice_constants: np.ndarray
    volumes: np.ndarray
    energies: np.ndarray
    errors: np.ndarray
    primitive_symbols: list[str]
    lattice_constant_stored: bool  # False: an older file; lattice constants are V^(1/3)

    @property
    def evaluated(self) -> np.ndarray:
        """(n,) bool: geometries with a finite energy."""
        return np.isfinite(self.energies)


def _text(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def crystal_points(f) -> dict[str, EosPoints]:
    """{crystal name: EosPoints} for the periodic systems of an open energies.h5 (h5py.File)."""
    by_name: dict[str, dict[str, dict]] = {}
    for sid, g in f.get("systems", {}).items():
        a = g.attrs
        if "primitive_lattice" not in a:
            continue
        name, gid = _text(a["name"]), _text(a["geometry"])
        if gid in by_name.setdefault(name, {}):
            continue
        volume = abs(float(np.linalg.det(np.asarray(a["primitive_lattice"], dtype=float))))
        stored = "lattice_constant" in a
        geo = f["geometries"][gid].attrs if gid in f.get("geometries", {}) else {}
        by_name[name][gid] = dict(
            a=float(a["lattice_constant"]) if stored else volume ** (1.0 / 3.0), v=volume, stored=stored,
            e=float(geo.get("energy_per_cell", np.nan)), err=float(geo.get("energy_per_cell_error", np.nan)),
            symbols=[_text(s) for s in a.get("primitive_symbols", [])],
        )
    out = {}
    for name, geos in by_name.items():
        items = sorted(geos.items(), key=lambda kv: kv[1]["a"])
        out[name] = EosPoints(
            name=name, geometries=[gid for gid, _ in items],
            lattice_constants=np.array([d["a"] for _, d in items]), volumes=np.array([d["v"] for _, d in items]),
            energies=np.array([d["e"] for _, d in items]), errors=np.array([d["err"] for _, d in items]),
            primitive_symbols=items[0][1]["symbols"], lattice_constant_stored=all(d["stored"] for _, d in items),
        )
    return out


def fit_points(points: EosPoints) -> EosFit | str:
    """The fit of a crystal's evaluated geometries, or a sentence saying why there is none."""
    ok = points.evaluated
    n = int(ok.sum())
    if n < MIN_POINTS:
        total = len(points.lattice_constants)
        if n < total:
            return f"{n} of {total} lattice constants evaluated so far: the Birch–Murnaghan fit needs at least {MIN_POINTS}"
        return f"{total} lattice constant{'s' if total != 1 else ''}: the Birch–Murnaghan fit needs at least {MIN_POINTS}, so none is made"
    try:
        return fit(points.lattice_constants[ok], points.volumes[ok], points.energies[ok], points.errors[ok])
    except ValueError as e:
        return f"no Birch–Murnaghan fit: {e}"


EOS_ATTRS = ["a0", "a0_error", "v0", "v0_error", "e0", "e0_error", "b0", "b0_error", "b0_prime", "b0_prime_error",
             "chi2", "dof", "exponent", "n_bootstrap", "n_failed"]


def write_eos(path: Path) -> dict[str, EosFit]:
    """Fits every crystal of energies.h5 at `path` with >= 4 evaluated lattice constants and
    stores the results as attributes of /eos/<name> (EOS_ATTRS, plus lattice_constants,
    volumes, energies, errors, geometries of the fitted points). Returns {name: fit}."""
    from vmc.outputs import open_h5

    with open_h5(Path(path), "r") as f:
        points = crystal_points(f)
    fits = {name: (p, fit_points(p)) for name, p in points.items()}
    fits = {name: (p, r) for name, (p, r) in fits.items() if isinstance(r, EosFit)}
    if not fits:
        return {}
    with open_h5(Path(path), "a") as f:
        for name, (p, r) in fits.items():
            if f"eos/{name}" in f:
                del f[f"eos/{name}"]
            g = f.require_group(f"eos/{name}")
            g.attrs.update({k: getattr(r, k) for k in EOS_ATTRS})
            ok = p.evaluated
            g.attrs.update(
                b0_unit="GPa", lattice_constants=p.lattice_constants[ok], volumes=p.volumes[ok],
                energies=p.energies[ok], errors=p.errors[ok],
                geometries=np.array([gid for gid, k in zip(p.geometries, ok) if k], dtype="S"),
            )
    return {name: r for name, (_, r) in fits.items()}


def read_eos(f, name: str) -> dict | None:
    """The stored /eos/<name> attributes of an open energies.h5 as {EOS_ATTRS key: value},
    or None when there is none."""
    if f"eos/{name}" not in f:
        return None
    a = f[f"eos/{name}"].attrs
    return {k: a[k].item() if hasattr(a[k], "item") else a[k] for k in EOS_ATTRS if k in a}


CSV_COLUMNS = ["lattice_constant", "volume", "eos_a0", "eos_a0_error", "eos_e0", "eos_e0_error", "eos_b0_gpa",
               "eos_b0_gpa_error", "eos_b0_prime", "eos_b0_prime_error"]


def csv_fields(f, system_attrs) -> dict[str, float]:
    """The CSV_COLUMNS of one system row of `vmc export --format csv`: its lattice constant
    (bohr) and primitive-cell volume (bohr^3), and its crystal's /eos results (nan where none)."""
    out = dict.fromkeys(CSV_COLUMNS, float("nan"))
    if "primitive_lattice" not in system_attrs:
        return out
    out["volume"] = abs(float(np.linalg.det(np.asarray(system_attrs["primitive_lattice"], dtype=float))))
    out["lattice_constant"] = float(system_attrs.get("lattice_constant", np.nan))
    stored = read_eos(f, _text(system_attrs["name"]))
    if stored:
        for key, column in [("a0", "eos_a0"), ("e0", "eos_e0"), ("b0", "eos_b0_gpa"), ("b0_prime", "eos_b0_prime")]:
            out[column] = float(stored[key])
            out[column + "_error"] = float(stored[key + "_error"])
    return out
