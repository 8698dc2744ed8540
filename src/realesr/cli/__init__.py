"""The `realesr` command: each sub-command lives in its own module with `register(subparsers)`.

A sub-command module registers its parser and sets ``func(args) -> int``. The library raises
:class:`realesr.errors.RealesrError`; only here are errors printed and exit codes chosen.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from realesr import __version__
from realesr.errors import RealesrError

COMMANDS = ("upscale", "models", "convert", "degrade", "eval", "train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="realesr",
        description="Real-ESRGAN blind super-resolution: upscale, degrade, train and evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"realesr {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"realesr.cli.{name}").register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except RealesrError as err:
        print(f"realesr: error: {err}", file=sys.stderr)
        return err.exit_code
    except KeyboardInterrupt:
        print("realesr: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # `realesr models | head`: the reader left; silence the flush at exit as well.
        sys.stdout = open(os.devnull, "w")
        return 0
