"""Rejected steps: non-finite results and energy jumps are retried from the state before them,
never checkpointed, and too many in a row stop the run with exit status 3."""

import dataclasses

import h5py
import numpy as np
import yaml

from vmc import checkpoint
from vmc.cli import main
from vmc.outputs import read_train
from vmc.rejection import StepGuard

TINY = {
    "system": "H2", "seed": 3,
    "baseline": {"basis": "sto-3g"},
    "model": {"name": "slater_jastrow", "slater_jastrow": {"hidden": 8, "layers": 1}},
    "mcmc": {"walkers": 32, "burn_in": 5, "steps": 3},
    "pretraining": {"steps": 3},
    # the checks are the runner's, the same for every optimizer: Adam compiles fastest
    "optimization": {"steps": 10, "max_rejected": 3, "optimizer": "adam"},
    "evaluation": {"steps": 5, "burn_in": 2},
    "checkpoint": {"every": 2, "keep": 10},
}


def _patch_optimizer_step(monkeypatch, fault):
    """Every optimizer step's (params, state, stats) passes through fault(params, state, stats)."""
    import vmc.training

    make = vmc.training.make_optimizer

    def faulty_make_optimizer(*args):
        optimizer = make(*args)
        step = optimizer.step
        optimizer.step = lambda params, state, key, batch: fault(*step(params, state, key, batch))
        return optimizer

    monkeypatch.setattr(vmc.training, "make_optimizer", faulty_make_optimizer)


def test_guard_rejects_non_finite_and_jumps_only():
    guard = StepGuard(10.0)
    assert guard.reason("A", np.nan, 1.0) and guard.reason("A", -1.0, np.inf)
    assert guard.reason("A", -1.0, 0.04) is None  # nothing to compare with yet
    guard.accept("A", -1.35, 0.04)
    # the Adam blow-up of the issue: 2.3e8 Ha after one step
    assert "robust standard deviations" in guard.reason("A", -2.3e8, 1e17)
    assert guard.reason("A", 24221.0, 1e4)
    # within ten local-energy standard deviations (sqrt(0.04) = 0.2 Ha): accepted
    assert guard.reason("A", -1.35 + 1.9, 0.04) is None
    assert guard.reason("A", -1.35 - 2.1, 0.04)
    assert guard.reason("B", -100.0, 1.0) is None  # systems are judged apart
    # a healthy noisy, drifting trajectory is never rejected
    rng = np.random.default_rng(0)
    guard = StepGuard(10.0)
    for t in range(2000):
        e = -1.0 - 0.17 * (1 - np.exp(-t / 200)) + 0.05 * rng.standard_t(3)
        assert guard.reason("A", e, 0.5) is None, t
        guard.accept("A", e, 0.5)


def test_rejected_steps_are_retried_and_never_saved(tmp_path, monkeypatch, capsys):
    """Call 2 (step 2) returns NaN parameters, call 4 (step 3) a finite energy jump, and from
    call 8 (step 6) on every attempt is NaN: steps 0-5 are kept once each, step 6 is tried
    max_rejected = 3 times, the run stops with status 3, and the newest checkpoint (step 6)
    holds the last good, finite state."""
    calls = []

    def fault(params, state, stats):
        n = len(calls)
        calls.append(n)
        if n == 2 or n >= 8:
            params = {k: {n_: v * np.nan for n_, v in leaf.items()} for k, leaf in params.items()}
        if n == 4:
            stats = dataclasses.replace(stats, energy=stats.energy + 1e4)
        return params, state, stats

    _patch_optimizer_step(monkeypatch, fault)
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    code = main(["run", str(config), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 3, err
    assert err.count("rejected:") == 5 and "not finite" in err and "robust standard deviations" in err
    assert "vmc: optimization diverged: 3 consecutive steps rejected at step 6" in err
    assert "with a lower learning rate" in err  # an update made the state bad
    assert len(calls) == 11
    with h5py.File(out / "energies.h5", "r") as f:
        train = read_train(f["systems/H2"])
        assert list(train["step"]) == list(range(6))
        assert np.all(np.isfinite(train["energy"])) and np.all(np.abs(train["energy"]) < 100)
        assert f["systems/H2/train"].attrs["rejected"] == 5
        assert f["systems/H2/eval/energy"].shape == (0,)  # nothing evaluated
    saved = checkpoint.list_checkpoints(out / "checkpoints")
    assert checkpoint.checkpoint_step(saved[0]) == 6
    for path in saved:
        with h5py.File(path, "r") as f:
            assert all(np.all(np.isfinite(f["params"][k][()])) for k in f["params"])


def test_non_finite_energy_at_step_0_does_not_blame_the_learning_rate(tmp_path, monkeypatch, capsys):
    """A step's energy is that of the state before its update: non-finite at step 0 means the
    starting wavefunction is bad, and the message must not send the user to a lower learning rate."""
    _patch_optimizer_step(monkeypatch, lambda params, state, stats: (params, state, dataclasses.replace(stats, energy=stats.energy * np.nan)))
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out)]) == 3
    err = capsys.readouterr().err
    assert "rejected at step 0 (H2)" in err and "before any update" in err, err
    assert "lower learning rate" not in err
    assert checkpoint.checkpoint_step(checkpoint.list_checkpoints(out / "checkpoints")[-1]) == 0
