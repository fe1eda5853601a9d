"""Fine-tuning (--from, checkpoint.restore, vmc evaluate): the network's shape comes from the
checkpoint, the run records where it came from, and a resume before its first own checkpoint
starts from the same parameters (README "Crystals"; docs/robustness.md, "Fine-tuning")."""

import hashlib
import shlex
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
import yaml

from conftest import TINY_NETWORKS
from vmc import checkpoint
from vmc.cli import main
from vmc.config import FireConfig, SlaterJastrowConfig, make_config

README = Path(__file__).resolve().parents[1] / "README.md"
FINETUNE = "configs/lih_3x3x3_finetune.yaml"


def _readme_command(start: str) -> list[str]:
    """The README's command line that starts with `start` (continuation lines joined)."""
    lines = README.read_text().splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(start))
    text = lines[i]
    while text.endswith("\\"):
        i += 1
        text = text[:-1] + " " + lines[i].strip()
    argv = shlex.split(text.split("#")[0])
    assert argv[:2] == ["vmc", "run"], text
    return argv[1:]


def _sets(settings: dict) -> list[str]:
    return [a for k, v in settings.items() for a in ("--set", f"{k}={v}")]


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("vmc: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


def _digest(path: Path) -> dict:
    return {str(p.relative_to(path)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(path.rglob("*")) if p.is_file()}


# Sizes only: the README's commands with a 1x1x1 cell, few walkers and steps. Compiling `fire`
# dominates the time, so each program is compiled once: the smoke run only equilibrates (its
# checkpoint at step 0 holds its network) and the fine-tune trains one step; neither evaluates.
SHRINK = {"system.supercell": "[1,1,1]", "mcmc.walkers": 8, "mcmc.steps": 1, "mcmc.burn_in": 1, "evaluation.steps": 0}
SMOKE = {**SHRINK, "pretraining.steps": 0, "optimization.steps": 0}
FINE_TUNE = {**SHRINK, "optimization.steps": 1}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """The README's CPU smoke run of LiH 2x2x2, tiny; returns (workspace, its newest checkpoint)."""
    ws = tmp_path_factory.mktemp("finetune")
    argv = _readme_command("vmc run configs/lih_2x2x2.yaml --set") + _sets(SMOKE) + _sets(TINY_NETWORKS)
    argv += _sets({"baseline.cache_dir": ws / "hf"}) + ["--out", str(ws / "smoke")]
    assert main(argv) == 0
    return ws, checkpoint.list_checkpoints(ws / "smoke" / "checkpoints")[0]


@pytest.fixture(scope="module")
def finetuned(smoke):
    """The README's fine-tune command on the smoke run's checkpoint, shrunk in size only
    (no parameter-shaping key is set); returns (run directory, exit status)."""
    ws, ckpt = smoke
    argv = _readme_command("vmc run configs/lih_3x3x3_finetune.yaml --from")
    argv[argv.index("--from") + 1] = str(ckpt)
    argv += _sets(FINE_TUNE) + _sets({"baseline.cache_dir": ws / "hf"}) + ["--out", str(ws / "finetuned")]
    code = main(argv)
    return ws / "finetuned", code


def test_readme_crystal_commands_fine_tune(smoke, finetuned):
    """Issue 29: the fine-tune of the README, after its smoke run, used to stop with a shape
    error after Hartree–Fock (the descriptor width follows the basis)."""
    ws, ckpt = smoke
    run_dir, code = finetuned
    assert code == 0
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    # taken from the checkpoint: the basis and the network's sizes ...
    assert resolved["baseline"]["basis"] == "sto-3g"
    assert resolved["model"]["name"] == "fire" and resolved["model"]["determinants"] == 4
    assert resolved["model"]["elements"] == ["H", "Li"]
    for key, value in TINY_NETWORKS.items():
        if key.startswith("model.fire."):
            assert resolved["model"]["fire"][key.split(".")[-1]] == value, key
    # ... the rest from the fine-tune config
    assert resolved["pretraining"]["steps"] == 0 and resolved["optimization"]["steps"] == 1
    assert resolved["mcmc"]["steps"] == 1 and resolved["model"]["fire"]["cutoff"] == 5.0
    assert checkpoint.list_checkpoints(run_dir / "checkpoints")[0].name == "ckpt_00000001.h5"
    # issue 30: where it came from, with the file's content hash
    assert Path(resolved["checkpoint"]["restore"]) == ckpt.resolve()
    assert resolved["checkpoint"]["restore_sha256"] == hashlib.sha256(ckpt.read_bytes()).hexdigest()


def test_finetune_logs_what_it_took(smoke, tmp_path, capsys):
    """One line lists the settings taken from the checkpoint where the config file differs
    (checked on the set-up alone: nothing is computed)."""
    ws, ckpt = smoke
    from vmc.finetune import prepare

    cfg = make_config(FINETUNE, {"system.supercell": [1, 1, 1]})
    prepare(cfg, tmp_path / "new", ckpt, explicit=set())
    err = capsys.readouterr().err
    (line,) = [line for line in err.splitlines() if "from the checkpoint" in line]
    assert str(ckpt) in line
    for key in ["baseline.basis=sto-3g", "model.fire.embedding_dim=8", "model.fire.mlp_layers=1"]:
        assert key in line, line
    assert "model.determinants" not in line and "model.fire.cutoff" not in line  # the same in both


@pytest.mark.parametrize("override, expected", [
    ("model.fire.embedding_dim=16", "model.fire.embedding_dim: --set 16 and the checkpoint's 8 do not match"),
    ("baseline.basis=cc-pVDZ", "baseline.basis: --set 'cc-pVDZ' and the checkpoint's 'sto-3g' do not match"),
    ("model.name=slater_jastrow", "model.name: --set 'slater_jastrow' and the checkpoint's 'fire' do not match"),
])
def test_conflicting_override_refused_before_hartree_fock(smoke, tmp_path, capsys, override, expected):
    ws, ckpt = smoke
    out, cache = tmp_path / "out", tmp_path / "hf"
    code = main(["run", FINETUNE, "--from", str(ckpt), "--set", override, "--set", "system.supercell=[1,1,1]",
                 "--set", f"baseline.cache_dir={cache}", "--out", str(out)])
    line = _one_line_error(capsys)
    assert code == 2
    assert expected in line and str(ckpt) in line, line
    assert not out.exists() and not cache.exists()


def test_override_equal_to_checkpoint_is_accepted(smoke, tmp_path):
    """An explicit override that agrees with the checkpoint (basis names compare as PySCF reads them)."""
    from vmc.finetune import prepare

    ws, ckpt = smoke
    cfg = make_config(FINETUNE, {"baseline.basis": "STO-3G", "model.fire.embedding_dim": 8})
    resolved = prepare(cfg, tmp_path / "new", ckpt, explicit={"baseline.basis", "model.fire.embedding_dim"})
    assert resolved.model.fire.embedding_dim == 8 and resolved.model.fire.filter_dim == 4


def test_element_the_network_lacks_refused_before_hartree_fock(smoke, tmp_path, capsys):
    ws, ckpt = smoke
    out, cache = tmp_path / "out", tmp_path / "hf"
    code = main(["run", FINETUNE, "--from", str(ckpt), "--set", "system=Be", "--set", f"baseline.cache_dir={cache}", "--out", str(out)])
    line = _one_line_error(capsys)
    assert code == 2
    assert "Be" in line and str(ckpt) in line and "model.elements" in line, line
    assert not out.exists() and not cache.exists()


def test_evaluate_takes_the_network_from_the_checkpoint(smoke, tmp_path):
    """`vmc evaluate CHECKPOINT CONFIG` with a config of another basis and network size."""
    ws, ckpt = smoke
    out = tmp_path / "eval"
    code = main(["evaluate", str(ckpt), FINETUNE, "--set", "system.supercell=[1,1,1]", "--set", "mcmc.walkers=8",
                 "--set", "evaluation.steps=0", "--set", "evaluation.burn_in=0", "--set", f"baseline.cache_dir={ws / 'hf'}",
                 "--out", str(out)])
    assert code == 0
    resolved = yaml.safe_load((out / "config.yaml").read_text())
    assert resolved["baseline"]["basis"] == "sto-3g" and resolved["model"]["fire"]["orbital_dim"] == 4
    assert Path(resolved["checkpoint"]["restore"]) == ckpt.resolve()


def _copy_run(run_dir: Path, dest: Path, restore: Path | None = None, checkpoints: bool = True) -> Path:
    """A copy of a run directory, its checkpoint.restore pointing at `restore` if given."""
    shutil.copytree(run_dir, dest, ignore=shutil.ignore_patterns(".vmc.lock", *([] if checkpoints else ["checkpoints"])))
    if restore is not None:
        cfg = yaml.safe_load((dest / "config.yaml").read_text())
        cfg["checkpoint"]["restore"] = str(restore)
        (dest / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def test_resume_before_first_checkpoint_starts_from_the_from_parameters(smoke, finetuned, tmp_path):
    """A --from run stopped before its first own checkpoint resumes from the --from parameters
    (and, like any fine-tune, skips pretraining)."""
    from vmc import parallel
    from vmc.runner import Run

    ws, ckpt = smoke
    run_dir = _copy_run(finetuned[0], tmp_path / "run", checkpoints=False)
    run = Run(make_config(run_dir / "config.yaml"), run_dir)
    try:
        assert run.params_from == ckpt.resolve()
        params = parallel.unreplicate(run.state.params)
        stored = checkpoint.load_params(ckpt, params)
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, params), stored)
    finally:
        run.close()


@pytest.mark.parametrize("damage, expected", [("changed", "changed since this run recorded it"),
                                               ("missing", "which has no checkpoint of its own yet")])
def test_resume_before_first_checkpoint_refuses_a_changed_or_missing_from_file(smoke, finetuned, tmp_path, capsys, damage, expected):
    ws, ckpt = smoke
    source = tmp_path / "source.h5"
    shutil.copyfile(ckpt, source)
    run_dir = _copy_run(finetuned[0], tmp_path / "run", restore=source, checkpoints=False)
    if damage == "changed":
        with open(source, "ab") as f:
            f.write(b"\0")
    else:
        source.unlink()
    before = _digest(run_dir)
    assert main(["run", str(run_dir)]) == 2
    line = _one_line_error(capsys)
    assert expected in line and str(source) in line, line
    assert _digest(run_dir) == before


def test_resume_with_own_checkpoints_needs_no_from_file(smoke, finetuned, tmp_path, capsys):
    """Once the run has checkpoints of its own they win; the --from file may be gone."""
    run_dir = _copy_run(finetuned[0], tmp_path / "run", restore=tmp_path / "deleted.h5")
    assert main(["run", str(run_dir)]) == 0, capsys.readouterr().err
    assert "resuming from" in capsys.readouterr().err


def test_from_into_an_existing_run_refused(smoke, finetuned, capsys):
    """--from X --out RUN used to log 'network parameters from X' and resume RUN's own checkpoint."""
    ws, ckpt = smoke
    run_dir = finetuned[0]
    before = _digest(run_dir)
    code = main(["run", FINETUNE, "--from", str(ckpt), "--set", "system.supercell=[1,1,1]", "--out", str(run_dir)])
    line = _one_line_error(capsys)
    assert code == 2
    assert str(run_dir) in line and "already holds a run" in line, line
    assert _digest(run_dir) == before


# Another value for every setting of the networks: changing it changes the parameters' shapes
# exactly when vmc.finetune counts it as shaping them.
OTHER = {
    "model.fire.cutoff": 3.0, "model.fire.embedding_dim": 6, "model.fire.filter_dim": 3, "model.fire.n_gaussians": 3,
    "model.fire.message_passing_rounds": 0, "model.fire.mlp_layers": 2, "model.fire.orbital_dim": 3,
    "model.fire.descriptor_hidden": 6, "model.fire.jastrow_hidden": 6, "model.fire.orbital_cutoff": 4.0,
    "model.fire.orbital_mlp": "factored", "model.fire.implementation": "dense",
    "model.slater_jastrow.hidden": 6, "model.slater_jastrow.layers": 3, "model.slater_jastrow.orbital_correction": False,
    "model.determinants": 2, "model.elements": ["H", "He", "Li"], "baseline.basis": "6-31g", "baseline.exp_to_discard": None,
    "precision": "float64",
}


def test_shaping_keys_are_those_that_change_parameter_shapes(tmp_path):
    from vmc.ansatz import make_ansatz
    from vmc.baseline import hartree_fock
    from vmc.finetune import shaping_keys
    from vmc.mcmc import init_walkers
    from vmc.system_data import make_system_data
    from vmc.systems import resolve_config

    assert {f"model.fire.{k}" for k in FireConfig.model_fields} | {f"model.slater_jastrow.{k}" for k in SlaterJastrowConfig.model_fields} \
        <= set(OTHER), "classify the new setting here and in vmc.finetune"

    def shapes(settings):
        cfg, (system,) = resolve_config(make_config(None, {"system": "LiH", "baseline.basis": "sto-3g",
                                                           "baseline.cache_dir": str(tmp_path), **TINY_NETWORKS, **settings}))
        elements = cfg.model.elements
        ansatz = make_ansatz(cfg.model, elements)
        data = make_system_data(system, *ansatz.prepare(system, hartree_fock(system, cfg.baseline)), elements)
        r = init_walkers(system, 1, np.random.default_rng(0), 1.0)[0]
        params = jax.eval_shape(ansatz.init, jax.random.PRNGKey(0), data, r)
        return {jax.tree_util.keystr(k): v.shape for k, v in jax.tree_util.tree_flatten_with_path(params)[0]}

    for name in ("fire", "slater_jastrow"):
        reference = shapes({"model.name": name})
        for key, value in OTHER.items():
            if key.startswith("model.") and key.split(".")[1] in ("fire", "slater_jastrow") and key.split(".")[1] != name:
                continue
            extra = {"model.fire.implementation": "dense"} if key == "model.fire.orbital_mlp" else {}
            changed = shapes({"model.name": name, key: value, **extra}) != reference
            assert changed == (key in shaping_keys(name)), (name, key)
    assert shaping_keys("hf") == ("model.name",)
