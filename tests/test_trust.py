"""Files from outside are data, never a way to other files or memory (docs/robustness.md):
crafted checkpoints and energies.h5 files are refused with one line naming the file and the
field, and a resumed run skips a damaged checkpoint for an older intact one."""

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import vmc
from vmc import checkpoint
from vmc.cli import main
from vmc.errors import InputError
from vmc.outputs import TRAIN_DTYPE, read_train

HUGE = 2**40  # elements: never allocated, only described by the file's metadata


def _one_line(capsys, *needles):
    """The one error line on stderr (a run logs its devices first), holding each needle."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("vmc:")]
    assert len(errors) == 1 and "Traceback" not in err, err
    for needle in needles:
        assert str(needle) in errors[0], (needle, err)
    return errors[0]


# ----------------------------------------------------------------------------- checkpoints


def _params():
    return {"layer": {"w": np.arange(6.0).reshape(2, 3), "b": np.ones(3)}}


def _opt():
    return {"m": [np.zeros(2), np.int32(4)]}


def _save(path):
    checkpoint.save(path, step=3, phase="optimize", params=_params(), opt_state=_opt(),
                    systems={"H2": {"walkers": np.ones((4, 2, 3)), "width": np.array(0.2)}},
                    scheduler=np.zeros(1), config_text="seed: 0\n", key=np.array([0, 7], np.uint32))
    return path


def _replace(f, name, **kwargs):
    attrs = dict(f[name].attrs) if name in f else {}
    if name in f:
        del f[name]
    d = f.create_dataset(name, **kwargs)
    d.attrs.update(attrs)


# how each field is damaged, and the field the one-line error must name
DAMAGE = {
    "width_nan": (lambda f: _replace(f, "systems/H2/width", data=np.nan), "systems/H2/width"),
    "width_inf": (lambda f: _replace(f, "systems/H2/width", data=np.inf), "systems/H2/width"),
    "width_negative": (lambda f: _replace(f, "systems/H2/width", data=-0.1), "systems/H2/width"),
    "width_not_scalar": (lambda f: _replace(f, "systems/H2/width", data=np.ones(3)), "systems/H2/width"),
    "key_shape": (lambda f: _replace(f, "key", data=np.zeros(5, np.uint32)), "key"),
    "key_dtype": (lambda f: _replace(f, "key", data=np.zeros(2, np.float64)), "key"),
    "scheduler_shape": (lambda f: _replace(f, "scheduler", data=np.zeros((2, 2))), "scheduler"),
    "scheduler_nan": (lambda f: _replace(f, "scheduler", data=np.array([np.nan])), "scheduler"),
    "step_negative": (lambda f: f.attrs.__setitem__("step", -4), "step"),
    "step_float": (lambda f: f.attrs.__setitem__("step", 3.5), "step"),
    "step_string": (lambda f: f.attrs.__setitem__("step", "3"), "step"),
    "walkers_nan": (lambda f: _replace(f, "systems/H2/walkers", data=np.full((4, 2, 3), np.nan)), "systems/H2/walkers"),
    "walkers_shape": (lambda f: _replace(f, "systems/H2/walkers", data=np.ones((4, 2))), "systems/H2/walkers"),
    "walkers_huge": (lambda f: _replace(f, "systems/H2/walkers", shape=(2**36, 2, 3), dtype="f8", chunks=(1, 2, 3)),
                     "systems/H2/walkers"),
    "optimizer_missing": (lambda f: f.__delitem__("optimizer"), "optimizer"),
    "param_huge": (lambda f: _replace(f, "params/00000", shape=(HUGE,), dtype="f4", chunks=(1024,)), "['layer']['b']"),
    "paths_not_strings": (lambda f: f["params"].attrs.__setitem__("paths", np.arange(2)), "paths"),
    "paths_short": (lambda f: f["params"].attrs.__setitem__("paths", np.array([b"['layer']['b']"])), "params"),
    "external_storage": (lambda f: _replace(f, "params/00000", shape=(3,), dtype="f8",
                                            external=[("/etc/hostname", 0, h5py.h5f.UNLIMITED)]), "params/00000"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_checkpoint_field_is_named(tmp_path, damage):
    path = _save(tmp_path / "ckpt_00000003.h5")
    change, field = DAMAGE[damage]
    with h5py.File(path, "a") as f:
        change(f)
    with pytest.raises(InputError) as e:
        checkpoint.load(path, _params(), _opt())
    message = str(e.value)
    assert str(path) in message and field in message and "\n" not in message, message


def test_checkpoint_checked_against_this_run(tmp_path):
    """Walkers of another electron count, another system, another scheduler or key size."""
    path = _save(tmp_path / "ckpt_00000003.h5")
    good = dict(systems={"H2": 2}, scheduler=np.zeros(1), key=np.zeros(2, np.uint32))
    assert checkpoint.load(path, _params(), _opt(), **good)["step"] == 3
    for change, field in [(dict(systems={"H2": 3}), "systems/H2/walkers"), (dict(systems={"LiH": 4}), "systems/LiH"),
                          (dict(scheduler=np.zeros(2)), "scheduler"), (dict(key=np.zeros(4, np.uint32)), "key")]:
        with pytest.raises(InputError, match=field) as e:
            checkpoint.load(path, _params(), _opt(), **{**good, **change})
        assert str(path) in str(e.value)


def test_from_checkpoint_with_external_storage_is_refused(tmp_path, capsys):
    """`--from` never reads another file through the checkpoint, and nothing is written."""
    path = _save(tmp_path / "ext.h5")
    with h5py.File(path, "a") as f:
        _replace(f, "params/00000", shape=(3,), dtype="f8", external=[("/etc/hostname", 0, h5py.h5f.UNLIMITED)])
    out = tmp_path / "out"
    assert main(["run", "configs/h2.yaml", "--set", "mcmc.walkers=8", "--from", str(path), "--out", str(out)]) == 2
    _one_line(capsys, path, "/params/00000", "external")
    assert not out.exists()


def test_from_checkpoint_with_huge_leaf_is_refused(tmp_path, capsys):
    path = _save(tmp_path / "huge.h5")
    with h5py.File(path, "a") as f:
        _replace(f, "params/00000", shape=(HUGE,), dtype="f4", chunks=(1024,))
    assert main(["run", "configs/h2.yaml", "--set", "mcmc.walkers=8", "--from", str(path), "--out", str(tmp_path / "o")]) == 2
    _one_line(capsys, path, "params/00000")


# ----------------------------------------------------------------------------- energies.h5


def _energies(run_dir: Path, change=None) -> Path:
    """A molecule's energies.h5 as the schema of vmc/outputs.py describes it, then `change(f)`."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with h5py.File(run_dir / "energies.h5", "w") as f:
        f.attrs.update(vmc_version="test", created="2025-01-01T00:00:00", config="mcmc: {walkers: 16}\n")
        g = f.create_group("systems/H2")
        g.attrs.update(name="H2", geometry="H2", symbols=np.array(["H", "H"], dtype="S"), n_electrons=2, n_cells=1,
                       weight=1.0, hf_energy=-1.1287, hf_energy_per_cell=-1.1287)
        rows = np.zeros(5, TRAIN_DTYPE)
        rows["step"], rows["energy"] = np.arange(5), -1.1
        g.create_dataset("train", data=rows, maxshape=(None,))
        ev = g.create_dataset("eval/energy", data=np.full(4, -1.17), maxshape=(None,))
        ev.attrs.update(energy=-1.17, energy_error=0.001, energy_per_cell=-1.17, energy_per_cell_error=0.001,
                        autocorrelation_time=1.0)
        if change is not None:
            change(f)
    return run_dir


def _bad_config(f):
    f.attrs["config"] = "model: !!python/object/apply:os.system ['touch PWNED']\n"


ENERGIES_DAMAGE = {
    "train_float": (lambda f: _replace(f, "systems/H2/train", data=np.ones(5)), "/systems/H2/train"),
    "train_string": (lambda f: _replace(f, "systems/H2/train", data=np.array([b"a", b"b"])), "/systems/H2/train"),
    "eval_huge": (lambda f: _replace(f, "systems/H2/eval/energy", shape=(HUGE,), dtype="f8", chunks=(1024,)),
                  "/systems/H2/eval/energy"),
    "eval_external_storage": (lambda f: _replace(f, "systems/H2/eval/energy", shape=(2,), dtype="f8",
                                                 external=[("/etc/hostname", 0, h5py.h5f.UNLIMITED)]),
                              "/systems/H2/eval/energy"),
    "external_link": (lambda f: (f["systems/H2"].__delitem__("eval"),
                                 f["systems/H2"].__setitem__("eval", h5py.ExternalLink("/etc/other.h5", "/eval"))),
                      "/systems/H2/eval"),
    "soft_link": (lambda f: f["systems/H2"].__setitem__("train_again", h5py.SoftLink("/systems/H2/train")),
                  "/systems/H2/train_again"),
    "python_tag": (_bad_config, "config"),
    "zero_cells": (lambda f: f["systems/H2"].attrs.__setitem__("n_cells", 0), "n_cells"),
}


@pytest.mark.parametrize("command", ["report", "export"])
@pytest.mark.parametrize("damage", list(ENERGIES_DAMAGE))
def test_damaged_energies_one_line_exit_2(tmp_path, capsys, monkeypatch, damage, command):
    change, field = ENERGIES_DAMAGE[damage]
    run = _energies(tmp_path / "run", change)
    monkeypatch.chdir(tmp_path)
    argv = ["report", str(run)] if command == "report" else ["export", str(run), "--out", str(tmp_path / "all.csv")]
    assert main(argv) == 2
    _one_line(capsys, run / "energies.h5", field)
    assert not (tmp_path / "PWNED").exists() and not (tmp_path / "all.csv").exists()
    assert not (run / "report.html").exists()


def test_read_train_refuses_columns_with_external_storage(tmp_path):
    """The old layout (a dataset per column) is converted on resume: its columns are checked too."""
    def old_layout(f):
        del f["systems/H2/train"]
        for name in TRAIN_DTYPE.names:
            f.create_dataset(f"systems/H2/train/{name}", data=np.zeros(5, TRAIN_DTYPE[name]))
        _replace(f, "systems/H2/train/energy", shape=(5,), dtype="f8", external=[("/etc/hostname", 0, h5py.h5f.UNLIMITED)])

    run = _energies(tmp_path / "run", old_layout)
    with h5py.File(run / "energies.h5", "r") as f, pytest.raises(InputError, match="/systems/H2/train/energy"):
        read_train(f["systems/H2"])


def test_export_out_checks_and_no_duplicates(tmp_path, capsys):
    run = _energies(tmp_path / "run")
    (tmp_path / "afile").write_text("x")
    assert main(["export", str(run), "--out", str(tmp_path / "afile" / "x.csv")]) == 2
    _one_line(capsys, "afile", "not a directory")
    assert main(["export", str(run), "--out", str(tmp_path / "x.txt")]) == 2
    _one_line(capsys, "x.txt", ".txt")
    assert not (tmp_path / "x.txt").exists()
    # the same run twice (once through a symbolic link to it) is exported once
    (tmp_path / "link").symlink_to(run)
    out = tmp_path / "all.csv"
    assert main(["export", str(run), str(tmp_path / "link"), "--out", str(out)]) == 0
    assert len(out.read_text().splitlines()) == 2
    assert main(["export", str(run), str(run), "--out", str(tmp_path / "all.h5")]) == 0
    with h5py.File(tmp_path / "all.h5", "r") as f:
        assert list(f["runs"]) == ["run"]


# ----------------------------------------------------------------------------- a resumed run

TINY = {
    "system": "H2", "seed": 3,
    "baseline": {"basis": "sto-3g"},
    "model": {"name": "slater_jastrow", "slater_jastrow": {"hidden": 8, "layers": 1}},
    "mcmc": {"walkers": 16, "burn_in": 2, "steps": 2},
    "pretraining": {"steps": 0},  # only what a resume needs is compiled: the optimization step
    "optimization": {"steps": 4, "optimizer": "adam"},
    "evaluation": {"steps": 0},
    "checkpoint": {"every": 1, "keep": 10},
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny finished run (checkpoints at steps 0..4); tests work on copies of it."""
    return vmc.run(TINY, out=tmp_path_factory.mktemp("trust") / "run")


def test_resume_skips_damaged_newest_checkpoints(tiny_run, tmp_path, capsys):
    """Walkers of another shape in the newest checkpoint, a NaN proposal width in the next:
    both skipped with a warning naming them, the run resumes from step 2."""
    run = shutil.copytree(tiny_run, tmp_path / "run")
    newest, second = checkpoint.list_checkpoints(run / "checkpoints")[:2]
    with h5py.File(newest, "a") as f:
        _replace(f, "systems/H2/walkers", data=np.ones((16, 3, 3)))
    with h5py.File(second, "a") as f:
        _replace(f, "systems/H2/width", data=np.nan)
    assert main(["run", str(run), "--set", "optimization.steps=5"]) == 0
    err = capsys.readouterr().err
    assert f"skipping checkpoint: {newest}" in err and f"skipping checkpoint: {second}" in err, err
    assert "resuming from" in err and "ckpt_00000002.h5" in err
    with h5py.File(run / "energies.h5", "r") as f:
        assert list(read_train(f["systems/H2"])["step"]) == list(range(5))


def test_resume_without_a_usable_checkpoint_is_one_line(tiny_run, tmp_path, capsys):
    """Every checkpoint damaged: one line, exit 2, and the training rows are left as they were
    (not a fresh start that drops them)."""
    run = shutil.copytree(tiny_run, tmp_path / "run")
    for i, path in enumerate(checkpoint.list_checkpoints(run / "checkpoints")):
        if i % 2:
            path.write_bytes(path.read_bytes()[:1000])  # truncated
        else:
            with h5py.File(path, "a") as f:
                _replace(f, "systems/H2/width", data=np.nan)
    with h5py.File(run / "energies.h5", "r") as f:
        rows = len(f["systems/H2/train"])
    assert main(["run", str(run), "--set", "optimization.steps=5"]) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("vmc:")]
    assert len(errors) == 1 and "no usable checkpoint" in errors[0] and str(run / "checkpoints") in errors[0], err
    with h5py.File(run / "energies.h5", "r") as f:
        assert len(f["systems/H2/train"]) == rows


def test_config_edited_by_hand_is_not_resumed_under_its_checkpoints(tiny_run, tmp_path, capsys):
    """config.yaml's seed changed by hand: the resume used the seed-3 checkpoints and then
    recorded seed 1 as the run's config. Now one line names the key; nothing is written."""
    run = shutil.copytree(tiny_run, tmp_path / "run")
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("seed: 3", "seed: 1"))
    before = (run / "energies.h5").read_bytes()
    assert main(["run", str(run)]) == 2
    _one_line(capsys, "config.yaml: differs in seed from the config its checkpoint", "--from")
    assert (run / "energies.h5").read_bytes() == before


def test_bool_parameters_are_not_parameters(tmp_path, capsys):
    """A checkpoint whose parameters are booleans (or integers) was read as all ones."""
    path = tmp_path / "ckpt_00000000.h5"
    _save(path)
    with h5py.File(path, "a") as f:
        for name in f["params"]:
            _replace(f, f"params/{name}", data=np.ones(f["params"][name].shape, bool))
    with pytest.raises(InputError, match="has type bool"):
        checkpoint.load_params(path, _params())
