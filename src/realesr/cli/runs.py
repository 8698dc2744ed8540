"""`realesr runs [DIR]`: a table of the training runs in a folder."""

from __future__ import annotations

import argparse

HELP = "a table of the training runs in a folder: stage, progress, best metric, last validation, state"


def register(subparsers) -> None:
    p = subparsers.add_parser("runs", help=HELP, description=HELP)
    p.add_argument("folder", nargs="?", default="runs", metavar="DIR", help="the output_dir of the runs (default runs)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
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
    table = [("name", "stage", "iteration", "best", "last validation", "state")]
    for r in rows:
        progress = f"{r.iteration} / {r.total_iters}" if r.total_iters else str(r.iteration)
        table.append((r.name, r.stage, progress, r.best or "-", r.last_validation or "-", r.state))
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    return 0
