"""H2 through the Python API, then a plot of the training energy read from energies.h5.

    python examples/h2_api.py            # about a minute on a laptop CPU
"""

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import vmc  # noqa: E402

EXACT = -1.174476  # Ha, H2 at R = 1.4011 bohr

run_dir = vmc.run("configs/h2.yaml", optimization={"steps": 300}, evaluation={"steps": 100})

with h5py.File(run_dir / "energies.h5", "r") as f:
    train = f["systems/H2/train"]
    step, energy = train["step"][:], train["energy"][:]
    ev = f["systems/H2/eval/energy"].attrs
    print(f"evaluated: {ev['energy']:.5f} +- {ev['energy_error']:.5f} Ha (exact {EXACT})")

fig, ax = plt.subplots(figsize=(6, 4))
ax.plot(step, energy, lw=0.8, label="training energy")
ax.axhline(EXACT, color="k", ls="--", label="exact")
ax.axhspan(ev["energy"] - ev["energy_error"], ev["energy"] + ev["energy_error"], color="C1", alpha=0.4, label="evaluated")
ax.set_ylim(EXACT - 0.05, EXACT + 0.15)
ax.set_xlabel("optimization step")
ax.set_ylabel("energy (Ha)")
ax.legend()
fig.tight_layout()
fig.savefig(run_dir / "training.png", dpi=150)
print(f"plot: {run_dir / 'training.png'}")
