"""The one reader of the files realesr writes and later reads back: a run's ``status.json``, ``config.yaml`` and
CSV logs, a checkpoint's ``state.pt`` contents, a video work folder's manifest and timestamp files, the page's
job records. Such a file may be damaged (a crash, a full disk, a hand edit, another program), so its content is
data from outside like any input: it is read with a size limit, from a regular file only, parsed strictly (no
NaN in JSON, no YAML aliases) and checked against a :mod:`realesr.schema` shape before anyone uses it.

A file that fails raises :class:`StateFileError`, one line naming the file, what is wrong and what to do, e.g.
``runs/a/status.json: the run's status is damaged (iteration: must be an integer >= 0, got 'x'); delete it:
the next `realesr train --resume auto` writes it again``. Callers decide what follows: `realesr runs` reports that
run and lists the others, a resume is refused before anything is written.
"""

from __future__ import annotations

import csv
import io
import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from realesr.errors import RealesrError
from realesr.schema import Invalid, Shape

__all__ = [
    "JSON_LIMIT",
    "LOG_LIMIT",
    "StateFileError",
    "check_state",
    "read_csv",
    "read_json",
    "read_text",
    "read_yaml",
]

# The state files are small: a status or manifest is a few kB, a video manifest of a 3-hour film at 120 frames
# per segment about 1 MB; a CSV log of a million iterations logged every 100 is about 2 MB.
JSON_LIMIT = 16 * 2**20
LOG_LIMIT = 256 * 2**20


class StateFileError(RealesrError):
    """A file realesr wrote earlier and reads back is missing a part, damaged or not what it should be
    (exit code 2: the user must repair, remove or replace it). ``path``: the file."""

    exit_code = 2

    def __init__(self, path: str | os.PathLike, message: str) -> None:
        super().__init__(message)
        self.path = Path(path)


def _fail(path: Path, what: str, problem: str, remedy: str) -> StateFileError:
    return StateFileError(path, f"{path}: {what} is damaged ({problem}); {remedy}")


def read_text(path: str | os.PathLike, *, what: str, remedy: str, limit: int = JSON_LIMIT) -> str:
    """The UTF-8 text of ``path``, a regular file of at most ``limit`` bytes. A FIFO or device is refused without
    blocking (opened non-blocking, checked before reading); FileNotFoundError passes through for callers to whom
    a missing file means "none yet"."""
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise
    except OSError as err:
        raise StateFileError(path, f"{path}: cannot read {what} ({err.strerror or err}); {remedy}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _fail(path, what, "not a regular file", remedy)
        if info.st_size > limit:
            raise _fail(path, what, f"{info.st_size} bytes, more than the {limit} such a file can hold", remedy)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(limit + 1)
    except OSError as err:
        raise StateFileError(path, f"{path}: cannot read {what} ({err.strerror or err}); {remedy}") from None
    finally:
        os.close(fd)
    if len(data) > limit:
        raise _fail(path, what, f"more than the {limit} bytes such a file can hold", remedy)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _fail(path, what, f"not UTF-8 text at byte {err.start}", remedy) from None


def check_state(value: Any, shape: Shape, path: str | os.PathLike, *, what: str, remedy: str) -> Any:
    """``shape.check(value)`` for a value read from ``path`` by other means (``torch.load``); StateFileError."""
    try:
        return shape.check(value, "")
    except Invalid as err:
        raise _fail(Path(path), what, str(err), remedy) from None
    except RecursionError:
        raise _fail(Path(path), what, "nested too deeply", remedy) from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_json(
    path: str | os.PathLike,
    shape: Shape,
    *,
    what: str,
    remedy: str,
    limit: int = JSON_LIMIT,
    constants: bool = False,
) -> Any:
    """Parse ``path`` as JSON and check it against ``shape``. NaN and Infinity (Python's json writes them for
    non-finite floats) are refused unless ``constants``; then only shapes with ``finite=False`` take them."""
    text = read_text(path, what=what, remedy=remedy, limit=limit)
    try:
        value = json.loads(text, parse_constant=None if constants else _no_constant)
    except ValueError as err:
        raise _fail(Path(path), what, f"not valid JSON: {str(err).splitlines()[0]}", remedy) from None
    except RecursionError:
        raise _fail(Path(path), what, "nested too deeply", remedy) from None
    return check_state(value, shape, path, what=what, remedy=remedy)


def _yaml_loader():
    import yaml

    class NoAliases(yaml.SafeLoader):
        """realesr never writes anchors; refusing aliases keeps a small file from expanding into a huge tree."""

        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                event = self.peek_event()
                raise yaml.composer.ComposerError(None, None, "YAML aliases are not used here", event.start_mark)
            return super().compose_node(parent, index)

    return yaml, NoAliases


def read_yaml(path: str | os.PathLike, shape: Shape, *, what: str, remedy: str, limit: int = JSON_LIMIT) -> Any:
    """Parse ``path`` as YAML (safe loader, no aliases) and check it against ``shape``."""
    text = read_text(path, what=what, remedy=remedy, limit=limit)
    yaml, loader = _yaml_loader()
    try:
        value = yaml.load(text, Loader=loader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as err:
        first = " ".join(str(err).split())
        raise _fail(Path(path), what, f"not valid YAML: {first[:200]}", remedy) from None
    except (ValueError, TypeError, OverflowError) as err:  # a timestamp or number the constructor cannot build
        raise _fail(Path(path), what, f"not valid YAML: {err}", remedy) from None
    except RecursionError:
        raise _fail(Path(path), what, "nested too deeply", remedy) from None
    return check_state(value, shape, path, what=what, remedy=remedy)


def read_csv(
    path: str | os.PathLike,
    columns: Mapping[str, Shape],
    *,
    what: str,
    remedy: str,
    required: tuple[str, ...] = (),
    limit: int = LOG_LIMIT,
) -> list[dict[str, Any]]:
    """The rows of a CSV file with a header line, each value of ``columns`` checked by its shape (the text as it
    is: give ``Int(text=True)`` / ``Float(text=True)``); other columns stay text. ``required`` columns must be in
    the header, and every row has as many fields as the header. A last line without its newline (a log
    appended to when the process was killed) is left out."""
    path = Path(path)
    text = read_text(path, what=what, remedy=remedy, limit=limit)
    if text and not text.endswith("\n"):  # an append cut short by a kill: the torn last line is no record
        text = text[: text.rfind("\n") + 1]
    rows: list[dict[str, Any]] = []
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""), restkey="\0extra")
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise _fail(path, what, f"no column {missing[0]!r} in its header", remedy)
        for row in reader:
            line = reader.line_num
            if "\0extra" in row:
                raise _fail(path, what, f"line {line} has more fields than the header", remedy)
            if any(value is None for value in row.values()):  # realesr writes every field, empty or not
                raise _fail(path, what, f"line {line} has fewer fields than the header", remedy)
            for name, shape in columns.items():
                if row.get(name) is None:
                    if name in required:
                        raise _fail(path, what, f"line {line} has no {name!r} field", remedy)
                    continue
                try:
                    row[name] = shape.check(row[name], name)
                except Invalid as err:
                    raise _fail(path, what, f"line {line}, column {err}", remedy) from None
            rows.append(row)
    except csv.Error as err:
        raise _fail(path, what, f"not valid CSV: {err}", remedy) from None
    return rows
