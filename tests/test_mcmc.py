import jax
import jax.numpy as jnp
import numpy as np

from vmc import stats
from vmc.mcmc import adapt_width, electron_sites, init_walkers, make_mcmc_step
from vmc.system_data import SystemData
from vmc.systems import build_systems


def test_electron_sites():
    (lih,) = build_systems("LiH")
    up, down = electron_sites(lih)
    assert list(up) == [0, 0] and list(down) == [0, 1]  # Li keeps 2 up + 1 down, H one down
    (n2,) = build_systems("N2")
    up, down = electron_sites(n2)
    assert len(up) == 7 and len(down) == 7 and abs(np.sum(up == 0) - np.sum(up == 1)) <= 1
    (cation,) = build_systems({"atoms": [["Li", [0, 0, 0]], ["H", [0, 0, 3.0]]], "charge": 1})
    up, down = electron_sites(cation)
    assert len(up) + len(down) == 3


def test_crystal_walkers_inside_cell():
    (s,) = build_systems({"name": "hydrogen_chain", "supercell": [2, 1, 1]})
    w = init_walkers(s, 16, np.random.default_rng(0), 1.0)
    f = w @ np.linalg.inv(s.lattice)
    assert w.shape == (16, 4, 3) and np.all((f >= 0) & (f < 1))


def test_samples_hydrogen_ground_state_density(x64):
    """|psi|^2 = exp(-2r)/pi has <r> = 3/2 bohr; within 4 autocorrelation-corrected errors."""
    data = SystemData(atoms=jnp.zeros((1, 3)), charges=jnp.ones(1), species=jnp.zeros(1, jnp.int32), cell=None,
                      ewald=None, hf=None, features=None, n_up=1, n_down=0)
    log_psi = lambda params, data, r: (jnp.zeros(()), -jnp.linalg.norm(r[0]))  # noqa: E731
    sample = jax.jit(make_mcmc_step(log_psi, 5))
    walkers = jnp.asarray(np.random.default_rng(0).normal(size=(256, 1, 3)))
    key, width, means, accept = jax.random.PRNGKey(0), 0.5, [], []
    for t in range(300):
        key, sub = jax.random.split(key)
        walkers, pmove, _ = sample(None, data, walkers, sub, width)
        width = adapt_width(width, float(pmove), 0.5)
        if t >= 50:
            means.append(float(jnp.mean(jnp.linalg.norm(walkers[:, 0], axis=-1))))
            accept.append(float(pmove))
    mean, err = stats.mean_and_error(np.array(means))
    assert abs(mean - 1.5) < 4 * err, (mean, err)
    assert 0.35 < np.mean(accept) < 0.65
