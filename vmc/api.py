"""Python API for notebooks and scripts."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from vmc.config import Config, load_yaml, make_config
from vmc.errors import InputError, Interrupted


def default_run_dir(config_source: Any, suffix: str = "") -> Path:
    """runs/<config-stem>[-suffix]-<timestamp>."""
    stem = Path(config_source).stem if isinstance(config_source, (str, Path)) else "run"
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stem}{'-' + suffix if suffix else ''}-{stamp}"


def mole_to_spec(mol) -> dict:
    """An inline system spec (bohr) from a pyscf.gto.Mole."""
    coords = mol.atom_coords(unit="Bohr")
    return {
        "name": "molecule",
        "atoms": [[mol.atom_pure_symbol(i), [float(x) for x in coords[i]]] for i in range(mol.natm)],
        "unit": "bohr",
        "charge": int(mol.charge),
        "spin": int(mol.spin),
    }


def flatten_overrides(overrides: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'mcmc': {'walkers': 8}, 'seed': 1, 'optimization__steps': 5} -> dotted keys."""
    flat = {}
    for key, value in overrides.items():
        key = prefix + key.replace("__", ".")
        if isinstance(value, dict) and key != "system":
            flat.update(flatten_overrides(value, key + "."))
        else:
            flat[key] = value
    return flat


def resolve_run_dir(config: Any, out: str | Path | None) -> tuple[Any, Path]:
    """A run directory given as CONFIG (to resume it) becomes its config.yaml and itself."""
    if isinstance(config, (str, Path)) and Path(config).is_dir():
        run_dir = Path(config)
        if not (run_dir / "config.yaml").is_file():
            raise InputError(f"{run_dir}: a directory but not a run directory (no config.yaml)")
        if out is not None and Path(out) != run_dir:
            raise InputError(f"--out {out}: a run directory resumes in place; leave --out out")
        return run_dir / "config.yaml", run_dir
    return config, Path(out) if out is not None else default_run_dir(config)


def build_config(config: Any, overrides: dict[str, Any]) -> Config:
    """Config from a path, mapping or Config plus overrides; a pyscf Mole for `system` is accepted."""
    overrides = dict(overrides)
    system = overrides.pop("system", None)
    if system is not None and hasattr(system, "atom_coords"):
        if isinstance(system.basis, str):
            overrides.setdefault("baseline.basis", system.basis)
        system = mole_to_spec(system)
    flat = flatten_overrides(overrides)
    if system is not None:
        flat["system"] = system
    return make_config(config, flat)


def explicit_keys(overrides: dict[str, Any]) -> set[str]:
    """The dotted config keys that `overrides` (--set, keyword arguments) set explicitly: a
    fine-tune's network settings come from its checkpoint unless set so (vmc/finetune.py)."""
    overrides = dict(overrides)
    system = overrides.pop("system", None)
    keys = set(flatten_overrides(overrides))
    if system is not None:
        keys.add("system")
        if hasattr(system, "atom_coords") and isinstance(system.basis, str):
            keys.add("baseline.basis")  # build_config takes the Mole's basis
    return keys


def run(config: str | Path | dict | Config | None = None, *, out: str | Path | None = None,
        params_from: str | Path | None = None, **overrides) -> Path:
    """Runs a calculation and returns its run directory.

    config: path to a YAML file, a mapping, a Config, or an existing run directory (resumed).
    params_from: a checkpoint whose network parameters start the run (fine-tuning, as
        `checkpoint.restore`): the settings that shape them come from the checkpoint's config,
        and an explicit override of one must agree with it (vmc/finetune.py).
    overrides: config keys, as nested mappings (mcmc={'walkers': 256}), double-underscore
        names (mcmc__walkers=256) or dotted names (**{'mcmc.walkers': 256}); `system` may be a
        pyscf.gto.Mole.
    """
    from vmc.finetune import prepare

    config, run_dir = resolve_run_dir(config, out)
    cfg = build_config(config, overrides)
    # --from / checkpoint.restore: the network's settings from the checkpoint, the source recorded
    cfg = prepare(cfg, run_dir, params_from, explicit_keys(overrides))
    _execute(cfg, run_dir)
    return run_dir


def _execute(cfg: Config, run_dir: Path, **kwargs) -> None:
    """One run with SIGINT/SIGTERM handled (vmc/signals.py) and its directory released after."""
    from vmc import signals
    from vmc.runner import Run

    with signals.handled():
        run = None
        try:
            run = Run(cfg, run_dir, **kwargs)
            run.execute()
        except Interrupted as e:
            raise Interrupted(e.signum, _stopped_message(str(e), run_dir)) from None
        finally:
            if run is not None:
                run.close()


def _stopped_message(message: str, run_dir: Path) -> str:
    """A stop signal's message, completed with what a resume of run_dir will do (the
    optimization loop's own message already says it)."""
    from vmc.checkpoint import checkpoint_step, list_checkpoints

    if "`vmc run" in message:
        return message
    saved = list_checkpoints(run_dir / "checkpoints")
    if saved:
        return f"{message}; `vmc run {run_dir}` resumes from its checkpoint at step {checkpoint_step(saved[0])}"
    if (run_dir / "config.yaml").is_file():
        return f"{message} before the run's first checkpoint; `vmc run {run_dir}` starts it again (Hartree–Fock is cached)"
    return f"{message} before anything of the run was written; run the same command again"


def evaluate(checkpoint_path: str | Path, config: str | Path | dict | None = None, *,
             out: str | Path | None = None, **overrides) -> Path:
    """Evaluation-only run of a checkpoint's parameters, on its own systems or on `config`'s;
    the settings that shape the parameters come from the checkpoint (vmc/finetune.py)."""
    import yaml

    from vmc.checkpoint import read_config_text
    from vmc.finetune import prepare

    checkpoint_path = Path(checkpoint_path)
    source = config if config is not None else yaml.safe_load(read_config_text(checkpoint_path))
    cfg = build_config(source, overrides)
    run_dir = Path(out) if out is not None else default_run_dir(config if config is not None else checkpoint_path, "eval")
    cfg = prepare(cfg, run_dir, checkpoint_path, explicit_keys(overrides), evaluate=True)
    _execute(cfg, run_dir, evaluate_only=True)
    return run_dir


__all__ = ["run", "evaluate", "Config", "load_yaml"]
