"""Fixtures of the hostile suite (issue 18); the harness and helpers are in harness.py (read its docstring)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from .harness import Realesr, Result


@pytest.fixture
def realesr():
    runner = Realesr()
    yield runner
    runner.cleanup()


@pytest.fixture
def cli(capsys):
    """``cli(*args)`` runs ``realesr.cli.main`` in this process (milliseconds, not a 2-second start-up) and gives
    the same :class:`Result` as ``realesr``; for cases that cannot hang (no deadline, no process group)."""
    import time

    from realesr.cli import main

    def run(*args: object) -> Result:
        argv = [a if isinstance(a, str) else os.fsdecode(a) if isinstance(a, bytes) else str(a) for a in args]
        capsys.readouterr()
        start = time.monotonic()
        code = main(argv)
        out, err = capsys.readouterr()
        return Result(argv, code, out, err, time.monotonic() - start)

    return run


@pytest.fixture
def weights(tmp_path_factory) -> Path:
    """A 2x SRVGGNetCompact with 4 features (tests/serve_helpers.tiny_weights): fast on any machine."""
    from serve_helpers import tiny_weights  # tests/ is on sys.path: it holds this package

    return tiny_weights(tmp_path_factory.mktemp("weights"))
