"""Atomic writes for every area: a uniquely named temporary file beside the target, then ``os.replace``,
so readers (and an interrupted run) never see half a file.

The temporary file is created with ``open(..., "xb")`` rather than ``tempfile.mkstemp`` so that the
result gets the usual permissions (0666 minus the umask), not mkstemp's private 0600.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

__all__ = ["atomic_path", "atomic_write_bytes", "atomic_write_text"]


@contextmanager
def atomic_path(dest: Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a fresh temporary path beside ``dest`` (created empty); on success it replaces ``dest``,
    on any error it is removed."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{uuid.uuid4().hex[:12]}{suffix}")
    with open(tmp, "xb"):
        pass
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(dest: Path, data: bytes) -> None:
    """Write ``data`` to ``dest`` atomically, flushed to disk before the rename (a crash leaves the old file or
    the new one, never an empty one)."""
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())


def atomic_write_text(dest: Path, text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))
