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


def test_a_signal_that_a_library_turned_into_another_exception_is_still_the_signal(monkeypatch, capsys, tmp_path):
    # What logging.shutdown did at a SIGTERM during uvicorn's start-up: the handler's exception arrived between
    # acquire and release, and the lock's RuntimeError replaced it (a crash log for a plain `kill`).
    import os
    import signal
    import tempfile

    from realesr.cli import runs

    def swallowed(args):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except KeyboardInterrupt:
            raise RuntimeError("cannot release un-acquired lock") from None

    monkeypatch.setattr(runs, "run", swallowed)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where a crash log would go
    assert cli.main(["runs"]) == 143
    err = capsys.readouterr().err
    assert err.strip() == "realesr: terminated" and not list(tmp_path.iterdir())
