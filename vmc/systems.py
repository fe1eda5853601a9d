"""Systems: molecules and crystals, from the catalog in `systems/`, a YAML file or inline specs.

A spec (what the user writes) expands to a list of `System`s: one per geometry for molecules,
one per (geometry, twist) for crystals. A single molecule is a list of one; the rest of the
package never distinguishes the two cases.
"""

from __future__ import annotations

import dataclasses
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import pydantic
from pydantic import BaseModel, ConfigDict, Field
from pyscf.data import elements as pyscf_elements

from vmc import lattice as lat
from vmc.config import Config, load_yaml, validation_message
from vmc.errors import InputError
from vmc.units import to_bohr

Finite = Annotated[float, Field(allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]
Vec3 = tuple[Finite, Finite, Finite]
Atom = tuple[str, Vec3]
MIN_ATOM_DISTANCE = 0.05  # bohr; closer nuclei are a mistake in the input, not a geometry
# Twists of one grid: every irreducible one is a system of its own (its own Hartree–Fock and
# walkers), and the symmetry reduction compares every pair of twists under every operation.
# 10 x 10 x 10 is denser than twist averaging of a supercell needs.
MAX_TWISTS = 1000
# Lattice vectors the search for a fire cutoff's images may try per simulation cell
# (lattice.image_candidates; about a third of them are kept). 5 and 8 bohr (fire's defaults)
# try 343 and 729 in the smallest catalog cell (h_bcc, 3 bohr); 10^4 allows a 27-bohr cutoff
# there. Each kept image multiplies fire's pair terms and neighbour-list candidates.
MAX_IMAGE_CANDIDATES = 10_000


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class MoleculeSpec(_Spec):
    kind: Literal["molecule"] = "molecule"
    name: str | None = None
    description: str | None = None
    atoms: list[Atom]
    unit: Literal["bohr", "angstrom"] = "bohr"
    # If given, atom positions are in units of this length; a list expands to one geometry each.
    bond_length: Positive | list[Positive] | None = None
    charge: int = 0
    spin: int | None = None  # n_up - n_down; default 0 or 1 by electron-count parity


class TwistGrid(_Spec):
    grid: tuple[Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)], Annotated[int, Field(ge=1)]]
    shift: Vec3 = (0.0, 0.0, 0.0)
    symmetry: bool = True  # reduce to the irreducible twists with weights

    @pydantic.field_validator("grid")
    @classmethod
    def _not_too_many(cls, grid):
        n = grid[0] * grid[1] * grid[2]
        if n > MAX_TWISTS:
            raise ValueError(f"{n} twists; at most {MAX_TWISTS} (e.g. 10 x 10 x 10)")
        return grid


class CrystalSpec(_Spec):
    kind: Literal["crystal"] = "crystal"
    name: str | None = None
    description: str | None = None
    # Rows are the primitive lattice vectors, in units of lattice_constant (in `unit`).
    lattice: tuple[Vec3, Vec3, Vec3]
    # Added to the scaled lattice, in `unit`, not scaled: e.g. the vacuum of a chain.
    lattice_fixed: tuple[Vec3, Vec3, Vec3] | None = None
    lattice_constant: Positive | list[Positive] = 1.0
    atoms: list[Atom]
    # fractional: in the primitive lattice vectors; cartesian: in units of lattice_constant.
    coordinates: Literal["fractional", "cartesian"] = "fractional"
    unit: Literal["bohr", "angstrom"] = "bohr"
    supercell: tuple[int, int, int] | tuple[tuple[int, int, int], tuple[int, int, int], tuple[int, int, int]] = (1, 1, 1)
    twists: list[Vec3] | TwistGrid = Field(default_factory=lambda: [(0.0, 0.0, 0.0)])
    charge: int = 0
    spin: int = 0


@dataclasses.dataclass(frozen=True, eq=False)
class System:
    """One system to simulate: a molecule, or a crystal's simulation cell at one twist.

    Lengths in bohr. For crystals `positions` hold all atoms of the simulation cell and
    `lattice` its lattice vectors as rows (= supercell @ primitive_lattice).
    """

    id: str
    name: str
    geometry: str  # id shared by all twists of one geometry
    symbols: tuple[str, ...]
    positions: np.ndarray  # (n_atoms, 3)
    charge: int
    spin: int
    lattice: np.ndarray | None = None  # (3, 3) rows
    primitive_lattice: np.ndarray | None = None  # (3, 3) rows
    primitive_symbols: tuple[str, ...] | None = None
    primitive_positions: np.ndarray | None = None  # (n_primitive_atoms, 3)
    supercell: np.ndarray | None = None  # (3, 3) int
    twist: np.ndarray | None = None  # (3,) fractional, supercell reciprocal lattice
    weight: float = 1.0  # twist weight within its geometry (sums to 1)
    lattice_constant: float | None = None  # bohr, the spec's scale of the primitive lattice

    @property
    def periodic(self) -> bool:
        return self.lattice is not None

    @property
    def charges(self) -> np.ndarray:
        return np.array([pyscf_elements.charge(s) for s in self.symbols], dtype=float)

    @property
    def n_electrons(self) -> int:
        return int(round(self.charges.sum())) - self.charge

    @property
    def n_up(self) -> int:
        return (self.n_electrons + self.spin) // 2

    @property
    def n_down(self) -> int:
        return (self.n_electrons - self.spin) // 2

    @property
    def n_cells(self) -> int:
        return 1 if self.supercell is None else round(abs(np.linalg.det(self.supercell)))

    @property
    def twist_cartesian(self) -> np.ndarray:
        """Twist k_s in bohr^-1 (zero for molecules)."""
        if not self.periodic:
            return np.zeros(3)
        return self.twist @ lat.reciprocal(self.lattice)

    def attributes(self) -> dict[str, Any]:
        """What `energies.h5` stores about the system (attributes of /systems/<id>)."""
        attrs: dict[str, Any] = dict(
            name=self.name,
            geometry=self.geometry,
            symbols=np.array(self.symbols, dtype="S"),
            positions=self.positions,
            charge=self.charge,
            spin=self.spin,
            n_electrons=self.n_electrons,
            n_up=self.n_up,
            periodic=self.periodic,
            n_cells=self.n_cells,
            weight=self.weight,
        )
        if self.periodic:
            attrs.update(
                lattice=self.lattice,
                primitive_lattice=self.primitive_lattice,
                primitive_symbols=np.array(self.primitive_symbols, dtype="S"),
                primitive_positions=self.primitive_positions,
                supercell=self.supercell,
                twist=self.twist,
            )
            if self.lattice_constant is not None:
                attrs["lattice_constant"] = self.lattice_constant
        return attrs


# ----------------------------------------------------------------------------- catalog


def catalog_dir():
    """The catalog folder: `systems/` of a source checkout, else the copy installed as vmc.catalog."""
    local = Path(__file__).resolve().parent.parent / "systems"
    if local.is_dir():
        return local
    return resources.files("vmc.catalog")


def catalog_names() -> list[str]:
    """Names of the systems shipped in the catalog (`systems/*.yaml`)."""
    return sorted(p.name[:-5] for p in catalog_dir().iterdir() if p.name.endswith(".yaml"))


def _catalog_entry(name: str) -> dict:
    path = catalog_dir() / f"{name}.yaml"
    if not path.is_file():
        raise InputError(f"config key 'system': unknown system {name!r}; the catalog has: {', '.join(catalog_names())}")
    with resources.as_file(path) as p:
        entry = load_yaml(p)
    entry.setdefault("name", name)
    return entry


def resolve_spec(spec: Any, key: str = "system") -> MoleculeSpec | CrystalSpec:
    """A validated spec from a catalog name, a YAML path, or a mapping (optionally naming a
    catalog entry whose fields it overrides)."""
    if isinstance(spec, (MoleculeSpec, CrystalSpec)):
        return spec
    if isinstance(spec, str):
        is_path = spec.endswith((".yaml", ".yml")) or "/" in spec
        raw = load_yaml(spec) if is_path else _catalog_entry(spec)
        if not isinstance(raw, dict):
            what = "empty" if raw is None else f"a YAML {type(raw).__name__}"
            raise InputError(f"config key '{key}': system file {spec} is {what}, not a mapping of system fields")
        if is_path:
            raw.setdefault("name", Path(spec).stem)
    elif isinstance(spec, dict):
        raw = dict(spec)
        # a catalog name is a base whose fields the mapping overrides; any other name just
        # labels an inline system, which then needs its atoms
        if "name" in raw and (raw["name"] in catalog_names() or "atoms" not in raw):
            raw = {**_catalog_entry(raw["name"]), **raw}
    else:
        raise InputError(f"config key '{key}': expected a system name, a file or a mapping, got {spec!r}")
    kind = raw.get("kind", "crystal" if "lattice" in raw else "molecule")
    cls = CrystalSpec if kind == "crystal" else MoleculeSpec
    try:
        return cls.model_validate(raw)
    except pydantic.ValidationError as e:
        raise InputError(validation_message(e, key)) from None


def resolve_specs(system: Any) -> list[MoleculeSpec | CrystalSpec]:
    """The `system` config value (one spec or a list) as validated specs."""
    items = system if isinstance(system, list) else [system]
    if not items:
        raise InputError("config key 'system': the list of systems is empty")
    key = lambda i: f"system.{i}" if isinstance(system, list) else "system"  # noqa: E731
    return [resolve_spec(item, key(i)) for i, item in enumerate(items)]


def specs_to_config(specs: list[MoleculeSpec | CrystalSpec]) -> Any:
    """Resolved specs as the plain data written to a run's config.yaml."""
    data = [s.model_dump(mode="json", exclude_none=True) for s in specs]
    return data[0] if len(data) == 1 else data


# ----------------------------------------------------------------------------- expansion


def _fmt(x: float) -> str:
    return f"{x:g}"


def _as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _check_symbols(symbols, name):
    for s in symbols:
        if s not in pyscf_elements.ELEMENTS[1:] or s == "X":
            raise InputError(f"system {name!r}: unknown element {s!r}")


def _check_electrons(name: str, n_electrons: int, spin: int):
    if n_electrons <= 0:
        raise InputError(f"system {name!r}: the charge leaves {n_electrons} electrons")
    if (n_electrons + spin) % 2 or abs(spin) > n_electrons:
        raise InputError(f"system {name!r}: spin {spin} is impossible with {n_electrons} electrons")


def _check_distances(name: str, symbols, positions, lattice=None):
    n = len(positions)
    if n < 2 and lattice is None:
        return
    d = positions[:, None, :] - positions[None, :, :]
    if lattice is not None:
        # minimum image over the 27 neighbouring cells catches coincident periodic images too
        shifts = np.array([(i, j, k) for i in (-1, 0, 1) for j in (-1, 0, 1) for k in (-1, 0, 1)]) @ lattice
        dist = np.linalg.norm(d[:, :, None, :] + shifts[None, None], axis=-1).min(-1)
        np.fill_diagonal(dist, np.inf)
        self_images = np.linalg.norm(shifts[np.any(shifts != 0, axis=1)], axis=1).min()
        if self_images < MIN_ATOM_DISTANCE:
            raise InputError(f"system {name!r}: the lattice vectors are (nearly) linearly dependent")
    else:
        dist = np.linalg.norm(d, axis=-1)
        np.fill_diagonal(dist, np.inf)
    i, j = np.unravel_index(np.argmin(dist), dist.shape)
    if dist[i, j] < MIN_ATOM_DISTANCE:
        raise InputError(
            f"system {name!r}: atoms {i} ({symbols[i]}) and {j} ({symbols[j]}) are "
            f"{dist[i, j]:.3f} bohr apart (on top of each other)"
        )


def _expand_molecule(spec: MoleculeSpec, name: str) -> list[System]:
    symbols = tuple(a[0] for a in spec.atoms)
    _check_symbols(symbols, name)
    coords = np.array([a[1] for a in spec.atoms], dtype=float).reshape(-1, 3)
    scales = _as_list(spec.bond_length) if spec.bond_length is not None else [None]
    charge = spec.charge
    n_el = int(sum(pyscf_elements.charge(s) for s in symbols)) - charge
    spin = spec.spin if spec.spin is not None else n_el % 2
    _check_electrons(name, n_el, spin)
    out = []
    for scale in scales:
        positions = to_bohr(coords * (1.0 if scale is None else scale), spec.unit)
        _check_distances(name, symbols, positions)
        gid = name if scale is None or len(scales) == 1 else f"{name}_b{_fmt(scale)}"
        out.append(System(id=gid, name=name, geometry=gid, symbols=symbols, positions=positions, charge=charge, spin=spin))
    return out


def _twist_set(spec: CrystalSpec, symbols, frac_positions, primitive_lattice, supercell) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(spec.twists, TwistGrid):
        twists = lat.monkhorst_pack(spec.twists.grid, spec.twists.shift)
        if spec.twists.symmetry:
            from vmc.symmetry import irreducible_twists

            return irreducible_twists(twists, symbols, frac_positions, primitive_lattice, supercell)
        return twists, np.full(len(twists), 1.0 / len(twists))
    twists = np.array(spec.twists, dtype=float).reshape(-1, 3)
    return twists, np.full(len(twists), 1.0 / len(twists))


def _expand_crystal(spec: CrystalSpec, name: str) -> list[System]:
    prim_symbols = tuple(a[0] for a in spec.atoms)
    _check_symbols(prim_symbols, name)
    try:
        supercell = lat.supercell_matrix(spec.supercell)
    except ValueError as e:
        raise InputError(f"config key 'system.supercell': {e}") from None
    n_cells = round(abs(np.linalg.det(supercell)))
    n_el = n_cells * int(sum(pyscf_elements.charge(s) for s in prim_symbols)) - spec.charge
    _check_electrons(name, n_el, spec.spin)
    if spec.charge != 0:
        raise InputError(f"system {name!r}: charged crystals are not supported (charge {spec.charge})")
    coords = np.array([a[1] for a in spec.atoms], dtype=float).reshape(-1, 3)
    constants = _as_list(spec.lattice_constant)
    out = []
    for a in constants:
        prim = np.array(spec.lattice, dtype=float) * a
        if spec.lattice_fixed is not None:
            prim = prim + np.array(spec.lattice_fixed, dtype=float)
        prim = to_bohr(prim, spec.unit)
        if abs(np.linalg.det(prim)) < 1e-6:
            raise InputError(f"system {name!r}: the lattice vectors are linearly dependent")
        if spec.coordinates == "fractional":
            prim_pos = coords @ prim
        else:
            prim_pos = to_bohr(coords * a, spec.unit)
        frac = prim_pos @ np.linalg.inv(prim)
        translations = lat.supercell_translations(supercell, prim)
        positions = (prim_pos[None, :, :] + translations[:, None, :]).reshape(-1, 3)
        symbols = prim_symbols * n_cells
        sc_lattice = supercell @ prim
        _check_distances(name, symbols, positions, sc_lattice)
        twists, weights = _twist_set(spec, prim_symbols, frac, prim, supercell)
        gid = name if len(constants) == 1 else f"{name}_a{_fmt(a)}"
        for j, (twist, w) in enumerate(zip(twists, weights)):
            sid = gid if len(twists) == 1 else f"{gid}_t{j}"
            out.append(
                System(
                    id=sid, name=name, geometry=gid, symbols=symbols, positions=positions, charge=spec.charge,
                    spin=spec.spin, lattice=sc_lattice, primitive_lattice=prim, primitive_symbols=prim_symbols,
                    primitive_positions=prim_pos, supercell=supercell, twist=np.asarray(twist, dtype=float), weight=float(w),
                    lattice_constant=float(to_bohr(a, spec.unit)),
                )
            )
    return out


def expand(specs: list[MoleculeSpec | CrystalSpec]) -> list[System]:
    """All systems of the specs: geometries x twists. Ids are unique: a name used by an
    earlier spec gets a suffix."""
    systems: list[System] = []
    used: set[str] = set()
    for i, spec in enumerate(specs):
        name = spec.name or f"system{i}"
        base, k = name, 1
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        systems += _expand_crystal(spec, name) if isinstance(spec, CrystalSpec) else _expand_molecule(spec, name)
    return systems


def build_systems(system_config: Any) -> list[System]:
    """The systems of a config's `system` value."""
    return expand(resolve_specs(system_config))


def default_elements(systems: list[System]) -> list[str]:
    """The elements of the systems, by nuclear charge."""
    return sorted({s for system in systems for s in system.symbols}, key=pyscf_elements.charge)


def check_images(config: Config, systems: list[System]) -> None:
    """Refuses fire cutoffs whose periodic images (vmc/descriptors.py) would take more than
    MAX_IMAGE_CANDIDATES lattice vectors to find in some simulation cell."""
    if config.model.name != "fire":
        return
    fire = config.model.fire
    for key, radius in (("cutoff", fire.cutoff), ("orbital_cutoff", fire.orbital_cutoff)):
        if radius is None:  # no cutoff: one image per pair
            continue
        for system in {s.geometry: s for s in systems if s.periodic}.values():
            n = lat.image_candidates(system.lattice, radius)
            if n > MAX_IMAGE_CANDIDATES:
                raise InputError(f"config key 'model.fire.{key}': {radius:g} bohr reaches {n} lattice vectors of system "
                                 f"{system.geometry!r} to search for its images; at most {MAX_IMAGE_CANDIDATES} (a smaller "
                                 "cutoff or a larger supercell)")


def resolve_config(config: Config) -> tuple[Config, list[System]]:
    """The config as a run records it (system specs resolved, `model.elements` filled in:
    what `config.yaml` of a run directory holds) and the systems it expands to."""
    specs = resolve_specs(config.system)
    systems = expand(specs)
    check_images(config, systems)
    resolved = config.model_copy(update={"system": specs_to_config(specs)}, deep=True)
    if resolved.model.elements is None:
        resolved.model.elements = default_elements(systems)
    return resolved, systems
