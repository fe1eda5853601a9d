"""`vmc plan`: devices, the memory plan, timed steps of every phase and an estimate of the
wall time, and no run directory left behind."""

import re
import shlex
from pathlib import Path

from conftest import TINY_NETWORKS

from vmc.cli import main

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _readme_plan() -> list[str]:
    """The README's `vmc plan` command, as arguments of `vmc`."""
    line = next(x for x in README.read_text().splitlines() if x.startswith("vmc plan "))
    return shlex.split(line.split("#")[0])[1:]


def test_plan_prints_devices_memory_and_an_estimate_and_writes_no_run(tmp_path, monkeypatch, capsys):
    """The README's command on LiH rocksalt, shrunk to one primitive cell at one lattice
    constant and Γ, a tiny network and few walkers."""
    monkeypatch.chdir(ROOT)  # the README's relative config path
    sets = {"system.supercell": "[1,1,1]", "system.lattice_constant": 7.674, "system.twists": "[[0,0,0]]",
            "baseline.basis": "sto-3g", "baseline.cache_dir": str(tmp_path / "hf"), "mcmc.walkers": 8,
            "mcmc.steps": 2, "pretraining.steps": 40, "mcmc.burn_in": 30, "optimization.steps": 100, "evaluation.steps": 50,
            "evaluation.burn_in": 100, **TINY_NETWORKS}
    before = sorted(ROOT.iterdir())
    assert main([*_readme_plan(), *(a for k, v in sets.items() for a in ("--set", f"{k}={v}")), "--timing-walkers", "2"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"JAX \S+ on cpu: 2 devices", out)
    assert re.search(r"memory per device \(4 walkers.*sampling .*pretraining .*local energy .*jacobian ", out)
    # timed on 2 of the 4 walkers per device, scaled; the memory plan is the full run's
    assert "with 2 walkers per device (scaled to 4)" in out
    assert "peak memory while timing 2 walkers per device" in out
    rows = {m.group(1): (int(m.group(2)), float(m.group(3)), float(m.group(4)))
            for m in re.finditer(r"^(pretraining|burn-in|optimization|evaluation)\s+(\d+)\s+([\d.]+)s\s+([\d.e+-]+)s", out, re.M)}
    assert {k: v[0] for k, v in rows.items()} == {"pretraining": 40, "burn-in": 30, "optimization": 100, "evaluation": 150}
    # the first step compiles: the estimate is that step plus the others at the timed speed
    for first, per in (v[1:] for v in rows.values()):
        assert first > per > 0
    assert re.search(r"estimated wall time: \d+:\d\d:\d\d", out)
    assert sorted(ROOT.iterdir()) == before  # no run directory
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
