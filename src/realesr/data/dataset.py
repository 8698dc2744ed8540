"""Training images: listing, checking, deterministic sampling and patch loading.

Determinism is by construction: every sample is addressed by ``(epoch, position)`` and all its
randomness (crop, flip, rotation, the degradation parameters drawn by the worker) comes from a
NumPy generator seeded with ``(seed, epoch, position)``. So the data stream does not depend on the
number of workers, and a resumed run needs only the position of the next sample to continue
exactly where the interrupted one stopped.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler, default_collate

from realesr.errors import DataError, ImageReadError
from realesr.imagefiles import (
    READ_EXTENSIONS,
    list_folder,
    read_header,
    read_list_lines,
    read_path_list,
    read_rgb,
)

__all__ = [
    "ImageRecord",
    "ResumableSampler",
    "TrainPatchDataset",
    "check_pairs",
    "collate_mixed",
    "draw_probabilities",
    "list_images",
    "read_pair_list",
    "read_rgb",
    "samples_per_epoch",
    "scan_images",
    "scan_pairs",
]

log = logging.getLogger("realesr.train")


@dataclass(frozen=True)
class ImageRecord:
    path: str
    width: int
    height: int
    lr_path: str = ""  # a paired source's real LR image (its size x scale = the HR's); empty: synthesised LR


def scan_pairs(
    hr_paths: list[Path], lr_paths: list[Path], scale: int, lq_size: int
) -> tuple[list[ImageRecord], list[str]]:
    """Match HR and LR images by name (the stem, so a.png pairs with a.jpg), then :func:`check_pairs`.
    Returns the records and one note per skipped or unmatched file."""
    notes: list[str] = []
    by_stem: dict[str, Path] = {}
    for path in lr_paths:
        if path.stem in by_stem:
            notes.append(f"{path}: another LR image is also named {path.stem!r}, skipped")
            continue
        by_stem[path.stem] = path
    pairs, used = [], set()
    for hr in hr_paths:
        lr = by_stem.get(hr.stem)
        if lr is None:
            notes.append(f"{hr}: no LR image named {hr.stem}.* in the LR folder, skipped")
            continue
        used.add(hr.stem)
        pairs.append((hr, lr))
    notes += [f"{path}: no HR image of this name, skipped" for stem, path in by_stem.items() if stem not in used]
    records, more = check_pairs(pairs, scale, lq_size)
    return records, notes + more


def read_pair_list(listing: str | os.PathLike, root: str | os.PathLike | None = None) -> list[tuple[Path, Path]]:
    """A .txt list of ``hr_path lr_path`` lines (relative to ``root``, default the list's folder; blank lines and
    '#' comments skipped). Raises :class:`DataError` naming the line that is not two paths."""
    listing = Path(listing)
    base = Path(root) if root else listing.parent
    try:
        entries = read_list_lines(listing, "pair list")
    except ImageReadError as err:
        raise DataError(str(err)) from None
    pairs = []
    for number, entry in entries:
        fields = entry.split()
        if len(fields) != 2:
            raise DataError(f"{listing} line {number}: expected 'hr_path lr_path', got {entry!r}")
        hr, lr = (Path(os.path.expanduser(f)) for f in fields)
        pairs.append((hr if hr.is_absolute() else base / hr, lr if lr.is_absolute() else base / lr))
    if not pairs:
        raise DataError(f"the pair list {listing} is empty")
    return pairs


def check_pairs(pairs: list[tuple[Path, Path]], scale: int, lq_size: int) -> tuple[list[ImageRecord], list[str]]:
    """Keep the (HR, LR) pairs whose HR is exactly ``scale`` times its LR (as the official paired dataset
    requires) and whose LR holds an ``lq_size`` crop; one note per skipped pair."""
    records, notes = [], []
    for hr, lr in pairs:
        sizes = []
        for path in (hr, lr):
            try:
                header = read_header(path)
            except ImageReadError as err:  # missing, not an image, truncated ...
                notes.append(f"{path}: unreadable image ({_reason(err, path)}), pair skipped")
                break
            sizes.append((header.width, header.height))
        if len(sizes) < 2:
            continue
        (hw, hh), (lw, lh) = sizes
        if (hw, hh) != (lw * scale, lh * scale):
            notes.append(f"{hr} is {hw}x{hh} but its LR {lr} is {lw}x{lh}: not x{scale}, skipped")
            continue
        if min(lw, lh) < lq_size:
            notes.append(f"{lr}: {lw}x{lh} is smaller than the {lq_size}px LR crop, pair skipped")
            continue
        records.append(ImageRecord(str(hr), hw, hh, str(lr)))
    return records, notes


def _reason(err: ImageReadError, path: Path) -> str:
    return str(err).removeprefix(f"{path}: ")


def list_images(source: str | os.PathLike, root: str | os.PathLike | None = None) -> list[Path]:
    """Image paths of a folder (recursive, sorted) or of a .txt list (one path per line, relative to ``root``,
    default the list's folder; official meta_info ``path (h,w,c)`` lines too)."""
    source = Path(source)
    if source.is_dir():
        paths = list_folder(source, recursive=True)
        if not paths:
            raise DataError(f"no images ({', '.join(sorted(READ_EXTENSIONS))}) under {source}")
        return paths
    if source.is_file() and source.suffix.lower() == ".txt":
        try:
            paths = read_path_list(source, root)
        except ImageReadError as err:
            raise DataError(str(err)) from None
        if not paths:
            raise DataError(f"the image list {source} is empty")
        return paths
    if source.is_file():
        raise DataError(f"{source} is neither a folder nor a .txt list of images")
    raise DataError(f"training data not found: {source}")


def scan_images(paths: list[Path], min_size: int, small_images: str = "pad") -> tuple[list[ImageRecord], list[str]]:
    """Check each file's header; return the usable records and one note per skipped file.

    Images with a side under ``min_size`` are kept (to be reflect-padded) or skipped, per ``small_images``.
    Truncated files whose header is fine are caught later, when a worker decodes them.
    """
    records, notes = [], []
    n_small = 0
    for path in paths:
        try:
            header = read_header(path)  # the size as decoded (EXIF orientation applied), as read_rgb gives it
        except ImageReadError as err:  # missing, not an image, truncated ...
            notes.append(f"{path}: unreadable image ({_reason(err, path)}), skipped")
            continue
        w, h = header.width, header.height
        if min(w, h) < min_size:
            if small_images == "skip":
                notes.append(f"{path}: {w}x{h} is smaller than the {min_size}px patch, skipped")
                continue
            n_small += 1
        records.append(ImageRecord(str(path), w, h))
    if n_small:
        notes.append(f"{n_small} image(s) smaller than the {min_size}px patch will be reflect-padded")
    return records, notes


def draw_probabilities(
    records: list[ImageRecord], source_index: list[int], source_weights: list[float | None], by_area: bool = False
) -> np.ndarray | None:
    """The probability of each image at one draw, or None when every image is equally likely (an epoch is then a
    permutation of the images, as with one source).

    ``source_index[i]`` is the source of ``records[i]``. Without any weight the sources are one concatenated set;
    with weights, source s gets ``weight_s / sum(weights)`` of the draws (a missing weight counts 1). Within a
    source the images are drawn equally often, or in proportion to their area with ``by_area``.
    """
    n_sources = len(source_weights)
    if not any(w is not None for w in source_weights) and not by_area:
        return None
    idx = np.asarray(source_index, dtype=np.int64)
    sizes = np.array([float(r.width) * r.height if by_area else 1.0 for r in records])
    per_source = np.bincount(idx, weights=sizes, minlength=n_sources)
    if any(w is not None for w in source_weights):
        share = np.array([1.0 if w is None else float(w) for w in source_weights])
        share[per_source == 0] = 0.0
    else:
        share = per_source.copy()  # one concatenated set: a source weighs what its images weigh
    share /= share.sum()
    return share[idx] * sizes / per_source[idx]


def collate_mixed(samples: list[dict]) -> dict:
    """A batch of synthetic samples (``gt`` patch + ``params``) and paired ones (``gt`` crop + real ``lq``): the
    synthetic ones collated as usual under their keys, the paired ones under ``paired_gt``/``paired_lq``."""
    synthetic = [x for x in samples if "lq" not in x]
    paired = [x for x in samples if "lq" in x]
    batch = default_collate(synthetic) if synthetic else {}
    if paired:
        batch["paired_gt"] = torch.stack([x["gt"] for x in paired])
        batch["paired_lq"] = torch.stack([x["lq"] for x in paired])
    return batch


def samples_per_epoch(num_images: int, global_batch: int) -> int:
    """Samples drawn per epoch over all ranks: the whole set cut to a multiple of the global batch (at least one
    batch, repeating images when the set is smaller than one batch)."""
    return max(1, num_images // global_batch) * global_batch


class ResumableSampler(Sampler):
    """An endless stream of ``(image_index, epoch, position)`` for one rank, from a given start.

    Each epoch is a permutation of the images drawn from ``(seed, epoch)``, the same on every rank and cut
    to a multiple of the global batch; rank r takes positions r, r + W, r + 2W ... (like DistributedSampler).
    With ``probabilities`` (see :func:`draw_probabilities`) an epoch is instead that many independent draws
    from them, still a function of ``(seed, epoch)`` alone, so a resume continues exactly.
    """

    def __init__(
        self,
        num_images: int,
        global_batch: int,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        start_epoch: int = 0,
        start_position: int = 0,
        probabilities: np.ndarray | None = None,
    ) -> None:
        self.probabilities = probabilities
        self.num_images = num_images
        self.per_epoch = samples_per_epoch(num_images, global_batch)
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.start_epoch = start_epoch
        self.start_position = start_position

    def epoch_order(self, epoch: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, epoch, 0x5A3])
        if self.probabilities is not None:
            return rng.choice(self.num_images, size=self.per_epoch, p=self.probabilities)
        reps = -(-self.per_epoch // self.num_images)
        order = np.concatenate([rng.permutation(self.num_images) for _ in range(reps)])
        return order[: self.per_epoch]

    def __iter__(self) -> Iterator[tuple[int, int, int]]:
        epoch, position = self.start_epoch, self.start_position
        while True:
            order = self.epoch_order(epoch)
            for pos in range(position + self.rank, self.per_epoch, self.world_size):
                yield int(order[pos]), epoch, pos
            epoch, position = epoch + 1, 0

    def __len__(self) -> int:  # endless; DataLoader only needs a length for its own bookkeeping
        return 2**62


def _augment(patch: np.ndarray, rng: np.random.Generator, hflip: bool, rot: bool) -> np.ndarray:
    if hflip and rng.random() < 0.5:
        patch = patch[:, ::-1]
    if rot:
        if rng.random() < 0.5:
            patch = patch[::-1]
        if rng.random() < 0.5:
            patch = patch.transpose(1, 0, 2)
    return patch


class TrainPatchDataset(Dataset):
    """Loads a random ``load_size`` patch of an image (reflect-padded if smaller), flips it, and draws the
    degradation parameters for it with ``params_fn(rng)`` (a picklable callable; workers call it).

    Indexed by the ``(image_index, epoch, position)`` triples of :class:`ResumableSampler`. A file that fails to
    decode is reported once and replaced by the next image, deterministically.
    """

    def __init__(
        self,
        records: list[ImageRecord],
        load_size: int,
        seed: int,
        use_hflip: bool = True,
        use_rot: bool = False,
        params_fn: Callable[[np.random.Generator], dict] | None = None,
        scale: int = 4,
        gt_size: int = 256,
    ) -> None:
        self.scale = scale
        self.gt_size = gt_size  # paired records: the HR crop (its LR crop gt_size // scale, at the same place)
        if not records:
            raise DataError("no usable training images")
        self.records = records
        self.load_size = load_size
        self.seed = seed
        self.use_hflip = use_hflip
        self.use_rot = use_rot
        self.params_fn = params_fn
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, index: int) -> np.ndarray:
        for offset in range(len(self.records)):
            i = (index + offset) % len(self.records)
            if i in self._bad:
                continue
            try:
                return read_rgb(self.records[i].path)
            except (ImageReadError, OSError, ValueError) as err:
                self._bad.add(i)
                log.warning("training image %s cannot be decoded (%s); skipped", self.records[i].path, err)
        raise DataError("none of the training images can be decoded")

    def _paired(self, index: int, rng: np.random.Generator) -> dict:
        """An aligned crop of a real pair: LR crop at (top, left), HR crop at (top, left) x scale, the same flips.
        No degradation is drawn: the synthetic chain is off for paired sources."""
        record = self.records[index]
        try:
            hr, lr = read_rgb(record.path), read_rgb(record.lr_path)
        except (ImageReadError, OSError, ValueError) as err:
            raise DataError(f"training pair {record.path} / {record.lr_path} cannot be decoded: {err}") from None
        s, lq_size = self.scale, self.gt_size // self.scale
        if hr.shape[:2] != (lr.shape[0] * s, lr.shape[1] * s):
            raise DataError(f"training pair {record.path} / {record.lr_path}: the HR is not x{s} the LR")
        top = int(rng.integers(0, lr.shape[0] - lq_size + 1))
        left = int(rng.integers(0, lr.shape[1] - lq_size + 1))
        both = np.concatenate(
            [  # one array, so that flips and rotations are the same for both
                hr[top * s : (top + lq_size) * s, left * s : (left + lq_size) * s],
                np.repeat(np.repeat(lr[top : top + lq_size, left : left + lq_size], s, 0), s, 1),
            ],
            axis=2,
        )
        both = _augment(both, rng, self.use_hflip, self.use_rot)
        gt, lq = both[..., :3], both[::s, ::s, 3:]  # an LR pixel repeated s x s: any of its copies is itself
        return {
            "gt": torch.from_numpy(np.ascontiguousarray(gt.transpose(2, 0, 1))),
            "lq": torch.from_numpy(np.ascontiguousarray(lq.transpose(2, 0, 1))),
        }

    def __getitem__(self, key: tuple[int, int, int]) -> dict:
        index, epoch, position = key
        rng = np.random.default_rng([self.seed, epoch, position])
        if self.records[index].lr_path:
            return self._paired(index, rng)
        img = self._load(index)
        size = self.load_size
        h, w = img.shape[:2]
        if h < size or w < size:
            pad_h, pad_w = max(0, size - h), max(0, size - w)
            # Reflect needs the pad to be smaller than the side; tiny images fall back to symmetric tiling.
            mode: Literal["reflect", "symmetric"] = "reflect" if pad_h < h and pad_w < w else "symmetric"
            img = np.pad(img, ((0, pad_h), (0, pad_w), (0, 0)), mode=mode)
            h, w = img.shape[:2]
        top = int(rng.integers(0, h - size + 1))
        left = int(rng.integers(0, w - size + 1))
        patch = _augment(img[top : top + size, left : left + size], rng, self.use_hflip, self.use_rot)
        sample: dict[str, Any] = {"gt": torch.from_numpy(np.ascontiguousarray(patch.transpose(2, 0, 1)))}
        if self.params_fn is not None:
            sample["params"] = self.params_fn(rng)
        return sample
