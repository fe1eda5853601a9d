from pathlib import Path

import pytest
import yaml

from vmc.config import Config, apply_overrides, dump_config, make_config, parse_override
from vmc.errors import InputError


def test_defaults_roundtrip(tmp_path):
    cfg = make_config({})
    path = tmp_path / "config.yaml"
    path.write_text(dump_config(cfg))
    again = make_config(path)
    assert again == cfg
    # every section and default is written out
    written = yaml.safe_load(path.read_text())
    assert written["optimization"]["kfac"]["damping"] == cfg.optimization.kfac.damping
    assert written["model"]["fire"]["cutoff"] == cfg.model.fire.cutoff


def test_override_parsing():
    assert parse_override("mcmc.walkers=256") == ("mcmc.walkers", 256)
    assert parse_override("system.lattice_constant=[7.0, 7.5]") == ("system.lattice_constant", [7.0, 7.5])
    assert parse_override("system={name: H2}") == ("system", {"name": "H2"})
    cfg = make_config({"mcmc": {"walkers": 8}}, {"mcmc.steps": 3, "seed": 5, "system": "LiH"})
    assert (cfg.mcmc.walkers, cfg.mcmc.steps, cfg.seed, cfg.system) == (8, 3, 5, "LiH")


def test_override_into_catalog_name():
    raw = apply_overrides({"system": "lih_rocksalt"}, {"system.lattice_constant": 7.0})
    assert raw["system"] == {"name": "lih_rocksalt", "lattice_constant": 7.0}


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"mcmc.walkerz": 3}, "config key 'mcmc.walkerz': unknown key"),
        ({"mcmc.walkers": "many"}, "config key 'mcmc.walkers'"),
        ({"optimization.optimizer": "sgd"}, "config key 'optimization.optimizer'"),
        ({"mcmc.walkers.x": 1}, "config key 'mcmc.walkers': Input should be a valid integer"),
    ],
)
def test_bad_overrides(overrides, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        make_config({}, overrides)


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        make_config(tmp_path / "nope.yaml")


def test_config_model_is_strict():
    with pytest.raises(Exception):
        Config.model_validate({"nonsense": 1})


@pytest.mark.parametrize("path", sorted((Path(__file__).parents[1] / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    """Every config the README points users at parses, with its systems expanded."""
    from vmc.systems import resolve_config

    config, systems = resolve_config(make_config(path, {}))
    assert systems and config.local_energy_batch == "auto"
