"""Checkpoints as HDF5 files: arrays and plain attributes only, so loading one never runs code.

A pytree is stored as its leaves in flattening order, with the path of every leaf
(`jax.tree_util.keystr`) and its shape, and restored into a template tree of the same
structure; a mismatch is reported by naming the first differing leaf. Files are written to a
temporary name and renamed, so a checkpoint on disk is either complete or absent.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import h5py
import jax
import numpy as np

from vmc import __version__
from vmc.errors import InputError

PATTERN = re.compile(r"ckpt_(\d{8})\.h5$")


def _write_tree(group: h5py.Group, tree) -> None:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    group.attrs["paths"] = np.array([jax.tree_util.keystr(p) for p, _ in leaves], dtype="S")
    for i, (_, leaf) in enumerate(leaves):
        group.create_dataset(f"{i:05d}", data=np.asarray(leaf))


def _read_leaves(group: h5py.Group) -> tuple[list[str], list[np.ndarray]]:
    paths = [p.decode() for p in group.attrs["paths"]]
    return paths, [group[f"{i:05d}"][()] for i in range(len(paths))]


def tree_mismatch(template, paths: list[str], leaves: list[np.ndarray]) -> str | None:
    """None if (paths, leaves) fit `template`, else a description of the first difference."""
    want = jax.tree_util.tree_flatten_with_path(template)[0]
    want_paths = [jax.tree_util.keystr(p) for p, _ in want]
    missing = [p for p in want_paths if p not in paths]
    extra = [p for p in paths if p not in want_paths]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {missing[0]}" + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""))
        if extra:
            parts.append(f"unexpected {extra[0]}" + (f" and {len(extra) - 1} more" if len(extra) > 1 else ""))
        return "; ".join(parts)
    for p, (_, leaf) in zip(paths, want):
        got = leaves[paths.index(p)]
        if np.shape(got) != np.shape(leaf):
            return f"{p} has shape {np.shape(got)} in the checkpoint but {np.shape(leaf)} in this model"
    return None


def _restore_tree(group: h5py.Group, template, what: str, source: Path):
    paths, leaves = _read_leaves(group)
    problem = tree_mismatch(template, paths, leaves)
    if problem:
        raise InputError(f"{source}: {what} do not match this configuration: {problem}")
    want = jax.tree_util.tree_flatten_with_path(template)
    by_path = dict(zip(paths, leaves))
    ordered = [by_path[jax.tree_util.keystr(p)].astype(np.asarray(leaf).dtype) for p, leaf in want[0]]
    return jax.tree_util.tree_unflatten(want[1], ordered)


def save(path: Path, *, step: int, phase: str, params, opt_state, systems: dict[str, dict[str, np.ndarray]],
         scheduler: np.ndarray, config_text: str) -> None:
    """Writes a checkpoint atomically. `params` and `opt_state` are single (unreplicated) copies;
    `systems` maps a system id to its sampler state (walkers (n, n_el, 3), width)."""
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    with h5py.File(tmp, "w") as f:
        f.attrs.update(step=step, phase=phase, vmc_version=__version__, config=config_text)
        _write_tree(f.create_group("params"), params)
        if opt_state is not None:
            _write_tree(f.create_group("optimizer"), opt_state)
        f.create_dataset("scheduler", data=scheduler)
        for sid, state in systems.items():
            g = f.create_group(f"systems/{sid}")
            for k, v in state.items():
                g.create_dataset(k, data=v)
    os.replace(tmp, path)


def load(path: Path, params_template, opt_state_template=None) -> dict[str, Any]:
    """Reads a checkpoint into the given templates. Raises InputError for a file that is not a
    checkpoint or does not match; the caller decides whether to fall back to an older one."""
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            out = dict(step=int(f.attrs["step"]), phase=str(f.attrs["phase"]), config=str(f.attrs["config"]))
            out["params"] = _restore_tree(f["params"], params_template, "the network parameters", path)
            if opt_state_template is not None and "optimizer" in f:
                out["opt_state"] = _restore_tree(f["optimizer"], opt_state_template, "the optimizer state", path)
            out["scheduler"] = f["scheduler"][()]
            out["systems"] = {sid: {k: g[k][()] for k in g} for sid, g in f["systems"].items()}
            return out
    except InputError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None


def load_params(path: Path, params_template):
    """Only the network parameters of a checkpoint (fine-tuning, evaluation)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            return _restore_tree(f["params"], params_template, "the network parameters", path)
    except InputError:
        raise
    except (OSError, KeyError, ValueError) as e:
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None


def read_config_text(path: Path) -> str:
    """The resolved config stored in a checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            return str(f.attrs["config"])
    except (OSError, KeyError) as e:
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None


def list_checkpoints(directory: Path) -> list[Path]:
    """Checkpoints in a directory, newest (highest step) first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if PATTERN.search(p.name)]
    return sorted(found, key=checkpoint_step, reverse=True)


def checkpoint_step(path: Path) -> int:
    """The optimization step a checkpoint file was written at (from its name)."""
    return int(PATTERN.search(Path(path).name).group(1))


def checkpoint_path(directory: Path, step: int) -> Path:
    return Path(directory) / f"ckpt_{step:08d}.h5"


def prune(directory: Path, keep: int) -> None:
    for old in list_checkpoints(directory)[keep:]:
        old.unlink(missing_ok=True)
