"""LiH 2x2x2 (32 electrons): one optimization step of `fire` (sparse and dense) against
`slater_jastrow`, side by side in one process, at the README smoke settings but default
network sizes (16 walkers, STO-3G, Gamma, a = 7.674 bohr, 20 MCMC steps per step).

    python benchmarks/lih_step_ratio.py [--walkers 16] [--steps 2] [--models slater_jastrow fire:sparse fire:dense]

Prints the median step time and local-energy time of each model and their ratios to
slater_jastrow.
"""

from __future__ import annotations

import argparse
import datetime

from pathlib import Path

from step_time import machine, time_steps
from vmc.api import build_config

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "lih_2x2x2.yaml"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--walkers", type=int, default=16)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--local-energy-batch", type=int, default=4)
    p.add_argument("--models", nargs="+", default=["slater_jastrow", "fire:sparse", "fire:dense"])
    args = p.parse_args()
    rows = {}
    for model in args.models:
        name, _, implementation = model.partition(":")
        overrides = {"system.lattice_constant": 7.674, "system.twists": [[0, 0, 0]], "baseline.basis": "sto-3g",
                     "mcmc.walkers": args.walkers, "local_energy_batch": args.local_energy_batch, "pretraining.steps": 0,
                     "mcmc.burn_in": 0, "model.name": name}
        if implementation:
            overrides["model.fire.implementation"] = implementation
        rows[model] = t = time_steps(build_config(str(CONFIG), overrides), args.steps)
        print(f"{model}: step {t['step']:.3f} s, local energy {t['local_energy']:.3f} s", flush=True)
    base = rows.get("slater_jastrow")
    print(f"\n{machine()}, {datetime.date.today()}, LiH 2x2x2, {args.walkers} walkers, STO-3G, default sizes "
          f"(configs/lih_2x2x2.yaml: K = 4 determinants)\n")
    print("| model | one optimization step | local energies of all walkers | step / slater_jastrow |")
    print("|---|---|---|---|")
    for model, t in rows.items():
        ratio = f"{t['step'] / base['step']:.1f}×" if base else ""
        print(f"| {model} | {t['step']:.2f} s | {t['local_energy']:.2f} s | {ratio} |")


if __name__ == "__main__":
    main()
