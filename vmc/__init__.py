"""vmc: neural-network variational Monte Carlo for molecules and crystals."""

__version__ = "0.1.0"
