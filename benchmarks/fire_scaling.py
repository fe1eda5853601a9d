"""Cost of `fire` against system size: periodic hydrogen chains (bond 1.8 bohr, Gamma) of 8
to 64 electrons, for embedding cutoffs of 3 and 5 bohr and without a cutoff, at fixed walkers.

    python benchmarks/fire_scaling.py [--electrons 8 16 32 64] [--walkers 16] [--steps 2]

Prints a Markdown table of the median time of one optimization step (MCMC + KFAC) and of one
local-energy evaluation of all walkers, and the exponent p of a least-squares fit
t ~ n_electrons^p for each cutoff. All sizes and cutoffs run in one process, side by side.
"""

from __future__ import annotations

import argparse
import datetime

import numpy as np

from step_time import machine, time_steps
from vmc.config import make_config


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--electrons", type=int, nargs="+", default=[8, 16, 32, 64])
    p.add_argument("--cutoffs", nargs="+", default=["3", "5", "none"])
    p.add_argument("--walkers", type=int, default=16)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--mcmc-steps", type=int, default=5)
    args = p.parse_args()
    rows = {}
    for cutoff in args.cutoffs:
        for n_el in args.electrons:
            cfg = make_config(None, {
                "system": {"name": "hydrogen_chain", "lattice_constant": 3.6, "supercell": [n_el // 2, 1, 1]},
                "model.name": "fire", "model.fire.cutoff": None if cutoff == "none" else float(cutoff),
                "baseline.basis": "sto-3g", "mcmc.walkers": args.walkers, "mcmc.steps": args.mcmc_steps,
                "mcmc.burn_in": 0, "pretraining.steps": 0,
            })
            rows[cutoff, n_el] = t = time_steps(cfg, args.steps)
            print(f"cutoff {cutoff}, {n_el} electrons: step {t['step']:.3f} s, local energy {t['local_energy']:.3f} s", flush=True)

    print(f"\n{machine()}, {datetime.date.today()}, {args.walkers} walkers, {args.mcmc_steps} MCMC steps per "
          f"optimization step, default `fire` sizes, STO-3G, float32\n")
    print("| cutoff (bohr) | " + " | ".join(f"{n} e⁻" for n in args.electrons) + " | exponent |")
    print("|---|" + "---|" * (len(args.electrons) + 1))
    for cutoff in args.cutoffs:
        for key, label in (("step", "step"), ("local_energy", "E_L")):
            t = np.array([rows[cutoff, n][key] for n in args.electrons])
            slope = np.polyfit(np.log(args.electrons), np.log(t), 1)[0]
            print(f"| {cutoff} ({label}) | " + " | ".join(f"{x:.3f} s" for x in t) + f" | {slope:.2f} |")


if __name__ == "__main__":
    main()
