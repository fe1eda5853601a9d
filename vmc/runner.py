"""One run, start to end:

    config -> systems -> Hartree–Fock -> ansatz -> pretraining -> burn-in
           -> optimization (one parameter set, systems picked by weight) -> evaluation
           -> energies.h5, checkpoints/

The same path serves one system and many, training and evaluation-only runs, fresh starts,
resumed runs and fine-tuning from another run's parameters.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import yaml

from vmc import checkpoint, parallel, rundir, signals
from vmc.ansatz import make_ansatz
from vmc.baseline import hartree_fock
from vmc.config import Config, dump_config, make_config
from vmc.errors import Diverged, InputError, Interrupted, OutputError, os_reason
from vmc.evaluation import make_eval_step
from vmc.finetune import starting_point
from vmc.kfac_tags import require as require_kfac
from vmc.mcmc import init_walkers
from vmc.outputs import EnergyFile, read_recompiles, read_train_rows
from vmc.pretrain import make_pretrain_step
from vmc.progress import Progress, format_energy, log
from vmc.rejection import StepGuard
from vmc.scheduling import Scheduler, system_weights
from vmc.stats import hartree_fock_warning
from vmc.system_data import make_system_data
from vmc.systems import resolve_config
from vmc.training import DeviceData, Trainer, TrainState, step_key


def _resolved_mapping(raw: dict) -> dict:
    """A stored run config, resolved as a new run's would be (for the resume check)."""
    return resolve_config(make_config(raw))[0].model_dump(mode="json")


class Run:
    """A run directory being filled. `params_from`: a checkpoint whose network parameters
    start this run (fine-tuning); `evaluate_only`: no pretraining and no optimization.

    The training state (vmc/training.py) is `self.state`; every phase maps it to a new one.
    In a multi-host run every process runs this same code on its own walkers; only process 0
    writes files (vmc/parallel.py)."""

    def __init__(self, config: Config, run_dir: Path, params_from: Path | None = None, evaluate_only: bool = False,
                 only: int | None = None):
        jax.config.update("jax_enable_x64", config.precision == "float64")
        parallel.initialize(config.distributed)
        # everything that can be checked cheaply is checked before Hartree–Fock
        self.config, self.systems = resolve_config(config)
        if only is not None:  # one of the config's systems (`vmc plan` times the largest)
            self.systems = [self.systems[only]]
        # phase -> (seconds of its first step, with compilation; seconds per step after it)
        self.timings: dict[str, tuple[float | None, float | None]] = {}
        # the checkpoint whose parameters start the run (--from, checkpoint.restore), recorded
        # with its hash in config.yaml; None when the run's own checkpoints supersede it
        self.config, self.params_from = starting_point(self.config, Path(run_dir), params_from, evaluate_only)
        self.evaluate_only = evaluate_only
        if not evaluate_only and self.config.optimization.optimizer == "kfac":
            require_kfac()
        self.n_per_device = parallel.check_walkers(config.mcmc.walkers)
        parallel.check_walker_memory(self.n_per_device, [s.n_electrons for s in self.systems], jnp.zeros(()).dtype.itemsize)
        self.elements = self.config.model.elements
        self.config_text = dump_config(self.config)
        self.run_dir = Path(run_dir)
        self.ckpt_dir = self.run_dir / "checkpoints"
        self.writer = parallel.is_writer()
        # one writer per run directory, and only for the run it holds (vmc/rundir.py)
        self.directory = None
        if self.writer:
            self.directory = rundir.claim(self.run_dir, self.config.model_dump(mode="json"), _resolved_mapping)
        if not evaluate_only:
            self._check_checkpoints_config()

        # the input is good: say what this run computes on before the work starts
        log(f"{parallel.describe_devices()}; {self.n_per_device} walkers per device")
        self.ansatz = make_ansatz(self.config.model, self.elements)
        self.baselines = [self._hartree_fock(s) for s in self.systems]
        data = [parallel.replicate(make_system_data(s, *self.ansatz.prepare(s, b), self.elements)) for s, b in zip(self.systems, self.baselines)]

        if self.writer:
            try:
                (self.run_dir / "config.yaml").write_text(self.config_text)
            except OSError as e:
                raise OutputError(f"{self.run_dir / 'config.yaml'} could not be written ({os_reason(e)})") from None
            self.energies = EnergyFile(self.run_dir / "energies.h5", self.systems, self.config_text, [b.energy for b in self.baselines])
        parallel.barrier("energies.h5 created")
        recompiles = [read_recompiles(self.run_dir / "energies.h5", s.id) for s in self.systems]
        self.data = DeviceData(self.ansatz, data, recompiles, self._lists_sized)
        pretrain = not evaluate_only and self.config.pretraining.steps > 0 and self.params_from is None
        self.trainer = Trainer(self.ansatz, self.config, self.data, system_weights(self.systems), train=not evaluate_only, pretrain=pretrain)

        key = jax.random.PRNGKey(config.seed)
        walkers = [self._init_walkers(i) for i in range(len(self.systems))]
        for i in range(len(self.systems)):
            self.data.fit(i, walkers[i])
        self.state = self.trainer.init_state(parallel.replicate(self._init_params(key, self.data[0], walkers[0])), walkers, key)
        log(self.trainer.memory.describe())
        if self.writer:
            self.energies.write_memory(self.trainer.memory)
        signals.check()  # a signal swallowed during set-up (vmc/signals.py)

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

    def _init_walkers(self, i: int):
        n_local = self.n_per_device * jax.local_device_count()
        rng = np.random.default_rng([self.config.seed, i, jax.process_index()])
        walkers = init_walkers(self.systems[i], n_local, rng, self.config.mcmc.init_width)
        return parallel.shard(walkers.astype(jnp.zeros(()).dtype))

    def _init_params(self, key, data, walkers):
        r0 = parallel.unshard(walkers)[0]
        params = self.ansatz.init(step_key(key, "init", 0, 0), parallel.unreplicate(data), jnp.asarray(r0))
        if self.params_from is not None:
            params = checkpoint.load_params(self.params_from, params)
            log(f"network parameters from {self.params_from}")
        return params

    def _lists_sized(self, i: int, data, recompiles: int, grew: bool) -> None:
        caps = data.features.capacities
        if grew:
            log(f"{self.systems[i].id}: a walker needed longer neighbour lists; now {caps} (recompile {recompiles})")
        if self.writer:
            self.energies.write_lists(self.systems[i].id, caps.FIELDS, caps.as_tuple(), recompiles)

    # ------------------------------------------------------------------ phases

    def pretrain(self) -> None:
        cfg = self.config.pretraining
        if not self.trainer.pretrain:  # no steps, a fine-tune, or nothing to train
            return
        plan = self.trainer.memory
        tx, step = make_pretrain_step(self.ansatz, self.config.mcmc.steps, cfg.learning_rate, plan.batch("pretraining"), plan.batch("sampling"))
        st = self.state
        params, opt_state = st.params, parallel.pmap(tx.init)(st.params)
        scheduler = Scheduler(system_weights(self.systems))
        with Progress(cfg.steps, "pretrain") as progress:
            for t in range(cfg.steps):
                signals.check()
                i = scheduler.next()
                params, opt_state, walkers, loss, pmove = step(
                    params, opt_state, self.data[i], st.walkers[i], parallel.device_keys(step_key(st.key, "pretrain", t, i)), st.widths[i]
                )
                pmove = parallel.host_value(pmove)
                st = st.with_walkers(i, walkers, self.trainer.adapt(st.widths[i], pmove))
                progress.update(loss=f"{parallel.host_value(loss):.2e}", pmove=pmove)
        self.timings["pretraining"] = progress.timing()
        self.state = dataclasses.replace(st, params=params)

    def burn_in(self, n_steps: int) -> None:
        """Equilibrates every system's walkers under the current parameters."""
        if n_steps == 0:
            return
        with Progress(n_steps * len(self.systems), "burn-in") as progress:
            for i in range(len(self.systems)):
                for t in range(n_steps):
                    signals.check()
                    self.state, pmove = self.trainer.burn_in(self.state, i, t)
                    progress.update(pmove=pmove)
        self.timings["burn-in"] = progress.timing()

    def optimize(self) -> None:
        """Steps state.step .. optimization.steps - 1. A rejected step (vmc/rejection.py) keeps
        the state as it was and is retried with fresh random numbers; SIGINT/SIGTERM end the
        loop after the current step with a checkpoint (vmc/signals.py)."""
        cfg = self.config.optimization
        multi = len(self.systems) > 1
        # every process decides rejections alike: from the same energies, read after process 0 wrote them
        guard = StepGuard(cfg.reject_jump, {sy.id: (rows["energy"], rows["variance"]) for sy in self.systems
                                            for rows in [read_train_rows(self.run_dir / "energies.h5", sy.id)]})
        rejected = 0
        # each system's running estimate spans about the last 100 steps of the whole run
        with Progress(cfg.steps, "optimize", initial=self.state.step, window=max(10, 100 // len(self.systems))) as progress, signals.deferred():
            while self.state.step < cfg.steps:
                t = self.state.step
                if signals.pending() is not None:
                    self.save("optimize")
                    raise Interrupted(signals.pending(), f"stopped by {signals.name(signals.pending())} at step {t} with a checkpoint; "
                                                         f"`vmc run {self.run_dir}` resumes")
                t0 = time.perf_counter()
                new, result = self.trainer.step(self.state, attempt=rejected)
                system = self.systems[result.system]
                reason = guard.reason(system.id, result.energy, result.variance)
                if reason is None and not parallel.all_finite(new.params):
                    reason = "its new parameters are not finite"
                if reason is not None:
                    rejected += 1
                    if self.writer:
                        self.energies.count_rejected(system.id)
                    log(f"step {t} ({system.id}) rejected: {reason}; retrying with fresh samples ({rejected}/{cfg.max_rejected})")
                    if rejected >= cfg.max_rejected:
                        self.save("optimize")
                        raise Diverged(_diverged_message(rejected, t, system.id, checkpoint.checkpoint_path(self.ckpt_dir, t),
                                                         np.isfinite(result.energy)))
                    continue
                rejected = 0
                self.state = new
                guard.accept(system.id, result.energy, result.variance)
                if self.writer:
                    self.energies.append_train(system.id, step=t, energy=result.energy, variance=result.variance, pmove=result.pmove,
                                               wall_time=time.perf_counter() - t0)
                progress.update(energy=result.energy, series=system.id if multi else None, pmove=result.pmove)
                if new.step % self.config.checkpoint.every == 0 or new.step == cfg.steps:
                    self.save("optimize" if new.step < cfg.steps else "evaluate")
        self.timings["optimization"] = progress.timing()

    def evaluate(self, report: bool = True) -> dict[str, tuple[float, float]]:
        """Evaluates every system and writes the energies; report: print them (and the
        Hartree–Fock warnings) and write the geometries' twist averages."""
        cfg = self.config.evaluation
        if cfg.steps == 0:
            return {}
        if not parallel.all_finite(self.state.params):
            raise Diverged("the network parameters are not finite; nothing was evaluated")
        step = make_eval_step(self.trainer.mcmc_step, self.trainer.local_energy)
        fingerprint = evaluation_fingerprint(self.state.params, cfg.burn_in, cfg.steps, self.config.mcmc.walkers)
        results = {}
        for i, system in enumerate(self.systems):
            # a run stopped during its evaluation keeps the systems it finished: each system's
            # evaluation depends only on the parameters and its own walkers and keys, so the
            # rest resume exactly as an uninterrupted run would have computed them
            kept = self.energies.finished_eval(system, fingerprint) if self.writer else None
            if parallel.host_min(int(kept is not None or not self.writer)):
                results[system.id] = kept
                if self.writer:
                    log(f"evaluation of {system.id}: kept from before the interruption")
                continue
            energies, moved = [], 0.0
            st = self.state
            with Progress(cfg.burn_in + cfg.steps, f"evaluate {system.id}") as progress:
                for t in range(cfg.burn_in + cfg.steps):
                    signals.check()
                    keys = parallel.device_keys(step_key(st.key, "evaluate", t, i))
                    walkers, pmove, energy, _ = self.data.until_held(i, lambda data: step(st.params, data, st.walkers[i], keys, st.widths[i]))
                    pmove = parallel.host_value(pmove)
                    if t < cfg.burn_in:
                        st = st.with_walkers(i, walkers, self.trainer.adapt(st.widths[i], pmove))
                        progress.update(pmove=pmove)
                    else:
                        st = st.with_walkers(i, walkers, st.widths[i])
                        energies.append(parallel.host_value(energy))
                        moved = max(moved, pmove)
                        progress.update(energy=energies[-1], pmove=pmove)
            self.timings["evaluation"] = progress.timing()
            self.state = st
            energies = np.array(energies)
            if not np.all(np.isfinite(energies)):
                raise Diverged(f"evaluation of {system.id}: the local energy is not finite at evaluation step "
                               f"{int(np.argmin(np.isfinite(energies)))}; nothing was written")
            if not moved > 0:  # also NaN: the mean of frozen walkers is no estimate of the energy
                raise Diverged(f"evaluation of {system.id}: the sampler accepted no move in {cfg.steps} steps "
                               f"(proposal width {st.widths[i]!r} bohr), so its energy is not an estimate; nothing was written")
            results[system.id] = self.energies.write_eval(system, energies, fingerprint) if self.writer else None
        if self.writer and report:
            self._report(results)
        return results

    def _report(self, results: dict[str, tuple[float, float]]) -> None:
        for system, baseline in zip(self.systems, self.baselines):
            e, err = results[system.id]
            per = f", {format_energy(e / system.n_cells, err / system.n_cells)} Ha per cell" if system.periodic else ""
            print(f"{system.id}: E = {format_energy(e, err)} Ha{per}", flush=True)
            n = system.n_cells  # 1 for molecules
            warning = hartree_fock_warning(system.id, e / n, err / n, baseline.energy / n, unit="Ha per cell" if system.periodic else "Ha")
            if warning:
                log(warning)
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

    def save(self, phase: str) -> None:
        """Checkpoints the training state: every host's walkers (gathered: a collective, so every
        process calls this), written by process 0 only."""
        st = self.state
        walkers = [parallel.gather_walkers(w) for w in st.walkers]
        if self.writer:
            self.ckpt_dir.mkdir(parents=True, exist_ok=True)
            checkpoint.save(
                checkpoint.checkpoint_path(self.ckpt_dir, st.step),
                step=st.step,
                phase=phase,
                params=parallel.unreplicate(st.params),
                opt_state=None if st.opt_state is None else parallel.unreplicate(st.opt_state),
                systems={sy.id: dict(walkers=w, width=np.array(width)) for sy, w, width in zip(self.systems, walkers, st.widths)},
                scheduler=st.credit,
                key=np.asarray(st.key),
                config_text=self.config_text,
            )
            checkpoint.prune(self.ckpt_dir, self.config.checkpoint.keep)
        parallel.barrier(f"checkpoint {st.step}")

    def restore(self) -> bool:
        """Loads the newest usable checkpoint of this run into the state; False if there is
        none. A damaged checkpoint (any field: vmc/checkpoint.py `load`), or one without walkers
        of this run's systems, is reported and the one before it is used; when checkpoints
        exist but none is usable, InputError (a fresh start would drop the run's training rows).

        The walkers are re-split over this run's hosts and devices, whatever wrote them. If
        their total differs from mcmc.walkers, this run's walkers are drawn from the stored ones
        (with repeats only when more are needed) and equilibrated by mcmc.burn_in steps."""
        st = self.state
        skipped = []
        for path in checkpoint.list_checkpoints(self.ckpt_dir):
            try:
                saved = checkpoint.load(path, parallel.unreplicate(st.params), None if st.opt_state is None else parallel.unreplicate(st.opt_state),
                                        systems={s.id: s.n_electrons for s in self.systems}, scheduler=np.asarray(st.credit),
                                        key=np.asarray(st.key))
            except InputError as e:
                log(f"warning: skipping checkpoint: {e}")
                skipped.append(path)
                continue
            walkers, widths, resampled = [], [], []
            for i, system in enumerate(self.systems):
                stored = saved["systems"][system.id]  # (n, n_electrons, 3), checked by checkpoint.load
                w = stored["walkers"]
                if w.shape[0] != self.config.mcmc.walkers:
                    rng = np.random.default_rng([self.config.seed, i, saved["step"]])
                    w = w[rng.choice(w.shape[0], self.config.mcmc.walkers, replace=self.config.mcmc.walkers > w.shape[0])]
                    resampled.append(f"{system.id}: {stored['walkers'].shape[0]} -> {w.shape[0]}")
                walkers.append(parallel.split_walkers(w.astype(jnp.zeros(()).dtype)))
                widths.append(float(stored["width"]))
            for i, w in enumerate(walkers):
                self.data.fit(i, w)
            key = st.key if saved.get("key") is None else jnp.asarray(saved["key"], st.key.dtype)
            self.state = TrainState(params=parallel.replicate(saved["params"]),
                                    opt_state=None if st.opt_state is None else parallel.replicate(saved["opt_state"]),
                                    walkers=tuple(walkers), widths=tuple(widths), credit=np.asarray(saved["scheduler"], float),
                                    step=saved["step"], key=key)
            log(f"resuming from {path} (step {saved['step']})")
            if resampled:
                log(f"the checkpoint holds another number of walkers than mcmc.walkers = {self.config.mcmc.walkers} "
                    f"({', '.join(resampled)}): drawn from the stored ones and equilibrated for {self.config.mcmc.burn_in} steps")
                self.burn_in(self.config.mcmc.burn_in)
            return True
        if skipped:
            raise InputError(f"{self.ckpt_dir}: no usable checkpoint (all {len(skipped)} skipped, see the warnings above); nothing "
                             "was changed. Only if they are beyond repair, move them away to start this run again from the "
                             "beginning (their training is then lost)")
        return False

    def _check_checkpoints_config(self) -> None:
        """Refuses, before anything is written, to resume from checkpoints written under
        another config than this run's in a key that shapes the trajectory: a config.yaml
        edited by hand would otherwise be recorded as the config of a run it never made. The
        newest checkpoint whose config reads is compared; damaged ones are left to `restore`."""
        for path in checkpoint.list_checkpoints(self.ckpt_dir):
            try:
                written = _resolved_mapping(yaml.safe_load(checkpoint.read_config_text(path)))
            except InputError:
                continue
            differ = rundir.differing_keys(written, self.config.model_dump(mode="json"))
            if differ:
                raise InputError(f"{self.run_dir / 'config.yaml'}: differs in {', '.join(differ[:6])} from the config its "
                                 f"checkpoint {path} was written with; put config.yaml back as it was, or start a new run "
                                 f"from that checkpoint's parameters with --from {path} --out NEW")
            return

    # ------------------------------------------------------------------ the whole run

    def execute(self) -> dict[str, tuple[float, float]]:
        if self.evaluate_only:
            self.burn_in(self.config.evaluation.burn_in)
            return self._finish(self.evaluate())
        train = self.trainer.optimizer is not None
        if not self.restore():
            self.pretrain()
            if not parallel.all_finite(self.state.params):
                raise Diverged("pretraining made the network parameters non-finite; lower pretraining.learning_rate")
            self.burn_in(self.config.mcmc.burn_in)
            self.save("optimize" if train else "evaluate")
        if self.writer:
            self.energies.truncate_train(self.state.step)
        parallel.barrier("energies.h5 truncated")
        # by the step count, not the saved phase: a finished run resumed with a larger
        # optimization.steps trains on to it
        if train and self.state.step < self.config.optimization.steps:
            self.optimize()
        return self._finish(self.evaluate())

    def _finish(self, results):
        """/eos in energies.h5 and report.html (vmc/report.py); a failure there is a warning."""
        if self.writer:
            from vmc.report import finish_run

            finish_run(self.run_dir, log)
        return results


def evaluation_fingerprint(params, burn_in: int, steps: int, walkers: int) -> str:
    """What an evaluation computes from: sha256 of the network parameters (every leaf's path,
    dtype, shape and bytes, in tree order) and the evaluation's settings."""
    digest = hashlib.sha256(f"burn_in={burn_in} steps={steps} walkers={walkers}".encode())
    for path, leaf in jax.tree_util.tree_leaves_with_path(parallel.unreplicate(params)):
        x = np.ascontiguousarray(leaf)
        digest.update(f"{jax.tree_util.keystr(path)} {x.dtype} {x.shape}".encode())
        digest.update(x.tobytes())
    return digest.hexdigest()


def _diverged_message(rejected: int, step: int, system: str, path: Path, energy_finite: bool) -> str:
    """What stopped the run, and what to do. The step's energy is that of the state before its
    update: when it is not finite at step 0, no update has been made yet, so no learning rate
    is to blame (docs/robustness.md)."""
    head = f"optimization diverged: {rejected} consecutive steps rejected at step {step} ({system}); "
    if step == 0 and not energy_finite:
        return head + (f"the starting wavefunction (after pretraining, or from --from) gives non-finite local energies "
                       f"before any update, so the optimizer is not the cause (check the pretraining and the model settings); "
                       f"{path} holds that state")
    return head + f"{path} holds the last good state: start a new run from it with a lower learning rate (--from that file --out NEW)"
