"""Transfer experiment (issue 5): pretrain one `fire` network on periodic hydrogen chains of 4
and 6 atoms, fine-tune it on an unseen 8-atom chain at an unseen bond length, and count the
optimization steps needed to come within 1 mHa per atom of a long from-scratch run.

    python benchmarks/transfer_chains.py --out transfer            # the recorded run
    python benchmarks/transfer_chains.py --out t --scale 0.02 --walkers 32   # checks the pipeline

The from-scratch and the pretrain/fine-tune phases are independent: `--phases scratch` and
`--phases transfer` run them in two processes side by side, and a last call with
`--phases analyse` (or any call after both finished) prints the comparison.

Phases (each a normal `vmc` run directory under --out; a finished phase is reused, so the
script can be re-run after an interruption and only analyses again):

1. pretrain/  chains of 4 and 6 atoms (2 and 3 primitive cells) at bonds 1.6, 1.8 and 2.0 bohr,
              twists 0 and 1/2 along the chain: 12 systems, one network.
2. zeroshot/  `vmc evaluate` of the pretrained network on the target, no training.
3. finetune/  `vmc run --from pretrain/...`: the target, 8 atoms at bond 1.7 bohr, Gamma.
4. scratch/   the target from HF pretraining, for many more steps: its evaluated final energy
              is the reference E_ref.

Steps to converge, from the mean training energy over the trailing window [t - W + 1, t]
(the training energy of a step is the mean local energy of all walkers under that step's
parameters, an unbiased estimate of E(theta_t)), against E_ref + 1 mHa x n_atoms: the first
step t whose window mean reaches it ("first"), and the first step from which it stays there
for the rest of the run ("stays"; when the window means scatter around the threshold this
one measures the noise, not the convergence). Both for W = --window and W = 50. Writes
summary.json and transfer.png under --out and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import h5py
import numpy as np

import vmc
from vmc.checkpoint import checkpoint_path
from vmc.outputs import read_train
from vmc.stats import mean_and_error

BONDS_SEEN = [1.6, 1.8, 2.0]  # bohr
BOND_TARGET = 1.7  # bohr, not among BONDS_SEEN
ATOMS_SEEN = [4, 6]
ATOMS_TARGET = 8
TOLERANCE_PER_ATOM = 1e-3  # Ha

# a small `fire` network: the experiment is about steps, and it has to fit on two CPU cores
MODEL = {"name": "fire", "determinants": 1,
         "fire": {"cutoff": 5.0, "embedding_dim": 32, "filter_dim": 16, "orbital_dim": 16,
                  "descriptor_hidden": 16, "jastrow_hidden": 16, "mlp_layers": 1}}


def chain(n_atoms: int, bonds: list[float] | float, twists: list[list[float]]) -> dict:
    """A periodic hydrogen-chain spec: n_atoms in the simulation cell, bond lengths in bohr."""
    lattice_constant = [2 * b for b in bonds] if isinstance(bonds, list) else 2 * bonds
    return {"name": "hydrogen_chain", "lattice_constant": lattice_constant,
            "supercell": [n_atoms // 2, 1, 1], "twists": twists}


def common(args) -> dict:
    return {"model": MODEL, "seed": args.seed, "precision": "float32",
            "baseline": {"basis": "cc-pVDZ", "cache_dir": str(Path(args.out) / "hf")},
            "mcmc": {"walkers": args.walkers, "steps": 10, "burn_in": 100},
            "optimization": {"optimizer": "kfac"}}


def steps(n: int, args) -> int:
    return max(20, int(round(n * args.scale)))


def finished(run_dir: Path) -> bool:
    """A phase is done when the script marked it so, after its run returned."""
    return (run_dir / "done").exists()


def phase(name: str, run_dir: Path, fn) -> None:
    """Runs fn() unless the phase finished before, and records its wall time (s)."""
    if finished(run_dir):
        return
    t0 = time.perf_counter()
    fn()
    wall = time.perf_counter() - t0
    (run_dir / "done").write_text(f"{wall:.1f}")
    print(f"{name}: {wall / 60:.1f} min", flush=True)


def trailing_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of x[t - window + 1 : t + 1] for t >= window - 1 (nan before)."""
    c = np.concatenate([[0.0], np.cumsum(x)])
    out = np.full(len(x), np.nan)
    out[window - 1:] = (c[window:] - c[:-window]) / window
    return out


def steps_to_converge(energy: np.ndarray, threshold: float, window: int) -> dict[str, int | None]:
    """{'first': first step whose trailing-window mean is <= threshold, 'stays': first step
    from which it stays so}; None where there is none."""
    below = trailing_mean(energy, window) <= threshold  # nan (too early) counts as not converged
    first = int(np.argmax(below)) if below.any() else None
    above = np.nonzero(~below)[0]
    stays = int(above[-1] + 1) if len(above) else 0
    return {"first": first, "stays": stays if stays < len(energy) else None}


def read_run(run_dir: Path) -> dict:
    """Training energies (whole cell), the HF baseline (nan in files written before it was
    recorded) and the evaluated energy of the run's only system."""
    with h5py.File(run_dir / "energies.h5", "r") as f:
        (group,) = f["systems"].values()
        out = {"energy": read_train(group)["energy"], "hf": float(group.attrs.get("hf_energy", np.nan))}
        ev = group["eval/energy"]
        if len(ev):
            out["eval"] = (float(ev.attrs["energy"]), float(ev.attrs["energy_error"]))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="transfer")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every step count (0.05: a quick check)")
    p.add_argument("--walkers", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--pretrain-steps", type=int, default=3000, help="KFAC steps shared by the 12 pretraining systems")
    p.add_argument("--finetune-steps", type=int, default=300)
    p.add_argument("--scratch-steps", type=int, default=1500)
    p.add_argument("--evaluation-steps", type=int, default=300)
    p.add_argument("--finetune-lr", type=float, default=0.05, help="KFAC learning rate of the fine-tune run")
    p.add_argument("--window", type=int, default=20, help="trailing window of training energies (steps)")
    p.add_argument("--phases", choices=["all", "transfer", "scratch", "analyse"], default="all")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = common(args)
    target = chain(ATOMS_TARGET, BOND_TARGET, [[0, 0, 0]])
    evaluation = {"steps": steps(args.evaluation_steps, args), "burn_in": 100}

    pre_dir, zs_dir, ft_dir, sc_dir = (out / name for name in ("pretrain", "zeroshot", "finetune", "scratch"))
    if args.phases in ("all", "transfer"):
        run_transfer(args, base, target, evaluation, pre_dir, zs_dir, ft_dir)
    if args.phases in ("all", "scratch"):
        phase("scratch", sc_dir, lambda: vmc.run(
            base, out=sc_dir, system=target, pretraining={"steps": steps(500, args)},
            optimization={"steps": steps(args.scratch_steps, args)},
            evaluation=evaluation, checkpoint={"every": 500, "keep": 2}))
    if all(finished(d) for d in (pre_dir, zs_dir, ft_dir, sc_dir)):
        analyse(args, pre_dir, zs_dir, ft_dir, sc_dir)


def run_transfer(args, base: dict, target: dict, evaluation: dict, pre_dir: Path, zs_dir: Path, ft_dir: Path) -> None:
    """Pretraining over the seen chains, zero-shot evaluation and fine-tuning on the target."""
    phase("pretrain", pre_dir, lambda: vmc.run(
        base, out=pre_dir, system=[chain(n, BONDS_SEEN, [[0, 0, 0], [0.5, 0, 0]]) for n in ATOMS_SEEN],
        pretraining={"steps": steps(500, args)}, optimization={"steps": steps(args.pretrain_steps, args)},
        evaluation={"steps": 0}, checkpoint={"every": 500, "keep": 2}))
    pretrained = checkpoint_path(pre_dir / "checkpoints", steps(args.pretrain_steps, args))

    phase("zero-shot", zs_dir, lambda: vmc.evaluate(
        pretrained, {**base, "system": target}, out=zs_dir, evaluation=evaluation))

    phase("fine-tune", ft_dir, lambda: vmc.run(
        base, out=ft_dir, params_from=pretrained, system=target,
        optimization={"steps": steps(args.finetune_steps, args), "kfac": {"learning_rate": args.finetune_lr}},
        evaluation=evaluation, checkpoint={"every": 500, "keep": 2}))


def analyse(args, pre_dir: Path, zs_dir: Path, ft_dir: Path, sc_dir: Path) -> None:
    out = Path(args.out)
    walls = {name: float((d / "done").read_text()) for name, d in
             (("pretrain", pre_dir), ("zeroshot", zs_dir), ("fine-tune", ft_dir), ("scratch", sc_dir))}
    scratch, finetune, zeroshot = read_run(sc_dir), read_run(ft_dir), read_run(zs_dir)
    e_ref, e_ref_err = scratch["eval"]
    threshold = e_ref + TOLERANCE_PER_ATOM * ATOMS_TARGET
    windows = sorted({args.window, 50})
    counts = {name: {w: steps_to_converge(run["energy"], threshold, w) for w in windows}
              for name, run in (("scratch", scratch), ("fine-tune", finetune))}
    ratios = {f"{rule}, W={w}": counts["scratch"][w][rule] / max(counts["fine-tune"][w][rule], 1)
              for w in windows for rule in ("first", "stays")
              if counts["scratch"][w][rule] is not None and counts["fine-tune"][w][rule] is not None}
    tail = lambda run: mean_and_error(run["energy"][-100:])  # noqa: E731

    summary = {
        "date": str(datetime.date.today()), "args": vars(args), "model": MODEL,
        "target": {"atoms": ATOMS_TARGET, "bond": BOND_TARGET, "twist": [0, 0, 0]},
        "pretraining_systems": {"atoms": ATOMS_SEEN, "bonds": BONDS_SEEN, "twists": [0, 0.5]},
        "E_ref": [e_ref, e_ref_err], "threshold": threshold,
        "E_HF": zeroshot["hf"], "zero_shot": zeroshot["eval"], "finetune_final": finetune["eval"],
        "finetune_last_100_steps": tail(finetune), "scratch_last_100_steps": tail(scratch),
        "steps": counts, "ratios": ratios,
        "wall_s": walls,
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=1))

    per_atom = lambda e: 1e3 * (e - e_ref) / ATOMS_TARGET  # noqa: E731
    print(f"\nE_ref (scratch, {len(scratch['energy'])} steps, evaluated) = {e_ref:.5f}({1e5 * e_ref_err:.0f}) Ha; "
          f"threshold {threshold:.5f} Ha (E_ref + {TOLERANCE_PER_ATOM * 1e3:g} mHa x {ATOMS_TARGET} atoms)\n")
    rules = [(w, rule) for w in windows for rule in ("first", "stays")]
    print("| run | optimization steps | " + " | ".join(f"steps to 1 mHa/atom ({rule}, W={w})" for w, rule in rules)
          + " | last 100 steps − E_ref (mHa/atom) | evaluated energy (Ha) | − E_ref (mHa/atom) | wall (min) |")
    print("|---" * (len(rules) + 6) + "|")
    zs = zeroshot["eval"]
    print("| zero-shot | 0 | " + "– | " * (len(rules) + 1) + f"{zs[0]:.5f}({1e5 * zs[1]:.0f}) | {per_atom(zs[0]):.2f} | {walls['zeroshot'] / 60:.1f} |")
    for name, run in (("fine-tune", finetune), ("scratch", scratch)):
        e = run["eval"]
        print(f"| {name} | {len(run['energy'])} | " + " | ".join(str(counts[name][w][rule]) for w, rule in rules)
              + f" | {per_atom(tail(run)[0]):.2f} | {e[0]:.5f}({1e5 * e[1]:.0f}) | {per_atom(e[0]):.2f} | {walls[name] / 60:.1f} |")
    print("\nratio scratch / fine-tune: " + ", ".join(f"{k}: {v:.1f}" for k, v in ratios.items())
          + f" (pretraining: {steps(args.pretrain_steps, args)} shared steps, {walls['pretrain'] / 60:.1f} min)")
    # how far pretraining alone got: the share of the correlation energy E_ref - E_HF that the
    # zero-shot network recovers, and the first step at which one scratch step reached it
    e_hf = zeroshot["hf"]
    reached = np.nonzero(scratch["energy"] <= zs[0])[0]
    print(f"zero-shot recovers {(zs[0] - e_hf) / (e_ref - e_hf):.0%} of E_ref - E_HF = {1e3 * (e_ref - e_hf):.1f} mHa; "
          f"the scratch run's training energy first reached the zero-shot energy at step {reached[0] if len(reached) else None}")
    plot(out, scratch, finetune, zs, e_ref, threshold, args.window)


def plot(out: Path, scratch: dict, finetune: dict, zero_shot, e_ref: float, threshold: float, window: int) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib not installed: no plot (pip install 'vmc[plot]')")
        return
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, run, color in (("from scratch", scratch, "C0"), ("fine-tuned", finetune, "C1")):
        x = np.arange(len(run["energy"])) + 1
        ax.plot(x, 1e3 * (run["energy"] - e_ref) / ATOMS_TARGET, color=color, alpha=0.25, lw=0.5)
        ax.plot(x, 1e3 * (trailing_mean(run["energy"], window) - e_ref) / ATOMS_TARGET, color=color, label=f"{name} ({window}-step mean)")
    ax.axhline(1e3 * (zero_shot[0] - e_ref) / ATOMS_TARGET, color="C1", ls=":", label="zero-shot")
    ax.axhline(1e3 * (threshold - e_ref) / ATOMS_TARGET, color="k", ls="--", lw=0.8, label="E_ref + 1 mHa/atom")
    ax.set_xscale("log")
    ax.set_ylim(-2, 20)
    ax.set_xlabel("optimization step")
    ax.set_ylabel("E − E_ref (mHa per atom)")
    ax.set_title(f"H{ATOMS_TARGET} chain, bond {BOND_TARGET} bohr, Γ")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "transfer.png", dpi=150)
    print(f"plot: {out / 'transfer.png'}")


if __name__ == "__main__":
    main()
