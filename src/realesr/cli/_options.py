"""Argument types shared by the sub-commands: every number and name a user gives is checked against its
:mod:`realesr.schema` shape when parsed, so that a bad value is argparse's one-line usage error (exit 2) naming
the option, before any work. An option that mirrors a config key uses that key's shape (``SEED``, ...)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from realesr.schema import INT_LIMIT, Float, Int, Invalid, Shape

# What --denoise-strength means, for every command that has it (the models: realesr.weights.zoo.denoise_models).
DENOISE_HELP = (
    "realesr-general-x4v3 only: 0 keeps the noise, 1 removes it (the official -dn: blends the weights with "
    "realesr-general-wdn-x4v3)"
)


def option(shape: Shape) -> Callable[[str], Any]:
    """An argparse ``type`` checking the text against ``shape`` (numbers parsed from the text)."""
    if isinstance(shape, (Int, Float)):
        shape = replace(shape, text=True)

    def parse(text: str) -> Any:
        try:
            return shape.check(text, "")
        except Invalid as err:
            raise argparse.ArgumentTypeError(f"{err.why}") from None

    parse.__name__ = type(shape).__name__.lower()  # argparse names the type in "invalid <name> value"
    return parse


def number(
    kind: type[int] | type[float], low: float | None = None, high: float | None = None, above: float | None = None
) -> Callable[[str], Any]:
    """An argparse ``type``: ``kind(text)``, finite, and ``low <= value <= high`` / ``value > above`` where given."""
    if kind is int:
        lowest = int(above) + 1 if above is not None else low
        return option(Int(-INT_LIMIT if lowest is None else int(lowest), INT_LIMIT if high is None else int(high)))
    shape = Float(above=above)
    return option(replace(shape, low=shape.low if low is None else low, high=shape.high if high is None else high))
