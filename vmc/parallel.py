"""Device parallelism, all of it: walkers split over the devices of every host with
jax.pmap, parameters and system data replicated on each, and the multi-host runtime
(jax.distributed). No other module calls jax.pmap or jax.distributed (docs/architecture.md).

A pmapped function sees one device's walkers; `pmean`/`pmax`/`gather_flat` reduce over every
device of every host. Host-side, `host_value` reads a replicated result, `gather_walkers`
collects every host's walkers (checkpoints) and `split_walkers` hands each host its share.
Only process 0 writes files (`is_writer`); `barrier` lets the others wait for it.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

from vmc.errors import InputError

AXIS = "devices"  # the one pmap axis name of the package (kfac-jax uses it too)


def initialize(distributed: bool) -> None:
    """Joins the multi-host runtime (jax.distributed) when the config asks for it.

    On a cluster jax finds the coordinator and the process ids itself (SLURM, Open MPI, ...).
    Elsewhere set JAX_COORDINATOR_ADDRESS (host:port of process 0), JAX_NUM_PROCESSES and
    JAX_PROCESS_ID in every process's environment."""
    if not distributed or jax.distributed.is_initialized():
        return
    count, index = os.environ.get("JAX_NUM_PROCESSES"), os.environ.get("JAX_PROCESS_ID")
    try:
        jax.distributed.initialize(num_processes=None if count is None else int(count), process_id=None if index is None else int(index))
    except (ValueError, RuntimeError) as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(f"config key 'distributed': could not join the multi-host runtime ({reason}); outside a cluster "
                         f"set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID") from None


def pmap(fn, in_axes=0, donate_argnums=()):
    """fn over the local devices, one slice of each mapped argument per device; collectives
    over AXIS reach every device of every host. Python numbers among the arguments (e.g. a
    proposal width) are passed as arrays: jax 0.9's pmap across processes reads a `dtype`
    from every argument."""
    mapped = jax.pmap(fn, axis_name=AXIS, in_axes=in_axes, donate_argnums=donate_argnums)

    @functools.wraps(fn)
    def call(*args):
        return mapped(*(np.asarray(a) if isinstance(a, (int, float)) else a for a in args))

    return call


def host_value(x) -> float:
    """A replicated scalar (the same on every device, e.g. a pmean) as a Python float."""
    return float(device0(x))


def device0(x) -> np.ndarray:
    """Device 0's slice of a pmapped step's output (leading device axis), as a host array."""
    return np.asarray(_first(x))


def _first(x):
    """Device 0's slice of an array with a leading device axis. Read from this process's
    own shard: depending on the JAX version, a pmapped step's outputs in a multi-process run
    are global arrays, which neither indexing nor np.asarray may gather."""
    if isinstance(x, jax.Array):
        return x.addressable_data(0)[0]
    return x[0]


def _local(x) -> np.ndarray:
    """This process's slices of an array with a leading device axis, as one host array."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        shards = sorted(x.addressable_shards, key=lambda s: s.index[0].start or 0)
        return np.concatenate([np.asarray(s.data) for s in shards])
    return np.asarray(x)


def is_writer() -> bool:
    """Whether this process writes the run's files (process 0 of a multi-host run)."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Every process waits here until all have arrived (no-op in a single process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def host_min(x: int) -> int:
    """The smallest of every process's x (the same answer on all)."""
    if jax.process_count() == 1:
        return x
    from jax.experimental import multihost_utils

    # 64-bit whatever the run's precision: a device's bytes overflow int32 (a budget of 11.8
    # GiB came back negative, and the memory plan then refused every run of two processes)
    with jax.enable_x64(True):
        return int(np.min(multihost_utils.process_allgather(np.array(x, np.int64))))


def device_count() -> int:
    return jax.local_device_count()


def describe_devices() -> str:
    """One line: the JAX backend, its devices and hosts, e.g. 'JAX 0.8.3 on cpu: 2 devices
    (cpu) on 1 host'. A CPU run says so before hours pass (docs/robustness.md)."""
    kinds = sorted({d.device_kind for d in jax.local_devices()})
    n, hosts = jax.device_count(), jax.process_count()
    return (f"JAX {jax.__version__} on {jax.default_backend()}: {n} device{'s' if n > 1 else ''} ({', '.join(kinds)}) "
            f"on {hosts} host{'s' if hosts > 1 else ''}")


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
    """True if every floating-point leaf of a replicated pytree (leading device axis, e.g. the
    parameters) is finite. Checked by a pmapped function: a plain jit over arrays that span
    several processes needs every process's devices (jax 0.9)."""
    return not jax.tree.leaves(tree) or host_value(_all_finite(tree)) > 0


def _finite(tree):
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


_all_finite = pmap(_finite)


def copy(tree):
    """A copy on the same devices (for steps that donate their inputs), by a pmapped copy:
    each process copies its own shards, also of the global arrays of a multi-process run."""
    return _copy(tree) if jax.tree.leaves(tree) else tree


_copy = pmap(lambda tree: jax.tree.map(jnp.copy, tree))


def _device_axis():
    """The sharding of `pmap`'s own inputs and outputs: axis 0 split over the local devices,
    on a mesh axis named like the pmap axis. Arrays placed with it enter a pmapped step
    without a copy or a second compilation, on every JAX this package supports (the
    `jax.device_put_sharded/_replicated` it replaces are gone from JAX 0.10)."""
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    return NamedSharding(Mesh(np.array(jax.local_devices()), (AXIS,)), PartitionSpec(AXIS))


def _put_stacked(tree):
    """A tree whose leaves have a leading axis of length local_device_count, one slice per device."""
    return jax.device_put(tree, _device_axis())


def replicate(tree):
    """Copies of `tree` on every local device, with a leading device axis."""
    n = jax.local_device_count()
    return _put_stacked(jax.tree.map(lambda x: jnp.stack([jnp.asarray(x)] * n), tree))


def unreplicate(tree):
    """The first device's copy of a replicated tree."""
    return jax.tree.map(_first, tree)


def shard(array: np.ndarray):
    """(n_total, ...) host array -> (n_devices, n_total / n_devices, ...) on the local devices."""
    n_dev = jax.local_device_count()
    array = np.asarray(array)
    return _put_stacked(array.reshape(n_dev, -1, *array.shape[1:]))


def unshard(array) -> np.ndarray:
    """This host's device-split array back to one host array (n_total, ...)."""
    a = _local(array)
    return a.reshape(-1, *a.shape[2:])


def gather_walkers(walkers) -> np.ndarray:
    """Every host's walkers as one host array (n_total, ...), host 0's first."""
    local = unshard(walkers)
    if jax.process_count() == 1:
        return local
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.process_allgather(local)).reshape(-1, *local.shape[1:])


def split_walkers(walkers: np.ndarray):
    """This host's share of all walkers (n_total, ...), split over its devices: the inverse
    of `gather_walkers` for any number of hosts and devices that divides n_total."""
    n = walkers.shape[0] // jax.process_count()
    return shard(walkers[jax.process_index() * n:(jax.process_index() + 1) * n])


def device_keys(key: jax.Array):
    """One independent PRNG key per local device (leading device axis)."""
    return _put_stacked(jax.random.split(key, jax.local_device_count()))


def pmean(x):
    return jax.lax.pmean(x, AXIS)


def pmax(x):
    """Maximum over every device of every host (e.g. neighbour-list sizes, which must agree
    everywhere: they are array shapes)."""
    return jax.lax.pmax(x, AXIS)


def gather_flat(x: jax.Array) -> jax.Array:
    """All devices' values of a per-device batch, flattened (for exact medians)."""
    return jnp.reshape(jax.lax.all_gather(x, AXIS), (-1,))
