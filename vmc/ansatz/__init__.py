"""Wavefunction ansätze behind one interface.

Every ansatz is a pair of pure functions of (params, system data, one walker r (n_el, 3))
returning (phase, log|psi|), so psi = exp(log|psi| + i phase): real wavefunctions have phase
0 or pi, complex ones (crystals at a twist) any angle, and nothing downstream distinguishes
them. `orbitals` returns the orbital matrices that pretraining fits to Hartree–Fock.

Ansätze are found by name in `REGISTRY`: adding one is its own module (with a
`make(config, elements) -> Ansatz` factory), its hyperparameter section in vmc/config.py and
one line here (docs/architecture.md, "Adding an ansatz").
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax

from vmc.config import ModelConfig

Params = Any


@dataclasses.dataclass(frozen=True)
class Ansatz:
    """A wavefunction family.

    init(key, data, r) -> params: `data` and `r` only fix shapes; for transferable ansätze
        the parameter tree depends only on the hyperparameters and the element list.
    log_psi(params, data, r) -> (phase, log|psi|), scalars, for one walker r (n_el, 3) bohr.
    orbitals(params, data, r) -> list of orbital matrices, (n_det, n_up, n_up) and
        (n_det, n_down, n_down) for spin-blocked determinants, or one (n_det, n_el, n_el)
        for a full determinant (`full_determinant`), whose diagonal blocks are fitted.
    prepare(system, baseline) -> (baseline, features): the HF orbitals the ansatz works with
        (e.g. localized ones, also the pretraining targets) and its part of SystemData.
    kinetic(params, data, r) -> complex kinetic local energy (hartree) of one walker, where
        the ansatz computes it itself (sparse `fire`); None: folx's forward Laplacian of log_psi.
    neighbour_counts(data, r) -> (m,) int: list sizes walker r needs (sparse `fire`), and
    resize(data, needed (m,)) -> data whose capacities hold `needed` (the same object if they
        already do); None for ansätze without neighbour lists.
    single_moves: the low-rank single-electron moves of the ansatz (vmc.ansatz.moves
        .SingleMoves); None: the sampler recomputes log psi after each move (`mcmc.moves: single`).
    trainable: whether it has parameters to optimize (the HF determinant has none: no
        pretraining, no optimization, evaluation only).
    transferable: whether one parameter tree evaluates any system of the covered elements
        (fine-tuning and evaluation on other systems than the training ones).
    """

    name: str
    init: Callable[..., Params]
    log_psi: Callable[[Params, Any, jax.Array], tuple[jax.Array, jax.Array]]
    orbitals: Callable[[Params, Any, jax.Array], list[jax.Array]]
    full_determinant: bool = False
    prepare: Callable[..., tuple[Any, Any]] = lambda system, baseline: (baseline, None)
    kinetic: Callable | None = None
    neighbour_counts: Callable | None = None
    resize: Callable | None = None
    single_moves: Any = None
    trainable: bool = True
    transferable: bool = False


def haiku_ansatz(name: str, forward: Callable, prepare: Callable | None = None, **capabilities) -> Ansatz:
    """An Ansatz from a haiku `forward()` returning (log_psi, (log_psi, orbitals)) of (data, r),
    as `hk.multi_transform` expects: one parameter tree shared by both functions."""
    import haiku as hk

    net = hk.without_apply_rng(hk.multi_transform(forward))
    extra = {} if prepare is None else {"prepare": prepare}
    return Ansatz(name=name, init=net.init, log_psi=net.apply[0], orbitals=net.apply[1], **extra, **capabilities)


# name -> the module whose `make(config, elements)` builds it (imported on first use)
REGISTRY = {
    "hf": "vmc.ansatz.hf",
    "slater_jastrow": "vmc.ansatz.slater_jastrow",
    "fire": "vmc.ansatz.fire",
}


def make_ansatz(config: ModelConfig, elements: list[str]) -> Ansatz:
    """The ansatz named by `config.name` for systems made of `elements`."""
    import importlib

    return importlib.import_module(REGISTRY[config.name]).make(config, elements)
