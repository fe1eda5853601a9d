"""Whether KFAC can run here, and the marks it needs in the network (kfac-jax is an optional
extra: `pip install "vmc[kfac]"`).

kfac-jax 0.0.8, its newest release, reads JAX internals that JAX 0.9 changed, so the extra pins
JAX below 0.9 while the rest of the package runs on current JAX (README.md, Set up). kfac-jax is
imported only where it can run; without it the tags below are the identity and `require()`
refuses `optimization.optimizer: kfac` in one line. The optimizer itself is vmc/kfac.py.

The tags (`tag_walker_independent`, `tag_predictive_distribution`) are what KFAC needs to
find the network's layers and its output distribution in the traced loss; they change no
value, so SPRING and Adam compute the same with or without kfac-jax installed.
"""

from __future__ import annotations

import functools
import importlib.util

import jax

from vmc.errors import InputError

# kfac-jax releases and the first JAX release each no longer runs on (it traces jaxprs with
# `Primitive.get_bind_params`, whose return value changed in JAX 0.9)
_BREAKS_ON = {"0.0.8": (0, 9)}


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())


def unavailable_reason() -> str | None:
    """Why KFAC cannot run in this environment, or None when it can."""
    if importlib.util.find_spec("kfac_jax") is None:
        return "kfac-jax is not installed"
    from importlib.metadata import version

    kfac_version = version("kfac-jax")
    breaks = _BREAKS_ON.get(kfac_version)
    if breaks is not None and _version(jax.__version__) >= breaks:
        return (f"kfac-jax {kfac_version} does not run on jax {jax.__version__} "
                f"(it needs jax < {'.'.join(map(str, breaks))})")
    return None


@functools.cache
def _kfac_jax():
    """kfac_jax when it can run here, else None (the tags then stay out of the network)."""
    if unavailable_reason() is not None:
        return None
    import kfac_jax

    return kfac_jax


def require() -> None:
    """Refuses `optimization.optimizer: kfac` in one line when kfac-jax cannot run here."""
    reason = unavailable_reason()
    if reason is not None:
        raise InputError(f"config key 'optimization.optimizer': kfac needs the kfac extra, and {reason}: "
                         f"pip install \"vmc[kfac]\" (it installs jax < 0.9), or choose spring or adam")


def tag_walker_independent(x: jax.Array) -> jax.Array:
    """x, marked for KFAC as a parameter with a diagonal curvature block (layers whose inputs
    do not depend on the walker, vmc/ansatz/layers.py)."""
    k = _kfac_jax()
    return x if k is None else k.register_generic(x)


def tag_predictive_distribution(out: jax.Array) -> None:
    """Marks the network's per-walker [log|psi|, phase] (B, 2) as the mean of a normal
    predictive distribution: KFAC's Fisher is then the wavefunction's metric (vmc/loss.py)."""
    k = _kfac_jax()
    if k is not None:
        k.register_normal_predictive_distribution(out)
