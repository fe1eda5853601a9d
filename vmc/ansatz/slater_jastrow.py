"""`slater_jastrow`: HF orbitals with a small trainable orbital correction, times a Jastrow.

Phi^k_ij = phi_j(r_i) (1 + c^k_j(h_i)) with h_i a permutation-equivariant embedding of
electron i (its nuclei and a mean field of the other electrons), so the determinant stays
antisymmetric; the correction starts near zero, so the ansatz starts at Hartree–Fock times
the cusp Jastrow. Not transferable: the correction has one output per orbital.
"""

from __future__ import annotations

import haiku as hk
import jax
import jax.numpy as jnp

from vmc.ansatz import Ansatz, haiku_ansatz
from vmc.ansatz.determinants import spin_blocked_log_psi
from vmc.ansatz.jastrow import NeuralJastrow, electron_cusp, nuclear_cusp
from vmc.baseline import eval_hf_orbitals
from vmc.config import ModelConfig
from vmc.geometry import displacement_features, distance, offdiag_distance, pair_displacements


class Embedding(hk.Module):
    """h_i (n_el, hidden) from electron–nucleus features and same/opposite-spin mean fields."""

    def __init__(self, hidden: int, layers: int, n_elements: int, name: str = "embedding"):
        super().__init__(name=name)
        self.hidden, self.layers, self.n_elements = hidden, layers, n_elements

    def __call__(self, data, r: jax.Array) -> jax.Array:
        n, n_up = data.n_electrons, data.n_up
        d_en = pair_displacements(r, data.atoms)  # (n_el, n_atoms, 3)
        dist_en = distance(d_en, data.cell, safe=True)[..., None]
        species = jax.nn.one_hot(data.species, self.n_elements)  # (n_atoms, n_elements)
        en = jnp.concatenate(
            [displacement_features(d_en, data.cell), dist_en, jnp.exp(-dist_en), jnp.broadcast_to(species, (n, *species.shape))],
            axis=-1,
        )
        h = jnp.sum(jnp.tanh(hk.Linear(self.hidden, name="en")(en)), axis=1)  # (n_el, hidden)

        d_ee = pair_displacements(r, r)
        dist_ee = offdiag_distance(r, data.cell)[..., None]
        ee = jnp.concatenate([displacement_features(d_ee, data.cell), dist_ee, jnp.exp(-dist_ee)], axis=-1)
        g = jnp.tanh(hk.Linear(self.hidden, name="ee")(ee))  # (n, n, hidden)
        spin = jnp.arange(n) < n_up
        same = (spin[:, None] == spin[None, :]) & ~jnp.eye(n, dtype=bool)
        opp = spin[:, None] != spin[None, :]
        mean = lambda mask: jnp.sum(g * mask[..., None], 1) / jnp.maximum(mask.sum(1, keepdims=True), 1)  # noqa: E731
        h = jnp.concatenate([h, mean(same), mean(opp)], axis=-1)
        h = jnp.tanh(hk.Linear(self.hidden, name="mix")(h))
        for i in range(self.layers - 1):
            h = h + jnp.tanh(hk.Linear(self.hidden, name=f"layer{i}")(h))
        return h


def make(config: ModelConfig, elements: list[str]) -> Ansatz:
    sj = config.slater_jastrow
    n_det = config.determinants
    n_elements = len(elements)

    def correction(h: jax.Array, n_orbitals: int, name: str) -> jax.Array:
        """(n_det, n_el_s, n_orbitals) multiplicative orbital corrections, small at start."""
        out = hk.Linear(n_det * n_orbitals, w_init=hk.initializers.VarianceScaling(1e-2), name=name)(h)
        return jnp.moveaxis(out.reshape(h.shape[0], n_det, n_orbitals), 1, 0)

    def orbital_blocks(data, r, h):
        up, down = eval_hf_orbitals(data.hf, r)
        spins = [(up[: data.n_up], h[: data.n_up], "up"), (down[data.n_up :], h[data.n_up :], "down")]
        blocks = []
        for orbitals, h_s, spin in spins:
            n_s = orbitals.shape[0]
            if n_s == 0:
                # no electron of this spin: the empty block (det 1) is a constant, because
                # folx's sparse derivative rules fail on zero-size arrays that depend on the
                # input (folx 0.2.30 on jax 0.10)
                blocks.append(jnp.zeros((n_det, 0, 0), orbitals.dtype))
            elif not sj.orbital_correction:
                blocks.append(jnp.broadcast_to(orbitals, (n_det, *orbitals.shape)))
            else:
                blocks.append(orbitals[None] * (1 + correction(h_s, n_s, f"orbital_correction_{spin}")))
        return blocks

    def forward():
        embed = Embedding(sj.hidden, sj.layers, n_elements)
        jastrow = NeuralJastrow(sj.hidden)

        def log_psi(data, r):
            h = embed(data, r)
            phase, logabs = spin_blocked_log_psi(*orbital_blocks(data, r, h))
            j = electron_cusp(data, r) + nuclear_cusp(data, r, n_elements) + jastrow(h)
            return phase, logabs + j

        def orbitals(data, r):
            return orbital_blocks(data, r, embed(data, r))

        return log_psi, (log_psi, orbitals)

    return haiku_ansatz("slater_jastrow", forward)
