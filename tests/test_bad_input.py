"""The bad-input table: each case ends with one line naming the problem and exit status 2,
before any expensive work (no Hartree–Fock), and nothing written before is changed."""

import hashlib
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from vmc import checkpoint
from vmc.cli import main
from vmc.config import dump_config, make_config
from vmc.kfac_tags import unavailable_reason
from vmc.systems import resolve_config

H2 = "configs/h2.yaml"
TINY = {"system": "H2", "baseline": {"basis": "sto-3g"}, "mcmc": {"walkers": 8}}


def _write_checkpoint(path: Path, params=None, config_text=None):
    config_text = dump_config(resolve_config(make_config(TINY))[0]) if config_text is None else config_text
    checkpoint.save(path, step=0, phase="optimize", params=params or {"w": np.ones(3)}, opt_state=None,
                    systems={}, scheduler=np.zeros(1), config_text=config_text)
    return path


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """Files the cases refer to."""
    d = tmp_path_factory.mktemp("bad")
    (d / "empty.yaml").write_text("")
    (d / "list.yaml").write_text("- H\n- H2\n")
    (d / "a_file").write_text("not a directory\n")
    (d / "not_a_run").mkdir()
    (d / "not_a_run" / "notes.txt").write_text("my notes\n")
    (d / "other_run").mkdir()
    (d / "other_run" / "config.yaml").write_text(dump_config(resolve_config(make_config(H2, {"seed": 7, "mcmc.walkers": 8, "baseline.basis": "sto-3g"}))[0]))
    (d / "broken_run").mkdir()
    (d / "broken_run" / "config.yaml").write_text("- not a config\n")
    with h5py.File(_write_checkpoint(d / "nan.h5"), "a") as f:  # save() refuses NaN: as a diverged old version wrote it
        f["params/00000"][1] = np.nan
    _write_checkpoint(d / "list_config.h5", config_text="- a\n- b\n")
    _write_checkpoint(d / "number_config.h5", config_text="3")
    good = _write_checkpoint(d / "good.h5")
    with h5py.File(d / "compound.h5", "w") as f:
        f.attrs.update(step=0, phase="optimize", config=dump_config(resolve_config(make_config(TINY))[0]))
        f["params"] = np.zeros(2, dtype=[("a", "f8"), ("b", "i4")])
        f["params"].attrs["paths"] = np.array([b"['w']"])
    with h5py.File(d / "external.h5", "w") as f:
        f.attrs.update(step=0, phase="optimize", config=dump_config(resolve_config(make_config(TINY))[0]))
        f["params"] = h5py.ExternalLink(str(good), "/params")
    with h5py.File(d / "soft.h5", "w") as f:
        f.attrs.update(step=0, phase="optimize", config=dump_config(resolve_config(make_config(TINY))[0]))
        f.create_group("real")
        f["params"] = h5py.SoftLink("/real")
    (d / "run").mkdir()
    (d / "run" / "energies.h5").write_bytes(b"")
    (d / "run" / "config.yaml").write_text("seed: 0\n")
    return d


@pytest.fixture(scope="module")
def readonly_dir(tmp_path_factory):
    """A directory on a read-only file system: a tmpfs mounted read-only where we may mount
    (root, as in CI), else /sys/fs (read-only in containers, writable by nobody)."""
    target = tmp_path_factory.mktemp("ro")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(target)], capture_output=True).returncode == 0
    yield str(target) if mounted else "/sys/fs"
    if mounted:
        subprocess.run(["umount", str(target)], capture_output=True)


RUN = ["run", H2, "--set", "mcmc.walkers=8", "--set", "baseline.basis=sto-3g"]
# (id, argv with {ws} for the workspace, expected text); `vmc run` cases get --out {ws}/out_<id>
# unless they name their own --out
CASES = [
    ("unknown_key", RUN + ["--set", "mcmc.walkerz=8"], "config key 'mcmc.walkerz': unknown key"),
    ("wrong_type", RUN + ["--set", "mcmc.walkers=many"], "config key 'mcmc.walkers'"),
    ("bad_choice", RUN + ["--set", "optimization.optimizer=sgd"], "config key 'optimization.optimizer'"),
    ("unknown_system", RUN + ["--set", "system=Unobtainium"], "unknown system 'Unobtainium'"),
    ("impossible_spin", RUN + ["--set", "system={atoms: [[H, [0, 0, 0]], [H, [0, 0, 1.4]]], spin: 1}"], "spin 1 is impossible"),
    ("atoms_on_top", RUN + ["--set", "system={atoms: [[H, [0, 0, 0]], [H, [0, 0, 0]]]}"], "on top of each other"),
    ("walkers_split", RUN + ["--set", "mcmc.walkers=7"], "mcmc.walkers"),
    ("config_missing", ["run", "does/not/exist.yaml"], "file not found: does/not/exist.yaml"),
    ("override_syntax", RUN + ["--set", "novalue"], "expected KEY=VALUE"),
    ("singular_supercell", RUN + ["--set", "system.name=lih_rocksalt", "--set", "system.supercell=[2, 0, 1]"], "system.supercell"),
    ("nan_coordinate", RUN + ["--set", "system={atoms: [[H, [0, 0, .nan]], [H, [0, 0, 1.4]]]}"], "system.atoms.0.1.2"),
    ("inf_coordinate", RUN + ["--set", "system={atoms: [[H, [0, 0, 0]], [H, [0, .inf, 1.4]]]}"], "finite number"),
    ("nan_twist", RUN + ["--set", "system=h_bcc", "--set", "system.twists=[[.nan, 0, 0]]"], "system.twists"),
    ("zero_twist_grid", RUN + ["--set", "system=h_bcc", "--set", "system.twists={grid: [0, 0, 0]}"], "system.twists.grid"),
    ("negative_lattice_constant", RUN + ["--set", "system=h_bcc", "--set", "system.lattice_constant=-3"], "system.lattice_constant"),
    ("zero_bond_length", RUN + ["--set", "system={name: H2, bond_length: 0}"], "system.bond_length"),
    ("empty_system_file", RUN + ["--set", "system={ws}/empty.yaml"], "empty.yaml is empty"),
    ("list_system_file", RUN + ["--set", "system={ws}/list.yaml"], "list.yaml is a YAML list"),
    ("charge_after_name", RUN + ["--set", "system.charge=2", "--set", "system=H2"], "the charge leaves 0 electrons"),
    ("too_many_walkers", RUN + ["--set", "mcmc.walkers=1000000000000"], "config key 'mcmc.walkers': 1000000000000 walkers"),
    ("inf_width", RUN + ["--set", "mcmc.proposal_width=.inf"], "config key 'mcmc.proposal_width'"),
    ("zero_cutoff", RUN + ["--set", "model.name=fire", "--set", "model.fire.cutoff=0"], "config key 'model.fire.cutoff'"),
    ("negative_cutoff", RUN + ["--set", "model.name=fire", "--set", "model.fire.cutoff=-2"], "config key 'model.fire.cutoff'"),
    ("zero_width_network", RUN + ["--set", "model.fire.embedding_dim=0"], "config key 'model.fire.embedding_dim'"),
    ("zero_reject_jump", RUN + ["--set", "optimization.reject_jump=0"], "config key 'optimization.reject_jump'"),
    ("out_is_file", RUN + ["--out", "{ws}/a_file"], "{ws}/a_file: exists and is not a directory"),
    ("out_under_file", RUN + ["--out", "{ws}/a_file/run"], "{ws}/a_file/run: cannot be created"),
    ("out_read_only", RUN + ["--out", "{ro}/run"], "{ro}/run: cannot be created"),
    ("out_not_a_run", RUN + ["--out", "{ws}/not_a_run"], "not empty and not a run directory"),
    ("out_other_run", RUN + ["--out", "{ws}/other_run"], "holds a different run (config differs in seed)"),
    ("out_other_geometry", RUN + ["--set", "seed=7", "--set", "system.atoms=[[H, [0, 0, 0]], [H, [0, 0, 3.0]]]", "--out", "{ws}/other_run"],
     "holds a different run (config differs in system.atoms)"),
    ("out_other_network", RUN + ["--set", "seed=7", "--set", "model.slater_jastrow.hidden=16", "--out", "{ws}/other_run"],
     "holds a different run (config differs in model.slater_jastrow.hidden)"),
    ("resume_other_network", ["run", "{ws}/other_run", "--set", "model.slater_jastrow.layers=3", "--out", "{ws}/other_run"],
     "holds a different run (config differs in model.slater_jastrow.layers)"),
    ("out_broken_run", RUN + ["--out", "{ws}/broken_run"], "broken_run: its config.yaml is not a valid run config"),
    ("from_missing", RUN + ["--from", "{ws}/missing.h5"], "checkpoint not found"),
    ("from_nan", RUN + ["--from", "{ws}/nan.h5"], "holds non-finite network parameters"),
    ("from_compound", RUN + ["--from", "{ws}/compound.h5"], "not a number"),
    ("from_external_link", RUN + ["--from", "{ws}/external.h5"], "/params is a link to elsewhere"),
    ("evaluate_nan", ["evaluate", "{ws}/nan.h5"], "holds non-finite network parameters"),
    ("evaluate_list_config", ["evaluate", "{ws}/list_config.h5"], "'config' attribute is not a YAML mapping"),
    ("evaluate_number_config", ["evaluate", "{ws}/number_config.h5"], "'config' attribute is not a YAML mapping"),
    ("evaluate_soft_link", ["evaluate", "{ws}/soft.h5"], "/params is a link to elsewhere"),
    ("evaluate_compound", ["evaluate", "{ws}/compound.h5"], "/params has type"),
    ("export_missing_dir", ["export", "{ws}/run", "--out", "{ws}/nowhere/all.h5"], "the directory {ws}/nowhere does not exist"),
    ("export_over_input", ["export", "{ws}/run", "--out", "{ws}/run/energies.h5"], "would overwrite a file of the input run"),
    ("export_not_a_run", ["export", "{ws}/not_a_run", "--out", "{ws}/all.h5"], "not a run directory (no energies.h5)"),
]


def _fill(text: str, fill: dict) -> str:
    for k, v in fill.items():
        text = text.replace("{" + k + "}", v)
    return text


def _tree_digest(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("case_id, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_bad_input_one_line_exit_2(case_id, argv, expected, ws, readonly_dir, capsys):
    fill = {"ws": str(ws), "ro": readonly_dir}
    argv = [_fill(a, fill) for a in argv]
    out = ws / f"out_{case_id}"
    if argv[0] == "run" and "--out" not in argv:
        argv += ["--out", str(out)]
    before = _tree_digest(ws)
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2, err
    assert _fill(expected, fill) in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()  # nothing written for a run that never started
    assert _tree_digest(ws) == before  # and nothing that was there changed


def test_table_is_large_enough():
    assert len(CASES) >= 30


def test_console_script_exit_status(tmp_path):
    """The installed entry point (python -m vmc) reports the same way."""
    import sys

    proc = subprocess.run([sys.executable, "-m", "vmc", "run", H2, "--set", "seed=abc", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("vmc: error: config key 'seed'")
    assert "Traceback" not in proc.stderr


def test_overrides_compose_in_any_order():
    """`system=NAME` applies before `system.*`, whichever comes first on the command line."""
    for order in (["system=h_bcc", "system.supercell=[2, 2, 2]"], ["system.supercell=[2, 2, 2]", "system=h_bcc"]):
        from vmc.api import build_config
        from vmc.config import parse_override

        cfg = build_config(H2, dict(parse_override(o) for o in order))
        resolved = yaml.safe_load(dump_config(resolve_config(cfg)[0]))
        assert resolved["system"]["supercell"] == [2, 2, 2] and resolved["system"]["name"] == "h_bcc", order
    cfg = build_config(H2, {"system.charge": 1, "system": "H2", "system.spin": 1})
    assert resolve_config(cfg)[1][0].n_electrons == 1


@pytest.mark.skipif(unavailable_reason() is None, reason="kfac-jax runs here, so KFAC is allowed")
def test_kfac_without_the_extra_is_one_line(tmp_path, capsys):
    """`optimization.optimizer: kfac` without the kfac extra (kfac-jax) is refused before
    anything is written, naming the extra."""
    out = tmp_path / "run"
    code = main(RUN + ["--set", "optimization.optimizer=kfac", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("vmc: error: config key 'optimization.optimizer': kfac needs the kfac extra") and 'pip install "vmc[kfac]"' in err
    assert err.count("\n") == 1 and not out.exists()


def test_kfac_jax_on_a_jax_it_does_not_run_on_is_named(monkeypatch):
    """kfac-jax 0.0.8 installed beside jax 0.9 or newer is found out before a trace fails."""
    import importlib.metadata
    import importlib.util

    from vmc import kfac_tags

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "0.0.8")
    for jax_version, reason in [("0.10.2", "kfac-jax 0.0.8 does not run on jax 0.10.2 (it needs jax < 0.9)"),
                                ("0.9.0.1", "kfac-jax 0.0.8 does not run on jax 0.9.0.1 (it needs jax < 0.9)"),
                                ("0.8.3", None)]:
        monkeypatch.setattr(kfac_tags.jax, "__version__", jax_version)
        assert kfac_tags.unavailable_reason() == reason
