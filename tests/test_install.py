"""What the package's requirements exclude, and why: jaxlib 0.10.x deadlocks a CPU run on a
machine with few cores (README, "JAX")."""

import sys

import jax
import pytest
from packaging.requirements import Requirement
from packaging.version import Version


def _dependencies() -> dict[str, Requirement]:
    if sys.version_info < (3, 11):
        pytest.skip("tomllib needs Python 3.11")
    from pathlib import Path

    import tomllib

    project = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]
    return {r.name: r for r in map(Requirement, project["dependencies"])}


def test_requirements_skip_the_jax_releases_whose_cpu_lapack_deadlocks():
    deps = _dependencies()
    for name in ("jax", "jaxlib"):
        spec = deps[name].specifier
        assert not spec.contains(Version("0.10.2")) and not spec.contains(Version("0.10.0")), name
        assert spec.contains(Version("0.9.2")) and spec.contains(Version("0.11.2")), name


def test_installed_jax_is_not_a_deadlocking_release():
    # jaxlib 0.10's LAPACK kernels wait, on a thread of the CPU pool, for batch chunks queued on
    # that same pool: the README's smoke run hung at 0 % CPU on 2 cores in its second sampling step
    assert Version(jax.__version__).release[:2] != (0, 10), f"jax {jax.__version__} is excluded by pyproject.toml"
