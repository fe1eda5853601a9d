"""The run directory: one writer (an OS lock), resume only of the same run."""

import os
import signal

import pytest
from conftest import hold_lock

from vmc import rundir
from vmc.cli import main
from vmc.config import make_config
from vmc.errors import InputError
from vmc.systems import resolve_config

H2 = "configs/h2.yaml"


def _resolved(overrides=None):
    return resolve_config(make_config(H2, overrides or {}))[0].model_dump(mode="json")


def test_second_writer_is_refused_with_the_holders_pid(tmp_path, capsys):
    out = tmp_path / "run"
    holder = hold_lock(out)
    try:
        code = main(["run", H2, "--set", "mcmc.walkers=8", "--out", str(out)])
        err = capsys.readouterr().err
        assert code == 2 and f"in use by another vmc process (PID {holder.pid})" in err, err
        assert err.count("\n") == 1
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    # the kernel released the dead holder's lock: the directory can be claimed again
    rundir.claim(out, {}, lambda raw: raw).release()


def test_stale_lock_file_does_not_block(tmp_path):
    (tmp_path / rundir.LOCK_NAME).write_text("99999999\n")  # left by a process that is gone
    d = rundir.claim(tmp_path, {}, lambda raw: raw)
    assert (tmp_path / rundir.LOCK_NAME).read_text().strip() == str(os.getpid())
    d.release()


def test_resume_check_allows_only_resumable_keys(tmp_path):
    base = _resolved()
    (tmp_path / "config.yaml").write_text(__import__("yaml").safe_dump(base))
    same = _resolved({"optimization.steps": 5000, "evaluation.steps": 7, "checkpoint.every": 3, "local_energy_batch": 4,
                      "mcmc.walkers": 512})
    rundir.claim(tmp_path, same, lambda raw: raw).release()
    for key, value in [("seed", 1), ("mcmc.steps", 7), ("optimization.kfac.learning_rate", 0.1), ("precision", "float64"),
                       ("model.name", "fire"), ("mcmc.steps", 20), ("optimization.optimizer", "adam")]:
        with pytest.raises(InputError, match="holds a different run"):
            rundir.claim(tmp_path, _resolved({key: value}), lambda raw: raw)
    assert rundir.differing_keys(base, _resolved({"model.name": "fire"})) == ["model.name"]
    # the refusal names every key a resume may change, as docs/robustness.md does
    with pytest.raises(InputError) as refused:
        rundir.claim(tmp_path, _resolved({"seed": 1}), lambda raw: raw)
    assert all(key in str(refused.value) for key in rundir.RESUMABLE)
