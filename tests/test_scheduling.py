import numpy as np

from vmc.scheduling import Scheduler, system_weights
from vmc.systems import build_systems


def test_weights_twist_times_geometry():
    systems = build_systems({"name": "hydrogen_chain", "lattice_constant": [3.4, 3.6], "supercell": [2, 1, 1], "twists": [[0, 0, 0], [0.25, 0, 0]]})
    w = system_weights(systems)
    assert np.allclose(w, 0.25) and np.isclose(w.sum(), 1)


def test_proportional_and_never_stale():
    weights = np.array([0.5, 0.3, 0.15, 0.05])
    s = Scheduler(weights)
    picks = np.array([s.next() for _ in range(2000)])
    counts = np.bincount(picks, minlength=4)
    assert np.all(np.abs(counts - 2000 * weights) <= 1)
    for i, w in enumerate(weights):
        gaps = np.diff(np.flatnonzero(picks == i))
        assert gaps.max() <= int(np.ceil(1 / w)) + 1


def test_resumed_scheduler_continues_sequence():
    w = np.array([0.6, 0.4])
    a = Scheduler(w)
    first = [a.next() for _ in range(7)]
    b = Scheduler(w, a.credit)
    assert [a.next() for _ in range(10)] == [b.next() for _ in range(10)]
    assert len(first) == 7
