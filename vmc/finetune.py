"""Fine-tuning: runs that start from the network parameters of a checkpoint (`vmc run --from`,
`checkpoint.restore`, `vmc evaluate`).

A checkpoint's parameters fit only a network of the shape they were trained in, so a
fine-tune takes every setting that shapes them from the checkpoint's stored config, whatever
its own config file says; an explicit override (`--set`, a keyword of `vmc.run`) must agree
with the checkpoint:

    explicit override > checkpoint > config file.

Everything else (systems, cutoffs, MCMC, optimizer, steps) is the run's own. The run records
its source in its config.yaml (`checkpoint.restore`, an absolute path, and
`checkpoint.restore_sha256`), so a resume before its first own checkpoint starts from the same
parameters, or refuses when the file is gone or changed; once the run has checkpoints of its
own they win and the source is not read again (docs/robustness.md, "Fine-tuning").
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import yaml

from vmc import checkpoint, rundir
from vmc.config import Config, make_config
from vmc.errors import InputError, os_reason
from vmc.progress import log

# The settings that change the shapes or names of an ansatz's parameters. Read off
# vmc/ansatz/*.py and vmc/descriptors.py; tests/test_finetune.py changes every setting of the
# networks and checks that exactly these change the parameter shapes.
_TRAINED = (
    "model.name",
    "model.elements",  # one-hot / embedding rows per element, per-element cusp widths
    "model.determinants",  # outputs per determinant
)
SHAPING = {
    "hf": ("model.name",),  # no parameters
    "slater_jastrow": (*_TRAINED, "model.slater_jastrow.hidden", "model.slater_jastrow.layers",
                       "model.slater_jastrow.orbital_correction"),
    "fire": (*_TRAINED,
             # the orbital descriptors hold as many coefficients as the largest element has basis
             # functions (vmc/descriptors.py, prepare_fire)
             "baseline.basis",
             "model.fire.embedding_dim", "model.fire.filter_dim", "model.fire.n_gaussians",
             "model.fire.message_passing_rounds", "model.fire.mlp_layers", "model.fire.orbital_dim",
             "model.fire.descriptor_hidden", "model.fire.jastrow_hidden",
             "model.fire.orbital_mlp"),  # factored: other layers than joint
}


def shaping_keys(model_name: str) -> tuple[str, ...]:
    """The dotted config keys that shape the parameters of the ansatz `model_name`."""
    return SHAPING[model_name]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError as e:
        raise InputError(f"{path}: cannot be read ({os_reason(e)})") from None
    return digest.hexdigest()


def _get(mapping: Any, key: str, default: Any = None) -> Any:
    for part in key.split("."):
        if not isinstance(mapping, dict) or part not in mapping:
            return default
        mapping = mapping[part]
    return mapping


def _covered(key: str, explicit: set[str]) -> bool:
    """Whether an explicit override sets `key` (itself or a section above it)."""
    return any(key == k or key.startswith(k + ".") for k in explicit)


def _same_value(key: str, a: Any, b: Any) -> bool:
    if key == "baseline.basis" and isinstance(a, str) and isinstance(b, str):
        # as PySCF reads basis names: 'cc-pVDZ' is 'ccpvdz'
        return a.lower().replace("-", "").replace("_", "").replace(" ", "") == b.lower().replace("-", "").replace("_", "").replace(" ", "")
    return a == b


def _same_path(a: str | Path, b: str | Path) -> bool:
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _with_source(cfg: Config, restore: str | None, sha256: str | None) -> Config:
    section = cfg.checkpoint.model_copy(update={"restore": restore, "restore_sha256": sha256})
    return cfg.model_copy(update={"checkpoint": section}, deep=True)


def _network_settings(stored: dict, where: str) -> dict[str, Any]:
    """The parameter-shaping settings of a stored (resolved) config; a key an older version
    did not write has the default it ran with."""
    defaults = Config().model_dump(mode="json")
    name = _get(stored, "model.name", defaults["model"]["name"])
    if name not in SHAPING:
        raise InputError(f"{where}: its network {name!r} (model.name) is not an ansatz of this version")
    values = {key: _get(stored, key, _get(defaults, key)) for key in SHAPING[name]}
    if "model.elements" in values and values["model.elements"] is None:
        from vmc.systems import resolve_config

        try:
            values["model.elements"] = resolve_config(make_config(stored))[0].model.elements
        except InputError as e:
            raise InputError(f"{where}: its stored config does not say which elements the network covers ({e})") from None
    return values


def _adopt(cfg: Config, values: dict[str, Any], source: str, explicit: set[str], owner: str) -> Config:
    """`cfg` with the network settings `values` of `source`, unless explicitly overridden (then
    they must agree). Refuses systems with an element the network does not cover."""
    from vmc.systems import resolve_config

    resolved, systems = resolve_config(cfg)  # the systems' problems are reported as a run would
    mine = resolved.model_dump(mode="json")
    taken = []
    for key, theirs in values.items():
        value = _get(mine, key)
        if _same_value(key, value, theirs):
            continue
        if _covered(key, explicit):
            raise InputError(f"{key}: --set {value!r} and {owner}'s {theirs!r} do not match ({source}); a fine-tune takes "
                             f"the settings that shape the network's parameters from its checkpoint: drop the --set")
        taken.append(f"{key}={theirs} (config: {value})")
    try:
        cfg = make_config(cfg, values)
    except InputError as e:
        raise InputError(f"{e}, with the network settings of {source}") from None
    elements = values.get("model.elements")
    for system in systems if elements is not None else []:
        missing = sorted(set(system.symbols) - set(elements))
        if missing:
            raise InputError(f"system {system.id!r} holds {', '.join(missing)}, which the network of {source} does not cover "
                             f"(its model.elements: {', '.join(elements)})")
    if taken:
        log(f"fine-tune: settings taken from {owner} {source}: {', '.join(taken)}")
    return cfg


def _stored_run(run_dir: Path) -> dict | None:
    """The config of the run `run_dir` holds, or None (no run, or an unreadable config, which
    vmc.rundir.claim reports)."""
    if not (run_dir / rundir.CONFIG_NAME).is_file():
        return None
    try:
        return rundir.read_config(run_dir)
    except InputError:
        return None


def prepare(cfg: Config, run_dir: str | Path, params_from: str | Path | None, explicit: set[str],
            evaluate: bool = False) -> Config:
    """The config of a run in `run_dir` (vmc.api.run, vmc.api.evaluate) that starts from the
    checkpoint `params_from` (--from; None: the config's checkpoint.restore, if any): the
    network settings taken from it, its source recorded. `explicit`: the dotted keys the user
    set. Raises a one-line InputError, before anything is computed or written, for a
    conflicting override, an element the network lacks, a changed source file, or a run
    directory that already holds a run from elsewhere."""
    run_dir = Path(run_dir)
    label = ("checkpoint " if evaluate else "--from ") + str(params_from)
    if params_from is not None:
        restore = cfg.checkpoint.restore
        if restore is not None and not _same_path(restore, params_from):
            if _covered("checkpoint.restore", explicit):
                raise InputError(f"{label} and checkpoint.restore {restore} name different checkpoints; give one")
            cfg = _with_source(cfg, str(params_from), None)  # the config file's hash was of its own file
        elif restore is None:
            cfg = _with_source(cfg, str(params_from), None)
    stored = _stored_run(run_dir)
    if stored is not None:
        return _resume(cfg, run_dir, stored, params_from, label, explicit, evaluate)
    source = cfg.checkpoint.restore
    if source is None:
        return cfg
    path = Path(source).expanduser()
    stored_config = yaml.safe_load(checkpoint.read_config_text(path))  # one line for a missing or unsafe file
    sha = file_sha256(path)
    _check_hash(path, cfg.checkpoint.restore_sha256, sha)
    cfg = _adopt(cfg, _network_settings(stored_config, str(path)), str(path), explicit, "the checkpoint")
    return _with_source(cfg, str(path.resolve()), sha)


def _resume(cfg: Config, run_dir: Path, stored: dict, params_from, label: str, explicit: set[str], evaluate: bool) -> Config:
    """A run directory that already holds a run: it keeps its origin."""
    if params_from is not None and not evaluate:
        # resuming would continue the run's own state and silently drop --from
        raise InputError(f"{label}: {run_dir} already holds a run, which would resume from its own state without it; "
                         f"start the fine-tune in a new directory (--out NEW), or resume that run with `vmc run {run_dir}`")
    origin, origin_sha = _get(stored, "checkpoint.restore"), _get(stored, "checkpoint.restore_sha256")
    restore = cfg.checkpoint.restore
    if restore is None and origin is None:
        return cfg
    if restore is not None and (origin is None or not _same_path(restore, origin)):
        what = label if params_from is not None else f"checkpoint.restore {restore}"
        raise InputError(f"{what}: {run_dir} already holds a run started from {origin or 'no checkpoint'}; "
                         "start the fine-tune in a new directory (--out NEW)")
    # the network settings its config.yaml took from its checkpoint, which may be gone by now
    where = f"{run_dir / rundir.CONFIG_NAME}"
    cfg = _adopt(cfg, _network_settings(stored, where), where, explicit, "the run")
    sha = cfg.checkpoint.restore_sha256 if _covered("checkpoint.restore_sha256", explicit) else origin_sha
    return _with_source(cfg, origin, sha)


def _check_hash(path: Path, recorded: str | None, sha: str) -> None:
    if recorded is not None and recorded != sha:
        raise InputError(f"{path}: changed since this run recorded it (checkpoint.restore_sha256 {recorded[:12]}..., the file now "
                         f"{sha[:12]}...); put the original back, or take the file as it is with --set checkpoint.restore_sha256=null")


def _has_own_checkpoint(run_dir: Path) -> bool:
    for path in checkpoint.list_checkpoints(run_dir / "checkpoints"):
        try:
            checkpoint.validate(path)
            return True
        except InputError:
            continue
    return False


def starting_point(config: Config, run_dir: str | Path, params_from: str | Path | None = None,
                   evaluate_only: bool = False) -> tuple[Config, Path | None]:
    """(config, checkpoint) of vmc.runner.Run: the checkpoint whose parameters start the run
    (`params_from`, else the config's checkpoint.restore), or None when there is none or the
    run's own checkpoints supersede it; the config with that source and its hash recorded.
    Refuses, in one line, a missing or changed source the run still needs."""
    run_dir = Path(run_dir)
    restore = config.checkpoint.restore
    if params_from is not None and (restore is None or not _same_path(restore, params_from)):
        config, restore = _with_source(config, str(params_from), None), str(params_from)
    if restore is None:
        return config, None
    path = Path(restore).expanduser().resolve()
    if not evaluate_only and _has_own_checkpoint(run_dir):
        return config, None  # a resume: Run.restore loads the newest of them
    if not path.is_file():
        why = ""
        if (run_dir / rundir.CONFIG_NAME).is_file():
            why = (f" (checkpoint.restore of {run_dir}, which has no checkpoint of its own yet: put the file back, "
                   "or start the run again in a new directory)")
        raise InputError(f"checkpoint not found: {path}{why}")
    sha = file_sha256(path)
    _check_hash(path, config.checkpoint.restore_sha256, sha)
    checkpoint.validate(path)
    return _with_source(config, str(path), sha), path
