"""Runs a script under jax >= 0.10 (the GPU machine's jax) by restoring the jax APIs that
vmc (pinned to jax 0.8.3) still uses. Not part of vmc: a device-benchmark aid only.
    python3 benchmarks/gpu/jax011_shim.py benchmarks/step_time.py ARGS...
Used by benchmarks/gpu/lih_2x2x2_step_time.sh (the device command; see benchmarks/RESULTS.md)."""
import runpy
import sys

import jax
import jax.numpy as jnp
import numpy as np


# Stacked copies placed by an identity pmap over the package's axis name, so that they carry
# exactly the sharding that pmap's own outputs have (no recompilation between steps). Made on
# first use: vmc imports only after the patches below.
_identity = None


def _stack(leaves):
    return jnp.stack(leaves) if isinstance(leaves[0], jax.Array) else np.stack([np.asarray(x) for x in leaves])


def device_put_sharded(shards, devices):
    global _identity
    assert len(devices) == jax.local_device_count(), "gpushim: all local devices only"
    if _identity is None:
        from vmc import parallel

        _identity = parallel.pmap(lambda t: t)
    return _identity(jax.tree.map(lambda *xs: _stack(list(xs)), *shards))


def device_put_replicated(x, devices):
    return device_put_sharded([x] * len(devices), devices)


for name, fn in (("device_put_sharded", device_put_sharded), ("device_put_replicated", device_put_replicated)):
    try:
        getattr(jax, name)
    except AttributeError:
        setattr(jax, name, fn)
        print(f"[gpushim] jax {jax.__version__}: patched jax.{name}", file=sys.stderr)


# names removed from jax.core in jax 0.11 that kfac-jax/haiku/folx still read: take them from
# jax.extend.core (and jax._src.core) where they live now
import jax.extend.core as _jexc  # noqa: E402
from jax._src import core as _src_core  # noqa: E402

for _name in set(dir(_jexc)) | {"Effects", "ShapedArray", "get_aval", "Tracer", "Trace", "MainTrace", "find_top_trace",
                                "raise_to_shaped", "AbstractValue", "ConcreteArray", "concrete_aval", "Atom", "DropVar",
                                "JaxprEqn", "Var", "Literal", "Jaxpr", "ClosedJaxpr", "new_jaxpr_eqn", "eval_jaxpr",
                                "take_current_trace", "set_current_trace", "valid_jaxtype", "gensym", "jaxpr_as_fun"}:
    if _name.startswith("_"):
        continue
    try:
        getattr(jax.core, _name)
    except AttributeError:
        for _src in (_jexc, _src_core):
            if hasattr(_src, _name):
                setattr(jax.core, _name, getattr(_src, _name))
                print(f"[gpushim] patched jax.core.{_name}", file=sys.stderr)
                break

# kfac-jax imports distrax (and so tfp) only for loss functions' `dist`, which the
# fisher_exact normal loss of vmc does not use: a stub if tfp does not import on this jax.
try:
    import distrax  # noqa: F401
except Exception as e:  # noqa: BLE001
    import types

    print(f"[gpushim] distrax unavailable ({type(e).__name__}: {e}); using a stub", file=sys.stderr)
    for m in [m for m in sys.modules if m.startswith(("distrax", "tensorflow_probability"))]:
        del sys.modules[m]
    _stub = types.ModuleType("distrax")
    _stub.__getattr__ = lambda name: type(name, (), {})  # placeholder classes (annotations)
    sys.modules["distrax"] = _stub

# kfac-jax 0.0.8 expects Primitive.get_bind_params to return (subfuns, params); since jax 0.9
# it returns params alone (call primitives put their subfuns in params["subfuns"]).
import kfac_jax._src.tag_graph_matcher as _tgm  # noqa: E402

_old_eval = _tgm.eval_jaxpr_eqn


def eval_jaxpr_eqn(eqn, in_values):
    got = eqn.primitive.get_bind_params(eqn.params)
    if isinstance(got, tuple):
        return _old_eval(eqn, in_values)
    with _tgm.jex.source_info_util.user_context(eqn.source_info.traceback), eqn.ctx.manager:
        output = eqn.primitive.bind(*in_values, **got)
    return output if isinstance(output, list) else [output]


_tgm.eval_jaxpr_eqn = eval_jaxpr_eqn

sys.argv = sys.argv[1:]
sys.path.insert(0, ".")
runpy.run_path(sys.argv[0], run_name="__main__")
