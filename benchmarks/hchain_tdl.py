"""The hydrogen chain to the thermodynamic limit (issue 31): one `fire` network pretrained on
short periodic chains, evaluated zero-shot and fine-tuned on longer ones, the fine-tuned
twist-averaged energies per atom extrapolated to infinite length, and a from-scratch run on
the longest chain as the baseline of the transfer ratio.

    python benchmarks/hchain_tdl.py --out hchain                    # the study (hours on 2 cores)
    python benchmarks/hchain_tdl.py --out h --scale 0.01 --walkers 8 --pretrain-sizes 4 \
        --targets 6 8 10 --twist-grid 1 --set baseline.basis=sto-3g  # the pipeline in minutes

Stages, each a normal `vmc` run directory under --out (a finished stage is reused, so the
script resumes after an interruption; an interrupted run directory is resumed by vmc itself):

1. pretrain/         configs/hchain_pretrain.yaml: chains of 4-12 atoms at bond 1.8 bohr, 2
                     twists each, one network.
2. zeroshot_<N>/     `vmc evaluate` of the pretrained network on each target length N.
3. finetune_<N>/     configs/hchain_finetune.yaml from the pretrained checkpoint, at length N.
4. scratch_<N>/      the longest target from Hartree–Fock pretraining, same network, walkers,
                     optimizer and twists, for --scratch-steps.
5. report/           `vmc report` of the fine-tunes: the finite-size extrapolation
                     (vmc/finite_size.py) against --reference, summary.h5, the plot.

Printed at the end (and written to summary.json): a Markdown table of N, twists, zero-shot and
fine-tuned twist-averaged E per atom, steps and minutes; E_inf against the reference; and the
transfer ratio on the longest chain: optimization steps the scratch and the fine-tune runs need
until every twist's trailing --window-step mean of training energies lies within --tolerance
mHa per atom of that twist's fine-tuned evaluated energy.
"""

from __future__ import annotations

import argparse
import datetime
import json
import time
from pathlib import Path

import h5py
import numpy as np
from transfer_chains import phase as stage
from transfer_chains import steps_to_converge, trailing_mean

import vmc
from vmc.checkpoint import list_checkpoints
from vmc.config import parse_override
from vmc.outputs import read_train

ROOT = Path(__file__).resolve().parents[1]
PRETRAIN = ROOT / "configs" / "hchain_pretrain.yaml"
FINETUNE = ROOT / "configs" / "hchain_finetune.yaml"
# AFQMC, infinite equally spaced chain at R = 1.8 bohr (Motta et al., Phys. Rev. X 7, 031059
# (2017)); benchmarks/RESULTS.md cites it with its error bar
REFERENCE = -0.5657


def scaled(n: int, args, least: int = 10) -> int:
    return max(least, round(n * args.scale))


def run_or_resume(config, run_dir: Path, **kwargs) -> None:
    """vmc.run into run_dir, or its resumption where an earlier call was interrupted."""
    if (run_dir / "config.yaml").exists():
        vmc.run(run_dir)
    else:
        vmc.run(config, out=run_dir, **kwargs)


def evaluate_afresh(checkpoint: Path, config, run_dir: Path, **kwargs) -> None:
    """vmc.evaluate into run_dir; an evaluation interrupted before (it writes its energies only
    at its end) is started again in a directory of its own, the old one left as it was."""
    if run_dir.exists():
        run_dir.rename(run_dir.with_name(f"{run_dir.name}.interrupted-{time.strftime('%Y%m%d-%H%M%S')}"))
    vmc.evaluate(checkpoint, config, out=run_dir, **kwargs)


def chain(n_atoms: int, twist_grid: int) -> dict:
    """The chain of n_atoms at bond 1.8 bohr, twist-averaged over a Monkhorst–Pack grid of
    twist_grid points along it."""
    return {"name": "hydrogen_chain", "lattice_constant": 3.6, "supercell": [n_atoms // 2, 1, 1],
            "twists": {"grid": [twist_grid, 1, 1]}}


def common(args) -> dict:
    """Overrides of every stage: seed, walkers, burn-in and evaluation, and --set."""
    return {"seed": args.seed, "mcmc.walkers": args.walkers, "mcmc.burn_in": scaled(100, args),
            "evaluation.steps": scaled(args.evaluation_steps, args), "evaluation.burn_in": scaled(100, args),
            **dict(parse_override(o) for o in args.set)}


def latest_checkpoint(run_dir: Path) -> Path:
    return list_checkpoints(run_dir / "checkpoints")[0]


def read_systems(run_dir: Path) -> dict[str, dict]:
    """{system id: {'train': rows, 'eval': (E, err) whole cell or None, 'n_cells', 'n_atoms',
    'weight'}} of a run directory."""
    out = {}
    with h5py.File(run_dir / "energies.h5", "r", locking=False) as f:
        for sid, g in f["systems"].items():
            ev = g["eval/energy"].attrs
            out[sid] = {"train": read_train(g), "eval": (float(ev["energy"]), float(ev["energy_error"])) if "energy" in ev else None,
                        "n_cells": int(g.attrs["n_cells"]), "n_atoms": len(g.attrs["symbols"]), "weight": float(g.attrs["weight"])}
    return out


def twist_average_per_atom(systems: dict[str, dict]) -> tuple[float, float]:
    """Twist-averaged evaluated energy per atom (Ha) and its error."""
    w = np.array([s["weight"] for s in systems.values()])
    e = np.array([s["eval"][0] / s["n_atoms"] for s in systems.values()])
    err = np.array([s["eval"][1] / s["n_atoms"] for s in systems.values()])
    w = w / w.sum()
    return float(w @ e), float(np.sqrt(np.sum((w * err) ** 2)))


def steps_to_target(run: dict[str, dict], targets: dict[str, float], tolerance: float, window: int) -> int | None:
    """The first optimization step of the run after which every twist's trailing-window mean
    of training energies (per atom) lies within tolerance (Ha per atom) of its target, and
    stays so ('stays' of transfer_chains.steps_to_converge, per twist); None if never."""
    worst = 0
    for sid, s in run.items():
        rows = s["train"]
        per_atom = rows["energy"] / s["n_atoms"]
        reached = steps_to_converge(per_atom, targets[sid] + tolerance, window)["stays"]
        if reached is None:
            return None
        worst = max(worst, int(rows["step"][reached]))
    return worst + 1


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="hchain")
    p.add_argument("--scale", type=float, default=1.0, help="multiplies every step count (0.02: a check in minutes)")
    p.add_argument("--walkers", type=int, default=128)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--targets", type=int, nargs="+", default=[16, 24, 32], help="chain lengths (atoms, even) to fine-tune")
    p.add_argument("--pretrain-sizes", type=int, nargs="+", default=[4, 6, 8, 10, 12], help="chain lengths (atoms) to pretrain on")
    p.add_argument("--twist-grid", type=int, default=4, help="twists per chain (Monkhorst–Pack grid along it)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override of every stage")
    p.add_argument("--pretrain-steps", type=int, default=3000)
    p.add_argument("--finetune-steps", type=int, default=1000)
    p.add_argument("--scratch-steps", type=int, default=4000)
    p.add_argument("--evaluation-steps", type=int, default=400)
    p.add_argument("--window", type=int, default=50, help="trailing window of training energies (steps)")
    p.add_argument("--tolerance", type=float, default=0.5, help="mHa per atom, for the transfer ratio")
    p.add_argument("--reference", type=float, default=REFERENCE, help="Ha per atom in the thermodynamic limit")
    args = p.parse_args()
    if any(n % 2 or n < 2 for n in args.targets + args.pretrain_sizes):
        p.error("--targets, --pretrain-sizes: even chain lengths (2 atoms per primitive cell)")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = common(args)
    targets = sorted(args.targets)

    pre_dir = out / "pretrain"
    grid = args.twist_grid
    stage("pretrain", pre_dir, lambda: run_or_resume(
        PRETRAIN, pre_dir, system=[chain(n, grid) for n in args.pretrain_sizes],
        **{**base, "pretraining.steps": scaled(300, args), "optimization.steps": scaled(args.pretrain_steps, args),
           "evaluation.steps": 0}))
    pretrained = latest_checkpoint(pre_dir)
    for n in targets:
        zs_dir, ft_dir = out / f"zeroshot_{n}", out / f"finetune_{n}"
        stage(f"zero-shot {n}", zs_dir, lambda zs_dir=zs_dir, n=n: evaluate_afresh(
            pretrained, FINETUNE, zs_dir, system=chain(n, grid), **base))
        stage(f"fine-tune {n}", ft_dir, lambda ft_dir=ft_dir, n=n: run_or_resume(
            FINETUNE, ft_dir, params_from=pretrained, system=chain(n, grid),
            **{**base, "optimization.steps": scaled(args.finetune_steps, args),
               "checkpoint.every": max(1, scaled(args.finetune_steps, args) // 4)}))
    n_max = targets[-1]
    sc_dir = out / f"scratch_{n_max}"
    # the pretraining config's network and settings, on the longest target from Hartree–Fock
    stage(f"scratch {n_max}", sc_dir, lambda: run_or_resume(
        PRETRAIN, sc_dir, system=chain(n_max, grid),
        **{**base, "pretraining.steps": scaled(300, args), "optimization.steps": scaled(args.scratch_steps, args),
           "checkpoint.every": max(1, scaled(args.scratch_steps, args) // 4)}))
    analyse(args, out, targets)


def analyse(args, out: Path, targets: list[int]) -> None:
    from vmc.report import write_report

    report = write_report([out / f"finetune_{n}" for n in targets], out / "report", reference=args.reference)
    with h5py.File(out / "report" / "summary.h5", "r") as f:
        (tdl,) = f["tdl"].values()
        e_inf, e_inf_err = float(tdl.attrs["e_inf"]), float(tdl.attrs["e_inf_error"])
        checks = dict(zip([x.decode() for x in tdl.attrs["check_forms"]], tdl.attrs["check_e_inf"].tolist()))
    walls = {d.name: float((d / "done").read_text()) for d in out.iterdir() if (d / "done").exists()}
    rows = []
    for n in targets:
        zs, ft = read_systems(out / f"zeroshot_{n}"), read_systems(out / f"finetune_{n}")
        rows.append({"atoms": n, "twists": len(ft), "zero_shot": twist_average_per_atom(zs), "finetuned": twist_average_per_atom(ft),
                     "steps": max((int(s["train"]["step"][-1]) + 1 for s in ft.values() if len(s["train"])), default=0),
                     "minutes": walls[f"finetune_{n}"] / 60})
    n_max = targets[-1]
    ft, sc = read_systems(out / f"finetune_{n_max}"), read_systems(out / f"scratch_{n_max}")
    goal = {sid: s["eval"][0] / s["n_atoms"] for sid, s in ft.items()}
    tol = args.tolerance * 1e-3
    transfer = {"finetune": steps_to_target(ft, goal, tol, args.window), "scratch": steps_to_target(sc, goal, tol, args.window)}
    ratio = transfer["scratch"] / transfer["finetune"] if transfer["scratch"] and transfer["finetune"] else None

    print("\n| N (atoms) | twists | zero-shot E/atom (Ha) | fine-tuned E/atom (Ha) | fine-tune steps | minutes |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['atoms']} | {r['twists']} | {r['zero_shot'][0]:.5f}({1e5 * r['zero_shot'][1]:.0f}) | "
              f"{r['finetuned'][0]:.5f}({1e5 * r['finetuned'][1]:.0f}) | {r['steps']} | {r['minutes']:.1f} |")
    print(f"\nE_inf = {e_inf:.5f} ± {e_inf_err:.5f} Ha per atom; reference {args.reference:g}: "
          f"{1e3 * (e_inf - args.reference):+.2f} ± {1e3 * e_inf_err:.2f} mHa per atom")
    for form, value in checks.items():
        print(f"  check {form}: E_inf = {value:.5f} ({1e3 * (value - e_inf):+.2f} mHa per atom)")
    print(f"transfer on N = {n_max}: steps to within {args.tolerance:g} mHa/atom of the fine-tuned energy (every twist, "
          f"{args.window}-step mean): fine-tune {transfer['finetune']}, scratch {transfer['scratch']}"
          + (f", ratio {ratio:.1f}" if ratio else " (not reached: no ratio)"))
    print(f"report: {report}")
    summary = {"date": str(datetime.date.today()), "args": vars(args), "table": rows,
               "e_inf": [e_inf, e_inf_err], "checks": checks, "reference": args.reference,
               "transfer": {**transfer, "ratio": ratio, "atoms": n_max}, "wall_s": walls}
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot_training(out, n_max, ft, sc, goal, args.window)


def plot_training(out: Path, n: int, ft: dict, sc: dict, goal: dict[str, float], window: int) -> None:
    """Training energy per atom minus the fine-tuned energy of the twist, per twist, for the
    fine-tune and the scratch run on the longest chain."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.2), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for name, run, color in (("fine-tuned", ft, "C1"), ("from scratch", sc, "C0")):
        for k, (sid, s) in enumerate(run.items()):
            e = s["train"]["energy"] / s["n_atoms"]
            ax.plot(s["train"]["step"] + 1, 1e3 * (trailing_mean(e, window) - goal[sid]), color=color, lw=1.0,
                    ls="-" if k == 0 else "--", label=f"{name}, {sid}")
    ax.axhline(0.5, color="k", lw=0.8, ls=":", label="0.5 mHa/atom")
    ax.set_xscale("log")
    ax.set_ylim(-1, 20)
    ax.set_xlabel("optimization step")
    ax.set_ylabel(f"{window}-step mean E − fine-tuned E (mHa per atom)")
    ax.set_title(f"H{n} chain, bond 1.8 bohr: fine-tune against scratch")
    ax.legend(fontsize=7)
    fig.savefig(out / "transfer.png", dpi=120)


if __name__ == "__main__":
    main()
