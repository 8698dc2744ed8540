"""Progress bars of the CLI for the library's progress callbacks (the library itself never draws)."""

from __future__ import annotations

import sys
from collections.abc import Callable


def download_bar(name: str) -> Callable[[int, int | None], None]:
    """A tqdm bar on stderr (only on a terminal) driven by a download's ``progress(done, total)`` callback."""
    bar = None

    def report(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            from tqdm import tqdm

            bar = tqdm(
                total=total,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                desc=name,
                leave=False,
                file=sys.stderr,
                disable=not sys.stderr.isatty(),
            )
        bar.update(done - bar.n)
        if total is not None and done >= total:
            bar.close()

    return report
