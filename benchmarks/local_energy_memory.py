"""Peak working memory of the local energy per walker, from XLA's own buffer assignment.

    python benchmarks/local_energy_memory.py configs/lih_2x2x2.yaml --set baseline.basis=sto-3g ...

Compiles the batched local energy of the config's first system for 1 and for 4 walkers and
reads the temporary-buffer size of each compiled program (`memory_analysis()`); the slope is
the memory one more walker costs. Prints it, and the `local_energy_batch` that keeps one
device's local-energy temporaries within --memory-gib (default: the device's memory, or on
CPU this host's memory over its devices, times --fraction).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import jax
import numpy as np

from vmc import memory, parallel
from vmc.api import build_config
from vmc.config import parse_override
from vmc.hamiltonian import make_batch_local_energy
from vmc.runner import Run


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("config")
    p.add_argument("--set", dest="overrides", action="append", default=[])
    p.add_argument("--memory-gib", type=float, default=None)
    p.add_argument("--fraction", type=float, default=memory.SHARE, help="share of the memory the local energy may take")
    args = p.parse_args()
    # local_energy_batch null: this script measures for itself; `auto` would compile once more at start
    cfg = build_config(args.config, {**dict(parse_override(o) for o in args.overrides), "local_energy_batch": None})
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, Path(tmp))
        params, data = parallel.unreplicate(run.state.params), parallel.unreplicate(run.data[0])
        walkers = parallel.unshard(run.state.walkers[0])
        energies = make_batch_local_energy(run.ansatz.log_psi, None, kinetic=run.ansatz.kinetic)
        one, four = (memory.measure(lambda p, d, w: energies(p, jax.random.PRNGKey(0), d, w), params, data, walkers[:n]) for n in (1, 4))
        estimate = memory.estimate_per_walker(run.ansatz.log_psi, params, data, walkers[0])
    per_walker = (four - one) / 3
    budget = args.fraction * (args.memory_gib * 2**30 if args.memory_gib else memory.device_memory())
    system = run.systems[0]
    print(f"{jax.devices()[0].device_kind} | {system.id}: {system.n_electrons} electrons, model {cfg.model.name}"
          f"{' (' + cfg.model.fire.implementation + ')' if cfg.model.name == 'fire' else ''}, basis {cfg.baseline.basis}, {cfg.precision}")
    print(f"local energy temporaries: 1 walker {one / 2**20:.1f} MiB, 4 walkers {four / 2**20:.1f} MiB, "
          f"{per_walker / 2**20:.1f} MiB per walker (vmc's upper estimate: {estimate / 2**20:.1f} MiB)")
    print(f"local_energy_batch for {budget / 2**30:.1f} GiB: {max(1, int(np.floor(budget / max(per_walker, 1))))}")


if __name__ == "__main__":
    main()
