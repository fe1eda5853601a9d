"""Unit conversion. Everything inside the package is in atomic units (bohr, hartree)."""

from pyscf.data import nist

BOHR_PER_ANGSTROM = 1.0 / nist.BOHR  # the same constant PySCF uses, so geometries agree exactly


def to_bohr(value, unit: str):
    """Converts a length (number or array) given in `unit` ('bohr' or 'angstrom') to bohr."""
    if unit == "bohr":
        return value
    if unit == "angstrom":
        return value * BOHR_PER_ANGSTROM
    raise ValueError(f"unknown length unit {unit!r}")
