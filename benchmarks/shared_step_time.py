"""Shared training over the 12 chains of the transfer pretraining (benchmarks/transfer_chains.py):
time until every system has taken its first step (compilation included), and the step time
after, for one optimizer.

    python benchmarks/shared_step_time.py --optimizer spring --out runs/shared_spring
    python benchmarks/shared_step_time.py --optimizer kfac --out runs/shared_kfac

Each system's first optimization step compiles its step function (for KFAC also traces a
kfac-jax optimizer of its own); the training rows in energies.h5 give every step's wall time.
Prints: the set-up before step 0 (HF, pretraining, burn-in), the time from step 0 until all
12 systems have stepped, and the median time of the later steps.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import h5py
import numpy as np

import vmc
from vmc.outputs import read_train

sys.path.insert(0, str(Path(__file__).parent))
from transfer_chains import ATOMS_SEEN, BONDS_SEEN, MODEL, chain  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--optimizer", choices=["kfac", "spring", "adam"], required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=60, help="optimization steps (enough for every system to step twice)")
    p.add_argument("--walkers", type=int, default=128)
    args = p.parse_args()

    systems = [chain(n, BONDS_SEEN, [[0, 0, 0], [0.5, 0, 0]]) for n in ATOMS_SEEN]
    start = time.perf_counter()
    vmc.run({"model": MODEL, "seed": 0, "system": systems, "baseline": {"basis": "cc-pVDZ"},
             "mcmc": {"walkers": args.walkers, "steps": 10, "burn_in": 100}, "pretraining": {"steps": 100},
             "optimization": {"steps": args.steps, "optimizer": args.optimizer}, "evaluation": {"steps": 0},
             "checkpoint": {"every": 10_000}}, out=args.out)
    total = time.perf_counter() - start

    rows = []
    with h5py.File(args.out / "energies.h5", "r") as f:
        for name in f["systems"]:
            train = read_train(f[f"systems/{name}"])
            rows += [(int(s), float(w), name) for s, w in zip(train["step"], train["wall_time"])]
    rows.sort()
    steps = np.array([s for s, _, _ in rows])
    walls = np.array([w for _, w, _ in rows])
    seen, until_all = set(), None
    for k, (_, _, name) in enumerate(rows):
        seen.add(name)
        if len(seen) == len({n for _, _, n in rows}):
            until_all = k
            break
    later = walls[until_all + 1:] if until_all is not None else walls[:0]
    print(f"{args.optimizer}: {len(seen)} systems, {len(steps)} steps; whole run {total / 60:.1f} min; "
          f"set-up before step 0 {(total - walls.sum()) / 60:.1f} min; from step 0 until every system stepped "
          f"(steps 0-{until_all}) {walls[:until_all + 1].sum() / 60:.1f} min; later steps: median {np.median(later):.3f} s")


if __name__ == "__main__":
    main()
