"""Checkpoints as HDF5 files: arrays and plain attributes only, so loading one never runs code.

A pytree is stored as its leaves in flattening order, with the path of every leaf
(`jax.tree_util.keystr`) and its shape, and restored into a template tree of the same
structure; a mismatch is reported by naming the first differing leaf. Files are written to a
temporary name and renamed, so a checkpoint on disk is either complete or absent; a write
that fails (a full disk) removes its temporary file and leaves the older checkpoints as they
were. Non-finite parameters are never written.

Reading refuses, with one line naming the file, anything a crafted or damaged file could use
to reach beyond its own numbers: HDF5 soft and external links, virtual datasets (which read
from other files), filters that HDF5 would load from a plugin library, and datasets whose
type is not a plain number (compound, string, object).
"""

from __future__ import annotations

import contextlib
import io
import os
import re
from pathlib import Path
from typing import Any

import h5py
import jax
import numpy as np

from vmc import __version__
from vmc.errors import InputError, OutputError, os_reason

PATTERN = re.compile(r"ckpt_(\d{8})\.h5$")


def _write_tree(group: h5py.Group, tree) -> None:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    group.attrs["paths"] = np.array([jax.tree_util.keystr(p) for p, _ in leaves], dtype="S")
    for i, (_, leaf) in enumerate(leaves):
        group.create_dataset(f"{i:05d}", data=np.asarray(leaf))


def _read_leaves(group: h5py.Group) -> tuple[list[str], list[np.ndarray]]:
    paths = [p.decode() for p in group.attrs["paths"]]
    return paths, [group[f"{i:05d}"][()] for i in range(len(paths))]


NUMERIC_KINDS = "biufc"  # bool, int, unsigned, float, complex
BUILTIN_FILTERS = {"gzip", "shuffle", "fletcher32", "lzf", "scaleoffset"}  # compiled into h5py


def _check_contents(f: h5py.File, path: Path) -> None:
    """Refuses links, virtual datasets and non-numeric datasets anywhere in the file."""
    def visit(group: h5py.Group, prefix: str) -> None:
        for name in group:
            link = group.get(name, getlink=True)
            where = f"{prefix}/{name}"
            if not isinstance(link, h5py.HardLink):
                raise InputError(f"{path}: not a valid checkpoint ({where} is a link to elsewhere; links are refused)")
            item = group[name]
            if isinstance(item, h5py.Group):
                visit(item, where)
            elif isinstance(item, h5py.Dataset):
                if item.is_virtual:
                    raise InputError(f"{path}: not a valid checkpoint ({where} is a virtual dataset; refused)")
                plugin = [k for k in item._filters if k not in BUILTIN_FILTERS]
                if plugin:  # HDF5 would look for a filter plugin (a shared library) to read it
                    raise InputError(f"{path}: not a valid checkpoint ({where} needs the HDF5 filter {plugin[0]}; refused)")
                if item.dtype.kind not in NUMERIC_KINDS:
                    raise InputError(f"{path}: not a valid checkpoint ({where} has type {item.dtype}, not a number)")

    visit(f, "")


@contextlib.contextmanager
def _open(path: Path):
    """A checkpoint opened for reading after `_check_contents`; read errors become InputErrors."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"checkpoint not found: {path}")
    try:
        with h5py.File(path, "r") as f:
            _check_contents(f, path)
            yield f
    except InputError:
        raise
    except (OSError, KeyError, ValueError, TypeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None


def all_finite(tree) -> bool:
    """True if every floating-point leaf of a (host or device) pytree is finite."""
    return all(bool(np.all(np.isfinite(x))) for x in jax.tree.leaves(tree) if np.issubdtype(np.asarray(x).dtype, np.inexact))


def _finite_params(params, path: Path):
    if not all_finite(params):
        raise InputError(f"{path}: holds non-finite network parameters (a diverged run); refused")
    return params


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
         scheduler: np.ndarray, config_text: str, key: np.ndarray | None = None) -> None:
    """Writes a checkpoint atomically: the training state (vmc/training.py). `params` and
    `opt_state` are single (unreplicated) copies; `systems` maps a system id to its sampler
    state (walkers of every host and device (n_total, n_el, 3), width); `key` the root PRNG key.
    Raises OutputError when the file cannot be written (nothing older is touched)."""
    path = Path(path)
    if not all_finite(params):
        raise ValueError(f"refusing to checkpoint non-finite parameters at step {step}")
    # The file is built in memory and written with plain I/O: a full disk then fails one
    # Python write, never an HDF5 flush, which leaves datasets HDF5 cannot close (and a crash
    # when the library shuts down).
    content = _encode(step=step, phase=phase, params=params, opt_state=opt_state, systems=systems, scheduler=scheduler,
                      config_text=config_text, key=key)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"checkpoint {path} could not be written ({os_reason(e)}); the older checkpoints are intact") from None
    except BaseException:  # e.g. a second interrupt while writing
        tmp.unlink(missing_ok=True)
        raise


def _encode(*, step, phase, params, opt_state, systems, scheduler, config_text, key) -> bytes:
    """The checkpoint file's bytes."""
    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as f:
        f.attrs.update(step=step, phase=phase, vmc_version=__version__, config=config_text)
        _write_tree(f.create_group("params"), params)
        if opt_state is not None:
            _write_tree(f.create_group("optimizer"), opt_state)
        f.create_dataset("scheduler", data=scheduler)
        if key is not None:
            f.create_dataset("key", data=key)
        for sid, state in systems.items():
            g = f.create_group(f"systems/{sid}")
            for k, v in state.items():
                g.create_dataset(k, data=v)
    return buffer.getvalue()


def load(path: Path, params_template, opt_state_template=None) -> dict[str, Any]:
    """Reads a checkpoint into the given templates. Raises InputError for a file that is not a
    checkpoint, does not match, or holds non-finite parameters; the caller decides whether to
    fall back to an older one."""
    path = Path(path)
    with _open(path) as f:
        out = dict(step=int(f.attrs["step"]), phase=str(f.attrs["phase"]), config=str(f.attrs["config"]))
        out["params"] = _finite_params(_restore_tree(f["params"], params_template, "the network parameters", path), path)
        if opt_state_template is not None and "optimizer" in f:
            out["opt_state"] = _restore_tree(f["optimizer"], opt_state_template, "the optimizer state", path)
        out["scheduler"] = f["scheduler"][()]
        out["key"] = f["key"][()] if "key" in f else None  # absent in older checkpoints: the config's seed
        out["systems"] = {sid: {k: g[k][()] for k in g} for sid, g in f["systems"].items()}
        return out


def load_params(path: Path, params_template):
    """Only the network parameters of a checkpoint (fine-tuning, evaluation)."""
    with _open(path) as f:
        return _finite_params(_restore_tree(f["params"], params_template, "the network parameters", path), path)


def validate(path: Path) -> None:
    """Checks, before any expensive work, that a checkpoint can start a run: readable, links
    and odd types refused, finite parameters. Its fit to the model is checked on loading."""
    with _open(path) as f:
        _finite_params(_read_leaves(f["params"])[1], path)


def read_config_text(path: Path) -> str:
    """The resolved config stored in a checkpoint (a YAML mapping)."""
    import yaml

    with _open(path) as f:
        text = f.attrs["config"]
    if isinstance(text, bytes):
        text = text.decode()
    try:
        ok = isinstance(text, str) and isinstance(yaml.safe_load(text), dict)
    except yaml.YAMLError:
        ok = False
    if not ok:
        raise InputError(f"{path}: not a valid checkpoint (its 'config' attribute is not a YAML mapping)")
    return text


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
