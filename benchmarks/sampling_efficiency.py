"""Effective samples of the local energy per second of sampling: single-electron moves with
low-rank updates (`mcmc.moves: single`) against all-electron moves (`all`), side by side in
one process, for sparse `fire` on the periodic hydrogen chain.

    python benchmarks/sampling_efficiency.py --electrons 32 [--walkers 32] [--pretrain 100]
        [--burn-in 30] [--steps 100] [--every 1] [--basis sto-3g] [--second-atom 0.5] [--step-time]

The chain: 2 atoms per 3.6-bohr cell (bond 1.8 bohr with --second-atom 0.5), --electrons / 2
cells, 20 bohr of vacuum across, default `fire`, float32. The twist is 1/2 along the chain, not
Gamma: at Gamma the equally spaced chain of 4m atoms has a half-filled degenerate HOMO (an
open shell HF cannot describe), while at the twist 1/2 it is closed-shell at these sizes and
every Bloch phase is +-1, so the wavefunction is real and costs what Gamma's would.

The network is pretrained on Hartree–Fock for --pretrain steps, then held fixed. From the same
walkers each kind of move burns in for --burn-in steps (the proposal width adapting towards
acceptance 0.5), then takes --steps steps, timed one by one (the sampling only); after every
--every-th step the local energy of every walker is computed (not timed). With tau the
integrated autocorrelation time of the walkers' mean energy (in steps; vmc/stats.py), a
kind's effective samples per second are walkers * steps / (tau * seconds of sampling).
A step is one all-electron move or one sweep of single moves. With --step-time the whole
optimization step (10 sampling steps, SPRING) is timed for both too (benchmarks/step_time.py).

The last line reads `effective samples per second: single A, all B, ratio A/B`.
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from step_time import machine, time_steps
from vmc import parallel, stats
from vmc.config import make_config
from vmc.hamiltonian import make_batch_local_energy
from vmc.mcmc import adapt_width, make_mcmc_step, make_single_electron_step
from vmc.runner import Run


def chain_config(args, moves: str = "all", pretrain: int | None = None):
    return make_config(None, {
        "system": {"name": "hydrogen_chain", "lattice_constant": 3.6, "supercell": [args.electrons // 2, 1, 1],
                   "twists": [[0.5, 0, 0]], "atoms": [["H", [0.0, 0.0, 0.0]], ["H", [args.second_atom, 0.0, 0.0]]]},
        "model.name": "fire", "baseline.basis": args.basis, "mcmc.walkers": args.walkers, "mcmc.moves": moves,
        "mcmc.burn_in": 0, "pretraining.steps": args.pretrain if pretrain is None else pretrain, "seed": 0,
    })


def measure(kind: str, run: Run, params, walkers, args) -> dict:
    """Burn-in, then timed steps of one kind of move; the walkers' mean energy after each."""
    ansatz = run.ansatz
    data = parallel.unreplicate(run.data[0])
    if kind == "single":
        step = make_single_electron_step(ansatz.single_moves, 1)
    else:
        step = make_mcmc_step(ansatz.log_psi, 1, ansatz.neighbour_counts)
    step = jax.jit(step)
    energies = jax.jit(make_batch_local_energy(ansatz.log_psi, run.trainer.memory.batch("local energy"), kinetic=ansatz.kinetic))
    width, key = run.config.mcmc.proposal_width, jax.random.PRNGKey(1)
    times, means, accepted = [], [], []
    t = 0
    while t < args.burn_in + args.steps:
        key, sub = jax.random.split(key)
        start = time.perf_counter()
        new, pmove, needed = jax.block_until_ready(step(params, data, walkers, sub, width))
        elapsed = time.perf_counter() - start
        grown = ansatz.resize(data, np.asarray(needed))
        if grown is not data:  # a list was short somewhere: grow it and take the step again
            data = grown
            continue
        walkers, pmove = new, float(pmove)
        width = adapt_width(width, pmove, run.config.mcmc.target_acceptance)
        if t >= args.burn_in:
            times.append(elapsed)
            accepted.append(pmove)
            if (t - args.burn_in) % args.every == 0:
                e = energies(params, jax.random.PRNGKey(t), data, walkers)
                means.append(float(jnp.mean(jnp.real(e))))
        t += 1
    means = np.array(means)
    tau = stats.integrated_autocorrelation_time(means) * args.every  # in steps
    seconds = float(np.sum(times))
    mean, error = stats.mean_and_error(means)
    return {"kind": kind, "step": float(np.median(times)), "tau": tau, "width": width, "pmove": float(np.mean(accepted)),
            "energy": mean, "error": error, "seconds": seconds,
            "per_second": args.walkers * len(times) / (tau * seconds)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--electrons", type=int, default=32)
    p.add_argument("--walkers", type=int, default=32)
    p.add_argument("--pretrain", type=int, default=100)
    p.add_argument("--burn-in", type=int, default=30)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--every", type=int, default=1)
    p.add_argument("--basis", default="sto-3g")
    p.add_argument("--second-atom", type=float, default=0.5)
    p.add_argument("--step-time", action="store_true")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run = Run(chain_config(args), Path(tmp))
        run.pretrain()
        params = parallel.unreplicate(run.state.params)
        walkers = jnp.asarray(parallel.unshard(run.state.walkers[0]))
        results = {kind: measure(kind, run, params, walkers, args) for kind in ("single", "all")}
        run.close()
    steps = {kind: time_steps(chain_config(args, kind, pretrain=0), 2)["step"] for kind in ("single", "all")} if args.step_time else {}

    print(f"\n{machine()}, {datetime.date.today()}, jax {jax.__version__}: H chain, {args.electrons} electrons "
          f"(second atom at {args.second_atom:g}), twist 1/2, {args.basis}, default fire, {args.walkers} walkers, "
          f"pretrained {args.pretrain} steps, {args.burn_in} burn-in + {args.steps} measured steps\n")
    print("| moves | sampling step | acceptance | width (bohr) | tau (steps) | E (Ha) | effective samples / s |"
          + (" optimization step |" if steps else ""))
    print("|---|---|---|---|---|---|---|" + ("---|" if steps else ""))
    for kind, r in results.items():
        print(f"| {kind} | {r['step']:.3f} s | {r['pmove']:.2f} | {r['width']:.3f} | {r['tau']:.1f} | "
              f"{r['energy']:.4f}({1e4 * r['error']:.0f}) | {r['per_second']:.2f} |" + (f" {steps[kind]:.2f} s |" if steps else ""))
    a, b = results["single"]["per_second"], results["all"]["per_second"]
    print(f"effective samples per second: single {a:.3g}, all {b:.3g}, ratio {a / b:.2f}")


if __name__ == "__main__":
    main()
