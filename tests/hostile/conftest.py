"""Fixtures of the hostile suite (issue 18); the harness and helpers are in harness.py (read its docstring)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .harness import Realesr


@pytest.fixture
def realesr():
    runner = Realesr()
    yield runner
    runner.cleanup()


@pytest.fixture
def weights(tmp_path_factory) -> Path:
    """A 2x SRVGGNetCompact with 4 features (tests/serve_helpers.tiny_weights): fast on any machine."""
    from serve_helpers import tiny_weights  # tests/ is on sys.path: it holds this package

    return tiny_weights(tmp_path_factory.mktemp("weights"))
