"""Checkpoints as HDF5 files: arrays and plain attributes only, so loading one never runs code.

A pytree is stored as its leaves in flattening order, with the path of every leaf
(`jax.tree_util.keystr`) and its shape, and restored into a template tree of the same
structure; a mismatch is reported by naming the first differing leaf. Files are written to a
temporary name and renamed, so a checkpoint on disk is either complete or absent; a write
that fails (a full disk) removes its temporary file and leaves the older checkpoints as they
were. Non-finite parameters are never written.

Reading refuses, with one line naming the file, anything a crafted or damaged file could use
to reach beyond its own numbers: HDF5 soft and external links, datasets stored in other
files (external storage) or made of them (virtual datasets), filters that HDF5 would load
from a plugin library, and datasets whose type is not a plain number (compound, string,
object) (vmc/hdf5_safety.py). Every field is then checked before it is used, a dataset's
shape and size from its metadata before it is read: a damaged field is one InputError naming
the file and the field, so that a resumed run falls back to an older checkpoint.
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
from vmc.hdf5_safety import Source, check_file, read

PATTERN = re.compile(r"ckpt_(\d{8})\.h5$")


def _write_tree(group: h5py.Group, tree) -> None:
    leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    group.attrs["paths"] = np.array([jax.tree_util.keystr(p) for p, _ in leaves], dtype="S")
    for i, (_, leaf) in enumerate(leaves):
        group.create_dataset(f"{i:05d}", data=np.asarray(leaf))


# more leaves than any network and optimizer state vmc builds
MAX_LEAVES = 100_000
# the root key vmc writes: jax.random.PRNGKey (threefry, two uint32); Run.restore passes its own
KEY_TEMPLATE = np.zeros(2, np.uint32)


def _source(path: Path) -> Source:
    return Source(Path(path), "checkpoint")


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _leaf_datasets(group: h5py.Group, source: Source) -> tuple[list[str], list[h5py.Dataset]]:
    """A tree group's `paths` attribute (distinct strings) and its datasets 00000, 00001, ...,
    one per path; checked, not read."""
    where = f"the 'paths' attribute of {group.name}"
    if "paths" not in group.attrs:
        raise source.error(f"{where} is missing")
    shape = group.attrs.get_id("paths").shape
    if len(shape) != 1 or shape[0] > MAX_LEAVES:  # from the metadata, before reading
        raise source.error(f"{where} has shape {shape}, not a list of leaf paths")
    raw = group.attrs["paths"]
    if not all(isinstance(p, (bytes, str)) for p in raw):
        raise source.error(f"{where} is not a list of strings")
    try:
        paths = [p.decode() if isinstance(p, bytes) else p for p in raw]
    except UnicodeDecodeError:
        raise source.error(f"{where} is not text") from None
    if len(set(paths)) != len(paths):
        raise source.error(f"{where} names a leaf twice")
    names = [f"{i:05d}" for i in range(len(paths))]
    if sorted(group) != names or not all(isinstance(group[n], h5py.Dataset) for n in names):
        raise source.error(f"{group.name} does not hold one dataset for each of its {len(paths)} leaf paths")
    return paths, [group[n] for n in names]


def _group(f: h5py.File, name: str, source: Source) -> h5py.Group:
    if not isinstance(f.get(name), h5py.Group):
        raise source.error(f"/{name} is missing")
    return f[name]


@contextlib.contextmanager
def _open(path: Path):
    """A checkpoint opened for reading after `check_file`; read errors become InputErrors."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"checkpoint not found: {path}")
    if not path.is_file():
        raise InputError(f"{path}: not a checkpoint (not a regular file)")
    try:
        with h5py.File(path, "r") as f:
            check_file(f, _source(path))
            yield f
    except InputError:
        raise
    except (OSError, KeyError, ValueError, TypeError, IndexError, AttributeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None


def all_finite(tree) -> bool:
    """True if every floating-point leaf of a (host or device) pytree is finite."""
    return all(bool(np.all(np.isfinite(x))) for x in jax.tree.leaves(tree) if np.issubdtype(np.asarray(x).dtype, np.inexact))


def _finite_params(params, path: Path):
    if not all_finite(params):
        raise InputError(f"{path}: holds non-finite network parameters (a diverged run); refused")
    return params


def tree_mismatch(template, paths: list[str], leaves) -> str | None:
    """None if (paths, leaves) fit `template`, else a description of the first difference.
    `leaves` may be arrays or h5py datasets (their shapes are read, not their data)."""
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
    for p, (_, leaf) in zip(want_paths, want):
        got = leaves[paths.index(p)]
        if np.shape(got) != np.shape(leaf):
            return f"{p} has shape {np.shape(got)} in the checkpoint but {np.shape(leaf)} in this model"
    return None


def _restore_tree(group: h5py.Group, template, what: str, source: Source, finite: bool = False):
    """The tree stored in `group`, in the structure and dtypes of `template`. Shapes are
    compared from the metadata before anything is read."""
    paths, datasets = _leaf_datasets(group, source)
    problem = tree_mismatch(template, paths, datasets)
    if problem:
        raise InputError(f"{source.path}: {what} do not match this configuration: {problem}")
    want, structure = jax.tree_util.tree_flatten_with_path(template)
    ordered = []
    for p, leaf in want:
        name = f"{paths.index(jax.tree_util.keystr(p)):05d}"
        value, dtype = read(group, name, source, finite=finite), np.asarray(leaf).dtype
        # another kind (complex, int, bool into float) is not these parameters; float64 into float32 is
        if value.dtype.kind != np.dtype(dtype).kind:
            raise source.error(f"{group.name}/{name} ({jax.tree_util.keystr(p)}) has type {value.dtype}, not {dtype}")
        ordered.append(value.astype(dtype))
    return jax.tree_util.tree_unflatten(structure, ordered)


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


def _text(f: h5py.File, name: str, source: Source) -> str:
    value = f.attrs.get(name)
    if isinstance(value, bytes):
        try:
            value = value.decode()
        except UnicodeDecodeError:
            value = None
    if not isinstance(value, str):
        raise source.error(f"its '{name}' attribute is {_show(value)}, not text")
    return value


def _step(f: h5py.File, source: Source) -> int:
    value = f.attrs.get("step")
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 0:
        raise source.error(f"its 'step' attribute is {_show(value)}, not a non-negative integer")
    return int(value)


def _sampler(f: h5py.File, sid: str, n_electrons: int | None, source: Source) -> dict[str, np.ndarray]:
    """One system's walkers (n, n_electrons, 3), finite, and proposal width (positive, finite)."""
    g = f.get(f"systems/{sid}")
    if not isinstance(g, h5py.Group):
        raise source.error(f"/systems/{sid} is missing: it holds no walkers of system {sid!r}")
    walkers = read(g, "walkers", source, kinds="f", shape=(None, n_electrons, 3), finite=True)
    if walkers.shape[0] == 0:
        raise source.error(f"{g.name}/walkers holds no walkers")
    width = read(g, "width", source, kinds="fiu", shape=(), finite=True)
    if not width > 0:
        raise source.error(f"{g.name}/width is {_show(width.item())}, not a positive proposal width")
    return dict(walkers=walkers, width=width)


def load(path: Path, params_template, opt_state_template=None, *, systems: dict[str, int] | None = None,
         scheduler: np.ndarray | None = None, key: np.ndarray = KEY_TEMPLATE) -> dict[str, Any]:
    """Reads a checkpoint into the given templates. Raises InputError naming the file and the
    field for a file that is not a checkpoint, does not match, or holds a damaged field
    (non-finite parameters, walkers or width, a negative step, a key or scheduler of another
    shape, ...); the caller decides whether to fall back to an older one.

    systems: {system id: electrons} of this run: exactly these systems' walkers are read and
        must be there (default: every stored system's). scheduler, key: arrays of this run's
        shape and dtype that the stored ones must have (scheduler: any 1-D by default)."""
    path = Path(path)
    source = _source(path)
    with _open(path) as f:
        out = dict(step=_step(f, source), phase=_text(f, "phase", source), config=_text(f, "config", source))
        out["params"] = _finite_params(_restore_tree(_group(f, "params", source), params_template, "the network parameters",
                                                     source), path)
        if opt_state_template is not None:
            # a state that is not finite would make the first update's parameters non-finite
            out["opt_state"] = _restore_tree(_group(f, "optimizer", source), opt_state_template, "the optimizer state",
                                             source, finite=True)
        out["scheduler"] = read(f, "scheduler", source, kinds="fiu", finite=True,
                                shape=(None,) if scheduler is None else np.shape(scheduler))
        out["key"] = None  # absent in older checkpoints: the config's seed
        if "key" in f:
            stored = read(f, "key", source, kinds="u", shape=np.shape(key))
            if not np.can_cast(stored.dtype, np.asarray(key).dtype, "safe"):
                raise source.error(f"/key has type {stored.dtype}, not {np.asarray(key).dtype}")
            out["key"] = stored
        if systems is None:
            stored_systems = f.get("systems", {})
            if not isinstance(stored_systems, h5py.Group) and "systems" in f:
                raise source.error("/systems is not a group")
            systems = dict.fromkeys(stored_systems)
        out["systems"] = {sid: _sampler(f, sid, n_electrons, source) for sid, n_electrons in systems.items()}
        return out


def load_params(path: Path, params_template):
    """Only the network parameters of a checkpoint (fine-tuning, evaluation)."""
    source = _source(path)
    with _open(path) as f:
        return _finite_params(_restore_tree(_group(f, "params", source), params_template, "the network parameters", source),
                              path)


def validate(path: Path) -> None:
    """Checks, before any expensive work, that a checkpoint can start a run: readable, links,
    other files and odd types refused, every parameter leaf of a sane size, finite. Its fit to
    the model is checked on loading."""
    source = _source(path)
    with _open(path) as f:
        params = _group(f, "params", source)
        _finite_params([read(params, d.name.rsplit("/", 1)[1], source) for d in _leaf_datasets(params, source)[1]], path)


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
