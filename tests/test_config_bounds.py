"""Config numbers out of range and duplicate YAML keys: each is refused with
one line naming the key, exit status 2, before Hartree–Fock and before anything is written,
instead of a traceback after HF (or an allocation of petabytes, or the last key silently
winning)."""

import numpy as np
import pytest

from vmc.cli import main

H2 = "configs/h2.yaml"
# if anything slipped through, the run it started would be short
TINY = ["--set", "mcmc.walkers=8", "--set", "baseline.basis=sto-3g", "--set", "pretraining.steps=0", "--set", "mcmc.burn_in=0",
        "--set", "optimization.steps=1", "--set", "evaluation.steps=1", "--set", "evaluation.burn_in=0"]
FIRE = ["--set", "model.name=fire"]
CASES = [
    ("negative_seed", ["--set", "seed=-1"], "config key 'seed'"),
    ("seed_1e20", ["--set", "seed=100000000000000000000"], "config key 'seed'"),
    # jax.random.PRNGKey keeps the low 32 bits of the seed in float32 runs: this one would repeat seed 0
    ("seed_2_32", ["--set", "seed=4294967296"], "config key 'seed'"),
    ("cutoff_1e300", FIRE + ["--set", "model.fire.cutoff=1e300"], "config key 'model.fire.cutoff'"),
    ("orbital_cutoff_1e300", FIRE + ["--set", "model.fire.orbital_cutoff=1e300"], "config key 'model.fire.orbital_cutoff'"),
    # within the raw bound, but 71^3 lattice vectors to search per cell of a 3-bohr crystal
    ("cutoff_many_images", FIRE + ["--set", "system=h_bcc", "--set", "model.fire.cutoff=100"], "config key 'model.fire.cutoff'"),
    ("orbital_cutoff_many_images", FIRE + ["--set", "system=h_bcc", "--set", "model.fire.orbital_cutoff=100"],
     "config key 'model.fire.orbital_cutoff'"),
    ("twist_grid", ["--set", "system=h_bcc", "--set", "system.twists={grid: [100, 100, 100]}"], "config key 'system.twists.grid'"),
]


def _refused(argv, out, capsys, expected):
    code = main(argv + ["--out", str(out)])
    err = capsys.readouterr().err
    assert code == 2, err
    assert expected in err, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not out.exists()  # refused before anything was written


@pytest.mark.parametrize("case_id, argv, expected", CASES, ids=[c[0] for c in CASES])
def test_number_out_of_range(case_id, argv, expected, tmp_path, capsys):
    _refused(["run", H2, *TINY, "--set", f"baseline.cache_dir={tmp_path / 'hf'}", *argv], tmp_path / "out", capsys, expected)
    assert not (tmp_path / "hf").exists()  # no Hartree–Fock either


def test_each_bound_at_its_edge():
    """Just inside each bound is accepted, just outside refused: seed 2**32 - 1 / 2**32, a
    10x10x10 twist grid (reduced by symmetry at once) / 10x10x11, and in the 3-bohr cell of
    h_bcc a 27-bohr cutoff (21^3 lattice vectors to search) / 28 bohr (23^3)."""
    from vmc.config import make_config
    from vmc.errors import InputError
    from vmc.systems import resolve_config

    def resolved(overrides):
        return resolve_config(make_config(None, overrides))[1]

    assert make_config(None, {"seed": 2**32 - 1}).seed == 2**32 - 1
    with pytest.raises(InputError, match="config key 'seed'"):
        make_config(None, {"seed": 2**32})
    systems = resolved({"system": "lih_rocksalt", "system.twists": {"grid": [10, 10, 10]}})
    assert len(systems) == 110 and np.isclose(sum(s.weight for s in systems), 1.0)  # irreducible under the 96 operations
    with pytest.raises(InputError, match="config key 'system.twists.grid'"):
        resolved({"system": "lih_rocksalt", "system.twists": {"grid": [10, 10, 11]}})
    for key in ("cutoff", "orbital_cutoff"):
        resolved({"system": "h_bcc", "model.name": "fire", f"model.fire.{key}": 27.0})
        with pytest.raises(InputError, match=f"config key 'model.fire.{key}'"):
            resolved({"system": "h_bcc", "model.name": "fire", f"model.fire.{key}": 28.0})
    resolved({"system": "h_bcc", "model.name": "fire", "model.fire.cutoff": None, "model.fire.implementation": "dense"})
    resolved({"system": "H2", "model.name": "fire", "model.fire.cutoff": 1000.0})  # a molecule has no images


CONFIG = """\
system: H2
seed: 1
mcmc:
  walkers: 8
  steps: 2
optimization:
  steps: 1
"""


@pytest.mark.parametrize("text, expected", [
    (CONFIG + "seed: 2\n", "key 'seed' appears twice (lines 2 and 8)"),
    (CONFIG.replace("  steps: 2\n", "  steps: 2\n  walkers: 16\n"), "key 'mcmc.walkers' appears twice (lines 4 and 6)"),
    (CONFIG + "mcmc:\n  walkers: 16\n", "key 'mcmc' appears twice (lines 3 and 8)"),
], ids=["top_level", "nested", "section"])
def test_duplicate_yaml_key(text, expected, tmp_path, capsys):
    config = tmp_path / "dup.yaml"
    config.write_text(text)
    _refused(["run", str(config), *TINY], tmp_path / "out", capsys, f"{config}: {expected}")


def test_duplicate_key_in_system_file_and_override(tmp_path, capsys):
    """Also in a system file and in a --set value; a key after a YAML merge (<<) still
    overrides the merged one, which is no duplicate."""
    from vmc.config import parse_override

    system = tmp_path / "h2.yaml"
    system.write_text("atoms: [[H, [0, 0, 0]], [H, [0, 0, 1.4]]]\ncharge: 0\ncharge: 1\n")
    _refused(["run", H2, *TINY, "--set", f"system={system}"], tmp_path / "out", capsys, f"{system}: key 'charge' appears twice")
    _refused(["run", H2, *TINY, "--set", "system={atoms: [[H, [0, 0, 0]]], charge: 0, charge: -1}"], tmp_path / "out", capsys,
             "--set system: key 'charge' appears twice")
    assert parse_override("x={base: &b {a: 1, b: 2}, derived: {<<: *b, b: 3}}")[1]["derived"] == {"a": 1, "b": 3}
