"""`energies.h5`: the energies of a run, written as it goes.

Layout (energies in hartree; "whole" means the whole simulation cell):
    /                         attrs: vmc_version, created, config (resolved YAML text);
                                     for each phase P of the memory plan (vmc/memory.py:
                                     sampling, pretraining, local_energy, jacobian, gradient):
                                     P_batch (walkers per device at once), P_bytes_per_walker,
                                     P_bytes_measured (XLA's figure, else an upper estimate),
                                     P_budget_bytes; fixed_bytes (SPRING's rows, Gram matrix)
    /systems/<id>             attrs: System.attributes() (name, symbols, positions, ...),
                                     hf_energy (whole cell), hf_energy_per_cell: the HF baseline;
                                     sparse `fire`: neighbour_lists (names), neighbour_capacities
                                     (list sizes), recompiles (times a walker outgrew them)
        train                 table (n,), one row per accepted optimization step, fields:
                                step       int64, optimization step
                                energy     mean local energy of the step, whole cell
                                variance   variance of the local energy
                                pmove      MCMC acceptance rate
                                wall_time  seconds of the step (sampling + update)
                              attrs: rejected (steps rejected and retried, see docs/robustness.md)
        eval/energy           (m,) per-step mean local energies, whole cell
                              attrs: energy, energy_error, energy_per_cell,
                                     energy_per_cell_error, autocorrelation_time
    /geometries/<id>          attrs: energy_per_cell, energy_per_cell_error (twist-averaged),
                                     systems, twists, weights

`train` is one compound dataset rather than a column per field so that a row appears whole:
every field has the same length at every moment a reader can look, even when the writer is
killed mid-append. `pandas.DataFrame(f["systems/<id>/train"][:])` reads it; a single field is
`f["systems/<id>/train"]["energy"]`.

The file is opened, appended and closed at every write, so that h5py or pandas can read it
at any time while the run goes on (file locking is off for the same reason). A failed write
(a full disk) raises OutputError.
"""

from __future__ import annotations

import contextlib
import datetime
import functools
from pathlib import Path

import h5py
import numpy as np

from vmc import __version__, stats
from vmc.errors import OutputError, os_reason
from vmc.hdf5_safety import Source, check_file, read
from vmc.systems import System

TRAIN_FIELDS = {"step": np.int64, "energy": np.float64, "variance": np.float64, "pmove": np.float64, "wall_time": np.float64}
TRAIN_DTYPE = np.dtype(list(TRAIN_FIELDS.items()))


def open_h5(path: Path, mode: str = "r") -> h5py.File:
    """h5py file without HDF5's file locking (readers may open it while a run writes)."""
    return h5py.File(path, mode, locking=False)


# Reading. An energies.h5 may come from anywhere (`vmc report`, `vmc export`, a run directory
# copied from elsewhere): every reader checks the file (no links, no data in other files, no
# plugin filters: vmc/hdf5_safety.py) and each dataset's type and size before it reads it, and
# says what is wrong in one line naming the file and the dataset (docs/robustness.md).

def source(group: h5py.Group) -> Source:
    """The file of an open energies.h5 group, for messages."""
    return Source(Path(group.file.filename), "energies file")


@contextlib.contextmanager
def open_energies(path: Path):
    """energies.h5 opened for reading (no HDF5 file locking, see open_h5) and checked."""
    with open_h5(Path(path), "r") as f:
        check_file(f, source(f), compound=True)
        yield f


# the kinds each training field may be stored as: a step is a whole number
TRAIN_KINDS = {name: ("iu" if name == "step" else "iuf") for name in TRAIN_FIELDS}


def read_train(group: h5py.Group) -> dict[str, np.ndarray]:
    """The training rows of a /systems/<id> group as {field: (n,) array}."""
    link = group.get("train", getlink=True)
    if link is None:
        return {name: np.zeros(0, dtype) for name, dtype in TRAIN_FIELDS.items()}
    src = source(group)
    if isinstance(link, h5py.HardLink) and isinstance(group["train"], h5py.Group):
        rows = read_columns(group["train"])
    else:
        rows = read(group, "train", src, compound=True, ndim=1)
        fields = rows.dtype.fields or {}
        if any(name not in fields or fields[name][0].kind not in TRAIN_KINDS[name] for name in TRAIN_FIELDS):
            raise src.error(f"{group.name}/train is not a table of training rows ({', '.join(TRAIN_FIELDS)}), "
                            f"it has type {rows.dtype}")
    return {name: np.asarray(rows[name], dtype) for name, dtype in TRAIN_FIELDS.items()}


def read_eval(group: h5py.Group) -> tuple[np.ndarray, dict]:
    """The evaluation energies (m,) of a /systems/<id> group and the attributes of its
    eval/energy dataset (empty before the evaluation)."""
    src = source(group)
    link = group.get("eval", getlink=True)
    if link is None:
        return np.zeros(0), {}
    if not isinstance(link, h5py.HardLink) or not isinstance(group["eval"], h5py.Group):
        raise src.error(f"{group.name}/eval is not a group of this file")
    if group["eval"].get("energy", getlink=True) is None:
        return np.zeros(0), {}
    energies = read(group["eval"], "energy", src, kinds="iuf", ndim=1)
    return energies.astype(np.float64), dict(group["eval/energy"].attrs)


def read_train_rows(path: Path, system_id: str) -> dict[str, np.ndarray]:
    """The training rows written so far for one system of a run's energies.h5."""
    with open_energies(path) as f:
        return read_train(f[f"systems/{system_id}"])


def read_recompiles(path: Path, system_id: str) -> int:
    """How often a walker of this system outgrew its neighbour lists so far."""
    with open_energies(path) as f:
        value = f["systems"][system_id].attrs.get("recompiles", 0)
        if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
            raise source(f).error(f"the 'recompiles' attribute of /systems/{system_id} is not a count")
        return int(value)


def read_columns(group: h5py.Group) -> np.ndarray:
    """The rows of an older `train` group (one dataset per field), cut to the shortest field."""
    src = source(group)
    columns = {name: read(group, name, src, kinds=TRAIN_KINDS[name], ndim=1) for name in TRAIN_FIELDS}
    n = min(len(c) for c in columns.values())
    rows = np.zeros(n, TRAIN_DTYPE)
    for name in TRAIN_FIELDS:
        rows[name] = columns[name][:n]
    return rows


def _writes(method):
    """Turns a failed write of energies.h5 into one OutputError naming the file."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except (OSError, RuntimeError) as e:
            reason = os_reason(e)
            raise OutputError(f"{self.path} could not be written ({reason})") from None
    return wrapper


class EnergyFile:
    """Writer of one run's energies.h5."""

    @_writes
    def __init__(self, path: Path, systems: list[System], config_text: str, hf_energies: list[float]):
        """hf_energies: the HF energy (Ha, whole simulation cell) of each system."""
        self.path = Path(path)
        self.systems = systems
        with open_h5(self.path, "a") as f:
            f.attrs.setdefault("vmc_version", __version__)
            f.attrs.setdefault("created", datetime.datetime.now().astimezone().isoformat(timespec="seconds"))
            f.attrs["config"] = config_text
            for s, hf_energy in zip(systems, hf_energies, strict=True):
                g = f.require_group(f"systems/{s.id}")
                for k, v in s.attributes().items():
                    g.attrs[k] = v
                g.attrs.update(hf_energy=hf_energy, hf_energy_per_cell=hf_energy / s.n_cells)
                if isinstance(g.get("train"), h5py.Group):  # written by vmc 0.1 (a column per field)
                    old = read_columns(g["train"])
                    del g["train"]
                    g.create_dataset("train", data=old, maxshape=(None,), chunks=(512,)).attrs["rejected"] = 0
                if "train" not in g:
                    d = g.create_dataset("train", shape=(0,), maxshape=(None,), dtype=TRAIN_DTYPE, chunks=(512,))
                    d.attrs["rejected"] = 0
                if "eval/energy" not in g:
                    g.create_dataset("eval/energy", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,))

    @_writes
    def append_train(self, system_id: str, **values) -> None:
        """Appends one optimization step (keys of TRAIN_FIELDS) as one row and flushes."""
        row = np.array([tuple(values[name] for name in TRAIN_FIELDS)], dtype=TRAIN_DTYPE)
        with open_h5(self.path, "a") as f:
            d = f[f"systems/{system_id}/train"]
            d.resize((d.shape[0] + 1,))
            d[-1:] = row

    @_writes
    def write_memory(self, plan) -> None:
        """How each phase split a device's walkers (vmc/memory.py `MemoryPlan`; bytes per
        device): `<phase>_batch`, `<phase>_bytes_per_walker`, `<phase>_bytes_measured` for each
        phase (spaces as underscores), `<phase>_budget_bytes`, and `fixed_bytes`."""
        with open_h5(self.path, "a") as f:
            for name, m in plan.phases.items():
                key = name.replace(" ", "_")
                f.attrs.update({f"{key}_batch": m.batch or plan.walkers, f"{key}_bytes_per_walker": m.per_walker,
                                f"{key}_bytes_measured": m.measured, f"{key}_budget_bytes": m.budget})
            f.attrs["fixed_bytes"] = plan.fixed

    @_writes
    def write_lists(self, system_id: str, fields: tuple[str, ...], capacities: tuple[int, ...], recompiles: int) -> None:
        """Neighbour-list capacities of sparse `fire` and how often a walker outgrew them."""
        with open_h5(self.path, "a") as f:
            g = f["systems"][system_id]
            g.attrs["neighbour_lists"] = ", ".join(fields)
            g.attrs["neighbour_capacities"] = np.array(capacities, np.int64)
            g.attrs["recompiles"] = recompiles

    @_writes
    def count_rejected(self, system_id: str) -> None:
        """One more rejected (and retried) step of this system."""
        with open_h5(self.path, "a") as f:
            d = f[f"systems/{system_id}/train"]
            d.attrs["rejected"] = int(d.attrs.get("rejected", 0)) + 1

    @_writes
    def truncate_train(self, first_step: int) -> None:
        """Drops training rows with step >= first_step (a resumed run writes them again)."""
        with open_h5(self.path, "a") as f:
            for s in self.systems:
                d = f[f"systems/{s.id}/train"]
                d.resize((int(np.sum(d["step"] < first_step)),))

    @_writes
    def write_eval(self, system: System, energies: np.ndarray, evaluation_of: str) -> tuple[float, float]:
        """Stores the per-step evaluation energies and their mean with an autocorrelation-
        corrected error bar; returns (energy, error) of the whole simulation cell.
        evaluation_of: what was evaluated (vmc/runner.py `evaluation_fingerprint`), so that a
        resumed run keeps the energies of exactly that evaluation (`finished_eval`)."""
        mean, error = stats.mean_and_error(energies)
        tau = stats.integrated_autocorrelation_time(energies) if len(energies) > 1 else 1.0
        with open_h5(self.path, "a") as f:
            d = f[f"systems/{system.id}/eval/energy"]
            d.resize((len(energies),))
            d[:] = energies
            d.attrs.update(
                energy=mean,
                energy_error=error,
                energy_per_cell=mean / system.n_cells,
                energy_per_cell_error=error / system.n_cells,
                autocorrelation_time=tau,
                evaluation_of=evaluation_of,
            )
        return mean, error

    def finished_eval(self, system: System, evaluation_of: str) -> tuple[float, float] | None:
        """(energy, error) of the whole cell when energies.h5 holds this system's evaluation
        `evaluation_of` complete (written by an earlier, interrupted invocation of the run),
        else None."""
        with open_energies(self.path) as f:
            _, attrs = read_eval(f[f"systems/{system.id}"])
        if attrs.get("evaluation_of") != evaluation_of or "energy" not in attrs:
            return None
        return float(attrs["energy"]), float(attrs["energy_error"])

    @_writes
    def write_geometry(self, geometry: str, members: list[System], energies: list[tuple[float, float]]) -> tuple[float, float]:
        """Twist-averaged energy per primitive cell of one geometry; returns (energy, error)."""
        weights = np.array([s.weight for s in members])
        weights = weights / weights.sum()
        per_cell = [(e / s.n_cells, err / s.n_cells) for s, (e, err) in zip(members, energies)]
        mean, error = stats.weighted_mean(np.array([p[0] for p in per_cell]), np.array([p[1] for p in per_cell]), weights)
        with open_h5(self.path, "a") as f:
            g = f.require_group(f"geometries/{geometry}")
            g.attrs.update(
                energy_per_cell=mean,
                energy_per_cell_error=error,
                systems=np.array([s.id for s in members], dtype="S"),
                weights=weights,
            )
            if members[0].periodic:
                g.attrs["twists"] = np.array([s.twist for s in members])
        return mean, error
