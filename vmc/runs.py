"""Reading a run directory's energies.h5 into plain arrays, for reports.

Works on finished, running and interrupted runs: the file is opened without HDF5 file
locking (vmc/outputs.py), so the writer is never blocked, and a read that meets the writer
mid-append is retried. Energies in hartree, steps are optimization steps of the run.

The file may come from anywhere: it is checked before it is read (vmc/hdf5_safety.py), its
datasets are checked for type and size, its config attribute is read with YAML's safe
loader, and anything wrong is one InputError naming the file (docs/robustness.md).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import h5py
import numpy as np
import yaml

from vmc.eos import EosPoints, crystal_points
from vmc.errors import InputError
from vmc.hdf5_safety import Source
from vmc.outputs import open_energies, read_eval, read_train, source


@dataclasses.dataclass
class SystemRecord:
    """One /systems/<id> group. `train`: {step, energy, variance, pmove, wall_time} arrays (n,)
    (energy whole cell); `eval_energies` (m,) whole cell; `evaluation`: the eval attributes
    (energy, energy_error, energy_per_cell, energy_per_cell_error, autocorrelation_time) or
    None before the evaluation."""

    id: str
    name: str
    geometry: str
    periodic: bool
    n_cells: int
    n_atoms: int  # whole simulation cell
    n_electrons: int
    hf_energy: float  # whole cell
    lattice_constant: float | None  # bohr
    twist: np.ndarray | None  # (3,)
    primitive_lattice: np.ndarray | None  # (3, 3) rows, bohr
    primitive_positions: np.ndarray | None  # (n_primitive_atoms, 3) bohr
    supercell: np.ndarray | None  # (3, 3): simulation-cell lattice = supercell @ primitive_lattice
    weight: float
    train: dict[str, np.ndarray]
    eval_energies: np.ndarray
    evaluation: dict[str, float] | None

    @property
    def hf_energy_per_cell(self) -> float:
        return self.hf_energy / self.n_cells


@dataclasses.dataclass
class RunRecord:
    """A run directory: its systems, crystals (EosPoints by crystal name) and the config
    values a report shows."""

    path: Path
    label: str
    systems: list[SystemRecord]
    crystals: dict[str, EosPoints]
    walkers: int | None
    optimization_steps: int | None  # the config's target
    model: str
    created: str

    @property
    def finished(self) -> bool:
        return bool(self.systems) and all(s.evaluation is not None for s in self.systems)

    @property
    def steps_done(self) -> int:
        return max((int(s.train["step"][-1]) + 1 for s in self.systems if len(s.train["step"])), default=0)

    def status(self) -> str:
        if self.finished:
            return "finished"
        target = f" of {self.optimization_steps}" if self.optimization_steps else ""
        return f"in progress or stopped: {self.steps_done}{target} optimization steps, not evaluated yet"


def _cells(x) -> int:
    """A system's n_cells attribute: a whole number of primitive cells, at least 1 (energies
    are divided by it)."""
    n = float(x)
    if not (n >= 1 and n == int(n)):
        raise ValueError(f"n_cells is {x!r}, not a whole number of cells")
    return int(n)


def _text(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def _matrix(attrs, key: str, shape: tuple[int, int]) -> np.ndarray | None:
    """A finite float array attribute of that shape (-1: any length), or None without it."""
    if key not in attrs:
        return None
    x = np.asarray(attrs[key], dtype=float).reshape(shape)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"the {key!r} attribute is not finite")
    return x


def _system(sid: str, g) -> SystemRecord:
    a = g.attrs
    eval_energies, eval_attrs = read_eval(g)
    evaluation = None
    if "energy" in eval_attrs:
        evaluation = {k: float(eval_attrs[k]) for k in ("energy", "energy_error", "energy_per_cell",
                                                         "energy_per_cell_error", "autocorrelation_time") if k in eval_attrs}
    return SystemRecord(
        id=sid, name=_text(a.get("name", sid)), geometry=_text(a.get("geometry", sid)),
        periodic="primitive_lattice" in a, n_cells=_cells(a.get("n_cells", 1)), n_atoms=len(a["symbols"]),
        n_electrons=int(a["n_electrons"]), hf_energy=float(a.get("hf_energy", np.nan)),
        lattice_constant=float(a["lattice_constant"]) if "lattice_constant" in a else None,
        twist=np.asarray(a["twist"], dtype=float) if "twist" in a else None,
        primitive_lattice=_matrix(a, "primitive_lattice", (3, 3)), primitive_positions=_matrix(a, "primitive_positions", (-1, 3)),
        supercell=_matrix(a, "supercell", (3, 3)), weight=float(a.get("weight", 1.0)),
        train=read_train(g), eval_energies=eval_energies, evaluation=evaluation,
    )


def read_config_attr(f) -> dict:
    """The resolved config in an open energies.h5's root attributes ({} when there is none).
    Safe YAML: a `!!python` tag is refused, never run."""
    src: Source = source(f)
    value = f.attrs.get("config", "")
    try:
        text = value.decode() if isinstance(value, bytes) else value
    except UnicodeDecodeError:
        text = None
    if not isinstance(text, str):
        raise src.error("its 'config' attribute is not text")
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError as e:
        problem = (getattr(e, "problem", None) or type(e).__name__).splitlines()[0]
        raise src.error(f"its 'config' attribute is not plain YAML: {problem}") from None
    return config if isinstance(config, dict) else {}


def system_groups(f) -> dict:
    """{system id: group} of an open energies.h5."""
    systems = f.get("systems")
    if systems is None:
        return {}
    if not isinstance(systems, h5py.Group) or not all(isinstance(g, h5py.Group) for g in systems.values()):
        raise source(f).error("/systems is not a group of system groups")
    return dict(systems.items())


def _read(path: Path, label: str) -> RunRecord:
    with open_energies(path / "energies.h5") as f:
        config = read_config_attr(f)
        systems = [_system(sid, g) for sid, g in system_groups(f).items()]
        # by crystal, then lattice constant, then id (HDF5 lists groups alphabetically: a8.4 before a8)
        systems.sort(key=lambda s: (s.name, s.lattice_constant or 0.0, s.id))
        crystals = crystal_points(f)
        created = _text(f.attrs.get("created", ""))
    get = lambda *keys: _dig(config, keys)  # noqa: E731
    return RunRecord(path=path, label=label, systems=systems, crystals=crystals,
                     walkers=get("mcmc", "walkers"), optimization_steps=get("optimization", "steps"),
                     model=str(get("model", "name") or ""), created=created)


def _dig(mapping, keys):
    for k in keys:
        if not isinstance(mapping, dict):
            return None
        mapping = mapping.get(k)
    return mapping


def energies_file(run_dir: str | Path) -> Path:
    """RUN_DIR/energies.h5; InputError when the directory has none."""
    path = Path(run_dir) / "energies.h5"
    if not path.is_file():
        raise InputError(f"{run_dir}: not a run directory (no energies.h5)")
    return path


def labels(paths: list[Path]) -> list[str]:
    """Directory names, made unique with a counter where two share one."""
    out, seen = [], {}
    for p in paths:
        base = Path(p).resolve().name
        seen[base] = seen.get(base, 0) + 1
        out.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return out


def read_run(run_dir: str | Path, label: str | None = None, attempts: int = 5) -> RunRecord:
    """The run directory's energies.h5; InputError when there is none or it cannot be read."""
    path = Path(run_dir)
    energies_file(path)
    for attempt in range(attempts):
        try:
            return _read(path, label or path.resolve().name)
        except (OSError, KeyError, ValueError, TypeError, IndexError) as e:  # the writer was mid-append: read again
            if attempt == attempts - 1:
                raise InputError(f"{path / 'energies.h5'}: could not be read ({str(e).splitlines()[0]})") from None
            time.sleep(0.2)
    raise AssertionError("unreachable")
