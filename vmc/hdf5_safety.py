"""Reading HDF5 files that come from outside: checkpoints (`--from`, `vmc evaluate`, a resumed
run) and energies.h5 (`vmc report`, `vmc export`, a resumed run).

HDF5 can make a read reach beyond the file: soft and external links, datasets whose raw data
lives in another file (external storage), virtual datasets (made of other files' datasets),
and filters it would load from a plugin library. A dataset's shape is only metadata, so a
small file can describe terabytes. `check_file` refuses the first four anywhere in a file
before anything is read, and `read` checks a dataset's type, shape and size from its metadata
before it reads the data. Every refusal is one InputError naming the file and the object
(docs/robustness.md, "Files are data, never code").
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import h5py
import numpy as np

from vmc.errors import InputError

NUMERIC_KINDS = "biufc"  # bool, int, unsigned, float, complex
BUILTIN_FILTERS = {"gzip", "shuffle", "fletcher32", "lzf", "scaleoffset"}  # compiled into h5py
# Above any dataset vmc writes for the systems it is made for (the walkers of 10^5 walkers of
# 10^3 electrons are 2.4 GB in float64), below what a reader should allocate on a file's word.
MAX_BYTES = 1 << 32
# Objects in one file: a checkpoint holds a dataset per parameter and optimizer leaf
# (thousands at most); a crafted file of millions of links would only cost time.
MAX_OBJECTS = 1_000_000


@dataclasses.dataclass(frozen=True)
class Source:
    """A file being read and what it should be ('checkpoint', 'energies file'), for messages."""

    path: Path
    what: str

    def error(self, problem: str) -> InputError:
        return InputError(f"{self.path}: not a valid {self.what} ({problem})")


def _numeric(dtype: np.dtype, compound: bool) -> bool:
    if dtype.kind in NUMERIC_KINDS:
        return True
    # a table of numbers (energies.h5's `train`); no nested tables, strings or references
    return compound and dtype.fields is not None and all(f[0].kind in NUMERIC_KINDS for f in dtype.fields.values())


def check_dataset(d: h5py.Dataset, source: Source, compound: bool = False) -> None:
    """Refuses a dataset that reads another file or a plugin, or holds other than numbers."""
    where = d.name
    if d.external is not None:  # its raw data is another file: any file the user may read
        raise source.error(f"{where} keeps its data in the external file {d.external[0][0]!r}; refused")
    if d.is_virtual:
        raise source.error(f"{where} is a virtual dataset (data of other files); refused")
    plugin = [k for k in d._filters if k not in BUILTIN_FILTERS]
    if plugin:  # HDF5 would look for a filter plugin (a shared library) to read it
        raise source.error(f"{where} needs the HDF5 filter {plugin[0]}; refused")
    if not _numeric(d.dtype, compound):
        raise source.error(f"{where} has type {d.dtype}, not a number")


def check_file(f: h5py.Group, source: Source, compound: bool = False) -> None:
    """Refuses links other than hard links, external storage, virtual datasets, plugin
    filters and non-numeric datasets anywhere under `f` (compound: tables of numbers too)."""
    seen: set[tuple[int, int]] = set()

    def visit(group: h5py.Group) -> None:
        for name in group:
            link = group.get(name, getlink=True)
            where = f"{group.name.rstrip('/')}/{name}"
            if not isinstance(link, h5py.HardLink):
                raise source.error(f"{where} is a link to elsewhere; links are refused")
            item = group[name]
            info = h5py.h5o.get_info(item.id)
            if (info.fileno, info.addr) in seen:  # a second hard link to an object (or a cycle)
                continue
            seen.add((info.fileno, info.addr))
            if len(seen) > MAX_OBJECTS:
                raise source.error(f"more than {MAX_OBJECTS} objects")
            if isinstance(item, h5py.Group):
                visit(item)
            elif isinstance(item, h5py.Dataset):
                check_dataset(item, source, compound)

    visit(f)


def read(group: h5py.Group, name: str, source: Source, *, kinds: str = NUMERIC_KINDS, shape: tuple | None = None,
         ndim: int | None = None, finite: bool = False, compound: bool = False) -> np.ndarray:
    """The dataset `group[name]`, checked before it is read: a dataset (no link, external
    storage, virtual data or plugin filter), of a dtype kind in `kinds` (or a table of numbers
    when `compound`), of `shape` (None entries match any length) or `ndim`, no larger than
    MAX_BYTES; with `finite`, every value finite."""
    where = f"{group.name.rstrip('/')}/{name}"
    if name not in group:
        raise source.error(f"{where} is missing")
    link = group.get(name, getlink=True)
    if not isinstance(link, h5py.HardLink):
        raise source.error(f"{where} is a link to elsewhere; links are refused")
    d = group[name]
    if not isinstance(d, h5py.Dataset):
        raise source.error(f"{where} is not a dataset")
    check_dataset(d, source, compound)
    if not (compound and d.dtype.fields is not None) and d.dtype.kind not in kinds:
        raise source.error(f"{where} has type {d.dtype}")
    if shape is not None and (len(d.shape) != len(shape) or any(w is not None and w != n for w, n in zip(shape, d.shape))):
        want = "(" + ", ".join("n" if w is None else str(w) for w in shape) + ("," if len(shape) == 1 else "") + ")"
        raise source.error(f"{where} has shape {d.shape}, not {want}")
    if ndim is not None and len(d.shape) != ndim:
        raise source.error(f"{where} has {len(d.shape)} dimensions, not {ndim}")
    if d.size * d.dtype.itemsize > MAX_BYTES:  # from the metadata: nothing is allocated
        raise source.error(f"{where} has shape {d.shape}: {d.size * d.dtype.itemsize / 2**30:.3g} GiB, more than vmc ever writes")
    value = d[()]
    if finite and np.issubdtype(value.dtype, np.inexact) and not np.all(np.isfinite(value)):
        raise source.error(f"{where} holds values that are not finite")
    return value
