import atexit
import os
import shutil
import tempfile

# Tests see two CPU devices, so the pmap paths are exercised with real splitting.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=2")

# One XLA compilation cache for the session, private to it and removed at its end: most of the
# suite's time is compilation, and many tests compile the same programs again (a run, its
# resumption, the `vmc` subprocesses of the whole-run tests). pytest-xdist's workers and those
# subprocesses inherit the variable, so they share it. A cache hit gives the same executable,
# so no test checks less; a damaged entry is recompiled (jax warns and carries on).
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    _cache = tempfile.mkdtemp(prefix="vmc-tests-xla-cache-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _cache
    atexit.register(shutil.rmtree, _cache, ignore_errors=True)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from vmc.kfac_tags import unavailable_reason  # noqa: E402

# KFAC is an optional extra (kfac-jax pins jax < 0.9): its tests carry the `kfac` mark, and
# .ci/run runs them (-m kfac) in a second environment that has the extra.
KFAC_MISSING = unavailable_reason()


def pytest_collection_modifyitems(config, items):
    if KFAC_MISSING is None:
        return
    skip = pytest.mark.skip(reason=f"{KFAC_MISSING}; .ci/run runs the KFAC tests with the kfac extra installed")
    for item in items:
        if item.get_closest_marker("kfac") is not None:
            item.add_marker(skip)


# Small networks: the tests check properties of the functions, not their accuracy.
TINY_NETWORKS = {
    "model.slater_jastrow.hidden": 8,
    "model.fire.embedding_dim": 8, "model.fire.filter_dim": 4, "model.fire.n_gaussians": 4,
    "model.fire.orbital_dim": 4, "model.fire.descriptor_hidden": 8, "model.fire.jastrow_hidden": 8,
    "model.fire.mlp_layers": 1,
}


def hold_lock(path):
    """Another process that claims the run directory `path` and sleeps; returns it once it
    holds the lock."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent(f"""
        import time
        from vmc.rundir import claim
        d = claim({str(path)!r}, {{}}, lambda raw: raw)
        print("locked", flush=True)
        time.sleep(120)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def _precision(enable_x64: bool):
    previous = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", enable_x64)
    yield
    jax.config.update("jax_enable_x64", previous)


@pytest.fixture
def x64():
    """Runs a test in float64 and restores the previous precision afterwards."""
    yield from _precision(True)


@pytest.fixture
def x32():
    yield from _precision(False)


@pytest.fixture
def wavefunction(tmp_path):
    """build(system_spec, model, seed=0, walkers=2, overrides={dotted key: value}) ->
    (system, ansatz, data, params, walkers (walkers, n_el, 3)): STO-3G, tiny networks."""
    from vmc.ansatz import make_ansatz
    from vmc.baseline import hartree_fock
    from vmc.config import make_config
    from vmc.mcmc import init_walkers
    from vmc.system_data import make_system_data
    from vmc.systems import build_systems, resolve_specs

    def build(system_spec, model, seed=0, walkers=2, overrides=None):
        cfg = make_config(None, {"system": system_spec, "model.name": model, "baseline.basis": "sto-3g",
                                 "baseline.cache_dir": str(tmp_path / "hf"), **TINY_NETWORKS, **(overrides or {})})
        (system,) = build_systems(resolve_specs(cfg.system))
        elements = cfg.model.elements or sorted(set(system.symbols))
        ansatz = make_ansatz(cfg.model, elements)
        data = make_system_data(system, *ansatz.prepare(system, hartree_fock(system, cfg.baseline)), elements)
        r = jnp.asarray(init_walkers(system, walkers, np.random.default_rng(seed), 1.0))
        params = ansatz.init(jax.random.PRNGKey(seed), data, r[0])
        return system, ansatz, data, params, r

    return build
