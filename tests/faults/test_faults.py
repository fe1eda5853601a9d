"""Fault injection with real processes: concurrent writers, signals, SIGKILL during writes,
a full disk, a diverging optimizer. Slow (several whole runs), so `.ci/run` runs these as a
second stage: `python -m pytest -q -m faults tests/faults`."""

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from vmc import checkpoint
from vmc.outputs import read_train

pytestmark = pytest.mark.faults

TINY = {
    "system": "H2", "seed": 3,
    "baseline": {"basis": "sto-3g"},
    "model": {"name": "slater_jastrow", "slater_jastrow": {"hidden": 8, "layers": 1}},
    "mcmc": {"walkers": 32, "burn_in": 5, "steps": 3},
    "pretraining": {"steps": 3},
    "optimization": {"steps": 30},
    "evaluation": {"steps": 5, "burn_in": 2},
    "checkpoint": {"every": 1000, "keep": 3},
}

# For tests that act on a run while it optimizes: slower steps and more of them than TINY, so
# that the run is still in its optimization loop however fast the machine is. TINY's steps
# take 8 ms: a fast machine finished its 30 between a poll that saw 15 rows and the signal.
# These take ~0.1 s, and 185 remain after the last signal: seconds against a 0.2 s poll.
SLOW = {**TINY, "mcmc": {**TINY["mcmc"], "walkers": 256, "steps": 20}, "optimization": {"steps": 200}}


def _config(tmp_path, cfg=TINY, name="tiny.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _vmc(*args, env_extra=None):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1", **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-m", "vmc", *args], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _train(run_dir):
    with h5py.File(Path(run_dir) / "energies.h5", "r", locking=False) as f:
        return read_train(f["systems/H2"])


def _wait_for_steps(run_dir, n, proc, timeout=600):
    """Waits until the run has written n training rows."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        assert proc.poll() is None, proc.communicate()
        try:
            if len(_train(run_dir)["step"]) >= n:
                return
        except (OSError, KeyError):
            pass
        time.sleep(0.2)
    raise TimeoutError


def _errors(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("vmc:")]


def test_two_runs_on_one_directory(tmp_path):
    """The second writer is refused with the first one's PID; the first is unharmed."""
    cfg = _config(tmp_path, SLOW)
    out = tmp_path / "run"
    first = _vmc("run", cfg, "--out", str(out))
    _wait_for_steps(out, 1, first)
    second = _vmc("run", cfg, "--out", str(out))
    _, err = second.communicate(timeout=300)
    assert second.returncode == 2 and _errors(err) == [
        f"vmc: error: run directory {out}: in use by another vmc process (PID {first.pid}); wait for it to finish or choose another --out"]
    _, err = first.communicate(timeout=600)
    assert first.returncode == 0, err
    assert list(_train(out)["step"]) == list(range(200))


def test_sigterm_and_sigint_checkpoint_and_resume_exactly(tmp_path):
    """SIGTERM, resume, SIGINT, resume: a checkpoint at the step each signal arrived, one line
    each, exit 143 and 130, and the same trajectory as an uninterrupted run."""
    cfg = _config(tmp_path, SLOW)
    full = tmp_path / "full"
    proc = _vmc("run", cfg, "--out", str(full))
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err

    out = tmp_path / "run"
    for sig, status, at_least in [(signal.SIGTERM, 143, 5), (signal.SIGINT, 130, 15)]:
        proc = _vmc("run", cfg, "--out", str(out)) if sig == signal.SIGTERM else _vmc("run", str(out))
        _wait_for_steps(out, at_least, proc)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == status, err
        (line,) = _errors(err)
        step = len(_train(out)["step"])
        assert line == f"vmc: stopped by {sig.name} at step {step} with a checkpoint; `vmc run {out}` resumes"
        assert checkpoint.checkpoint_step(checkpoint.list_checkpoints(out / "checkpoints")[0]) == step
    proc = _vmc("run", str(out))
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    a, b = _train(full), _train(out)
    assert list(b["step"]) == list(range(200))
    np.testing.assert_allclose(b["energy"], a["energy"], rtol=1e-5)


# sparse `fire` sampled by single-electron moves with low-rank updates (vmc/ansatz/fire_moves.py)
SINGLE = {**TINY, "model": {"name": "fire", "fire": {"embedding_dim": 8, "filter_dim": 4, "n_gaussians": 4, "orbital_dim": 4,
                                                    "descriptor_hidden": 8, "jastrow_hidden": 8, "mlp_layers": 1}},
          "mcmc": {**TINY["mcmc"], "moves": "single", "walkers": 64}, "optimization": {"steps": 40},
          "checkpoint": {"every": 5, "keep": 3}}


def test_single_moves_resume_exactly_after_sigkill(tmp_path):
    """`mcmc.moves: single`: killed after its step-10 checkpoint, the run resumes from it and
    ends on the uninterrupted run's trajectory (walkers, widths and keys restored)."""
    cfg = _config(tmp_path, SINGLE)
    full = tmp_path / "full"
    proc = _vmc("run", cfg, "--out", str(full))
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err

    out = tmp_path / "run"
    proc = _vmc("run", cfg, "--out", str(out))
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:
        if any(checkpoint.checkpoint_step(p) >= 10 for p in checkpoint.list_checkpoints(out / "checkpoints")):
            break
        time.sleep(0.1)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc = _vmc("run", str(out))
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 0, err
    a, b = _train(full), _train(out)
    assert list(b["step"]) == list(range(40))
    np.testing.assert_allclose(b["energy"], a["energy"], rtol=1e-5)
    np.testing.assert_allclose(b["pmove"], a["pmove"], rtol=1e-6)


def test_sigkill_during_appends_leaves_whole_rows(tmp_path):
    """60 SIGKILLs at random moments of a process appending rows to energies.h5: every time
    the file reads, and its rows are whole and consecutive (the old layout, a dataset per
    column, left `step` one row longer in about 1 of 60 kills)."""
    path = tmp_path / "energies.h5"
    writer = textwrap.dedent(f"""
        from vmc.outputs import EnergyFile, read_train_rows
        from vmc.systems import build_systems
        f = EnergyFile({str(path)!r}, build_systems("H2"), "config", [-1.0])
        n = len(read_train_rows({str(path)!r}, "H2")["step"])
        print("ready", flush=True)
        while True:
            f.append_train("H2", step=n, energy=-1.0 - n, variance=0.1, pmove=0.5, wall_time=1.0)
            n += 1
    """)
    rng = random.Random(0)
    for _ in range(60):
        proc = subprocess.Popen([sys.executable, "-c", writer], stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.3))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        with h5py.File(path, "r", locking=False) as f:
            train = read_train(f["systems/H2"])
        n = len(train["step"])
        np.testing.assert_array_equal(train["step"], np.arange(n))
        np.testing.assert_array_equal(train["energy"], -1.0 - np.arange(n))
    assert n > 100


@pytest.fixture
def small_disk(tmp_path):
    """A 1.5 MB tmpfs (needs root, as CI has)."""
    target = tmp_path / "disk"
    target.mkdir()
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1500k", "tmpfs", str(target)], capture_output=True, text=True)
    if mount.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mount.stderr.strip()}")
    yield target
    subprocess.run(["umount", "-l", str(target)], capture_output=True)


def test_full_disk_one_line_and_intact_checkpoints(tmp_path, small_disk):
    """Checkpoints every step on a disk that fills: one line, exit status 4, no segfault, and
    every checkpoint left on the disk loads."""
    cfg = _config(tmp_path, {**TINY, "checkpoint": {"every": 1, "keep": 1000}, "optimization": {"steps": 500}})
    out = small_disk / "run"
    proc = _vmc("run", cfg, "--out", str(out), "--set", f"baseline.cache_dir={tmp_path / 'hf'}")
    _, err = proc.communicate(timeout=900)
    assert proc.returncode == 4, err
    (line,) = _errors(err)
    assert "No space left on device" in line, err
    assert "Traceback" not in err
    saved = checkpoint.list_checkpoints(out / "checkpoints")
    assert len(saved) > 3
    for path in saved:
        checkpoint.validate(path)
    assert not list((out / "checkpoints").glob("*.tmp"))


def test_adam_blow_up_stops_with_status_3(tmp_path):
    """Adam at learning rate 10 (energies of -2.3e8 Ha before): every step rejected, exit 3,
    newest checkpoint finite, and no nonsense energy reported."""
    cfg = _config(tmp_path, {**TINY, "optimization": {"steps": 30, "optimizer": "adam", "adam": {"learning_rate": 10.0}}})
    out = tmp_path / "run"
    proc = _vmc("run", cfg, "--out", str(out))
    stdout, err = proc.communicate(timeout=900)
    assert proc.returncode == 3, err
    assert _errors(err)[-1].startswith("vmc: optimization diverged: 10 consecutive steps rejected")
    assert "E =" not in stdout
    energies = _train(out)["energy"]
    assert np.all(np.abs(energies) < 10)
    checkpoint.validate(checkpoint.list_checkpoints(out / "checkpoints")[0])


def test_signals_before_the_first_checkpoint_exit_with_their_status_and_say_what_resumes(tmp_path):
    """SIGTERM while the run is set up (memory plan, compilation) and SIGINT in pretraining:
    exit 143 / 130 with one line that says the run has no checkpoint yet (it said "resumes
    from the last checkpoint", and a signal landing in folx's tracing exited 0)."""
    cfg = _config(tmp_path, {**TINY, "model": {"name": "fire", "fire": {"embedding_dim": 8, "orbital_dim": 4}},
                             "pretraining": {"steps": 10000}})
    for sig, status, ready in [(signal.SIGTERM, 143, "energies.h5"), (signal.SIGINT, 130, "pretrain")]:
        out = tmp_path / sig.name
        proc = _vmc("run", cfg, "--out", str(out))
        deadline = time.time() + 600
        if ready == "energies.h5":  # written just before the memory plan and compilation
            while not (out / ready).exists() and time.time() < deadline:
                assert proc.poll() is None, proc.communicate()
                time.sleep(0.05)
        else:  # pretraining has begun once the first step's line was printed
            line = ""
            while "pretrain" not in line and time.time() < deadline:
                line = proc.stderr.readline()
                assert line or proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == status, err
        assert "Traceback" not in err
        (line,) = _errors(err)
        assert line == (f"vmc: stopped by {sig.name} before the run's first checkpoint; "
                        f"`vmc run {out}` starts it again (Hartree–Fock is cached)")
        assert not checkpoint.list_checkpoints(out / "checkpoints")
