"""The memory of the local energy per walker, and how many walkers' local energies a device
computes at once (`local_energy_batch: auto`, docs/architecture.md "Memory of the local energy").

The forward Laplacian carries, for every intermediate of log psi, its value, its Jacobian
with respect to the coordinates it depends on and its Laplacian: per walker it costs up to
~(3 n_el + 2) times log psi's own intermediates. That product (`estimate_per_walker`, from
the traced program, a fraction of a second) is an upper bound in practice: it exceeded XLA's
own figure 9x to 130x on every system measured (tests/test_memory.py checks it is above).
Only when the estimate for a batch exceeds the device's budget is the local energy of that
batch compiled and XLA's buffer assignment read (`measure`, one more compilation), and the
batch shrunk in proportion. Small runs pay nothing.

A batch never exceeds MAX_BATCH walkers, whatever the memory: on an H200, XLA compiled the
4096-walker local energy of LiH 2x2x2 (4.7 MiB per walker, 19 GiB in all) for more than four
minutes without finishing, while 128 at a time compiled with the whole step in 33 s and took
0.36 s for all 4096 walkers (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np

from vmc import parallel

# Share of a device's memory the local energy's temporaries may take; the rest holds the
# parameters, the optimizer, the walkers, MCMC and the growth of neighbour lists during a run.
SHARE = 0.5
MAX_BATCH = 128


def device_memory() -> int:
    """Bytes one local device may use: XLA's limit on an accelerator, else this host's
    physical memory over its local devices (CPU)."""
    stats = jax.local_devices()[0].memory_stats()
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    return parallel.host_memory() // jax.local_device_count()


def _intermediate_bytes(jaxpr, repeat: int = 1) -> int:
    """Bytes of every value a jaxpr computes, sub-programs included (a scan body counts once
    per iteration), as if no buffer were ever freed or reused."""
    total = 0
    for eqn in jaxpr.eqns:
        total += repeat * sum(int(np.prod(v.aval.shape)) * v.aval.dtype.itemsize for v in eqn.outvars if hasattr(v.aval, "shape"))
        times = repeat * (eqn.params.get("length", 1) if eqn.primitive.name == "scan" else 1)
        for value in eqn.params.values():
            for sub in value if isinstance(value, (tuple, list)) else (value,):
                inner = getattr(sub, "jaxpr", sub)  # ClosedJaxpr -> Jaxpr
                if hasattr(inner, "eqns"):
                    total += _intermediate_bytes(inner, times)
    return total


def estimate_per_walker(log_psi: Callable, params, data, r: jax.Array) -> int:
    """Bytes of the local energy of one walker r (n_el, 3), estimated from above: log psi's
    intermediates times the 3 n_el + 2 numbers the forward Laplacian carries for each."""
    jaxpr = jax.make_jaxpr(lambda p, x: log_psi(p, data, x))(params, r).jaxpr
    return (3 * r.shape[0] + 2) * _intermediate_bytes(jaxpr)


def measure(batch_local_energy: Callable, params, data, walkers: jax.Array) -> int:
    """Bytes of temporaries XLA assigns to the local energies of walkers (B, n_el, 3), with
    batch_local_energy(params, key, data, walkers) computing all B at once; compiles it."""
    compiled = jax.jit(batch_local_energy).lower(params, jax.random.PRNGKey(0), data, walkers).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


@dataclasses.dataclass(frozen=True)
class LocalEnergyMemory:
    """How the local energy of one device's walkers is split (bytes, per device).

    batch: walkers at once (None: all); per_walker: bytes one walker's local energy needs;
    measured: per_walker is XLA's figure (else the upper estimate); budget: the bytes allowed.
    """

    batch: int | None
    per_walker: int
    measured: bool
    budget: int

    def describe(self, walkers: int) -> str:
        size = f"{self.per_walker / 2**20:.3g} MiB per walker ({'XLA' if self.measured else 'upper estimate'})"
        split = "all at once" if self.batch is None else f"local_energy_batch {self.batch}"
        return f"local energy: {size}; {walkers} walkers per device within {self.budget / 2**30:.3g} GiB: {split}"


def choose_batch(walkers: int, estimates: list[int], measure_batch: Callable[[int, int], int], budget: int) -> LocalEnergyMemory:
    """The local-energy batch for `walkers` per device: at most MAX_BATCH, and at most what
    fits the budget. estimates: bytes per walker of each system, from above; measure_batch(i,
    b): XLA's bytes for b walkers of system i, asked for only when the estimate does not fit."""
    i = int(np.argmax(estimates))
    batch, per_walker, measured = min(walkers, MAX_BATCH), estimates[i], False
    if batch * per_walker > budget:
        total = max(measure_batch(i, batch), 1)
        per_walker, measured = -(-total // batch), True
        if total > budget:
            batch = max(1, batch * budget // total)
    return LocalEnergyMemory(None if batch >= walkers else int(batch), int(per_walker), measured, budget)
