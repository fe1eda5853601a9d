"""Time of one optimization step (MCMC sampling + KFAC update) for a config and overrides.

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
from vmc.loss import make_energy_loss
from vmc.optimizers import make_optimizer
from vmc.runner import Run


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--set", dest="overrides", action="append", default=[])
    args = p.parse_args()
    cfg = build_config(args.config, dict(parse_override(o) for o in args.overrides))
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, Path(tmp))
        loss = make_energy_loss(run.ansatz.log_psi, run.local_energy, cfg.optimization.clip_width)
        opt = make_optimizer(loss, run.config.optimization)
        state = opt.init(run.params, run.key("optimizer", 0, 0, per_host=False), run.batch(0))
        energies = jax.pmap(run.local_energy, axis_name=parallel.AXIS)
        times, e_times = [], []
        for t in range(args.steps + 1):
            s = run.samplers[0]
            t0 = time.perf_counter()
            s.walkers, _ = run.sample(run.params, run.data[0], s.walkers, parallel.device_keys(run.key("sample", t, 0)), s.width)
            run.params, state, stats = opt.step(run.params, state, run.key("optimizer", t, 0), run.batch(0))
            jax.block_until_ready(stats.energy)
            times.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            jax.block_until_ready(energies(run.params, run.data[0], s.walkers))
            e_times.append(time.perf_counter() - t0)
    n_el = run.systems[0].n_electrons
    print(f"{platform.node()} {jax.devices()[0].device_kind} x{jax.device_count()} | {run.systems[0].id}: {n_el} electrons, "
          f"{cfg.mcmc.walkers} walkers, {cfg.mcmc.steps} MCMC steps/step, model {cfg.model.name}, basis {cfg.baseline.basis}")
    print(f"optimization step: {np.median(times[1:]):.3f} s (median of {args.steps}; first incl. compile {times[0]:.1f} s); "
          f"local energies of all walkers: {np.median(e_times[1:]):.3f} s")


if __name__ == "__main__":
    main()
