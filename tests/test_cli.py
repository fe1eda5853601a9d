"""The command line beyond bad input (tests/test_bad_input.py)."""

import subprocess
import sys

import pytest

from vmc.cli import main

H2 = "configs/h2.yaml"


def test_systems_lists_catalog(capsys):
    assert main(["systems"]) == 0
    names = capsys.readouterr().out.split()
    for name in ["H", "H2", "LiH", "Li", "Be", "N2", "H2O", "H4_chain", "lih_rocksalt", "hydrogen_chain", "h_bcc"]:
        assert name in names
