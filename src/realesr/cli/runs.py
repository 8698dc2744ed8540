"""`realesr runs [DIR]`: a table of the training runs in a folder."""

from __future__ import annotations

import argparse

HELP = "a table of the training runs in a folder: stage, progress, best metric, last validation, state"


def register(subparsers) -> None:
    p = subparsers.add_parser("runs", help=HELP, description=HELP)
    p.add_argument("folder", nargs="?", default="runs", metavar="DIR", help="the output_dir of the runs (default runs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """The table on stdout; a run whose files are damaged is listed as such and its problem (which file, what to
    do) goes to stderr, exit 1: the other runs are still shown."""
    import sys
    from pathlib import Path

    from realesr.errors import UsageError
    from realesr.train.runs import list_runs

    folder = Path(args.folder)
    if not folder.is_dir():
        raise UsageError(f"folder not found: {folder}")
    rows = list_runs(folder)
    if not rows:
        print(f"no training runs in {folder}")
        return 0
    table: list[tuple[str, ...]] = [("name", "stage", "iteration", "best", "last validation", "state")]
    for r in rows:
        progress = f"{r.iteration} / {r.total_iters}" if r.total_iters else str(r.iteration)
        cells = (r.name, r.stage, progress, r.best or "-", r.last_validation or "-", r.state)
        table.append(tuple(_printable(cell) for cell in cells))  # every cell comes from a file: escaped
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    damaged = [r for r in rows if r.problem]
    for r in damaged:
        print(f"realesr runs: error: {_printable(r.problem)}", file=sys.stderr)
    return 1 if damaged else 0


def _printable(text: str) -> str:
    """One line without control characters a terminal would act on (a run folder may have any name)."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
