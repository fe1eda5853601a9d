"""vmc: neural-network variational Monte Carlo for molecules and crystals."""

__version__ = "0.1.0"

from vmc.api import evaluate, run  # noqa: E402  (the Python API: vmc.run, vmc.evaluate)

__all__ = ["run", "evaluate", "__version__"]
