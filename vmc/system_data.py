"""The arrays that describe one system to the JAX code: a pytree passed to every network,
Hamiltonian and sampler call as an ordinary argument.

Because a system is data and not a closure, one compiled function serves every system of
the same shapes (e.g. all twists of one geometry), and the same network parameters evaluate
any system made of known elements.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from vmc.baseline import Baseline, HFOrbitals, hf_orbitals_data
from vmc.errors import InputError
from vmc.ewald import EwaldData, make_ewald
from vmc.geometry import Cell
from vmc.systems import System


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class SystemData:
    """One system as arrays (bohr).

    atoms: (n_atoms, 3) nuclear positions; charges: (n_atoms,); species: (n_atoms,) int index
    of each atom's element in the model's element list; cell: simulation cell (None for a
    molecule); ewald: precomputed Ewald sums (None for a molecule); hf: occupied HF orbitals;
    features: whatever the ansatz derives from the system (e.g. orbital descriptors).
    Electrons are ordered spin-up first: n_up, then n_down.
    """

    atoms: jax.Array
    charges: jax.Array
    species: jax.Array
    cell: Cell | None
    ewald: EwaldData | None
    hf: HFOrbitals
    features: Any
    n_up: int = dataclasses.field(metadata=dict(static=True))
    n_down: int = dataclasses.field(metadata=dict(static=True))

    @property
    def n_electrons(self) -> int:
        return self.n_up + self.n_down

    @property
    def periodic(self) -> bool:
        return self.cell is not None


def species_index(system: System, elements: list[str]) -> np.ndarray:
    """Index of each atom's element in `elements`; an element outside it is an input error."""
    missing = sorted(set(system.symbols) - set(elements))
    if missing:
        raise InputError(
            f"system {system.name!r}: element(s) {', '.join(missing)} not in model.elements ({', '.join(elements)})"
        )
    return np.array([elements.index(s) for s in system.symbols], dtype=np.int32)


def make_system_data(system: System, baseline: Baseline, features: Any, elements: list[str]) -> SystemData:
    """Host-side System + HF baseline -> device-ready arrays (precision follows jax's x64 flag)."""
    cell = ewald = None
    if system.periodic:
        cell = Cell.make(system.lattice, system.twist_cartesian)
        ewald = make_ewald(system.lattice, system.positions, system.charges)
    return SystemData(
        atoms=jnp.asarray(system.positions),
        charges=jnp.asarray(system.charges),
        species=jnp.asarray(species_index(system, elements)),
        cell=cell,
        ewald=ewald,
        hf=hf_orbitals_data(baseline),
        features=features,
        n_up=system.n_up,
        n_down=system.n_down,
    )
