"""Argument types shared by the sub-commands: numbers checked against their bounds when parsed, so that a bad
value is argparse's one-line usage error (exit 2) naming the option, before any work."""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def number(
    kind: type[int] | type[float], low: float | None = None, high: float | None = None, above: float | None = None
) -> Callable[[str], int | float]:
    """An argparse ``type``: ``kind(text)``, finite, and ``low <= value <= high`` / ``value > above`` where given."""
    noun = "an integer" if kind is int else "a number"

    def parse(text: str) -> int | float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not {noun}: {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"must be a finite number, not {text}")
        if above is not None and not value > above:
            raise argparse.ArgumentTypeError(f"must be > {above:g}, not {text}")
        if low is not None and high is not None and not low <= value <= high:
            span = f"{low:g}..{high:g}" if kind is int else f"[{low:g}, {high:g}]"
            raise argparse.ArgumentTypeError(f"must be in {span}, not {text}")
        if low is not None and not value >= low:
            raise argparse.ArgumentTypeError(f"must be >= {low:g}, not {text}")
        if high is not None and not value <= high:
            raise argparse.ArgumentTypeError(f"must be <= {high:g}, not {text}")
        return value

    return parse
