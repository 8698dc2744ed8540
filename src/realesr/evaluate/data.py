"""Benchmark datasets: folders or .txt lists of images, read as the SR protocol reads them."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from realesr.errors import DataError, ImageReadError
from realesr.imagefiles import (
    READ_EXTENSIONS,
    is_image_name,
    list_folder,
    read_path_list,
)


@dataclass(frozen=True)
class Dataset:
    """A named, ordered list of image files."""

    name: str
    paths: tuple[Path, ...]


def find_dataset(spec: str | Path, limit: int | None = None) -> Dataset:
    """A dataset from a folder of images, one image or a .txt list; raises DataError when it yields no image."""
    path = Path(os.path.expanduser(spec))
    if path.is_dir():
        paths = list_folder(path)
        name = path.resolve().name
    elif path.is_file() and path.suffix.lower() == ".txt":
        try:
            paths = read_path_list(path)
        except ImageReadError as err:
            raise DataError(str(err), params=("data",)) from None
        name = path.stem
    elif path.is_file() and is_image_name(path):
        paths = [path]
        name = path.stem
    elif path.is_file():
        raise DataError(
            f"{spec}: expected a folder of images, an image or a .txt list of image paths", params=("data",)
        )
    else:
        raise DataError(f"{spec}: no such folder or file", params=("data",))
    if not paths:
        raise DataError(f"{spec}: no images found (looked for {', '.join(sorted(READ_EXTENSIONS))})", params=("data",))
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
