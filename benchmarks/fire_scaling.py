"""Cost of `fire` against system size: periodic hydrogen chains (period 3.6 bohr with 2 atoms,
twist 1/2 along the chain), dense and sparse (`model.fire.implementation`), for embedding
cutoffs of 3 and 5 bohr, at fixed walkers.

    python benchmarks/fire_scaling.py [--electrons 16 32 64 128] [--dense-electrons 16 32 64]
                                      [--cutoffs 3 5] [--walkers 16] [--steps 2] [--second-atom 0.45]

The twist 1/2 keeps every Bloch phase real (so the cost is that of Gamma). The chain is
dimerized, bonds 1.62 and 1.98 bohr (--second-atom: the second atom's fractional position;
0.5 is the equally spaced chain): the equally spaced chain is a metal whose Hartree–Fock gap
closes as the k-mesh grows, and at 64 cells its SCF oscillates and does not converge; the
dimerized chain has a gap and converges at every size. The network's cost depends on the
atom density, the same for both.

Prints a Markdown table of the median time of one optimization step (MCMC + the configured
optimizer, SPRING by default) and of one
local-energy evaluation of all walkers, the exponent p of a least-squares fit
t ~ n_electrons^p of the sparse step from 32 electrons up, and the dense / sparse ratio. All
sizes, cutoffs and implementations run in one process, side by side. The dense network at
128 electrons takes minutes per step on 2 CPU cores, so by default it stops at 64.
"""

from __future__ import annotations

import argparse
import datetime

import numpy as np

from step_time import machine, time_steps
from vmc.config import make_config


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--electrons", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--dense-electrons", type=int, nargs="*", default=[16, 32, 64])
    p.add_argument("--cutoffs", type=float, nargs="+", default=[3.0, 5.0])
    p.add_argument("--walkers", type=int, default=16)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--mcmc-steps", type=int, default=5)
    p.add_argument("--second-atom", type=float, default=0.45)
    args = p.parse_args()
    rows = {}
    for cutoff in args.cutoffs:
        for implementation, sizes in (("sparse", args.electrons), ("dense", args.dense_electrons)):
            for n_el in sizes:
                cfg = make_config(None, {
                    "system": {"name": "hydrogen_chain", "lattice_constant": 3.6, "supercell": [n_el // 2, 1, 1],
                               "twists": [[0.5, 0, 0]],
                               "atoms": [["H", [0.0, 0.0, 0.0]], ["H", [args.second_atom, 0.0, 0.0]]]},
                    "model.name": "fire", "model.fire.cutoff": cutoff, "model.fire.implementation": implementation,
                    "baseline.basis": "sto-3g", "mcmc.walkers": args.walkers, "mcmc.steps": args.mcmc_steps,
                    "mcmc.burn_in": 0, "pretraining.steps": 0,
                })
                rows[cutoff, implementation, n_el] = t = time_steps(cfg, args.steps)
                print(f"cutoff {cutoff}, {implementation}, {n_el} electrons: step {t['step']:.3f} s, "
                      f"local energy {t['local_energy']:.3f} s", flush=True)

    print(f"\n{machine()}, {datetime.date.today()}, {args.walkers} walkers, {args.mcmc_steps} MCMC steps per "
          f"optimization step, default `fire` sizes, STO-3G, float32, second atom at {args.second_atom:g}\n")
    print("| cutoff (bohr), implementation | " + " | ".join(f"{n} e⁻" for n in args.electrons) + " | exponent from 32 e⁻ |")
    print("|---|" + "---|" * (len(args.electrons) + 1))
    for cutoff in args.cutoffs:
        for implementation in ("sparse", "dense"):
            for key, label in (("step", "step"), ("local_energy", "E_L")):
                times = [rows.get((cutoff, implementation, n), {}).get(key) for n in args.electrons]
                fit = [(n, x) for n, x in zip(args.electrons, times) if x is not None and n >= 32]
                slope = np.polyfit(np.log([n for n, _ in fit]), np.log([x for _, x in fit]), 1)[0] if len(fit) > 1 else float("nan")
                cells = " | ".join("—" if x is None else f"{x:.3f} s" for x in times)
                print(f"| {cutoff:g}, {implementation} ({label}) | {cells} | {slope:.2f} |")
    print("\n| cutoff (bohr) | " + " | ".join(f"dense / sparse step, {n} e⁻" for n in args.dense_electrons) + " |")
    print("|---|" + "---|" * len(args.dense_electrons))
    for cutoff in args.cutoffs:
        ratios = [rows[cutoff, "dense", n]["step"] / rows[cutoff, "sparse", n]["step"] for n in args.dense_electrons
                  if (cutoff, "sparse", n) in rows]
        print(f"| {cutoff:g} | " + " | ".join(f"{r:.1f}×" for r in ratios) + " |")


if __name__ == "__main__":
    main()
