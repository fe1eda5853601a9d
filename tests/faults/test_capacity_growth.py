"""Whole runs of sparse `fire` whose walkers outgrow their neighbour lists (second stage of
.ci/run: whole runs are slow to compile)."""

import h5py
import numpy as np
import pytest

import vmc
from vmc import neighbours

pytestmark = pytest.mark.faults


RUN = {
    "system": {"name": "hydrogen_chain", "supercell": [2, 1, 1]}, "seed": 2, "precision": "float64",
    "baseline": {"basis": "sto-3g"},
    "model": {"name": "fire", "fire": {"cutoff": 3.0, "embedding_dim": 8, "filter_dim": 4, "n_gaussians": 4, "orbital_dim": 4,
                                       "descriptor_hidden": 8, "jastrow_hidden": 8, "mlp_layers": 1}},
    "mcmc": {"walkers": 8, "burn_in": 5, "steps": 5, "init_width": 0.05},
    "pretraining": {"steps": 0},
    "optimization": {"steps": 5, "optimizer": "adam", "adam": {"learning_rate": 0.01}},
    "evaluation": {"steps": 3, "burn_in": 0},
}


def test_run_with_tight_lists_recompiles_and_agrees(tmp_path, monkeypatch):
    """A run whose lists have no headroom outgrows them as the walkers spread (each time the
    step is redone with longer lists: a recompile, logged and counted in energies.h5) and
    gives the same energies, to 1e-10, as a run with roomy lists."""

    def energies(run_dir):
        with h5py.File(run_dir / "energies.h5") as f:
            (g,) = f["systems"].values()
            return g["train"]["energy"], g["eval/energy"][:], int(g.attrs["recompiles"]), tuple(g.attrs["neighbour_capacities"])

    roomy = energies(vmc.run(RUN, out=tmp_path / "roomy"))
    monkeypatch.setattr(neighbours, "HEADROOM", 1.0)
    monkeypatch.setattr(neighbours, "QUANTUM", 1)
    tight = energies(vmc.run(RUN, out=tmp_path / "tight"))
    assert tight[2] > 0 and roomy[2] == 0, (tight[2:], roomy[2:])
    np.testing.assert_allclose(tight[0], roomy[0], rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(tight[1], roomy[1], rtol=1e-10, atol=1e-10)
    assert np.all(np.isfinite(tight[0]))
