"""`vmc plan`: devices, the memory plan, timed steps of every phase and an estimate of the
wall time, and no run directory left behind."""

import re

from conftest import TINY_NETWORKS

from vmc.cli import main


def test_plan_prints_devices_memory_and_an_estimate_and_writes_no_run(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sets = {"model.name": "fire", "baseline.basis": "sto-3g", "baseline.cache_dir": str(tmp_path / "hf"), "mcmc.walkers": 8,
            "mcmc.steps": 2, "pretraining.steps": 40, "mcmc.burn_in": 30, "optimization.steps": 100, "evaluation.steps": 50, "evaluation.burn_in": 100,
            **TINY_NETWORKS}
    args = [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    config = __file__.replace("tests/test_plan.py", "configs/h2.yaml")
    assert main(["plan", config, *args]) == 0
    out = capsys.readouterr().out
    assert re.search(r"JAX \S+ on cpu: 2 devices", out)
    assert re.search(r"memory per device \(4 walkers.*sampling .*pretraining .*local energy .*jacobian ", out)
    assert "peak memory while timing" in out
    rows = {m.group(1): (int(m.group(2)), float(m.group(3)), float(m.group(4)))
            for m in re.finditer(r"^(pretraining|burn-in|optimization|evaluation)\s+(\d+)\s+([\d.]+)s\s+([\d.e+-]+)s", out, re.M)}
    assert {k: v[0] for k, v in rows.items()} == {"pretraining": 40, "burn-in": 30, "optimization": 100, "evaluation": 150}
    # the first step compiles: the estimate is that step plus the others at the timed speed
    for first, per in (v[1:] for v in rows.values()):
        assert first > per > 0
    assert re.search(r"estimated wall time: \d+:\d\d:\d\d", out)
    assert not (tmp_path / "runs").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]
