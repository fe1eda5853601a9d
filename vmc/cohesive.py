"""Cohesive energy of a crystal from its energy per primitive cell and isolated-atom energies.

E_coh = (E_cell - sum of the atom energies of one primitive cell's atoms) / Z, in Ha per
formula unit, Z the number of formula units in the primitive cell (the greatest common
divisor of the element counts). Negative means bound. The atom energies are taken as exact:
the error bar is that of E_cell, divided by Z.
"""

from __future__ import annotations

import math
from collections import Counter

from pyscf.data import elements as pyscf_elements

from vmc.errors import InputError


def parse_atom_energies(items: list[str] | None) -> dict[str, float]:
    """['Li=-7.478060', 'H=-0.5'] -> {'Li': -7.47806, 'H': -0.5} (hartree); InputError on a
    malformed item, an unknown element or a repeated one."""
    out: dict[str, float] = {}
    for item in items or []:
        symbol, sep, value = str(item).partition("=")
        symbol = symbol.strip()
        try:
            energy = float(value)
        except ValueError:
            energy = math.nan
        if not sep or not symbol or not math.isfinite(energy):
            raise InputError(f"--atom-energy {item!r}: expected ELEMENT=ENERGY in hartree, e.g. Li=-7.478060")
        if symbol not in pyscf_elements.ELEMENTS[1:] or symbol == "X":
            raise InputError(f"--atom-energy {item!r}: unknown element {symbol!r}")
        if symbol in out:
            raise InputError(f"--atom-energy {symbol}: given twice")
        out[symbol] = energy
    return out


def formula(symbols: list[str]) -> tuple[str, int]:
    """('LiH', Z): the reduced formula of a primitive cell's atoms and its formula units Z."""
    counts = Counter(symbols)
    z = math.gcd(*counts.values())
    order = sorted(counts, key=lambda s: (pyscf_elements.charge(s) == 1, s))  # hydrogen last
    text = "".join(s + (str(counts[s] // z) if counts[s] // z > 1 else "") for s in order)
    return text, z


def missing(symbols: list[str], atom_energies: dict[str, float]) -> list[str]:
    """The elements of `symbols` without an atom energy, sorted."""
    return sorted(set(symbols) - set(atom_energies))


def cohesive_energy(energy_per_cell: float, error: float, symbols: list[str], atom_energies: dict[str, float]) -> tuple[float, float]:
    """(E_coh, error) in Ha per formula unit for a primitive cell of atoms `symbols` (n,)
    with energy_per_cell ± error (Ha). KeyError for an element without an atom energy."""
    _, z = formula(symbols)
    atoms = sum(atom_energies[s] for s in symbols)
    return (energy_per_cell - atoms) / z, error / z
