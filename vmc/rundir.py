"""The run directory: one writer at a time, and only the run it was made for.

A run claims its directory before any expensive work:
- the path must be a directory that can be created and written;
- an OS lock keeps a second process out: `fcntl.flock` on the directory itself, which
  cannot be deleted from under the holder as a lock file can, and on RUN_DIR/.vmc.lock,
  which holds the writer's PID (and is what older versions lock); the kernel releases both
  when the process ends, however it ends, so a stale lock file never blocks;
- a directory that already holds a run (a config.yaml) is resumed only when its resolved
  config agrees with the new one in every key that shapes the trajectory; the keys of
  RESUMABLE may differ (more steps, another evaluation, checkpoint cadence, memory batch);
- any other non-empty directory is refused, so nothing of the user's is overwritten.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Any

import yaml

from vmc.errors import InputError, os_reason

LOCK_NAME = ".vmc.lock"
CONFIG_NAME = "config.yaml"
# Dotted config keys (and sections) a resumed run may change: they do not alter what has
# been computed, only how far it goes, what is evaluated, how often it is saved, and memory.
# mcmc.walkers too: the resumed run draws its walkers from the checkpoint's (vmc/runner.py).
RESUMABLE = ("optimization.steps", "optimization.max_rejected", "evaluation", "checkpoint", "local_energy_batch",
             "baseline.cache_dir", "distributed", "mcmc.walkers")


def flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    """{'a': {'b': 1}} -> {'a.b': 1}; lists and scalars are leaves."""
    if not isinstance(tree, dict):
        return {prefix: tree}
    out = {}
    for key, value in tree.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def _resumable(key: str) -> bool:
    return any(key == r or key.startswith(r + ".") for r in RESUMABLE)


def differing_keys(old: dict, new: dict) -> list[str]:
    """Dotted keys whose values differ between two config mappings, less the resumable ones."""
    a, b = flatten(old), flatten(new)
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k) and not _resumable(k))


def _describe(keys: list[str], most: int = 6) -> str:
    shown = ", ".join(keys[:most])
    return shown + (f" and {len(keys) - most} more" if len(keys) > most else "")


class RunDirectory:
    """A claimed run directory; holds its lock until `release()` or the end of the process."""

    def __init__(self, path: Path, lock_fds: list[int]):
        self.path = path
        self._lock_fds = lock_fds

    @property
    def config_path(self) -> Path:
        return self.path / CONFIG_NAME

    def has_run(self) -> bool:
        return self.config_path.is_file()

    def __del__(self):
        self.release()

    def release(self) -> None:
        while self._lock_fds:
            os.close(self._lock_fds.pop())  # closing a descriptor drops its flock


def _make_directory(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise InputError(f"run directory {path}: exists and is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"run directory {path}: cannot be created ({os_reason(e)})") from None


def _holder(path: Path) -> str:
    """The PID in the lock file, for the message that refuses a second writer."""
    try:
        with open(path / LOCK_NAME, "rb") as f:
            return f.read(32).decode(errors="replace").strip() or "unknown"
    except OSError:
        return "unknown"


def _in_use(path: Path) -> InputError:
    return InputError(f"run directory {path}: in use by another vmc process (PID {_holder(path)}); "
                      "wait for it to finish or choose another --out")


# flock on a directory is refused by some file systems (NFS emulates flock with fcntl locks,
# which need a file open for writing): there only the lock file guards (docs/robustness.md)
_NO_DIRECTORY_LOCK = (errno.EBADF, errno.EINVAL, errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOTSUP)


def _lock_directory(path: Path) -> int | None:
    """An exclusive flock on the directory itself, or None where the file system has none.

    The lock file alone is not enough: `rm RUN/.vmc.lock` while a run goes would let the next
    process lock a new file of that name. No `rm` of a file in the directory takes the
    directory's lock from its holder (docs/robustness.md)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError as e:
        raise InputError(f"run directory {path}: cannot be opened ({os_reason(e)})") from None
    return _flock(fd, path, unsupported=_NO_DIRECTORY_LOCK)


def _flock(fd: int, path: Path, unsupported: tuple[int, ...] = ()) -> int | None:
    """fd, exclusively flocked; None (fd closed) where the file system refuses with an errno
    of `unsupported`; InputError (fd closed) when another process holds it or locking fails."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EACCES):
            raise _in_use(path) from None
        if e.errno in unsupported:
            return None
        raise InputError(f"run directory {path}: cannot be locked ({os_reason(e)})") from None
    return fd


def _lock_file(path: Path) -> int:
    """An exclusive flock on RUN_DIR/.vmc.lock, which then holds this process's PID."""
    lock_path = path / LOCK_NAME
    for _ in range(10):
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise InputError(f"run directory {path}: cannot be written ({os_reason(e)})") from None
        _flock(fd, path)
        # the file may have been deleted (and made again) between open and flock: a lock on
        # a file no longer at the path keeps nobody out, so lock the one that is there
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except OSError:
            same = False
        if same:
            break
        os.close(fd)
    else:
        raise InputError(f"run directory {path}: cannot be locked (its {LOCK_NAME} keeps being replaced)")
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    except OSError as e:
        os.close(fd)
        raise InputError(f"run directory {path}: cannot be written ({os_reason(e)})") from None
    return fd


def _lock(path: Path) -> list[int]:
    """The descriptors whose flocks make this process the directory's one writer."""
    directory = _lock_directory(path)
    try:
        return [fd for fd in (directory, _lock_file(path)) if fd is not None]
    except BaseException:
        if directory is not None:
            os.close(directory)
        raise


def read_config(path: Path) -> dict:
    """The resolved config a run directory was made with, as a mapping."""
    config_path = Path(path) / CONFIG_NAME
    try:
        raw = yaml.safe_load(config_path.read_text())
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        raw = None
    if not isinstance(raw, dict):
        raise InputError(f"{config_path}: not a readable run config")
    return raw


def _check(path: Path, config: dict, resolve) -> None:
    """Raises InputError unless `path` (an existing directory) may hold a run of `config`."""
    if (path / CONFIG_NAME).is_file():
        try:
            stored = resolve(read_config(path))
        except InputError as e:
            raise InputError(f"run directory {path}: its {CONFIG_NAME} is not a valid run config ({e})") from None
        differ = differing_keys(stored, config)
        if differ:
            raise InputError(
                f"run directory {path}: holds a different run (config differs in {_describe(differ)}); "
                f"a resume may change only {', '.join(RESUMABLE)} (and the keys below them): "
                "use --out NEW, or --from one of its checkpoints to start from its parameters")
    else:
        others = sorted(p.name for p in path.iterdir() if p.name != LOCK_NAME)
        if others:
            raise InputError(f"run directory {path}: not empty and not a run directory "
                             f"(holds {_describe(others, 3)}, no {CONFIG_NAME}); choose another --out")


def claim(path: str | Path, config: dict, resolve) -> RunDirectory:
    """Creates (if needed), locks and checks the run directory for a run of `config`.

    config: the new run's resolved config as a mapping (Config.model_dump(mode='json')).
    resolve: maps a stored config mapping to the same resolved form, so that configs
        written by an older version (fewer keys) compare on equal terms.
    Raises InputError naming the directory when it cannot be used. A refused directory is
    left untouched: it is checked before the lock file is made, and again under the lock.
    """
    path = Path(path)
    if path.is_dir():
        _check(path, config, resolve)
    _make_directory(path)
    run_dir = RunDirectory(path, _lock(path))
    try:
        _check(path, config, resolve)
    except BaseException:
        run_dir.release()
        raise
    return run_dir
