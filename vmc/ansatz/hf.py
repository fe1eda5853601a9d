"""`hf`: the bare Hartree–Fock determinant, nothing trained (the reference for every test)."""

from __future__ import annotations

import jax.numpy as jnp

from vmc.ansatz import Ansatz
from vmc.ansatz.determinants import spin_blocked_log_psi
from vmc.baseline import eval_hf_orbitals


def hf_orbital_blocks(data, r):
    """HF orbital matrices (1, n_up, n_up) and (1, n_down, n_down) at electrons r (n_el, 3)."""
    up, down = eval_hf_orbitals(data.hf, r)
    return [up[None, : data.n_up], down[None, data.n_up :]]


def make_hf() -> Ansatz:
    def log_psi(params, data, r):
        return spin_blocked_log_psi(*hf_orbital_blocks(data, r))

    def orbitals(params, data, r):
        return hf_orbital_blocks(data, r)

    return Ansatz(name="hf", init=lambda key, data, r: {}, log_psi=log_psi, orbitals=orbitals, trainable=False, transferable=True)


def make(config, elements: list[str]) -> Ansatz:
    """The registry's factory (vmc/ansatz/__init__.py): the HF determinant has no hyperparameters."""
    return make_hf()


def hf_targets(data, r, full: bool):
    """Pretraining targets at r: HF blocks, or one block-diagonal (1, n_el, n_el) matrix if `full`."""
    up, down = hf_orbital_blocks(data, r)
    if not full:
        return [up, down]
    n_up, n_dn = data.n_up, data.n_down
    top = jnp.concatenate([up, jnp.zeros((1, n_up, n_dn), up.dtype)], axis=-1)
    bottom = jnp.concatenate([jnp.zeros((1, n_dn, n_up), down.dtype), down], axis=-1)
    return [jnp.concatenate([top, bottom], axis=-2)]
