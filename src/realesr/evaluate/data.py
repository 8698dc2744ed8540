"""Benchmark datasets: folders or .txt lists of images, read as the SR protocol reads them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realesr.errors import DataError
from realesr.infer.io import read_rgb as read_rgb_float

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


@dataclass(frozen=True)
class Dataset:
    """A named, ordered list of image files."""

    name: str
    paths: tuple[Path, ...]


def _list_folder(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _list_txt(listing: Path) -> list[Path]:
    """One image path per line, relative to the list's folder; blank lines and '#' comments ignored."""
    try:
        lines = listing.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"cannot read image list {listing}: {err}") from err
    paths = []
    for line in lines:
        entry = line.split("#", 1)[0].strip()
        if entry:
            path = Path(entry).expanduser()
            paths.append(path if path.is_absolute() else listing.parent / path)
    return paths


def find_dataset(spec: str | Path, limit: int | None = None) -> Dataset:
    """A dataset from a folder of images, one image or a .txt list; raises DataError when it yields no image."""
    path = Path(spec).expanduser()
    if path.is_dir():
        paths = _list_folder(path)
        name = path.resolve().name
    elif path.is_file() and path.suffix.lower() == ".txt":
        paths = _list_txt(path)
        name = path.stem
    elif path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES:
        paths = [path]
        name = path.stem
    elif path.is_file():
        raise DataError(f"--data {spec}: expected a folder of images, an image or a .txt list of image paths")
    else:
        raise DataError(f"--data {spec}: no such folder or file")
    if not paths:
        raise DataError(f"--data {spec}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
    if limit is not None:
        paths = paths[:limit]
    return Dataset(name=name, paths=tuple(paths))


def find_datasets(specs, limit: int | None = None) -> list[Dataset]:
    """All datasets; names made unique (``Set5``, ``Set5-2``) so rows stay distinguishable."""
    datasets: list[Dataset] = []
    seen: dict[str, int] = {}
    for spec in specs:
        dataset = find_dataset(spec, limit)
        count = seen.get(dataset.name, 0) + 1
        seen[dataset.name] = count
        if count > 1:
            dataset = Dataset(name=f"{dataset.name}-{count}", paths=dataset.paths)
        datasets.append(dataset)
    return datasets


def read_rgb(path: Path) -> np.ndarray:
    """An HxWx3 uint8 RGB array, as the benchmark protocol reads images.

    Greyscale (L, or RGB with equal channels) becomes RGB with equal channels, alpha is dropped and 16-bit
    samples are scaled to 8 bits (rounded).
    """
    return np.round(read_rgb_float(path) * 255.0).astype(np.uint8)
