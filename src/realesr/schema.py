"""Shapes of values from outside: config keys, command-line options and the state files realesr reads back.

One small vocabulary (`Int`, `Float`, `Str`, `Name`, `Bool`, `Choice`, `Seq`, `Map`, `Record`, `Nullable`) describes
what a value may be; ``shape.check(value, where)`` returns it normalised or raises :class:`Invalid` with the
place inside the value (``"segments[2].file"``) and why. The callers add whose value it was: the config loader
says ``config key '...'``, argparse names the option, :mod:`realesr.statefiles` names the file. So a range is
written once (``SEED``), and the option that mirrors a config key checks the same thing.

Numbers are finite (only a state file's ``Float(finite=False)``, a logged metric, takes NaN or infinity) and
bounded on both sides by default (:data:`INT_LIMIT`), so neither 2**70 nor 1e300 reaches numpy or torch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CROP_BORDER",
    "INT_LIMIT",
    "NAME_MAX",
    "SEED",
    "Bool",
    "Choice",
    "Float",
    "Int",
    "Invalid",
    "Map",
    "Name",
    "Nullable",
    "Record",
    "Seq",
    "Shape",
    "Str",
    "join",
]

# Larger than any count, size or iteration realesr works with, small enough for every int64 tensor and for
# float64 arithmetic to stay exact.
INT_LIMIT = 2**53
# File systems limit one path component to 255 bytes (ext4, APFS, NTFS in UTF-16 units).
NAME_MAX = 255


class Invalid(ValueError):
    """``where``: the place inside the checked value ("" for the value itself); ``why``: what is wrong, ready to
    follow a name ("must be at least 1, got 0")."""

    def __init__(self, where: str, why: str) -> None:
        super().__init__(f"{where}: {why}" if where else why)
        self.where = where
        self.why = why


def join(where: str, key: str | int) -> str:
    """``join("segments", 2)`` -> ``segments[2]``; ``join("best", "value")`` -> ``best.value``."""
    if isinstance(key, int):
        return f"{where}[{key}]"
    return f"{where}.{key}" if where else str(key)


def _show(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


class Shape:
    """Base class: ``check(value, where)`` -> the value normalised, or :class:`Invalid`."""

    def check(self, value: Any, where: str = "") -> Any:  # pragma: no cover - every shape overrides it
        raise NotImplementedError

    def describe(self) -> str:  # pragma: no cover
        raise NotImplementedError


@dataclass(frozen=True)
class Int(Shape):
    """An integer in ``low..high`` (both included). A float with an integer value (``1e3`` in YAML, ``3.0``) is
    taken; a bool is not (``true`` is no count). Text is parsed only with ``text=True`` (options, ``--set``)."""

    low: int | None = -INT_LIMIT
    high: int | None = INT_LIMIT
    text: bool = False

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return f"an integer in {self.low}..{self.high}"
        if self.low is not None:
            return f"an integer >= {self.low}"
        return "an integer" if self.high is None else f"an integer <= {self.high}"

    def check(self, value: Any, where: str = "") -> int:
        if isinstance(value, str) and self.text:
            try:
                value = int(value.strip())
            except ValueError:
                raise Invalid(where, f"must be an integer, got {_show(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(where, f"must be an integer, got {_show(value)}")
        if isinstance(value, float) and not (math.isfinite(value) and value.is_integer()):
            raise Invalid(where, f"must be an integer, got {_show(value)}")
        number = int(value)
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            raise Invalid(where, f"must be {self.describe()}, got {_show(value)}")
        return number


@dataclass(frozen=True)
class Float(Shape):
    """A finite number with ``low <= x <= high`` (by default within +-:data:`INT_LIMIT`, so a number given as
    1e300 never becomes a size or a count); ``above`` / ``below`` are exclusive bounds (``lr > 0``)."""

    low: float | None = -float(INT_LIMIT)
    high: float | None = float(INT_LIMIT)
    above: float | None = None
    below: float | None = None
    text: bool = False
    finite: bool = True  # False: NaN and infinities are taken too (a logged metric may be either)

    def describe(self) -> str:
        parts = []
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        elif self.low is not None and self.low > -INT_LIMIT:
            parts.append(f">= {self.low:g}")
        if self.below is not None:
            parts.append(f"< {self.below:g}")
        elif self.high is not None:
            # the default bound too: "a finite number > 0" would read as a lie to someone who typed 1e300
            parts.append(f"<= {self.high:g}" if self.high < INT_LIMIT else "<= 2**53")
        if len(parts) == 2 and self.above is None and self.below is None and (self.high or 0) < INT_LIMIT:
            return f"a number in [{self.low:g}, {self.high:g}]"
        return "a finite number" + (" " + " and ".join(parts) if parts else "")

    def check(self, value: Any, where: str = "") -> float:
        if isinstance(value, str) and (self.text or _looks_numeric(value)):
            # PyYAML reads 1e-4 (no dot) as a string; it is the number it obviously is
            try:
                value = float(value.strip())
            except ValueError:
                raise Invalid(where, f"must be a number, got {_show(value)}") from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(where, f"must be a number, got {_show(value)}")
        number = float(value)
        if not self.finite and not math.isfinite(number):
            return number
        ok = math.isfinite(number)
        ok = ok and (self.low is None or number >= self.low) and (self.high is None or number <= self.high)
        ok = ok and (self.above is None or number > self.above) and (self.below is None or number < self.below)
        if not ok:
            raise Invalid(where, f"must be {self.describe()}, got {_show(value)}")
        return number


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Bool(Shape):
    def describe(self) -> str:
        return "true or false"

    def check(self, value: Any, where: str = "") -> bool:
        if not isinstance(value, bool):
            raise Invalid(where, f"must be true or false, got {_show(value)}")
        return value


def _no_controls(text: str, where: str) -> None:
    if "\x00" in text:
        raise Invalid(where, "must not contain a NUL character")


@dataclass(frozen=True)
class Str(Shape):
    """Text of at most ``max_len`` characters, never holding a NUL (no file name, path or value can). A number is
    taken as its text only when not ``strict`` (a config's ``name: 2024``); ``empty=False`` refuses ``""``."""

    max_len: int = 4096
    empty: bool = True
    strict: bool = True

    def describe(self) -> str:
        return "a string"

    def check(self, value: Any, where: str = "") -> str:
        if isinstance(value, (int, float)) and not isinstance(value, bool) and not self.strict:
            value = str(value)
        if not isinstance(value, str):
            raise Invalid(where, f"must be a string, got {_show(value)}")
        _no_controls(value, where)
        if len(value) > self.max_len:
            raise Invalid(where, f"must be at most {self.max_len} characters, got {len(value)}")
        if not value and not self.empty:
            raise Invalid(where, "must not be empty")
        return value


@dataclass(frozen=True)
class Name(Str):
    """One file or folder name usable on every file system: not empty, not ``.``/``..``, no ``/`` (nor ``\\``
    on Windows), no NUL or other control character, at most :data:`NAME_MAX` bytes in UTF-8 (less ``reserve``,
    room for a suffix the caller adds)."""

    reserve: int = 0
    empty: bool = False  # True: "" is taken too (a config's "no name: use the default")

    def describe(self) -> str:
        return "a file name"

    def check(self, value: Any, where: str = "") -> str:
        text = super().check(value, where)
        if not text and self.empty:
            return text
        if not text or text in (".", ".."):
            raise Invalid(where, f"must be a file name (not empty, '.' or '..'), got {_show(text)}")
        seps = {"/", os.sep} | ({os.altsep} if os.altsep else set())
        if any(s in text for s in seps):
            raise Invalid(where, f"must be a single file name without '/', got {_show(text)}")
        if any(ord(c) < 32 or ord(c) == 127 for c in text):
            raise Invalid(where, f"must not contain control characters, got {_show(text)}")
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:  # lone surrogates (undecodable bytes from the command line)
            raise Invalid(where, f"must be valid text, got {_show(text)}") from None
        if size > NAME_MAX - self.reserve:
            raise Invalid(where, f"must be at most {NAME_MAX - self.reserve} bytes long, got {size}")
        return text


@dataclass(frozen=True)
class Choice(Shape):
    values: tuple[Any, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(str(v) for v in self.values)

    def check(self, value: Any, where: str = "") -> Any:
        for choice in self.values:
            same_number = isinstance(choice, int) and isinstance(value, (int, float)) and not isinstance(value, bool)
            if (type(value) is type(choice) or same_number) and value == choice:
                return choice
        raise Invalid(where, f"must be {self.describe()}; got {_show(value)}")


@dataclass(frozen=True)
class Seq(Shape):
    """A list (a tuple is taken too) of ``item``, with ``min_len <= len <= max_len``."""

    item: Shape
    min_len: int = 0
    max_len: int = 100_000

    def describe(self) -> str:
        return f"a list of {self.item.describe()}"

    def check(self, value: Any, where: str = "") -> list:
        if not isinstance(value, (list, tuple)):
            raise Invalid(where, f"must be a list, got {_show(value)}")
        if not self.min_len <= len(value) <= self.max_len:
            count = f"{self.min_len}" if self.min_len == self.max_len else f"{self.min_len}..{self.max_len}"
            raise Invalid(where, f"must hold {count} items, got {len(value)}")
        return [self.item.check(v, join(where, i)) for i, v in enumerate(value)]


@dataclass(frozen=True)
class Map(Shape):
    """A mapping of string keys (any, at most ``max_len``) to values of one shape."""

    value: Shape
    max_len: int = 10_000

    def describe(self) -> str:
        return f"a mapping to {self.value.describe()}"

    def check(self, value: Any, where: str = "") -> dict:
        if not isinstance(value, dict):
            raise Invalid(where, f"must be a mapping of keys, got {_show(value)}")
        if len(value) > self.max_len:
            raise Invalid(where, f"must hold at most {self.max_len} keys, got {len(value)}")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise Invalid(where, f"has a key that is not a string: {_show(key)}")
            out[key] = self.value.check(item, join(where, key))
        return out


@dataclass(frozen=True)
class Nullable(Shape):
    inner: Shape

    def describe(self) -> str:
        return f"{self.inner.describe()} or null"

    def check(self, value: Any, where: str = "") -> Any:
        return None if value is None else self.inner.check(value, where)


@dataclass(frozen=True)
class Record(Shape):
    """A mapping with string keys: ``fields`` are checked when present, ``required`` ones must be; other keys
    are kept as they are (a newer writer may add some) unless ``closed``."""

    fields: Mapping[str, Shape]
    required: frozenset[str] = field(default_factory=frozenset)
    closed: bool = False

    def describe(self) -> str:
        return "a mapping"

    def check(self, value: Any, where: str = "") -> dict:
        if not isinstance(value, dict):
            raise Invalid(where, f"must be a mapping of keys, got {_show(value)}")
        missing = sorted(self.required - set(value))
        if missing:
            raise Invalid(join(where, missing[0]), "is missing")
        out = {}
        for key, item in value.items():
            if not isinstance(key, str):
                raise Invalid(where, f"has a key that is not a string: {_show(key)}")
            shape = self.fields.get(key)
            if shape is None:
                if self.closed:
                    raise Invalid(join(where, key), "is not a known key")
                out[key] = item
            else:
                out[key] = shape.check(item, join(where, key))
        return out


# ---- ranges shared by a config key and the command-line options that mirror it

# Seeds feed numpy's SeedSequence / Generator, torch.manual_seed and Python's random: all take 0..2**32-1
# (numpy's legacy seeding, the narrowest, refuses more), so a seed outside it never reaches them.
SEED = Int(0, 2**32 - 1)
# Pixels cut from each side before PSNR/SSIM (val.crop_border, eval --crop-border); the standard is the scale.
CROP_BORDER = Int(0, 1024)
