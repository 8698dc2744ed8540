"""Start-up: building any sub-command's parser imports no torch (so `realesr X --help` answers at once).

A behavioural check in a fresh interpreter (the figures are in bench/bench_cli_startup.py, not here)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from realesr.cli import COMMANDS

PROBE = """
import sys
import realesr.cli as cli
parser = cli.build_parser({argv!r})
heavy = sorted(m for m in ('torch', 'torchvision', 'cv2', 'fastapi', 'av', 'ray') if m in sys.modules)
print('HEAVY', *heavy)
"""


@pytest.mark.parametrize("argv", [[], *([name, "--help"] for name in COMMANDS)], ids=lambda a: a[0] if a else "-")
def test_building_a_parser_imports_no_torch(argv: list[str]) -> None:
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("HEAVY"))
    assert line.split()[1:] == [], f"building the parser of {argv} imported {line.split()[1:]}"


def test_full_parser_lists_every_command() -> None:
    # Without argv every sub-command's parser is built in full: each module exists and registers itself.
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(argv=None)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    assert "torch" not in done.stdout
