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

from vmc import checkpoint, parallel
from vmc.ansatz import make_ansatz
from vmc.baseline import hartree_fock
from vmc.config import Config, dump_config
from vmc.errors import InputError
from vmc.evaluation import make_eval_step
from vmc.hamiltonian import make_batch_local_energy
from vmc.loss import make_energy_loss
from vmc.mcmc import adapt_width, init_walkers, make_mcmc_step
from vmc.optimizers import make_optimizer
from vmc.outputs import EnergyFile
from vmc.pretrain import make_pretrain_step
from vmc.progress import Progress, format_energy
from vmc.scheduling import Scheduler, system_weights
from vmc.system_data import make_system_data
from vmc.systems import build_systems, resolve_specs, specs_to_config

# Independent random streams: key = fold_in(fold_in(fold_in(seed, purpose), step), system).
PURPOSES = {"init": 0, "pretrain": 1, "burn_in": 2, "sample": 3, "optimizer": 4, "evaluate": 5}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def default_elements(systems) -> list[str]:
    from pyscf.data.elements import charge

    return sorted({s for system in systems for s in system.symbols}, key=charge)


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
        specs = resolve_specs(config.system)
        self.config = config.model_copy(update={"system": specs_to_config(specs)}, deep=True)
        if params_from is None and config.checkpoint.restore:
            params_from = Path(config.checkpoint.restore)
        self.params_from = params_from
        self.evaluate_only = evaluate_only
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.systems = build_systems(specs)
        self.n_per_device = parallel.check_walkers(config.mcmc.walkers)
        self.elements = config.model.elements or default_elements(self.systems)
        self.config.model.elements = self.elements
        self.config_text = dump_config(self.config)
        self.root_key = jax.random.PRNGKey(config.seed)

        self.ansatz = make_ansatz(config.model, self.elements)
        self.baselines = [self._hartree_fock(s) for s in self.systems]
        self.data = [parallel.replicate(make_system_data(s, *self.ansatz.prepare(s, b), self.elements)) for s, b in zip(self.systems, self.baselines)]
        self.samplers = [self._init_sampler(i) for i in range(len(self.systems))]
        self.params = parallel.replicate(self._init_params())

        self.local_energy = make_batch_local_energy(self.ansatz.log_psi, config.local_energy_batch)
        self.mcmc_step = make_mcmc_step(self.ansatz.log_psi, config.mcmc.steps)
        self.sample = jax.pmap(self.mcmc_step, axis_name=parallel.AXIS, in_axes=(0, 0, 0, 0, None))
        self.scheduler = Scheduler(system_weights(self.systems))

        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(self.config_text)
        self.energies = EnergyFile(self.run_dir / "energies.h5", self.systems, self.config_text, [b.energy for b in self.baselines])

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

    def key(self, purpose: str, step: int, system: int, per_host: bool = True) -> jax.Array:
        k = jax.random.fold_in(jax.random.fold_in(jax.random.fold_in(self.root_key, PURPOSES[purpose]), step), system)
        return jax.random.fold_in(k, jax.process_index()) if per_host else k

    def batch(self, i: int):
        return self.data[i], self.samplers[i].walkers

    # ------------------------------------------------------------------ phases

    def pretrain(self) -> None:
        cfg = self.config.pretraining
        if cfg.steps == 0 or self.params_from is not None or self.ansatz.name == "hf":
            return
        tx, step = make_pretrain_step(self.ansatz, self.config.mcmc.steps, cfg.learning_rate)
        opt_state = jax.pmap(tx.init)(self.params)
        scheduler = Scheduler(system_weights(self.systems))
        progress = Progress(cfg.steps, "pretrain")
        for t in range(cfg.steps):
            i = scheduler.next()
            s = self.samplers[i]
            self.params, opt_state, s.walkers, loss, pmove = step(
                self.params, opt_state, self.data[i], s.walkers, parallel.device_keys(self.key("pretrain", t, i)), s.width
            )
            s.width = adapt_width(s.width, float(pmove[0]), self.config.mcmc.target_acceptance)
            progress.update(loss=f"{float(loss[0]):.2e}", pmove=float(pmove[0]))
        progress.close()

    def burn_in(self, n_steps: int) -> None:
        """Equilibrates every system's walkers under the current parameters."""
        if n_steps == 0:
            return
        progress = Progress(n_steps * len(self.systems), "burn-in")
        for i, s in enumerate(self.samplers):
            for t in range(n_steps):
                s.walkers, pmove = self.sample(self.params, self.data[i], s.walkers, parallel.device_keys(self.key("burn_in", t, i)), s.width)
                s.width = adapt_width(s.width, float(pmove[0]), self.config.mcmc.target_acceptance)
                progress.update(pmove=float(pmove[0]))
        progress.close()

    def optimize(self, start: int, opt_state, optimizer) -> None:
        cfg = self.config.optimization
        multi = len(self.systems) > 1
        # each system's running estimate spans about the last 100 steps of the whole run
        progress = Progress(cfg.steps, "optimize", initial=start, window=max(10, 100 // len(self.systems)))
        for t in range(start, cfg.steps):
            i = self.scheduler.next()
            s = self.samplers[i]
            t0 = time.perf_counter()
            s.walkers, pmove = self.sample(self.params, self.data[i], s.walkers, parallel.device_keys(self.key("sample", t, i)), s.width)
            self.params, opt_state, stats = optimizer.step(self.params, opt_state, self.key("optimizer", t, i), self.batch(i))
            energy = float(stats.energy[0])
            wall = time.perf_counter() - t0
            pmove = float(pmove[0])
            if not np.isfinite(energy):
                raise InputError(f"optimization diverged at step {t} on system {self.systems[i].id!r} (energy {energy}); "
                                 f"lower the learning rate or restart from {self.ckpt_dir}")
            self.energies.append_train(self.systems[i].id, step=t, energy=energy, variance=float(stats.variance[0]), pmove=pmove, wall_time=wall)
            s.width = adapt_width(s.width, pmove, self.config.mcmc.target_acceptance)
            progress.update(energy=energy, series=self.systems[i].id if multi else None, pmove=pmove)
            if (t + 1) % self.config.checkpoint.every == 0 or t + 1 == cfg.steps:
                self.save(t + 1, "optimize" if t + 1 < cfg.steps else "evaluate", opt_state)
        progress.close()

    def evaluate(self) -> dict[str, tuple[float, float]]:
        cfg = self.config.evaluation
        if cfg.steps == 0:
            return {}
        step = make_eval_step(self.mcmc_step, self.local_energy)
        results = {}
        for i, (system, s) in enumerate(zip(self.systems, self.samplers)):
            progress = Progress(cfg.burn_in + cfg.steps, f"evaluate {system.id}")
            energies = []
            for t in range(cfg.burn_in + cfg.steps):
                s.walkers, pmove, energy, _ = step(self.params, self.data[i], s.walkers, parallel.device_keys(self.key("evaluate", t, i)), s.width)
                if t < cfg.burn_in:
                    s.width = adapt_width(s.width, float(pmove[0]), self.config.mcmc.target_acceptance)
                    progress.update(pmove=float(pmove[0]))
                else:
                    energies.append(float(energy[0]))
                    progress.update(energy=energies[-1], pmove=float(pmove[0]))
            progress.close()
            results[system.id] = self.energies.write_eval(system, np.array(energies))
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
            self.scheduler = Scheduler(self.scheduler.weights, state["scheduler"])
            log(f"resuming from {path} (step {state['step']})")
            opt_state = None if opt_state_template is None else parallel.replicate(state["opt_state"])
            return state["step"], opt_state
        return None

    # ------------------------------------------------------------------ the whole run

    def execute(self) -> dict[str, tuple[float, float]]:
        if self.evaluate_only:
            self.burn_in(self.config.evaluation.burn_in)
            return self.evaluate()
        train = self.config.optimization.steps > 0 and self.ansatz.name != "hf"
        optimizer = opt_state = None
        if train:
            loss = make_energy_loss(self.ansatz.log_psi, self.local_energy, self.config.optimization.clip_width)
            optimizer = make_optimizer(loss, self.config.optimization)
            opt_state = optimizer.init(self.params, self.key("optimizer", 0, 0, per_host=False), self.batch(0))
        resumed = self.restore(opt_state)
        if resumed is None:
            self.pretrain()
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
        return self.evaluate()
