"""What the README points users at does what it says.

The scripts in examples/ run to their end (examples/h2_api.py once trained for six minutes
and then failed reading attributes of a closed HDF5 file): each script's work is a function, and
the tests call it at a tiny size, in a temporary working directory, with the Hartree–Fock
cache there too. The main crystal config gives the report enough lattice constants for its
equation of state.
"""

import importlib.util
import re
from pathlib import Path

import yaml

from vmc import eos
from vmc.config import make_config
from vmc.systems import resolve_config

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _load(name: str):
    """examples/<name>.py as a module (importing it must not start a run)."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_h2_api(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the script writes runs/ under the working directory
    example = _load("h2_api")
    assert not (tmp_path / "runs").exists(), "importing the example started a run"

    # the bare HF determinant: nothing to compile for the optimizer (a third of the time of a tiny
    # slater_jastrow), and what the example does after the run does not depend on the ansatz
    run_dir, e, err = example.main(
        steps=3, eval_steps=4, seed=1,
        **{"baseline.basis": "sto-3g", "baseline.cache_dir": str(tmp_path / "hf"), "mcmc.walkers": 16,
           "mcmc.burn_in": 2, "mcmc.steps": 2, "pretraining.steps": 2, "evaluation.burn_in": 1, "model.name": "hf"})

    assert run_dir.resolve().parent == (tmp_path / "runs").resolve()
    assert (run_dir / "training.png").read_bytes().startswith(PNG_MAGIC)
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert Path(config["baseline"]["cache_dir"]).resolve().is_relative_to(tmp_path.resolve())
    assert any((tmp_path / "hf").iterdir())

    out = capsys.readouterr().out
    m = re.search(r"^evaluated: (\S+) \+- (\S+) Ha \(exact (\S+)\)$", out, re.M)
    assert m, out
    assert float(m[1]) == round(e, 5) and float(m[2]) == round(err, 5) and float(m[3]) == example.EXACT
    assert f"plot: {run_dir / 'training.png'}" in out


def test_main_crystal_config_has_an_equation_of_state():
    """configs/lih_2x2x2.yaml scans enough lattice constants for the Birch–Murnaghan fit of
    its report (it had 3, and the page said no fit is made)."""
    _, systems = resolve_config(make_config(ROOT / "configs" / "lih_2x2x2.yaml", {}))
    constants = {round(s.lattice_constant, 6) for s in systems}
    assert len(constants) >= eos.MIN_POINTS, sorted(constants)
