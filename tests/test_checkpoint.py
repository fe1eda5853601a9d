import numpy as np
import pytest

from vmc import checkpoint
from vmc.errors import InputError


def _tree():
    return {"layer/~/a": {"w": np.arange(6.0).reshape(2, 3), "b": np.ones(3)}, "jastrow": {"a": np.float32(0.5)}}


def _save(path, params, step=3):
    checkpoint.save(path, step=step, phase="optimize", params=params, opt_state={"m": [np.zeros(2), np.int32(4)]},
                    systems={"H2": {"walkers": np.ones((4, 2, 3)), "width": np.array(0.2)}},
                    scheduler=np.array([0.1]), config_text="seed: 0\n")


def test_roundtrip(tmp_path):
    path = checkpoint.checkpoint_path(tmp_path, 3)
    _save(path, _tree())
    state = checkpoint.load(path, _tree(), {"m": [np.ones(2), np.int32(0)]})
    assert state["step"] == 3 and state["phase"] == "optimize"
    np.testing.assert_array_equal(state["params"]["layer/~/a"]["w"], _tree()["layer/~/a"]["w"])
    assert int(state["opt_state"]["m"][1]) == 4
    assert state["systems"]["H2"]["walkers"].shape == (4, 2, 3)
    assert not list(tmp_path.glob("*.tmp"))


def test_mismatch_names_the_leaf(tmp_path):
    path = tmp_path / "ckpt_00000001.h5"
    _save(path, _tree())
    other = _tree()
    other["layer/~/a"]["w"] = np.zeros((2, 4))
    with pytest.raises(InputError, match=r"\['layer/~/a'\]\['w'\] has shape \(2, 3\) in the checkpoint but \(2, 4\)"):
        checkpoint.load_params(path, other)
    missing = _tree()
    missing["extra"] = {"w": np.zeros(1)}
    with pytest.raises(InputError, match=r"missing \['extra'\]\['w'\]"):
        checkpoint.load_params(path, missing)


def test_corrupt_and_listing(tmp_path):
    for step in (1, 2, 10):
        _save(checkpoint.checkpoint_path(tmp_path, step), _tree(), step)
    assert [p.name for p in checkpoint.list_checkpoints(tmp_path)] == ["ckpt_00000010.h5", "ckpt_00000002.h5", "ckpt_00000001.h5"]
    newest = checkpoint.list_checkpoints(tmp_path)[0]
    newest.write_bytes(newest.read_bytes()[:200])
    with pytest.raises(InputError, match="not a readable checkpoint"):
        checkpoint.load(newest, _tree())
    checkpoint.prune(tmp_path, 2)
    assert len(checkpoint.list_checkpoints(tmp_path)) == 2
