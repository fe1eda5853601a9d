"""One writer per run directory even when its lock file is deleted under a running writer
(docs/robustness.md): the lock is held on the directory itself, which `rm` cannot take away."""

import os
import signal
import subprocess
import sys
import time

import h5py
import pytest
import yaml

from conftest import hold_lock
from test_faults import TINY as FAULTS_TINY

from vmc import rundir
from vmc.errors import InputError

pytestmark = pytest.mark.faults

# still going when the second run is refused
TINY = {**FAULTS_TINY, "optimization": {"steps": 100000}}


@pytest.mark.parametrize("recreate", [False, True], ids=["deleted", "deleted_and_recreated"])
def test_deleted_lock_file_keeps_a_second_writer_out(tmp_path, recreate):
    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        (out / rundir.LOCK_NAME).unlink()
        if recreate:
            (out / rundir.LOCK_NAME).write_text("")
        with pytest.raises(InputError, match="in use by another vmc process"):
            rundir.claim(out, {}, lambda raw: raw)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    rundir.claim(out, {}, lambda raw: raw).release()  # the holder is gone: free again


def _vmc(*args, log=None):
    """`vmc ARGS` in a subprocess; its output to the file `log` (a long run fills no pipe) or to pipes."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1")
    if log is None:
        return subprocess.Popen([sys.executable, "-m", "vmc", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)
    with open(log, "w") as out:
        return subprocess.Popen([sys.executable, "-m", "vmc", *args], env=env, stdout=out, stderr=subprocess.STDOUT)


def test_rm_lock_then_vmc_run_is_refused(tmp_path):
    """`rm RUN/.vmc.lock; vmc run RUN` while a run goes: refused with exit 2; the first goes on
    and stops normally (SIGTERM: a checkpoint and exit 143)."""
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump(TINY))
    out = tmp_path / "run"
    log = tmp_path / "first.log"
    first = second = _vmc("run", str(cfg), "--out", str(out), log=log)
    try:
        deadline = time.time() + 600
        while time.time() < deadline:  # until the first run writes training rows
            assert first.poll() is None, log.read_text()
            try:
                with h5py.File(out / "energies.h5", "r", locking=False) as f:
                    if f["systems/H2/train"].shape[0] >= 1:
                        break
            except (OSError, KeyError):
                pass
            time.sleep(0.2)
        (out / rundir.LOCK_NAME).unlink()
        second = _vmc("run", str(out))
        _, err = second.communicate(timeout=300)
        assert second.returncode == 2, err
        lines = [line for line in err.splitlines() if line.startswith("vmc:")]
        assert len(lines) == 1 and "in use by another vmc process" in lines[0], err
        assert first.poll() is None  # refused because the first run holds the directory, not because it ended
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=600)
        assert first.returncode == 143, log.read_text()
    finally:
        for proc in (first, second):
            if proc.poll() is None:
                proc.kill()
                proc.wait()
