"""`energies.h5`: the energies of a run, written as it goes.

Layout (energies in hartree; "whole" means the whole simulation cell):
    /                         attrs: vmc_version, created, config (resolved YAML text)
    /systems/<id>             attrs: System.attributes() (name, symbols, positions, ...),
                                     hf_energy (whole cell), hf_energy_per_cell: the HF baseline
        train/step            int64 (n,)  optimization step
        train/energy          (n,) mean local energy of the step, whole cell
        train/variance        (n,) variance of the local energy
        train/pmove           (n,) MCMC acceptance rate
        train/wall_time       (n,) seconds of the step (sampling + update)
        eval/energy           (m,) per-step mean local energies, whole cell
                              attrs: energy, energy_error, energy_per_cell,
                                     energy_per_cell_error, autocorrelation_time
    /geometries/<id>          attrs: energy_per_cell, energy_per_cell_error (twist-averaged),
                                     systems, twists, weights

The file is opened, appended and closed at every write, so that h5py or pandas can read it
at any time while the run goes on (file locking is off for the same reason).
"""

from __future__ import annotations

import datetime
from pathlib import Path

import h5py
import numpy as np

from vmc import __version__, stats
from vmc.systems import System

TRAIN_FIELDS = {"step": np.int64, "energy": np.float64, "variance": np.float64, "pmove": np.float64, "wall_time": np.float64}


def open_h5(path: Path, mode: str = "r") -> h5py.File:
    """h5py file without HDF5's file locking (readers may open it while a run writes)."""
    return h5py.File(path, mode, locking=False)


class EnergyFile:
    """Writer of one run's energies.h5."""

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
                for name, dtype in TRAIN_FIELDS.items():
                    if f"train/{name}" not in g:
                        g.create_dataset(f"train/{name}", shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1024,))
                if "eval/energy" not in g:
                    g.create_dataset("eval/energy", shape=(0,), maxshape=(None,), dtype=np.float64, chunks=(1024,))

    def append_train(self, system_id: str, **values) -> None:
        """Appends one optimization step (keys of TRAIN_FIELDS) and flushes."""
        with open_h5(self.path, "a") as f:
            g = f[f"systems/{system_id}/train"]
            for name in TRAIN_FIELDS:
                d = g[name]
                d.resize((d.shape[0] + 1,))
                d[-1] = values[name]

    def truncate_train(self, first_step: int) -> None:
        """Drops training rows with step >= first_step (a resumed run writes them again)."""
        with open_h5(self.path, "a") as f:
            for s in self.systems:
                g = f[f"systems/{s.id}/train"]
                keep = int(np.sum(g["step"][:] < first_step))
                for name in TRAIN_FIELDS:
                    g[name].resize((keep,))

    def write_eval(self, system: System, energies: np.ndarray) -> tuple[float, float]:
        """Stores the per-step evaluation energies and their mean with an autocorrelation-
        corrected error bar; returns (energy, error) of the whole simulation cell."""
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
            )
        return mean, error

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
