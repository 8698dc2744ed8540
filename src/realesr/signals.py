"""The one signal rule of realesr (issue 18): Ctrl-C (SIGINT) and SIGTERM end every command within a few seconds,
on every try.

- The first signal raises in the main thread (:class:`KeyboardInterrupt`, or :class:`Terminated` for SIGTERM), so
  that the command unwinds: temporary files are removed (atomic writes), finished outputs stay; the CLI prints one
  line and exits 130 / 143.
- A second signal while that unwinding is under way exits at once with the same code (``os._exit``): a clean-up
  that waits on a stuck worker cannot keep the command alive.
- Libraries that take the handlers over (``ray.init`` sets its own SIGTERM handler and shutdown does not restore
  it) are put right by :func:`reassert`, called after them.

:func:`installed` is used once, by ``realesr.cli.main``, and :func:`until_exit` by the console script after it;
:func:`exit_code_of` maps the exceptions to exit codes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["Terminated", "exit_code_of", "hard_exit", "installed", "pending", "reassert", "until_exit"]

INTERRUPTED, TERMINATED = 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds like Ctrl-C (temporary files removed)."""


_state = {"active": False, "pending": 0}


def _handler(signum: int, frame: object) -> None:
    code = TERMINATED if signum == signal.SIGTERM else INTERRUPTED
    if _state["pending"]:
        # The second signal: the first one's unwinding is taking too long (a stuck worker, a slow clean-up).
        hard_exit(_state["pending"] or code)
    _state["pending"] = code
    raise Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def pending() -> int:
    """The exit code of a signal received during the current command (0: none)."""
    return int(_state["pending"])


def hard_exit(code: int) -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


@contextmanager
def installed() -> Iterator[None]:
    """The rule, for the duration of a command; the previous handlers come back after it. Outside the main thread
    (an embedding program) nothing is installed: signals are its business."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    _state.update(active=True, pending=0)
    for sig in previous:
        signal.signal(sig, _handler)
    try:
        yield
    finally:
        # Handlers first, state after: a second signal in between still finds the rule, which exits at once.
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        _state.update(active=False, pending=0)


def reassert() -> None:
    """Take SIGINT and SIGTERM back after a library replaced the handlers (Ray); a no-op outside a command."""
    if _state["active"] and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            if signal.getsignal(sig) is not _handler:
                signal.signal(sig, _handler)


def _exit_now(signum: int, frame: object) -> None:
    hard_exit(TERMINATED if signum == signal.SIGTERM else INTERRUPTED)


def until_exit() -> None:
    """After the command, while the interpreter shuts down (atexit handlers, library finalisers, threads joined):
    a signal ends the process at once with its code, rather than a KeyboardInterrupt traceback from a finaliser.
    For the console script only (``realesr.cli.entry``): an embedding program keeps its own handlers."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, _exit_now)


def exit_code_of(err: BaseException) -> int:
    """130 for Ctrl-C, 143 for SIGTERM."""
    return TERMINATED if isinstance(err, Terminated) else INTERRUPTED
