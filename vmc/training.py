"""The training state and the one function that advances it by an optimization step.

    TrainState --Trainer.step--> TrainState

A `TrainState` holds everything an optimization step changes: the network parameters, the
optimizer state, each system's walkers and proposal width, the scheduler's credit, the step
count and the run's root PRNG key. A step's random numbers are derived from the root key,
the step count, the system and the retry (`step_key`), so (root key, step) is the position
of the random stream and a resumed run draws what an uninterrupted one would.

`Trainer.step` is pure in the state: it returns a new one and leaves its argument valid, so
rejecting a step (vmc/rejection.py) is keeping the old state. The runner, the step-time
benchmark and the tests all advance training through it; checkpoints hold exactly this unit
(vmc/checkpoint.py). See docs/architecture.md.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from vmc import memory, parallel
from vmc.ansatz.moves import full_recomputation
from vmc.errors import InputError
from vmc.hamiltonian import log_psi_pair, make_batch_local_energy
from vmc.loss import make_energy_loss
from vmc.mcmc import adapt_width, make_mcmc_step, make_single_electron_step
from vmc.optimizers import make_optimizer
from vmc.pretrain import orbital_loss
from vmc.spring import walker_gradients
from vmc.scheduling import pick

# Independent random streams: key = fold_in(fold_in(fold_in(root, purpose), step), system).
PURPOSES = {"init": 0, "pretrain": 1, "burn_in": 2, "sample": 3, "optimizer": 4, "evaluate": 5}


def step_key(root: jax.Array, purpose: str, step: int, system: int, attempt: int = 0, per_host: bool = True) -> jax.Array:
    """The key of one purpose at one step of one system. attempt > 0: the retries of a
    rejected step draw fresh numbers; per_host: each host its own (its own walkers)."""
    k = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(root, PURPOSES[purpose]), step), system)
    if attempt:
        k = jax.random.fold_in(k, attempt)
    return jax.random.fold_in(k, jax.process_index()) if per_host else k


@dataclasses.dataclass(frozen=True)
class TrainState:
    """Everything an optimization step changes.

    params, opt_state: replicated over the local devices (leading device axis); opt_state is
        None where nothing trains.
    walkers: per system, (local devices, walkers per device, n_el, 3), bohr.
    widths: per system, the MCMC proposal width, bohr.
    credit: (n_systems,) the scheduler's credit (vmc/scheduling.py).
    step: optimization steps taken.
    key: the run's root PRNG key.
    """

    params: Any
    opt_state: Any
    walkers: tuple
    widths: tuple
    credit: np.ndarray
    step: int
    key: jax.Array

    def with_walkers(self, i: int, walkers, width: float) -> TrainState:
        """System i's sampler state replaced."""
        return dataclasses.replace(self, walkers=_put(self.walkers, i, walkers), widths=_put(self.widths, i, width))


def _put(items: tuple, i: int, value) -> tuple:
    return items[:i] + (value,) + items[i + 1:]


@dataclasses.dataclass(frozen=True)
class StepResult:
    """What one optimization step measured (whole simulation cell, hartree)."""

    system: int
    energy: float
    variance: float
    pmove: float


class DeviceData:
    """Each system's SystemData, replicated on the local devices, with neighbour lists (sparse
    `fire`, vmc/neighbours.py) that grow when a walker needs more.

    on_size(i, data, recompiles, grew) is told of every sizing (to log and record it); grew:
    a walker outgrew the lists (a recompile follows).
    """

    def __init__(self, ansatz, data: list, recompiles: list[int], on_size: Callable):
        self.ansatz = ansatz
        self.items = list(data)
        self.recompiles = list(recompiles)
        self.on_size = on_size
        self._counts = None

    def __getitem__(self, i: int):
        return self.items[i]

    def __len__(self) -> int:
        return len(self.items)

    def fit(self, i: int, walkers) -> None:
        """Sizes system i's lists to its walkers (at the start and after a restore)."""
        if self.ansatz.resize is None:
            return
        if self._counts is None:
            count = self.ansatz.neighbour_counts
            self._counts = parallel.pmap(lambda d, w: parallel.pmax(jnp.max(jax.vmap(lambda r: count(d, r))(w), 0)))
        self.items[i] = self.ansatz.resize(self.items[i], parallel.device0(self._counts(self.items[i], walkers)))
        self.on_size(i, self.items[i], self.recompiles[i], False)

    def until_held(self, i: int, compute: Callable) -> tuple:
        """compute(data) -> (*outputs, needed) on system i's data, redone until its lists held
        every configuration it evaluated (`needed`: per device, the same on all); returns the
        outputs. Each time a list was too short it grows and the next call recompiles: nothing
        the short-listed computation produced is used."""
        while True:
            *outputs, needed = compute(self.items[i])
            if self.ansatz.resize is None:
                return tuple(outputs)
            data = self.ansatz.resize(self.items[i], parallel.device0(needed))
            if data is self.items[i]:
                return tuple(outputs)
            self.items[i] = data
            self.recompiles[i] += 1
            self.on_size(i, data, self.recompiles[i], True)


class Trainer:
    """The compiled pieces of one run's optimization: sampling, the local energy, the loss and
    the optimizer, over the systems in `data`, picked by `weights`. train=False (or an ansatz
    without parameters, or optimization.steps = 0): no optimizer, and the state's opt_state is None.
    pretrain: whether pretraining will run (its memory is planned too).
    `memory`: the walkers each phase handles at once (vmc/memory.py), built by init_state."""

    def __init__(self, ansatz, config, data: DeviceData, weights: np.ndarray, train: bool = True, pretrain: bool = False):
        self.ansatz = ansatz
        self.config = config
        self.data = data
        self.weights = np.asarray(weights, dtype=float)
        self.train = train and ansatz.trainable and config.optimization.steps > 0
        self.pretrain = pretrain and ansatz.trainable
        # built by init_state: every phase's batch follows from the parameters, the systems'
        # (sized) data and the walkers per device
        self.mcmc_step = self._sample = self.local_energy = self.optimizer = self.memory = None

    def _build(self, params, walkers: list) -> None:
        """Sampling, the local energy and the optimizer, each over as many walkers at once as
        the memory plan says."""
        self.memory = plan = self._plan_memory(parallel.unreplicate(params), walkers)
        mcmc = self.config.mcmc
        if mcmc.moves == "single":
            moves = self.ansatz.single_moves or full_recomputation(self.ansatz.log_psi, self.ansatz.neighbour_counts)
            self.mcmc_step = make_single_electron_step(moves, mcmc.steps, plan.batch("sampling"))
        else:
            self.mcmc_step = make_mcmc_step(self.ansatz.log_psi, mcmc.steps, self.ansatz.neighbour_counts, plan.batch("sampling"))
        self._sample = parallel.pmap(lambda *args: _global_needed(self.mcmc_step(*args)), in_axes=(0, 0, 0, 0, None))
        self.local_energy = make_batch_local_energy(self.ansatz.log_psi, plan.batch("local energy"), kinetic=self.ansatz.kinetic)
        if self.train:
            cfg = self.config.optimization
            loss = make_energy_loss(self.ansatz.log_psi, self.local_energy, cfg.clip_width, plan.batch("gradient"))
            self.optimizer = make_optimizer(loss, self.ansatz.log_psi, cfg, plan.batch("jacobian"))

    def _plan_memory(self, params, walkers: list) -> memory.MemoryPlan:
        """Every phase's batch for these parameters, systems and walkers (vmc/memory.py); the
        same on every host (the smallest device budget of all)."""
        data = [parallel.unreplicate(self.data[i]) for i in range(len(self.data))]
        r = [parallel.unshard(w) for w in walkers]  # this host's walkers of each system (host arrays)
        n = walkers[0].shape[1]
        budget = parallel.host_min(int(memory.SHARE * memory.device_memory()))
        log_psi = self.ansatz.log_psi

        def estimate(one: Callable) -> list[int]:
            """Upper bytes of one(params, data, r), one walker's program, for each system."""
            return [memory.program_bytes(one, params, d, x[0]) for d, x in zip(data, r)]

        def phase(estimates: list[int], batched: Callable, cap: int | None, room: int = budget) -> memory.PhaseMemory:
            """batched(params, data, walkers): the phase's program for a batch, compiled and
            measured only when the estimates do not fit."""
            return memory.choose_batch(n, estimates, lambda i, b: memory.measure(batched, params, data[i], r[i][:b]), room, cap)

        phases = {}
        forward = lambda p, d, x: log_psi(p, d, x)[1]  # noqa: E731
        phases["sampling"] = phase(estimate(forward), lambda p, d, w: jax.vmap(lambda x: forward(p, d, x))(w), None)
        if self.pretrain:
            fit = orbital_loss(self.ansatz)
            phases["pretraining"] = phase(estimate(lambda p, d, x: jax.grad(fit)(p, d, x[None])), jax.grad(fit), memory.MAX_BATCH)
        batch = self.config.local_energy_batch
        energies = make_batch_local_energy(log_psi, None, kinetic=self.ansatz.kinetic)
        estimates = [memory.estimate_per_walker(log_psi, params, d, x[0]) for d, x in zip(data, r)]
        if batch == "auto":
            phases["local energy"] = phase(estimates, lambda p, d, w: energies(p, jax.random.PRNGKey(0), d, w), memory.MAX_BATCH)
        else:  # set in the config: kept, and reported with its estimate
            phases["local energy"] = memory.PhaseMemory(None if batch is None or batch >= n else batch, max(estimates), False, budget)
        fixed = 0
        if self.train and self.config.optimization.optimizer == "spring":
            n_params = sum(int(np.size(x)) for x in jax.tree.leaves(params))
            fixed = memory.spring_fixed_bytes(n * jax.device_count(), n, n_params, jax.device_count(), jnp.zeros(()).dtype.itemsize)
            if fixed >= budget:
                raise InputError(f"config key 'mcmc.walkers': SPRING's Jacobian rows and Gram matrix for {n * jax.device_count()} "
                                 f"walkers and {n_params} parameters need {fixed / 2**30:.3g} GiB per device, more than the "
                                 f"{budget / 2**30:.3g} GiB allowed; use fewer walkers or more devices")
            one = lambda p, d, x: walker_gradients(log_psi, p, d)(x)  # noqa: E731
            phases["jacobian"] = phase(estimate(one), lambda p, d, w: jax.vmap(walker_gradients(log_psi, p, d))(w),
                                       self.config.optimization.spring.chunk, budget - fixed)
        elif self.train and self.config.optimization.optimizer == "adam":
            pair = lambda p, d, x: jax.jacrev(log_psi_pair(log_psi))(p, d, x.reshape(-1))  # noqa: E731
            phases["gradient"] = phase(estimate(pair), lambda p, d, w: jax.vmap(lambda x: pair(p, d, x))(w), memory.MAX_BATCH)
        return memory.MemoryPlan(n, budget, phases, fixed)

    def init_state(self, params, walkers: list, key: jax.Array) -> TrainState:
        """The state before step 0: replicated params, sharded walkers, the configured widths.
        Builds the local energy and the optimizer the first time."""
        if self.local_energy is None:
            self._build(params, walkers)
        opt_state = None
        if self.optimizer is not None:
            opt_state = self.optimizer.init(params, step_key(key, "optimizer", 0, 0, per_host=False), (self.data[0], walkers[0]))
        n = len(walkers)
        return TrainState(params=params, opt_state=opt_state, walkers=tuple(walkers), widths=(self.config.mcmc.proposal_width,) * n,
                          credit=np.zeros(n), step=0, key=key)

    def sample(self, params, i: int, walkers, key: jax.Array, width: float):
        """mcmc.steps Metropolis steps of system i's walkers -> (walkers, acceptance); redone
        with longer neighbour lists where a walker needed them."""
        new, pmove = self.data.until_held(i, lambda data: self._sample(params, data, walkers, parallel.device_keys(key), width))
        return new, parallel.host_value(pmove)

    def adapt(self, width: float, pmove: float) -> float:
        return adapt_width(width, pmove, self.config.mcmc.target_acceptance)

    def burn_in(self, state: TrainState, i: int, t: int) -> tuple[TrainState, float]:
        """One burn-in sampling step (number t) of system i under the current parameters."""
        walkers, pmove = self.sample(state.params, i, state.walkers[i], step_key(state.key, "burn_in", t, i), state.widths[i])
        return state.with_walkers(i, walkers, self.adapt(state.widths[i], pmove)), pmove

    def step(self, state: TrainState, attempt: int = 0) -> tuple[TrainState, StepResult]:
        """One optimization step: the scheduler picks a system, its walkers are sampled, the
        optimizer updates the parameters. `attempt` > 0 retries a rejected step with fresh
        random numbers. `state` is left as it was (the optimizers donate copies)."""
        t = state.step
        i, credit = pick(self.weights, state.credit)
        walkers, pmove = self.sample(state.params, i, state.walkers[i], step_key(state.key, "sample", t, i, attempt), state.widths[i])
        params, opt_state, stats = self.optimizer.step(parallel.copy(state.params), parallel.copy(state.opt_state),
                                                       step_key(state.key, "optimizer", t, i, attempt), (self.data[i], walkers))
        new = dataclasses.replace(state, params=params, opt_state=opt_state, credit=credit, step=t + 1)
        new = new.with_walkers(i, walkers, self.adapt(state.widths[i], pmove))
        return new, StepResult(i, parallel.host_value(stats.energy), parallel.host_value(stats.variance), pmove)


def _global_needed(out):
    """The lists every device needs, and the acceptance of device 0 of host 0 on every device:
    every host then adapts the proposal width alike (one width per system, as in the state)."""
    walkers, pmove, needed = out
    return walkers, jax.lax.all_gather(pmove, parallel.AXIS)[0], parallel.pmax(needed)
