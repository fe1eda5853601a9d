"""Metropolis–Hastings sampling of |psi|^2: Gaussian all-electron moves, or sweeps of
single-electron moves (`mcmc.moves`, docs/physics.md "Single-electron moves").

Functions here act on the walkers of ONE device (batch axis first); the caller pmaps them.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from vmc.geometry import wrap
from vmc.memory import map_walkers
from vmc.systems import System


def make_mcmc_step(log_psi: Callable, n_steps: int, counts: Callable | None = None, batch: int | None = None) -> Callable:
    """sample(params, data, walkers (B, n_el, 3), key, width) -> (walkers, acceptance rate, needed).

    `n_steps` Metropolis steps, each moving all electrons of a walker at once by a Gaussian of
    standard deviation `width` (bohr). Crystal walkers are wrapped into the simulation cell,
    which leaves |psi|^2 unchanged.

    counts(data, r) -> (m,) int: the neighbour-list sizes a configuration needs
    (`Ansatz.neighbour_counts`); `needed` is their maximum over every configuration log_psi
    was evaluated at, the proposals included, so the caller can tell whether a list was too
    short anywhere (then it recomputes with larger lists). Without `counts`, needed is (0,).

    batch: walkers whose log psi is computed at once (None: all; vmc/memory.py).
    """

    def log_prob(params, data, walkers):
        return 2.0 * map_walkers(lambda r: log_psi(params, data, r)[1], walkers, batch)

    def needed_by(data, walkers):
        if counts is None:
            return jnp.zeros((0,), jnp.int32)
        return jnp.max(jax.vmap(lambda r: counts(data, r))(walkers), 0).astype(jnp.int32)

    def sample(params, data, walkers, key, width):
        def step(carry, key):
            walkers, lp, accepted, needed = carry
            k_move, k_accept = jax.random.split(key)
            proposal = wrap(walkers + width * jax.random.normal(k_move, walkers.shape, walkers.dtype), data.cell)
            lp_new = log_prob(params, data, proposal)
            u = jax.random.uniform(k_accept, lp.shape, lp.dtype)
            accept = jnp.log(u) < lp_new - lp
            walkers = jnp.where(accept[:, None, None], proposal, walkers)
            lp = jnp.where(accept, lp_new, lp)
            return (walkers, lp, accepted + jnp.mean(accept), jnp.maximum(needed, needed_by(data, proposal))), None

        lp = log_prob(params, data, walkers)
        carry = (walkers, lp, jnp.zeros((), lp.dtype), needed_by(data, walkers))
        (walkers, _, accepted, needed), _ = jax.lax.scan(step, carry, jax.random.split(key, n_steps))
        return walkers, accepted / n_steps, needed

    return sample


def make_single_electron_step(moves, n_sweeps: int, batch: int | None = None) -> Callable:
    """sample(params, data, walkers (B, n_el, 3), key, width) -> (walkers, acceptance rate, needed),
    as `make_mcmc_step`, with `n_sweeps` sweeps of single-electron moves: electrons 0 .. n_el - 1
    in turn, each displaced by a Gaussian of standard deviation `width` (bohr) and accepted with
    probability min(1, |psi'/psi|^2). Each move satisfies detailed balance, so a sweep leaves
    |psi|^2 invariant. Each sweep starts from a full evaluation of the walker (`moves.init`),
    then `moves.move` updates it (vmc.ansatz.moves.SingleMoves); the acceptance rate is
    that of the single moves. Every walker draws from its own key (`key` split over the walkers).
    """

    def one_walker(params, data, context, width, r, key):
        n = r.shape[0]

        def move(carry, args):
            state, accepted, needed = carry
            i, key = args
            k_move, k_accept = jax.random.split(key)
            x = wrap(state.r[i] + width * jax.random.normal(k_move, (3,), r.dtype), data.cell)
            proposal, need = moves.move(params, data, context, state, i, x)
            u = jax.random.uniform(k_accept, (), state.logpsi.dtype)
            accept = jnp.log(u) < 2.0 * (proposal.logpsi - state.logpsi)
            state = jax.tree.map(lambda new, old: jnp.where(accept, new, old), proposal, state)
            return (state, accepted + accept, jnp.maximum(needed, need)), None

        def sweep(carry, key):
            r, accepted, needed = carry
            state, need = moves.init(params, data, context, r)
            carry = (state, accepted, jnp.maximum(needed, need))
            (state, accepted, needed), _ = jax.lax.scan(move, carry, (jnp.arange(n), jax.random.split(key, n)))
            return (state.r, accepted, needed), None

        carry = (r, jnp.zeros((), jnp.int32), jnp.zeros((moves.n_counts,), jnp.int32))
        (r, accepted, needed), _ = jax.lax.scan(sweep, carry, jax.random.split(key, n_sweeps))
        return r, accepted / (n_sweeps * n), needed

    def sample(params, data, walkers, key, width):
        context = moves.context(params, data)
        keys = jax.random.split(key, walkers.shape[0])
        walkers, accepted, needed = map_walkers(lambda x: one_walker(params, data, context, width, *x), (walkers, keys), batch)
        return walkers, jnp.mean(accepted).astype(walkers.dtype), jnp.max(needed, 0)

    return sample


def adapt_width(width: float, acceptance: float, target: float) -> float:
    """Multiplicative step-size control towards the target acceptance rate."""
    if acceptance > target + 0.05:
        return width * 1.1
    if acceptance < target - 0.05:
        return width / 1.1
    return width


def electron_sites(system: System) -> tuple[np.ndarray, np.ndarray]:
    """Which atom each electron starts at, spin-up electrons first: (up_atoms, down_atoms).

    Atoms get electrons by nuclear charge (a cation loses them from the heaviest atoms, an
    anion gains them on the heaviest), and within each atom spins alternate up, down, up...,
    so atoms start near neutral and locally spin-paired. The global n_up is met by taking the
    preferred-up sites first.
    """
    z = system.charges.astype(int)
    counts = z.copy()
    order = np.argsort(-z, kind="stable")
    excess = system.charge  # electrons to remove (positive) or add (negative)
    i = 0
    while excess != 0:
        atom = order[i % len(order)]
        if excess > 0 and counts[atom] > 0:
            counts[atom] -= 1
            excess -= 1
        elif excess < 0:
            counts[atom] += 1
            excess += 1
        i += 1
    sites = [(atom, k % 2) for atom in range(len(z)) for k in range(counts[atom])]
    preferred_up = [s for s in sites if s[1] == 0]
    preferred_down = [s for s in sites if s[1] == 1]
    ranked = preferred_up + preferred_down
    up = sorted(a for a, _ in ranked[: system.n_up])
    down = sorted(a for a, _ in ranked[system.n_up :])
    return np.array(up, dtype=int), np.array(down, dtype=int)


def init_walkers(system: System, n_walkers: int, rng: np.random.Generator, width: float) -> np.ndarray:
    """Starting walkers (n_walkers, n_el, 3), bohr: electrons spread around their atoms."""
    up, down = electron_sites(system)
    centers = system.positions[np.concatenate([up, down])]
    walkers = centers[None] + width * rng.standard_normal((n_walkers, *centers.shape))
    if system.periodic:
        f = walkers @ np.linalg.inv(system.lattice)
        walkers = (f - np.floor(f)) @ system.lattice
    return walkers
