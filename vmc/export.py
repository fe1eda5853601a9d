"""`vmc export`: the energies of several run directories in one file.

HDF5 (default): /runs/<name> per run directory, holding a copy of its energies.h5 groups
(/systems, /geometries, /eos) and attributes config (resolved YAML), vmc_version, created and
source (the directory). CSV: one row per system with the evaluated and twist-averaged
energies; crystals add their lattice constant and primitive-cell volume and the /eos fit of
their crystal (eos_* columns, repeated on each of its rows; vmc/eos.py). Works on finished,
running and interrupted runs (missing values are NaN).

The format is --format, else the suffix of --out (.h5, .hdf5 or .csv; any other is refused
rather than guessed). A run directory named twice (by the same path, or by two paths to the
same directory) is exported once, under its first name: a run is one group, one set of rows.
Every energies.h5 is read and checked as `vmc report` reads it (vmc/runs.py) before anything
is written, so a damaged or crafted file is one line and exit status 2.
"""

from __future__ import annotations

import csv
import datetime
import os
from pathlib import Path

import numpy as np

from vmc import __version__, eos
from vmc.errors import InputError, OutputError, os_reason
from vmc.outputs import open_energies, open_h5, read_eval, read_train
from vmc.runs import energies_file, labels, read_run, system_groups

SUFFIXES = {".h5": "h5", ".hdf5": "h5", ".csv": "csv"}

CSV_COLUMNS = [
    "run", "system", "name", "geometry", "n_electrons", "n_cells", "twist", "weight",
    "train_steps", "train_energy_last", "energy", "energy_error", "energy_per_cell",
    "energy_per_cell_error", "geometry_energy_per_cell", "geometry_energy_per_cell_error",
    "hf_energy", "hf_energy_per_cell", *eos.CSV_COLUMNS,
]


def _attr(attrs, key, default=np.nan):
    value = attrs.get(key, default)
    return value.decode() if isinstance(value, bytes) else value


def summary_rows(run_dir: Path, run_name: str) -> list[dict]:
    """One dict per system of a run directory (the CSV rows)."""
    path = energies_file(run_dir)
    try:
        return _summary_rows(path, run_name)
    except (KeyError, ValueError, TypeError, IndexError) as e:  # an attribute of the wrong kind
        raise InputError(f"{path}: could not be read ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None


def _summary_rows(path: Path, run_name: str) -> list[dict]:
    rows = []
    with open_energies(path) as f:
        geometries = f.get("geometries", {})
        for sid, g in system_groups(f).items():
            a = g.attrs
            ev = read_eval(g)[1]
            train = read_train(g)["energy"]
            geo = geometries[_attr(a, "geometry")].attrs if _attr(a, "geometry") in geometries else {}
            twist = a.get("twist")
            rows.append(dict(
                run=run_name, system=sid, name=_attr(a, "name", ""), geometry=_attr(a, "geometry", ""),
                n_electrons=int(a["n_electrons"]), n_cells=int(a.get("n_cells", 1)),
                twist="" if twist is None else " ".join(f"{x:g}" for x in twist), weight=float(a.get("weight", 1.0)),
                train_steps=len(train), train_energy_last=float(train[-1]) if len(train) else np.nan,
                energy=float(_attr(ev, "energy")), energy_error=float(_attr(ev, "energy_error")),
                energy_per_cell=float(_attr(ev, "energy_per_cell")), energy_per_cell_error=float(_attr(ev, "energy_per_cell_error")),
                geometry_energy_per_cell=float(_attr(geo, "energy_per_cell")),
                geometry_energy_per_cell_error=float(_attr(geo, "energy_per_cell_error")),
                hf_energy=float(_attr(a, "hf_energy")), hf_energy_per_cell=float(_attr(a, "hf_energy_per_cell")),
                **eos.csv_fields(f, a),
            ))
    return rows


def export(run_dirs: list[str | Path], out: str | Path, fmt: str | None = None) -> Path:
    """Writes the combined file; `fmt` is 'h5' or 'csv' (default from the suffix of `out`)."""
    out = Path(out)
    if fmt is None:
        fmt = SUFFIXES.get(out.suffix.lower())
        if fmt is None:
            raise InputError(f"--out {out}: unknown suffix {out.suffix!r}; name the file .h5 or .csv, or give --format")
    run_dirs = _distinct([Path(d) for d in run_dirs])
    for d in run_dirs:
        energies_file(d)
    _check_out(out, run_dirs)
    for d in run_dirs:  # checks every file as `vmc report` does, before anything is written
        read_run(d)
    names = labels(run_dirs)
    tmp = out.with_name(f"{out.name}.{os.getpid()}.tmp")
    try:
        _write(tmp, fmt, run_dirs, names)
        tmp.replace(out)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"--out {out}: could not be written ({os_reason(e)})") from None
    return out


def _distinct(run_dirs: list[Path]) -> list[Path]:
    """The run directories in order, each once (two paths to one directory count as one)."""
    seen, out = set(), []
    for d in run_dirs:
        if d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def _check_out(out: Path, run_dirs: list[Path]) -> None:
    """--out must be a writable file path that belongs to none of the input runs."""
    if out.is_dir():
        raise InputError(f"--out {out}: is a directory; give a file name (.h5 or .csv)")
    if not out.parent.is_dir():
        # the nearest existing ancestor says why: a file where a directory should be, or nothing
        existing = next((p for p in out.parents if p.exists()), None)
        if existing is not None and not existing.is_dir():
            raise InputError(f"--out {out}: {existing} is not a directory")
        raise InputError(f"--out {out}: the directory {out.parent} does not exist")
    target = out.resolve()
    for d in run_dirs:
        d = d.resolve()
        if target.parent == d and target.name in ("energies.h5", "config.yaml") or d / "checkpoints" in target.parents:
            raise InputError(f"--out {out}: would overwrite a file of the input run {d}; choose another name")


def _write(tmp: Path, fmt: str, run_dirs: list[Path], names: list[str]) -> None:
    if fmt == "csv":
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            for d, name in zip(run_dirs, names):
                writer.writerows(summary_rows(d, name))
    else:
        with open_h5(tmp, "w") as dst:
            dst.attrs.update(vmc_version=__version__, created=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
            for d, name in zip(run_dirs, names):
                g = dst.create_group(f"runs/{name}")
                with open_energies(energies_file(d)) as src:
                    for key in ("systems", "geometries", "eos"):
                        if key in src:
                            src.copy(src[key], g, name=key)
                    g.attrs.update(
                        config=src.attrs.get("config", ""),
                        vmc_version=src.attrs.get("vmc_version", ""),
                        created=src.attrs.get("created", ""),
                        source=str(d.resolve()),
                    )
