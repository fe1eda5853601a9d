"""Bad input: one line naming the problem, exit status 2, no traceback, nothing written."""

import subprocess
import sys

import pytest

from vmc.cli import main

H2 = "configs/h2.yaml"


@pytest.mark.parametrize(
    "args, expected",
    [
        ([H2, "--set", "mcmc.walkerz=8"], "config key 'mcmc.walkerz': unknown key"),
        ([H2, "--set", "mcmc.walkers=many"], "config key 'mcmc.walkers'"),
        ([H2, "--set", "optimization.optimizer=sgd"], "config key 'optimization.optimizer'"),
        ([H2, "--set", "system=Unobtainium"], "unknown system 'Unobtainium'"),
        ([H2, "--set", "system={atoms: [[H, [0, 0, 0]], [H, [0, 0, 1.4]]], spin: 1}"], "spin"),
        ([H2, "--set", "system={atoms: [[H, [0, 0, 0]], [H, [0, 0, 0]]]}"], "on top of each other"),
        ([H2, "--set", "mcmc.walkers=7"], "mcmc.walkers"),
        (["does/not/exist.yaml"], "file not found: does/not/exist.yaml"),
        ([H2, "--set", "novalue"], "expected KEY=VALUE"),
        ([H2, "--set", "system.name=lih_rocksalt", "--set", "system.supercell=[2, 0, 1]"], "system.supercell"),
    ],
)
def test_bad_input_one_line_exit_2(args, expected, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["run", *args, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert expected in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()  # nothing written for a run that never started


def test_console_script_exit_status(tmp_path):
    """The installed entry point (python -m vmc) reports the same way."""
    proc = subprocess.run([sys.executable, "-m", "vmc", "run", H2, "--set", "seed=abc", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("vmc: error: config key 'seed'")
    assert "Traceback" not in proc.stderr


def test_systems_lists_catalog(capsys):
    assert main(["systems"]) == 0
    names = capsys.readouterr().out.split()
    for name in ["H", "H2", "LiH", "Li", "Be", "N2", "H2O", "H4_chain", "lih_rocksalt", "hydrogen_chain", "h_bcc"]:
        assert name in names
