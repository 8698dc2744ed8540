"""The closing lines of `realesr upscale`, the same for one process and for device lists or Ray."""

from __future__ import annotations

import sys
from pathlib import Path

from realesr.cli._text import escape


def print_summary(
    done: int,
    total: int,
    model_name: str,
    where: str,
    elapsed: float,
    notes: list[str],
    failures: int,
    skipped: list[Path],
    extras: tuple[str, ...] = (),
    what: str | None = None,
) -> None:
    """Notes on stderr, then one summary line: ``extras`` (e.g. video frames, stopped workers) before the
    failures and the earlier results skipped as inputs. ``what``: the count in words when it is not only images
    (e.g. "1 video, 240 frames")."""
    for note in notes:
        print(f"note: {escape(note)}", file=sys.stderr)
    summary = f"{what or f'{done} of {total} image(s)'} upscaled with {model_name} -> {where} ({elapsed:.1f} s)"
    for extra in extras:
        summary += f"; {extra}"
    if failures:
        summary += f"; {failures} failed"
    if skipped:
        summary += f"; {len(skipped)} earlier result(s) of realesr in the output folder skipped as inputs"
    print(escape(summary))
