"""Sparse `fire`: the network evaluated on per-walker neighbour lists only (docs/physics.md,
"Sparse fire"), with the parameters and stages of the dense one (vmc/ansatz/fire.py)."""

from __future__ import annotations

import jax.numpy as jnp

from vmc.ansatz.determinants import spin_blocked_log_psi
from vmc.ansatz.jastrow import electron_cusp
from vmc.ansatz.layers import smooth_cutoff
from vmc.geometry import safe_norm
from vmc.neighbours import AtomPairs, fire_lists


class SparseFire:
    """The sparse network as haiku functions of (data, ...) on a batch of electrons, each
    built from the stages of the dense one, so that both read the same parameters.

    `log_psi` evaluates a walker from its neighbour lists (vmc/neighbours.py); the stage
    functions are what vmc/ansatz/fire_laplacian.py differentiates electron by electron.
    """

    def __init__(self, cfg, embed, orbitals, jastrow):
        """embed, orbitals, jastrow: the dense network's FiniteRangeEmbedding,
        TransferableOrbitals and NeuralJastrow modules (vmc/ansatz/fire.py)."""
        self.cfg, self.embed, self.orbitals, self.jastrow = cfg, embed, orbitals, jastrow

    def initial(self, data, r, spin, en: AtomPairs):
        """What electrons r (e, 3) with spin (e,) and pairs en (e, C) compute from their own
        coordinates: h0 (e, D) and, with a message round, what they send and their own term
        of what they receive, (e, 2, F) each (else None)."""
        d = r[:, None, :] - data.atoms[en.atom] + en.offset
        dist = safe_norm(d)
        w = smooth_cutoff(dist / self.cfg.cutoff) * en.valid
        h0 = self.embed("initial", data, d, dist, w, en.atom, spin)
        if not self.cfg.message_passing_rounds:
            return h0, None, None
        return h0, self.embed("send", h0, 0), self.embed("receive", h0, 0)

    def pair_terms(self, r, partner_r, offset, valid, partner_send, receive, same):
        """The messages (e, C, 2, F) of the pairs of electrons r (e, 3): partner_* (e, C, ...)
        of each pair's other electron, offset (e, C, 3) and valid (e, C) from the
        ElectronPairs, receive (e, 2, F) from `initial`, same (e, C): parallel spins."""
        d = r[:, None, :] - partner_r + offset
        dist = safe_norm(d)
        w = smooth_cutoff(dist / self.cfg.cutoff) * valid
        return self.embed("pair_terms", self.embed("pair_inputs", d, dist), w, partner_send, receive, same, 0)

    def embedding(self, h0, messages):
        """h (e, D) from h0 (e, D) and the summed messages (e, 2, F) (None without a message round)."""
        return self.embed("finish", h0 if messages is None else self.embed("update", h0, messages, 0))

    def local(self, h0, messages):
        """(orbital_input(h) (e, ·), the neural Jastrow summed over the e electrons) of `embedding`."""
        h = self.embedding(h0, messages)
        return self.orbitals("orbital_input", h), self.jastrow(h)

    def log_psi(self, data, r):
        n = data.n_electrons
        lists, _ = fire_lists(data, r, self.cfg.cutoff)
        spin = jnp.arange(n) < data.n_up
        h0, send, receive = self.initial(data, r, spin, lists.en)
        messages = None
        if send is not None:
            ee = lists.ee
            terms = self.pair_terms(r, r[ee.partner], ee.offset, ee.valid, send[ee.partner], receive, spin[ee.partner] == spin[:, None])
            messages = jnp.sum(terms, 1)
        h = self.embedding(h0, messages)
        o = lists.orbital
        blocks = self.orbitals("rows", data, self.orbitals("maps", data), r, h, o.atom, o.offset, o.valid)
        phase, logabs = spin_blocked_log_psi(*blocks)
        return phase, logabs + electron_cusp(data, r) + self.jastrow(h)
