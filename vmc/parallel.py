"""Walkers split over local devices with jax.pmap; parameters and system data replicated."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np

from vmc.errors import InputError

AXIS = "devices"  # the one pmap axis name of the package (kfac-jax uses it too)


def initialize(distributed: bool) -> None:
    """Joins the multi-host runtime (jax.distributed) when the config asks for it."""
    if distributed:
        jax.distributed.initialize()


def device_count() -> int:
    return jax.local_device_count()


def check_walkers(n_walkers: int) -> int:
    """Walkers per local device; they must split evenly over all devices of all hosts."""
    n_dev = jax.device_count()
    if n_walkers % n_dev:
        raise InputError(f"config key 'mcmc.walkers': {n_walkers} walkers do not split evenly over {n_dev} devices")
    return n_walkers // n_dev


# Copies of the walkers a step holds at once (positions, proposals, the host copy of a
# checkpoint, ...); the network's intermediates come on top and are not counted.
WALKER_COPIES = 4


def host_memory() -> int:
    """Physical memory of this host in bytes."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_walker_memory(n_per_device: int, n_electrons: list[int], itemsize: int) -> None:
    """Refuses, before anything is allocated, walkers whose positions alone cannot fit in
    this host's memory. n_electrons: of each system (each keeps its own walkers)."""
    n_local = n_per_device * jax.local_device_count()
    need = WALKER_COPIES * n_local * 3 * itemsize * sum(n_electrons)
    have = host_memory()
    if need > have // 2:
        raise InputError(f"config key 'mcmc.walkers': {n_local * jax.process_count()} walkers of "
                         f"{max(n_electrons)} electrons need about {need / 2**30:.3g} GiB for their positions alone, "
                         f"more than half of this host's {have / 2**30:.3g} GiB")


def all_finite(tree) -> bool:
    """True if every floating-point leaf of a pytree of device arrays is finite."""
    return bool(_all_finite(tree))


@jax.jit
def _all_finite(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


def copy(tree):
    """A copy on the same devices (for steps that donate their inputs)."""
    return jax.tree.map(lambda x: x.copy(), tree)


def replicate(tree):
    """Copies of `tree` on every local device, with a leading device axis."""
    return jax.device_put_replicated(tree, jax.local_devices())


def unreplicate(tree):
    """The first device's copy of a replicated tree."""
    return jax.tree.map(lambda x: x[0], tree)


def shard(array: np.ndarray):
    """(n_total, ...) host array -> (n_devices, n_total / n_devices, ...) on the local devices."""
    n_dev = jax.local_device_count()
    array = np.asarray(array)
    return jax.device_put_sharded(list(array.reshape(n_dev, -1, *array.shape[1:])), jax.local_devices())


def unshard(array) -> np.ndarray:
    """Device-split array back to one host array (n_total, ...)."""
    a = np.asarray(array)
    return a.reshape(-1, *a.shape[2:])


def device_keys(key: jax.Array):
    """One independent PRNG key per local device (leading device axis)."""
    keys = jax.random.split(key, jax.local_device_count())
    return jax.device_put_sharded(list(keys), jax.local_devices())


def pmean(x):
    return jax.lax.pmean(x, AXIS)


def pmax(x):
    """Maximum over every device of every host (e.g. neighbour-list sizes, which must agree
    everywhere: they are array shapes)."""
    return jax.lax.pmax(x, AXIS)


def gather_flat(x: jax.Array) -> jax.Array:
    """All devices' values of a per-device batch, flattened (for exact medians)."""
    return jnp.reshape(jax.lax.all_gather(x, AXIS), (-1,))
