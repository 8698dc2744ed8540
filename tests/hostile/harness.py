"""The hostile suite's harness (issue 18): run `realesr` as a careless or hostile user would, in a subprocess of its
own process group with a deadline, and check the promise: no traceback, the exit code by the rule, the message names
the file or option, every input byte-identical, nothing written where it should not be, the command ends in time.

Use it from any ``tests/hostile/test_*.py`` (fixtures ``realesr`` and ``weights`` come from conftest.py, the
helpers from here: ``from .harness import snapshot, assert_unchanged, tiny_image``; the fixture ``cli`` runs the
same in-process, for cases that cannot hang, at no start-up cost)::

    def test_something(realesr, tmp_path):
        tree = snapshot(tmp_path)
        r = realesr("upscale", tmp_path / "x.png", "-o", tmp_path / "out", timeout=30)
        r.check(1, "x.png")                 # exit 1, one line on stderr naming x.png, no traceback
        assert_unchanged(tmp_path, tree, allow=["out"])   # inputs identical, nothing new outside out/

A hang fails the test (the whole process group is killed) instead of hanging the suite. ``realesr.start(...)``
gives a running process for signal tests (``proc.signal(SIGTERM)``, ``proc.finish(timeout)``).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src"
# A command of the suite is small: a run over this is a hang, whatever the machine's load.
DEFAULT_TIMEOUT = 60.0


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    # One thread: tiny networks gain nothing from more, and the suite shares a small machine.
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("MKL_NUM_THREADS", "1")
    env.pop("PYTHONFAULTHANDLER", None)  # a hang is reported by the harness, not by a faulthandler dump
    env.update(extra or {})
    return env


@dataclass
class Result:
    argv: list[str]
    code: int
    out: str
    err: str
    seconds: float

    def __str__(self) -> str:
        head = f"$ realesr {' '.join(self.argv)}\nexit {self.code} in {self.seconds:.1f}s"
        return f"{head}\n--stdout--\n{self.out}\n--stderr--\n{self.err}"

    def check(self, code: int | Iterable[int], *names: str, lines: int | None = 1) -> Result:
        """The promise for one command: exit ``code`` (or one of them), no traceback, every one of ``names`` on
        stderr, and at most ``lines`` non-empty lines on stderr (one message per failed input, each one line;
        None: not counted). A failure shows the command and both streams."""
        codes = {code} if isinstance(code, int) else set(code)
        assert_no_traceback(self)
        assert self.code in codes, f"exit {self.code}, expected {sorted(codes)}\n{self}"
        for name in names:
            assert name in self.err, f"{name!r} not named on stderr\n{self}"
        if lines is not None:
            count = len([line for line in self.err.splitlines() if line.strip()])
            assert count <= lines, f"{count} lines on stderr, at most {lines} expected\n{self}"
        return self


def assert_no_traceback(result: Result) -> None:
    for stream in (result.err, result.out):
        assert "Traceback (most recent call last)" not in stream, f"a traceback\n{result}"
        assert "internal error, please report" not in stream, f"the last-resort handler fired\n{result}"


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


class Running:
    """A `realesr` process started by :meth:`Realesr.start`, alone in its process group."""

    def __init__(self, argv: list[str], proc: subprocess.Popen) -> None:
        self.argv, self.proc, self.started = argv, proc, time.monotonic()

    def signal(self, sig: int = signal.SIGTERM) -> None:
        """Send ``sig`` to the main process only (as a supervisor's kill would), not to its group."""
        self.proc.send_signal(sig)

    def finish(self, timeout: float = DEFAULT_TIMEOUT) -> Result:
        """Wait for the end; past ``timeout`` the whole group is killed and the test fails as a hang."""
        try:
            out, err = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(self.proc)
            out, err = self.proc.communicate()
            result = Result(self.argv, -9, out, err, time.monotonic() - self.started)
            pytest.fail(f"hang: no end within {timeout:.0f}s (process group killed)\n{result}")
        finally:
            if self.proc.poll() is None:
                _kill_group(self.proc)
        return Result(self.argv, self.proc.returncode, out, err, time.monotonic() - self.started)


class Realesr:
    """``realesr(*args, timeout=, cwd=, env=, stdin=)`` runs ``python -m realesr args`` with this repository's
    source first on the path, in its own process group; arguments may be paths (str() is applied, bytes kept)."""

    def __init__(self) -> None:
        self._running: list[Running] = []

    def start(self, *args: object, cwd: Path | None = None, env: dict[str, str] | None = None, stdin=None) -> Running:
        argv = [a if isinstance(a, bytes) else str(a) for a in args]
        proc = subprocess.Popen(
            [sys.executable, "-m", "realesr", *argv],
            cwd=cwd,
            env=_env(env),
            stdin=subprocess.DEVNULL if stdin is None else stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            errors="backslashreplace",
            start_new_session=True,  # its own process group: a timeout kills it and everything it started
        )
        running = Running([os.fsdecode(a) for a in argv], proc)
        self._running.append(running)
        return running

    def __call__(self, *args: object, timeout: float = DEFAULT_TIMEOUT, **kwargs) -> Result:
        return self.start(*args, **kwargs).finish(timeout)

    def cleanup(self) -> None:
        for running in self._running:
            if running.proc.poll() is None:
                _kill_group(running.proc)


# --- inputs and what must not change --------------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, str]:
    """Every entry under ``root`` (links not followed) -> a fingerprint: the sha256 of a file's bytes, a link's
    target, or "dir"/"other". Compare two with :func:`assert_unchanged`."""
    root = Path(root)
    found: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            path = Path(dirpath) / name
            rel = os.fsdecode(path.relative_to(root))
            if path.is_symlink():
                found[rel] = "link:" + os.fsdecode(os.readlink(path))
            elif path.is_file():
                found[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
            elif path.is_dir():
                found[rel] = "dir"
            else:
                found[rel] = "other"
    return found


def assert_unchanged(root: Path, before: dict[str, str], allow: Sequence[str] = ()) -> None:
    """Everything in ``before`` is still there and byte-identical; nothing new under ``root`` except under the
    relative paths in ``allow`` (an output folder or file the command may write)."""
    after = snapshot(root)
    changed = [k for k, v in before.items() if after.get(k) != v]
    assert not changed, f"inputs changed or removed: {changed}"

    def allowed(rel: str) -> bool:
        return any(rel == a or rel.startswith(a.rstrip("/") + "/") for a in allow)

    new = [k for k in after if k not in before and not allowed(k)]
    assert not new, f"written where it should not be: {new}"


def written(root: Path, before: dict[str, str]) -> list[str]:
    """The new entries under ``root`` since ``before``."""
    return sorted(k for k in snapshot(root) if k not in before)


# --- tiny inputs ----------------------------------------------------------------------------------------------------


def tiny_image(path: Path, size: int = 12, seed: int = 0) -> Path:
    """A small random RGB image, format from the suffix."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(path)
    return Path(path)
