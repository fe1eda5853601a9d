"""`vmc plan CONFIG`: what a run will need before it is started.

Resolves the config, lists its systems and this machine's devices, runs Hartree–Fock for
every system (cached, so the run itself then skips it), builds the run for the largest
system in a temporary directory, and times a few steps of each phase there: the first step
of a phase compiles its programs, the steps after it give the time per step. From those it
prints the memory plan of every phase, the peak memory, and an estimate of the wall time per
phase and in total; it writes no run directory (docs/robustness.md, "Before a long run").

The estimate assumes every system costs what the largest does and compiles its programs once
(systems of the same shapes share them; others compile their own). On a CPU a step of a large
run takes minutes, so by default the steps are timed on CPU_TIMING_WALKERS walkers per device
and scaled in proportion to the run's (`--timing-walkers` sets the number; every phase's cost
is linear in the walkers except SPRING's Gram matrix, quadratic, and its solve, cubic). The
memory plan is always the full run's.
"""

from __future__ import annotations

import dataclasses
import resource
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from vmc import parallel, signals
from vmc.baseline import hartree_fock
from vmc.config import Config
from vmc.finetune import prepare
from vmc.progress import format_duration
from vmc.runner import Run
from vmc.systems import resolve_config

TIMED_STEPS = 2  # steps timed after the first (compiling) one, per phase
CPU_TIMING_WALKERS = 64  # walkers per device timed on a CPU unless told otherwise


def _say(line: str) -> None:
    print(line, flush=True)


def _largest(systems) -> int:
    """The system a step costs most on: most electrons, then a complex wavefunction (a twist)."""
    return max(range(len(systems)), key=lambda i: (systems[i].n_electrons, systems[i].periodic and any(systems[i].twist != 0)))


def peak_memory() -> str:
    """Peak memory so far: the device's own figure on an accelerator, else this process's
    resident set (a CPU run's devices are the host)."""
    stats = jax.local_devices()[0].memory_stats()
    if stats and "peak_bytes_in_use" in stats:
        return f"{stats['peak_bytes_in_use'] / 2**30:.3g} GiB on device 0"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.3g} GiB resident on this host (CPU devices share it)"


def plan(config: Config, params_from: str | Path | None = None, explicit: frozenset[str] = frozenset(),
         timing_walkers: int | None = None) -> dict[str, float]:
    """Prints the plan of a run of `config` (starting from the checkpoint `params_from`, as
    `vmc run --from`; `explicit`: the keys set on the command line), its steps timed on
    `timing_walkers` walkers per device (None: all of them on an accelerator,
    CPU_TIMING_WALKERS on a CPU); returns the estimated seconds per phase and 'total'."""
    with tempfile.TemporaryDirectory(prefix="vmc-plan-") as tmp:
        # a fine-tune's network settings (basis, sizes) come from its checkpoint, as in `vmc run`
        return _plan(prepare(config, Path(tmp) / "run", params_from, set(explicit)), Path(tmp) / "run", timing_walkers)


def _plan(config: Config, run_dir: Path, timing_walkers: int | None) -> dict[str, float]:
    config, systems = resolve_config(config)
    _say(f"{parallel.describe_devices()}; {config.mcmc.walkers // jax.device_count()} walkers per device")
    _say(f"{len(systems)} system{'s' if len(systems) > 1 else ''}: " + ", ".join(f"{s.id} ({s.n_electrons} e)" for s in systems))
    t0 = time.perf_counter()
    for s in systems:
        hartree_fock(s, config.baseline)
    hf_seconds = time.perf_counter() - t0
    _say(f"Hartree–Fock of {len(systems)} systems: {hf_seconds:.1f} s (now cached in {config.baseline.cache_dir})")

    i = _largest(systems)
    steps = 1 + TIMED_STEPS
    probe = config.model_copy(deep=True)
    probe.pretraining.steps = min(config.pretraining.steps, steps)
    probe.mcmc.burn_in = min(config.mcmc.burn_in, steps)
    probe.optimization.steps = min(config.optimization.steps, steps)
    probe.evaluation.burn_in = 0
    probe.evaluation.steps = min(config.evaluation.steps, steps)
    probe.checkpoint.every = steps + 1
    per_device = config.mcmc.walkers // jax.device_count()
    if timing_walkers is None:
        timing_walkers = CPU_TIMING_WALKERS if jax.default_backend() == "cpu" else per_device
    k = max(1, min(timing_walkers, per_device))
    scale = per_device / k
    with signals.handled():
        _say(f"timing {steps} steps of each phase on {systems[i].id} with {k} walkers per device"
             f"{f' (scaled to {per_device})' if k < per_device else ''}, the first of each compiling its programs")
        run = Run(probe, run_dir, only=i)  # the memory plan of the full run
        if k < per_device:
            run.state = dataclasses.replace(run.state, walkers=tuple(
                parallel.shard(np.asarray(w)[:, :k].reshape(-1, *w.shape[2:])) for w in run.state.walkers))
        try:
            run.pretrain()
            run.burn_in(probe.mcmc.burn_in)
            if run.trainer.optimizer is not None and probe.optimization.steps:
                run.optimize()
            run.evaluate(report=False)  # a few steps' energies are no result
            memory_line = run.trainer.memory.describe()
        finally:
            run.close()
    n = len(systems)
    counts = {
        "pretraining": config.pretraining.steps if "pretraining" in run.timings else 0,
        "burn-in": config.mcmc.burn_in * n,
        "optimization": config.optimization.steps if "optimization" in run.timings else 0,
        "evaluation": (config.evaluation.burn_in + config.evaluation.steps) * n,
    }
    estimate = {"Hartree–Fock": hf_seconds}
    _say(memory_line)
    _say(f"peak memory while timing {k} walkers per device: {peak_memory()}")
    _say(f"{'phase':<14}{'steps':>9}  {'first step':>11}  {'per step':>10}  {'estimate':>20}")
    for phase, count in counts.items():
        first, per = run.timings.get(phase, (None, None))
        if count == 0 or per is None:
            continue
        # the first step is compilation and one step; the run's steps take `scale` times longer
        per, first = per * scale, first + per * (scale - 1)
        estimate[phase] = first + per * (count - 1)
        _say(f"{phase:<14}{count:>9}  {first:>10.1f}s  {per:>9.3g}s  {format_duration(estimate[phase]):>20}")
    estimate["total"] = sum(estimate.values())
    _say(f"estimated wall time: {format_duration(estimate['total'])} (Hartree–Fock {format_duration(hf_seconds)}, "
         f"cached for the run; systems of other shapes than {systems[i].id} compile again)")
    return estimate
