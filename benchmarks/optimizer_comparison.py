"""Accuracy per wall time of one optimizer on one small system (issue: KFAC, SPRING, Adam).

    python benchmarks/optimizer_comparison.py train lih spring --minutes 30 --out runs/lih_spring
    python benchmarks/optimizer_comparison.py evaluate runs/lih_spring --marks 10 20 30

`train` runs `vmc run` with `fire` (default sizes), 256 walkers, 200 pretraining steps, seed 7
and a checkpoint every 100 steps, and stops it with SIGTERM (a checkpoint, exit 143) after
`--minutes`; the clock starts with the command (HF, pretraining and burn-in included).
`evaluate` takes, for every mark, the newest checkpoint written before it (file times
against the start time `train` recorded) and evaluates it (`vmc evaluate`, 2000 steps after
100 burn-in; error with the integrated autocorrelation time); it prints one Markdown row per
mark and writes them to <run>/marks.json. Run two at once pinned to one core each
(`taskset -c 0` / `-c 1`) to compare optimizers side by side on a 2-core machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import h5py
import yaml

from vmc import checkpoint

SYSTEMS = {
    "lih": ({"system": "LiH", "baseline": {"basis": "cc-pVDZ"}}, -8.070548),
    "be": ({"system": "Be", "baseline": {"basis": "cc-pVDZ"}}, -14.667356),
    "h4": ({"system": {"name": "hydrogen_chain", "lattice_constant": 3.6, "supercell": [2, 1, 1], "twists": [[0, 0, 0]]},
            "baseline": {"basis": "cc-pVDZ"}}, None),
}


def train(system: str, optimizer: str, minutes: float, out: Path, extra: list[str]) -> None:
    spec, _ = SYSTEMS[system]
    config = dict(spec, seed=7, model={"name": "fire"}, mcmc={"walkers": 256, "burn_in": 100}, pretraining={"steps": 200},
                  optimization={"steps": 1_000_000, "optimizer": optimizer}, evaluation={"steps": 0},
                  checkpoint={"every": 100, "keep": 1000})
    out.parent.mkdir(parents=True, exist_ok=True)
    path = out.parent / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(config))
    start = time.time()
    (out.parent / f"{out.name}.start").write_text(f"{start}\n")
    with open(out.parent / f"{out.name}.log", "w") as log:
        proc = subprocess.Popen([sys.executable, "-m", "vmc", "run", str(path), "--out", str(out), *extra], stdout=log, stderr=log)
        try:
            proc.wait(timeout=minutes * 60)
        except subprocess.TimeoutExpired:
            proc.terminate()
            proc.wait()
    print(f"{out}: stopped after {(time.time() - start) / 60:.1f} min, exit {proc.returncode}")


def evaluate(out: Path, marks: list[float], steps: int) -> None:
    start = float((out.parent / f"{out.name}.start").read_text())
    config = yaml.safe_load((out.parent / f"{out.name}.yaml").read_text())
    exact = next(exact for spec, exact in SYSTEMS.values() if spec["system"] == config["system"])
    rows = []
    for mark in marks:
        before = [p for p in checkpoint.list_checkpoints(out / "checkpoints") if p.stat().st_mtime - start <= mark * 60]
        if not before:
            continue
        ckpt = max(before, key=checkpoint.checkpoint_step)
        target = out.parent / f"{out.name}_eval_{checkpoint.checkpoint_step(ckpt)}"
        if not (target / "energies.h5").exists():
            subprocess.run([sys.executable, "-m", "vmc", "evaluate", str(ckpt), "--out", str(target),
                            "--set", f"evaluation.steps={steps}", "--set", "evaluation.burn_in=100"],
                           check=True, stdout=subprocess.DEVNULL)
        with h5py.File(target / "energies.h5", "r") as f:
            (name,) = list(f["systems"])
            a = f[f"systems/{name}/eval/energy"].attrs
            energy, error = float(a["energy_per_cell"]), float(a["energy_per_cell_error"])
        row = {"minutes": mark, "step": checkpoint.checkpoint_step(ckpt), "energy": energy, "error": error}
        if exact is not None:
            row["above_exact_mha"] = (energy - exact) * 1e3
        rows.append(row)
        above = f" | {row['above_exact_mha']:.2f}({error * 1e3:.2f})" if exact is not None else ""
        print(f"| {mark:g} min | {row['step']} | {energy:.5f}({error:.5f}){above} |", flush=True)
    (out / "marks.json").write_text(json.dumps(rows, indent=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train")
    t.add_argument("system", choices=sorted(SYSTEMS))
    t.add_argument("optimizer", choices=["kfac", "spring", "adam"])
    t.add_argument("--minutes", type=float, default=30)
    t.add_argument("--out", type=Path, required=True)
    t.add_argument("--set", action="append", default=[], help="more `vmc run --set` overrides")
    e = sub.add_parser("evaluate")
    e.add_argument("out", type=Path)
    e.add_argument("--marks", type=float, nargs="+", default=[10, 20, 30])
    e.add_argument("--steps", type=int, default=2000)
    args = parser.parse_args()
    if args.command == "train":
        train(args.system, args.optimizer, args.minutes, args.out, [x for s in args.set for x in ("--set", s)])
    else:
        evaluate(args.out, args.marks, args.steps)


if __name__ == "__main__":
    main()
