"""The memory every phase of a run needs per walker, and how many walkers a device works on
at once in each (docs/architecture.md, "Memory of every phase").

A device holds `mcmc.walkers / devices` walkers, but no phase needs all of them in memory at
once: each maps a per-walker function over them in chunks (`map_walkers`), and the chunk of
each phase is chosen here, once, when the training state is built:

    sampling      log psi of the walkers and of the proposals (MCMC, forward only)
    pretraining   the gradient of the orbital fit to Hartree–Fock (reverse mode, rematerialized
                  per chunk so that the backward pass holds one chunk's intermediates)
    local energy  the forward Laplacian (`local_energy_batch`; auto unless set)
    jacobian      SPRING's per-walker parameter gradients; the rows themselves (walkers x
                  parameters) and the Gram matrix cannot be split and are counted apart

For each, an upper estimate per walker (`_intermediate_bytes` of the per-walker program: every
value it computes, as if none were ever freed; for the local energy times the 3 n_el + 2
numbers the forward Laplacian carries) costs a trace, no compilation. When the estimate for
the phase's largest chunk does not fit the budget, that chunk is compiled and XLA's buffer
assignment read (`measure`), and the chunk shrinks in proportion. Small runs pay nothing.

The local energy's chunk never exceeds MAX_BATCH walkers, whatever the memory: on an H200,
XLA compiled the 4096-walker local energy of LiH 2x2x2 (4.7 MiB per walker, 19 GiB in all)
for more than four minutes without finishing, while 128 at a time compiled with the whole step
in 33 s and took 0.36 s for all 4096 walkers (benchmarks/RESULTS.md).
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import numpy as np

from vmc import parallel

# Share of a device's memory one phase's temporaries may take (the phases run one after the
# other); the rest holds the parameters, the optimizer state, the walkers and the growth of
# neighbour lists during a run.
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


def map_walkers(f: Callable, walkers, batch: int | None, remat: bool = False):
    """f(r) for every walker of walkers (B, ...) (or a tuple of such arrays, f taking a
    tuple), stacked: `batch` walkers at a time (None, or batch >= B: all at once). remat:
    recompute each chunk's intermediates in the backward pass instead of keeping them, so that
    a gradient through this map holds one chunk's at a time."""
    if remat:
        f = jax.checkpoint(f)
    if batch is None or batch >= jax.tree.leaves(walkers)[0].shape[0]:
        return jax.vmap(f)(walkers)
    return jax.lax.map(f, walkers, batch_size=batch)


def program_bytes(fn: Callable, *args) -> int:
    """Upper estimate of the bytes of fn(*args): every value its program computes."""
    return _intermediate_bytes(jax.make_jaxpr(fn)(*args).jaxpr)


def measure(fn: Callable, *args) -> int:
    """Bytes of temporaries XLA assigns to fn(*args) (compiles it)."""
    compiled = jax.jit(fn).lower(*args).compile()
    return int(compiled.memory_analysis().temp_size_in_bytes)


@dataclasses.dataclass(frozen=True)
class PhaseMemory:
    """How one phase splits a device's walkers (bytes, per device).

    batch: walkers at once (None: all); per_walker: bytes one walker needs; measured:
    per_walker is XLA's figure (else the upper estimate); budget: the bytes allowed.
    """

    batch: int | None
    per_walker: int
    measured: bool
    budget: int

    def describe(self, walkers: int) -> str:
        size = f"{self.per_walker / 2**20:.3g} MiB per walker ({'XLA' if self.measured else 'upper estimate'})"
        split = "all at once" if self.batch is None else f"{self.batch} at a time"
        return f"{size}, {split}"


def choose_batch(walkers: int, estimates: list[int], measure_batch: Callable[[int, int], int], budget: int,
                 cap: int | None = MAX_BATCH) -> PhaseMemory:
    """The batch for `walkers` per device: at most `cap` (None: no cap), and at most what fits
    the budget. estimates: bytes per walker of each system, from above; measure_batch(i, b):
    XLA's bytes for b walkers of system i, asked for only when the estimate does not fit."""
    i = int(np.argmax(estimates))
    batch, per_walker, measured = min(walkers, cap or walkers), estimates[i], False
    if batch * per_walker > budget:
        total = max(measure_batch(i, batch), 1)
        per_walker, measured = -(-total // batch), True
        if total > budget:
            batch = max(1, batch * budget // total)
    return PhaseMemory(None if batch >= walkers else int(batch), int(per_walker), measured, budget)


def spring_fixed_bytes(walkers_total: int, walkers_per_device: int, n_params: int, devices: int, itemsize: int) -> int:
    """Bytes per device of SPRING's unsplittable arrays (vmc/spring.py): this device's Jacobian
    rows (B, 2, P) in the parameters' dtype, all N walkers' rows for its 1/D of the parameters
    in float64 twice (raw and centred), and four (2N)^2 float64 matrices (Gram matrix, its
    damped form, the constant-vector term and the Cholesky factor)."""
    n, p_slice = walkers_total, -(-n_params // devices)
    return walkers_per_device * 2 * n_params * itemsize + 2 * n * 2 * p_slice * 8 + 4 * (2 * n) ** 2 * 8


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """The walkers each phase handles at once on one device, chosen when the training state is
    built. phases: name -> PhaseMemory (`sampling`, `pretraining`, `local energy`, and
    `jacobian` for SPRING); fixed: bytes per device that no batch reduces (SPRING's rows and
    Gram matrix), already taken out of the jacobian's budget."""

    walkers: int
    budget: int
    phases: dict[str, PhaseMemory]
    fixed: int = 0

    def batch(self, phase: str) -> int | None:
        return self.phases[phase].batch if phase in self.phases else None

    def describe(self) -> str:
        """One log line: every phase's batch."""
        parts = [f"{name} {m.describe(self.walkers)}" for name, m in self.phases.items()]
        if self.fixed:
            parts.append(f"SPRING rows and Gram matrix {self.fixed / 2**30:.3g} GiB")
        return (f"memory per device ({self.walkers} walkers, budget {self.budget / 2**30:.3g} GiB per phase): "
                + "; ".join(parts))
