"""Official-style sub-images for training (`realesr prepare HR_DIR OUT_DIR`) and their meta_info list.

The rule is the official ``scripts/extract_subimages.py`` of Real-ESRGAN / BasicSR (crop 480, step 240,
threshold 0): along each side, windows start at 0, step, 2*step, ... while they fit, and when the part left after
the last window is larger than the threshold, one more window ends flush with the border. Sub-images are written
as PNG (lossless), ``NAME_s001.png`` onwards, row by row, beside the same sub-folders as their source, and
``meta_info.txt`` lists them as the official ``path (h,w,c)`` lines, relative to OUT_DIR.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from realesr.errors import DataError, ImageReadError, UsageError
from realesr.imagefiles import (
    PlannedOutput,
    check_folder_writable,
    check_outputs,
    list_folder,
    read_header,
    read_image,
    write_image,
)

__all__ = ["META_INFO", "SubImage", "cut_subimages", "plan_subimages", "subimage_starts"]

META_INFO = "meta_info.txt"


def subimage_starts(length: int, crop: int, step: int, thresh: int = 0) -> list[int]:
    """Start offsets of the windows along a side of ``length`` pixels (a side shorter than ``crop``: one window
    of the whole side, where the official script would fail)."""
    if crop < 1 or step < 1 or thresh < 0:
        raise UsageError(f"crop ({crop}) and step ({step}) must be positive and the threshold ({thresh}) >= 0")
    if length <= crop:
        return [0]
    starts = list(range(0, length - crop + 1, step))
    if length - (starts[-1] + crop) > thresh:
        starts.append(length - crop)
    return starts


@dataclass(frozen=True)
class SubImage:
    source: Path
    target: Path
    top: int
    left: int
    height: int
    width: int


def plan_subimages(
    hr_dir: Path, out_dir: Path, crop: int = 480, step: int = 240, thresh: int = 0
) -> tuple[list[SubImage], list[str]]:
    """Every sub-image to cut (from the image headers; nothing decoded or written) and the notes on skipped files."""
    hr_dir, out_dir = Path(hr_dir), Path(out_dir)
    if not hr_dir.is_dir():
        what = "is not a folder" if hr_dir.exists() else "not found"
        raise UsageError(f"HR folder {hr_dir} {what}", params=("hr_dir",))
    check_folder_writable(out_dir, params=("output",))  # a file, read-only, a name too long: said before any work
    if out_dir.is_dir() and os.path.samefile(out_dir, hr_dir):
        # The sub-images and meta_info.txt would land among the sources (and a second run would cut them too).
        raise UsageError(f"the output folder {out_dir} is the HR folder: give another one", params=("output",))
    sources = list_folder(hr_dir, recursive=True)
    if not sources:
        raise UsageError(f"no images under {hr_dir} (searched recursively)", params=("hr_dir",))
    plan, notes = [], []
    for src in sources:
        if out_dir.resolve() in src.resolve().parents:
            continue  # OUT_DIR inside HR_DIR: an earlier run's sub-images are not sources
        try:
            header = read_header(src)
        except ImageReadError as err:  # (read_header turns any decoding failure into one)
            notes.append(f"{err}: skipped")
            continue
        h, w = header.height, header.width
        rel = src.relative_to(hr_dir)
        index = 0
        for top in subimage_starts(h, crop, step, thresh):
            for left in subimage_starts(w, crop, step, thresh):
                index += 1
                target = out_dir / rel.parent / f"{rel.stem}_s{index:03d}.png"
                plan.append(SubImage(src, target, top, left, min(crop, h), min(crop, w)))
    return plan, notes


def cut_subimages(
    plan: list[SubImage],
    out_dir: Path,
    on_image: Callable[[Path, int], None] | None = None,
    notes: list[str] | None = None,
) -> Path:
    """Write the planned sub-images (each source decoded once) and ``OUT_DIR/meta_info.txt``; returns the list.
    Refuses before writing anything when an output would land on an input, on another output or on an existing
    file (an earlier run: choose another OUT_DIR). A source whose pixels cannot be decoded (a truncated file whose
    header was fine) is skipped with a line in ``notes`` and the rest goes on; the list names what was written.
    Raises DataError when no source could be cut (no empty list is written)."""
    out_dir = Path(out_dir)
    outputs = [PlannedOutput(s.target, f"a sub-image of {s.source}", ("output",)) for s in plan]
    outputs.append(PlannedOutput(out_dir / META_INFO, "the meta_info list", ("output",)))
    check_outputs(outputs, sorted({s.source for s in plan}))
    existing = [o.path for o in outputs if o.path.exists()]
    if existing:
        raise UsageError(
            f"{existing[0]} already exists ({len(existing)} of the planned files do); choose another output folder",
            params=("output",),
        )
    lines = []
    by_source: dict[Path, list[SubImage]] = {}
    for s in plan:
        by_source.setdefault(s.source, []).append(s)
    for src, subs in by_source.items():
        try:
            image = read_image(src)
        except ImageReadError as err:
            if notes is not None:
                notes.append(f"{err}: skipped")
            continue
        for s in subs:
            piece = image.array[s.top : s.top + s.height, s.left : s.left + s.width]
            s.target.parent.mkdir(parents=True, exist_ok=True)
            write_image(s.target, image.with_array(piece.copy()), source=src)
            channels = piece.shape[2] if piece.ndim == 3 else 1
            lines.append(f"{s.target.relative_to(out_dir).as_posix()} ({s.height},{s.width},{channels})")
        if on_image is not None:
            on_image(src, len(subs))
    if not lines:
        raise DataError("no sub-image written: no image could be decoded (each is named above)")
    meta = out_dir / META_INFO
    from realesr.atomic import atomic_write_text

    atomic_write_text(meta, "".join(f"{line}\n" for line in lines))
    return meta
