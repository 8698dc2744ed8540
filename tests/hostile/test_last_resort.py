"""The safety net of issue 18 (not the fix): an exception no code path foresaw becomes one line, "internal error,
please report", with the path of a log file holding the traceback, and exit code 70 (realesr.cli.INTERNAL_ERROR)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from realesr import cli


@pytest.mark.parametrize("exc", [ZeroDivisionError("division by zero"), KeyError("x\ny"), AssertionError()])
def test_an_unexpected_exception_is_one_line_and_a_log_exit_70(monkeypatch, capsys, exc):
    from realesr.cli import runs

    def boom(args):
        raise exc

    monkeypatch.setattr(runs, "run", boom)
    assert cli.main(["runs"]) == cli.INTERNAL_ERROR == 70
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert err.startswith("realesr: internal error, please report:") and type(exc).__name__ in err
    log = Path(re.search(r"traceback in (\S+\.log)", err).group(1))
    try:
        text = log.read_text()
        assert "Traceback (most recent call last)" in text and "boom" in text
    finally:
        log.unlink()
