"""H2 through the Python API, then a plot of the training energy read from energies.h5.

    python examples/h2_api.py            # about five minutes on 2 CPU cores

writes runs/h2-<time>/ under the current directory, with training.png in it. From Python,
`main(steps=..., eval_steps=..., out=..., **overrides)` does the same at any size (the tests
run it tiny, tests/test_examples.py); overrides are config keys as `vmc.run` takes them.
"""

from pathlib import Path

import h5py
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

import vmc  # noqa: E402

EXACT = -1.174476  # Ha, H2 at R = 1.4011 bohr
CONFIG = Path(__file__).resolve().parents[1] / "configs" / "h2.yaml"  # found from any working directory


def main(steps: int = 300, eval_steps: int = 100, out=None, **overrides) -> tuple[Path, float, float]:
    """Runs H2 for `steps` optimization and `eval_steps` evaluation steps, prints the evaluated
    energy, plots the training energy into <run_dir>/training.png. Returns (run directory,
    evaluated energy, its error) in Ha."""
    run_dir = vmc.run(CONFIG, out=out, **{"optimization.steps": steps, "evaluation.steps": eval_steps, **overrides})

    # read everything while the file is open: h5py objects (attributes too) die with it
    with h5py.File(run_dir / "energies.h5", "r") as f:
        train = f["systems/H2/train"]
        step, energy = train["step"][:], train["energy"][:]
        attrs = f["systems/H2/eval/energy"].attrs
        e, err = float(attrs["energy"]), float(attrs["energy_error"])
    print(f"evaluated: {e:.5f} +- {err:.5f} Ha (exact {EXACT})")

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(step, energy, lw=0.8, label="training energy")
    ax.axhline(EXACT, color="k", ls="--", label="exact")
    ax.axhspan(e - err, e + err, color="C1", alpha=0.4, label="evaluated")
    ax.set_ylim(EXACT - 0.05, EXACT + 0.15)
    ax.set_xlabel("optimization step")
    ax.set_ylabel("energy (Ha)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(run_dir / "training.png", dpi=150)
    plt.close(fig)
    print(f"plot: {run_dir / 'training.png'}")
    return run_dir, e, err


if __name__ == "__main__":
    main()
