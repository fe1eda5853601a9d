"""One run, start to end:

    config -> systems -> Hartree–Fock -> ansatz -> pretraining -> burn-in
           -> optimization (one parameter set, systems picked by weight) -> evaluation
           -> energies.h5, checkpoints/

The same path serves one system and many, training and evaluation-only runs, fresh starts,
resumed runs and fine-tuning from another run's parameters.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from vmc import checkpoint, parallel, rundir, signals
from vmc.ansatz import make_ansatz
from vmc.baseline import hartree_fock
from vmc.config import Config, dump_config, make_config
from vmc.errors import Diverged, InputError, Interrupted, OutputError, os_reason
from vmc.evaluation import make_eval_step
from vmc.hamiltonian import make_batch_local_energy
from vmc.loss import make_energy_loss
from vmc.mcmc import adapt_width, init_walkers, make_mcmc_step
from vmc.optimizers import make_optimizer
from vmc.outputs import EnergyFile
from vmc.pretrain import make_pretrain_step
from vmc.progress import Progress, format_energy
from vmc.rejection import StepGuard
from vmc.scheduling import Scheduler, system_weights
from vmc.system_data import make_system_data
from vmc.systems import resolve_config

# Independent random streams: key = fold_in(fold_in(fold_in(seed, purpose), step), system).
PURPOSES = {"init": 0, "pretrain": 1, "burn_in": 2, "sample": 3, "optimizer": 4, "evaluate": 5}


def log(message: str) -> None:
    """One line on stderr, above any progress bar."""
    tqdm.write(message, file=sys.stderr)


def _resolved_mapping(raw: dict) -> dict:
    """A stored run config, resolved as a new run's would be (for the resume check)."""
    return resolve_config(make_config(raw))[0].model_dump(mode="json")


@dataclasses.dataclass
class Sampler:
    """MCMC state of one system: walkers split over devices and the proposal width (bohr)."""

    walkers: jax.Array
    width: float


class Run:
    """A run directory being filled. `params_from`: a checkpoint whose network parameters
    start this run (fine-tuning); `evaluate_only`: no pretraining and no optimization."""

    def __init__(self, config: Config, run_dir: Path, params_from: Path | None = None, evaluate_only: bool = False):
        jax.config.update("jax_enable_x64", config.precision == "float64")
        parallel.initialize(config.distributed)
        # everything that can be checked cheaply is checked before Hartree–Fock
        self.config, self.systems = resolve_config(config)
        if params_from is None and config.checkpoint.restore:
            params_from = Path(config.checkpoint.restore)
        self.params_from = params_from
        self.evaluate_only = evaluate_only
        self.n_per_device = parallel.check_walkers(config.mcmc.walkers)
        parallel.check_walker_memory(self.n_per_device, [s.n_electrons for s in self.systems], jnp.zeros(()).dtype.itemsize)
        if params_from is not None:
            checkpoint.validate(params_from)
        self.elements = self.config.model.elements
        self.config_text = dump_config(self.config)
        self.root_key = jax.random.PRNGKey(config.seed)
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        # one writer per run directory, and only for the run it holds (vmc/rundir.py)
        self.directory = None
        if jax.process_index() == 0:
            self.directory = rundir.claim(self.run_dir, self.config.model_dump(mode="json"), _resolved_mapping)

        self.ansatz = make_ansatz(config.model, self.elements)
        self.baselines = [self._hartree_fock(s) for s in self.systems]
        self.data = [parallel.replicate(make_system_data(s, *self.ansatz.prepare(s, b), self.elements)) for s, b in zip(self.systems, self.baselines)]
        self.samplers = [self._init_sampler(i) for i in range(len(self.systems))]
        self.params = parallel.replicate(self._init_params())

        self.local_energy = make_batch_local_energy(self.ansatz.log_psi, config.local_energy_batch, kinetic=self.ansatz.kinetic)
        self.mcmc_step = make_mcmc_step(self.ansatz.log_psi, config.mcmc.steps, self.ansatz.neighbour_counts)
        self.sample = jax.pmap(lambda *args: self._global_needed(self.mcmc_step(*args)), axis_name=parallel.AXIS, in_axes=(0, 0, 0, 0, None))
        self.scheduler = Scheduler(system_weights(self.systems))

        try:
            (self.run_dir / "config.yaml").write_text(self.config_text)
        except OSError as e:
            raise OutputError(f"{self.run_dir / 'config.yaml'} could not be written ({os_reason(e)})") from None
        self.energies = EnergyFile(self.run_dir / "energies.h5", self.systems, self.config_text, [b.energy for b in self.baselines])
        self.recompiles = [self.energies.recompiles(s.id) for s in self.systems]
        for i in range(len(self.systems)):
            self._size_lists(i)

    def close(self) -> None:
        """Releases the run directory (also done by the OS when the process ends)."""
        if self.directory is not None:
            self.directory.release()

    # ------------------------------------------------------------------ set-up pieces

    def _hartree_fock(self, system):
        t0 = time.perf_counter()
        baseline = hartree_fock(system, self.config.baseline)
        per = f" ({baseline.energy_per_cell:.6f} per cell)" if system.periodic else ""
        log(f"HF {system.id}: {baseline.energy:.6f} Ha{per} [{time.perf_counter() - t0:.1f} s]")
        return baseline

    def _init_sampler(self, i: int) -> Sampler:
        n_local = self.n_per_device * jax.local_device_count()
        rng = np.random.default_rng([self.config.seed, i, jax.process_index()])
        walkers = init_walkers(self.systems[i], n_local, rng, self.config.mcmc.init_width)
        return Sampler(parallel.shard(walkers.astype(jnp.zeros(()).dtype)), self.config.mcmc.proposal_width)

    def _init_params(self):
        data0 = parallel.unreplicate(self.data[0])
        r0 = parallel.unshard(self.samplers[0].walkers)[0]
        params = self.ansatz.init(self.key("init", 0, 0), data0, jnp.asarray(r0))
        if self.params_from is not None:
            params = checkpoint.load_params(self.params_from, params)
            log(f"network parameters from {self.params_from}")
        return params

    def key(self, purpose: str, step: int, system: int, per_host: bool = True, attempt: int = 0) -> jax.Array:
        """attempt > 0: the retries of a rejected step draw fresh random numbers."""
        k = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(self.root_key, PURPOSES[purpose]), step), system)
        if attempt:
            k = jax.random.fold_in(k, attempt)
        return jax.random.fold_in(k, jax.process_index()) if per_host else k

    def batch(self, i: int):
        return self.data[i], self.samplers[i].walkers

    # ------------------------------------------------------------------ neighbour lists

    @staticmethod
    def _global_needed(out):
        walkers, pmove, needed = out
        return walkers, pmove, parallel.pmax(needed)

    def _size_lists(self, i: int) -> None:
        """Sizes system i's neighbour lists (sparse `fire`, vmc/neighbours.py) to its walkers."""
        if self.ansatz.resize is None:
            return
        counts = jax.pmap(lambda d, w: parallel.pmax(jnp.max(jax.vmap(lambda r: self.ansatz.neighbour_counts(d, r))(w), 0)),
                          axis_name=parallel.AXIS)
        self.data[i] = self.ansatz.resize(self.data[i], np.asarray(counts(self.data[i], self.samplers[i].walkers))[0])
        self._record_lists(i)

    def _lists_held(self, i: int, needed) -> bool:
        """Whether system i's neighbour lists held every configuration a computation evaluated
        (`needed`: per device, the same on all). If not they grow, the next call recompiles,
        and the caller must redo the computation: nothing it produced is used."""
        if self.ansatz.resize is None:
            return True
        data = self.ansatz.resize(self.data[i], np.asarray(needed)[0])
        if data is self.data[i]:
            return True
        self.data[i] = data
        self.recompiles[i] += 1
        log(f"{self.systems[i].id}: a walker needed longer neighbour lists; now {data.features.capacities} "
            f"(recompile {self.recompiles[i]})")
        self._record_lists(i)
        return False

    def _record_lists(self, i: int) -> None:
        caps = self.data[i].features.capacities
        if jax.process_index() == 0:
            self.energies.write_lists(self.systems[i].id, caps.FIELDS, caps.as_tuple(), self.recompiles[i])

    # ------------------------------------------------------------------ phases

    def pretrain(self) -> None:
        cfg = self.config.pretraining
        if cfg.steps == 0 or self.params_from is not None or self.ansatz.name == "hf":
            return
        tx, step = make_pretrain_step(self.ansatz, self.config.mcmc.steps, cfg.learning_rate)
        opt_state = jax.pmap(tx.init)(self.params)
        scheduler = Scheduler(system_weights(self.systems))
        with Progress(cfg.steps, "pretrain") as progress:
            for t in range(cfg.steps):
                i = scheduler.next()
                s = self.samplers[i]
                self.params, opt_state, s.walkers, loss, pmove = step(
                    self.params, opt_state, self.data[i], s.walkers, parallel.device_keys(self.key("pretrain", t, i)), s.width
                )
                s.width = adapt_width(s.width, float(pmove[0]), self.config.mcmc.target_acceptance)
                progress.update(loss=f"{float(loss[0]):.2e}", pmove=float(pmove[0]))

    def burn_in(self, n_steps: int) -> None:
        """Equilibrates every system's walkers under the current parameters."""
        if n_steps == 0:
            return
        with Progress(n_steps * len(self.systems), "burn-in") as progress:
            for i, s in enumerate(self.samplers):
                for t in range(n_steps):
                    while True:
                        walkers, pmove, needed = self.sample(self.params, self.data[i], s.walkers, parallel.device_keys(self.key("burn_in", t, i)), s.width)
                        if self._lists_held(i, needed):
                            break
                    s.walkers = walkers
                    s.width = adapt_width(s.width, float(pmove[0]), self.config.mcmc.target_acceptance)
                    progress.update(pmove=float(pmove[0]))

    def _try_step(self, t: int, i: int, attempt: int, opt_state, optimizer):
        """Samples system i and computes step t's update without committing either.
        Returns (walkers, params, opt_state, energy, variance, pmove)."""
        s = self.samplers[i]
        while True:
            walkers, pmove, needed = self.sample(self.params, self.data[i], s.walkers, parallel.device_keys(self.key("sample", t, i, attempt=attempt)), s.width)
            if self._lists_held(i, needed):
                break
        # the optimizers donate their inputs: they get copies, so a rejected step leaves ours valid
        params, opt_state, stats = optimizer.step(parallel.copy(self.params), parallel.copy(opt_state),
                                                  self.key("optimizer", t, i, attempt=attempt), (self.data[i], walkers))
        return walkers, params, opt_state, float(stats.energy[0]), float(stats.variance[0]), float(pmove[0])

    def optimize(self, start: int, opt_state, optimizer) -> None:
        """Steps start .. optimization.steps - 1. A rejected step (vmc/rejection.py) leaves
        the state as it was and is retried with fresh random numbers; SIGINT/SIGTERM end the
        loop after the current step with a checkpoint (vmc/signals.py)."""
        cfg = self.config.optimization
        multi = len(self.systems) > 1
        guard = StepGuard(cfg.reject_jump, {sy.id: (rows["energy"], rows["variance"]) for sy in self.systems
                                            for rows in [self.energies.train(sy.id)]})
        t, rejected = start, 0
        # each system's running estimate spans about the last 100 steps of the whole run
        with Progress(cfg.steps, "optimize", initial=start, window=max(10, 100 // len(self.systems))) as progress, signals.deferred():
            while t < cfg.steps:
                if signals.pending() is not None:
                    self.save(t, "optimize", opt_state)
                    raise Interrupted(signals.pending(), f"stopped by {signals.name(signals.pending())} at step {t} with a checkpoint; "
                                                         f"`vmc run {self.run_dir}` resumes")
                credit = self.scheduler.credit.copy()
                i = self.scheduler.next()
                system = self.systems[i]
                t0 = time.perf_counter()
                walkers, params, new_state, energy, variance, pmove = self._try_step(t, i, rejected, opt_state, optimizer)
                reason = guard.reason(system.id, energy, variance)
                if reason is None and not parallel.all_finite(params):
                    reason = "its new parameters are not finite"
                if reason is not None:
                    rejected += 1
                    self.scheduler.credit = credit
                    self.energies.count_rejected(system.id)
                    log(f"step {t} ({system.id}) rejected: {reason}; retrying with fresh samples ({rejected}/{cfg.max_rejected})")
                    if rejected >= cfg.max_rejected:
                        self.save(t, "optimize", opt_state)
                        raise Diverged(f"optimization diverged: {rejected} consecutive steps rejected at step {t} ({system.id}); "
                                       f"{checkpoint.checkpoint_path(self.ckpt_dir, t)} holds the last good state: start a new run "
                                       f"from it with a lower learning rate (--from that file --out NEW)")
                    continue
                rejected = 0
                self.samplers[i].walkers, self.params, opt_state = walkers, params, new_state
                guard.accept(system.id, energy, variance)
                self.energies.append_train(system.id, step=t, energy=energy, variance=variance, pmove=pmove, wall_time=time.perf_counter() - t0)
                self.samplers[i].width = adapt_width(self.samplers[i].width, pmove, self.config.mcmc.target_acceptance)
                progress.update(energy=energy, series=system.id if multi else None, pmove=pmove)
                t += 1
                if t % self.config.checkpoint.every == 0 or t == cfg.steps:
                    self.save(t, "optimize" if t < cfg.steps else "evaluate", opt_state)

    def evaluate(self) -> dict[str, tuple[float, float]]:
        cfg = self.config.evaluation
        if cfg.steps == 0:
            return {}
        if not parallel.all_finite(self.params):
            raise Diverged("the network parameters are not finite; nothing was evaluated")
        step = make_eval_step(self.mcmc_step, self.local_energy)
        results = {}
        for i, (system, s) in enumerate(zip(self.systems, self.samplers)):
            energies = []
            with Progress(cfg.burn_in + cfg.steps, f"evaluate {system.id}") as progress:
                for t in range(cfg.burn_in + cfg.steps):
                    while True:
                        walkers, pmove, energy, _, needed = step(self.params, self.data[i], s.walkers, parallel.device_keys(self.key("evaluate", t, i)), s.width)
                        if self._lists_held(i, needed):
                            break
                    s.walkers = walkers
                    if t < cfg.burn_in:
                        s.width = adapt_width(s.width, float(pmove[0]), self.config.mcmc.target_acceptance)
                        progress.update(pmove=float(pmove[0]))
                    else:
                        energies.append(float(energy[0]))
                        progress.update(energy=energies[-1], pmove=float(pmove[0]))
            energies = np.array(energies)
            if not np.all(np.isfinite(energies)):
                raise Diverged(f"evaluation of {system.id}: the local energy is not finite at evaluation step "
                               f"{int(np.argmin(np.isfinite(energies)))}; nothing was written")
            results[system.id] = self.energies.write_eval(system, energies)
        self._report(results)
        return results

    def _report(self, results: dict[str, tuple[float, float]]) -> None:
        for system in self.systems:
            e, err = results[system.id]
            per = f", {format_energy(e / system.n_cells, err / system.n_cells)} Ha per cell" if system.periodic else ""
            print(f"{system.id}: E = {format_energy(e, err)} Ha{per}", flush=True)
        geometries = {}
        for system in self.systems:
            geometries.setdefault(system.geometry, []).append(system)
        for gid, members in geometries.items():
            if members[0].periodic:
                e, err = self.energies.write_geometry(gid, members, [results[m.id] for m in members])
                print(f"{gid}: twist-averaged E = {format_energy(e, err)} Ha per cell ({len(members)} twist{'s' if len(members) > 1 else ''})", flush=True)
            else:
                self.energies.write_geometry(gid, members, [results[m.id] for m in members])

    # ------------------------------------------------------------------ checkpoints

    def save(self, step: int, phase: str, opt_state) -> None:
        if jax.process_index() != 0:
            return
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.save(
            checkpoint.checkpoint_path(self.ckpt_dir, step),
            step=step,
            phase=phase,
            params=parallel.unreplicate(self.params),
            opt_state=None if opt_state is None else parallel.unreplicate(opt_state),
            systems={sy.id: dict(walkers=parallel.unshard(sa.walkers), width=np.array(sa.width)) for sy, sa in zip(self.systems, self.samplers)},
            scheduler=self.scheduler.credit,
            config_text=self.config_text,
        )
        checkpoint.prune(self.ckpt_dir, self.config.checkpoint.keep)

    def restore(self, opt_state_template):
        """Loads the newest readable checkpoint of this run; returns (step, opt_state) or None.
        A damaged newest checkpoint is reported and the one before it is used."""
        for path in checkpoint.list_checkpoints(self.ckpt_dir):
            try:
                state = checkpoint.load(path, parallel.unreplicate(self.params),
                                        None if opt_state_template is None else parallel.unreplicate(opt_state_template))
            except InputError as e:
                log(f"warning: skipping checkpoint: {e}")
                continue
            self.params = parallel.replicate(state["params"])
            for system, sampler in zip(self.systems, self.samplers):
                saved = state["systems"].get(system.id)
                if saved is None or saved["walkers"].shape != parallel.unshard(sampler.walkers).shape:
                    raise InputError(f"{path}: its walkers do not fit this run (system {system.id!r}, mcmc.walkers, device count)")
                sampler.walkers = parallel.shard(saved["walkers"])
                sampler.width = float(saved["width"])
            for i in range(len(self.systems)):
                self._size_lists(i)
            self.scheduler = Scheduler(self.scheduler.weights, state["scheduler"])
            log(f"resuming from {path} (step {state['step']})")
            opt_state = None if opt_state_template is None else parallel.replicate(state["opt_state"])
            return state["step"], opt_state
        return None

    # ------------------------------------------------------------------ the whole run

    def execute(self) -> dict[str, tuple[float, float]]:
        if self.evaluate_only:
            self.burn_in(self.config.evaluation.burn_in)
            return self._finish(self.evaluate())
        train = self.config.optimization.steps > 0 and self.ansatz.name != "hf"
        optimizer = opt_state = None
        if train:
            loss = make_energy_loss(self.ansatz.log_psi, self.local_energy, self.config.optimization.clip_width)
            optimizer = make_optimizer(loss, self.config.optimization)
            opt_state = optimizer.init(self.params, self.key("optimizer", 0, 0, per_host=False), self.batch(0))
        resumed = self.restore(opt_state)
        if resumed is None:
            self.pretrain()
            if not parallel.all_finite(self.params):
                raise Diverged("pretraining made the network parameters non-finite; lower pretraining.learning_rate")
            self.burn_in(self.config.mcmc.burn_in)
            start = 0
            self.save(0, "optimize" if train else "evaluate", opt_state)
        else:
            start, opt_state = resumed
        self.energies.truncate_train(start)
        # by the step count, not the saved phase: a finished run resumed with a larger
        # optimization.steps trains on to it
        if train and start < self.config.optimization.steps:
            self.optimize(start, opt_state, optimizer)
        return self._finish(self.evaluate())

    def _finish(self, results):
        """/eos in energies.h5 and report.html (vmc/report.py); a failure there is a warning."""
        if jax.process_index() == 0:
            from vmc.report import finish_run

            finish_run(self.run_dir, log)
        return results
