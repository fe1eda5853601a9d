"""Time of one optimization step (MCMC sampling + optimizer update) for a config and overrides.

    python benchmarks/step_time.py configs/lih_2x2x2.yaml --steps 3 --set mcmc.walkers=16 ...

Prints the median wall time of `--steps` steps after one warm-up (compilation) step, and the
time of one batched local-energy evaluation. Hartree–Fock and set-up are not timed.
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from vmc import parallel
from vmc.api import build_config
from vmc.config import parse_override
from vmc.runner import Run


def time_steps(cfg, steps: int) -> dict:
    """Median seconds of one optimization step and of one batched local-energy evaluation
    over `steps` steps after a warm-up step (compilation), with the run's own set-up."""
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, Path(tmp))
        trainer, state = run.trainer, run.state
        energies = parallel.pmap(trainer.local_energy, in_axes=(0, None, 0, 0))
        times, e_times = [], []
        for t in range(steps + 1):
            t0 = time.perf_counter()
            # the runner's own step function (sampling, neighbour lists, optimizer)
            state, _ = trainer.step(state)
            jax.block_until_ready(state.params)
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            jax.block_until_ready(energies(state.params, jax.random.PRNGKey(t), run.data[0], state.walkers[0]))
            e_times.append(time.perf_counter() - t0)
    return {"system": run.systems[0].id, "n_electrons": run.systems[0].n_electrons, "first_step": times[0],
            "step": float(np.median(times[1:])), "local_energy": float(np.median(e_times[1:]))}


def machine() -> str:
    return f"{platform.node()} {jax.devices()[0].device_kind} x{jax.device_count()}"


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    cfg = build_config(args.config, dict(parse_override(o) for o in args.overrides))
    t = time_steps(cfg, args.steps)
    print(f"{machine()} | {t['system']}: {t['n_electrons']} electrons, "
          f"{cfg.mcmc.walkers} walkers, {cfg.mcmc.steps} MCMC steps/step, model {cfg.model.name}, basis {cfg.baseline.basis}, "
          f"{cfg.optimization.optimizer}, jax {jax.__version__}")
    print(f"optimization step: {t['step']:.3f} s (median of {args.steps}; first incl. compile {t['first_step']:.1f} s); "
          f"local energies of all walkers: {t['local_energy']:.3f} s")


if __name__ == "__main__":
    main()
