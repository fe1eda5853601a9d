"""Training state across devices and hosts: a run resumed on fewer devices, with another walker
count, and a real two-process run (jax.distributed on this machine's CPU). Second stage of
`.ci/run` (several whole runs in subprocesses)."""

import os
import signal
import socket
import subprocess
import sys
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
    "system": "H2", "seed": 5,
    "baseline": {"basis": "sto-3g"},
    "model": {"name": "slater_jastrow", "slater_jastrow": {"hidden": 8, "layers": 1}},
    "mcmc": {"walkers": 128, "burn_in": 20, "steps": 5},
    "pretraining": {"steps": 5},
    "optimization": {"steps": 16},
    "evaluation": {"steps": 200, "burn_in": 10},
    "checkpoint": {"every": 4, "keep": 5},
}
TIMEOUT = 600  # seconds for any one process: the tests stop by themselves


def _config(tmp_path, cfg=TINY, name="tiny.yaml") -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


def _vmc(args, devices, env_extra=None):
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={devices}", **(env_extra or {}))
    return subprocess.Popen([sys.executable, "-m", "vmc", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _finish(proc):
    try:
        out, err = proc.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"timed out: {err[-2000:]}") from None
    assert proc.returncode == 0, err[-3000:]
    return out, err


def _steps(run_dir):
    with h5py.File(Path(run_dir) / "energies.h5", "r", locking=False) as f:
        return list(read_train(f["systems/H2"])["step"])


def _eval(run_dir):
    with h5py.File(Path(run_dir) / "energies.h5", "r", locking=False) as f:
        a = f["systems/H2/eval/energy"].attrs
        return float(a["energy"]), float(a["energy_error"])


def _agree(a, b, n_sigma=3.0):
    (e1, s1), (e2, s2) = a, b
    assert abs(e1 - e2) < n_sigma * np.hypot(s1, s2), (a, b)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    """The reference: the same config, one process with 2 devices, never stopped."""
    tmp = tmp_path_factory.mktemp("full")
    out = tmp / "run"
    _finish(_vmc(["run", _config(tmp), "--out", str(out)], devices=2))
    return out


def test_killed_on_two_devices_resumes_on_one(tmp_path, uninterrupted):
    path = _config(tmp_path)
    run_dir = tmp_path / "run"
    proc = _vmc(["run", path, "--out", str(run_dir)], devices=2)
    deadline = time.time() + TIMEOUT
    while time.time() < deadline and proc.poll() is None:
        if any(checkpoint.checkpoint_step(p) >= 8 for p in checkpoint.list_checkpoints(run_dir / "checkpoints")):
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, err = _finish(_vmc(["run", str(run_dir)], devices=1))
    assert "resuming from" in err
    assert _steps(run_dir) == list(range(16))  # every step once
    _agree(_eval(run_dir), _eval(uninterrupted))


def test_resume_with_other_walker_count_draws_from_the_checkpoint(tmp_path):
    path = _config(tmp_path, dict(TINY, optimization={"steps": 8}, evaluation={"steps": 0}))
    run_dir = tmp_path / "run"
    _finish(_vmc(["run", path, "--out", str(run_dir)], devices=1))
    _, err = _finish(_vmc(["run", str(run_dir), "--set", "optimization.steps=12", "--set", "mcmc.walkers=64"], devices=2))
    lines = [line for line in err.splitlines() if "another number of walkers" in line]
    assert len(lines) == 1 and "128 -> 64" in lines[0], err[-2000:]
    assert _steps(run_dir) == list(range(12))
    with h5py.File(checkpoint.list_checkpoints(run_dir / "checkpoints")[0], "r") as f:
        assert f["systems/H2/walkers"].shape == (64, 2, 3)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes(tmp_path, uninterrupted):
    """Two processes with 1 CPU device each, joined by jax.distributed: the energies of a
    one-process run within error, one intact energies.h5, a checkpoint with every host's
    walkers, and a single process resumes it."""
    cfg = dict(TINY, distributed=True, baseline={"basis": "sto-3g", "cache_dir": str(tmp_path / "hf")})
    path = _config(tmp_path, cfg)
    run_dir = tmp_path / "run"
    port = _free_port()
    procs = [_vmc(["run", path, "--out", str(run_dir)], devices=1,
                  env_extra={"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": str(i)})
             for i in range(2)]
    try:
        results = [_finish(p) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert "E =" in results[0][0] and "E =" not in results[1][0]  # only process 0 reports
    assert _steps(run_dir) == list(range(16))
    _agree(_eval(run_dir), _eval(uninterrupted))
    with h5py.File(checkpoint.list_checkpoints(run_dir / "checkpoints")[0], "r") as f:
        walkers = f["systems/H2/walkers"][()]
    assert walkers.shape == (128, 2, 3)
    half = len(walkers) // 2  # the two hosts' walkers started apart and stay distinct
    assert not np.allclose(walkers[:half], walkers[half:])

    # resumed in one process (distributed off) with more steps
    _, err = _finish(_vmc(["run", str(run_dir), "--set", "optimization.steps=20", "--set", "distributed=false"], devices=1))
    assert "resuming from" in err
    assert _steps(run_dir) == list(range(20))
