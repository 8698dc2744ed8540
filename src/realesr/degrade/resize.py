"""Per-sample resizing and ragged batches.

Drawing the resize scale per sample (rather than once per batch as the official must) gives every sample its own
size between the first resize and the final resize to the LR size. Those samples are carried as a list of
[1,C,h,w] tensors. They are either processed one by one, or (``to_canvas``) placed together on one canvas, each
top-left and edge-replicated to the canvas size, processed as one batch and cropped back (``from_canvas``).
Replication is what a JPEG encoder does at a partial MCU, the blur pads each sample by reflection before it is
placed, and noise is per pixel, so on the canvas every sample comes out as if it had been processed alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from realesr.degrade.config import RESIZE_MODES
from realesr.degrade.kernels import pad_reflect

Ragged = list  # list of [1,C,h,w] tensors


def resize_one(
    x: torch.Tensor, mode: str, scale: float | None = None, size: tuple[int, int] | None = None
) -> torch.Tensor:
    """F.interpolate as the official calls it: by scale factor (stage one) or to a size (stage two, final)."""
    if mode not in RESIZE_MODES:
        raise ValueError(f"unknown resize mode {mode!r}")
    if size is None:
        if scale is None:
            raise ValueError("resize_one needs a scale or a size")
        h, w = x.shape[-2:]
        if math.floor(h * scale) >= 1 and math.floor(w * scale) >= 1:
            return F.interpolate(x, scale_factor=scale, mode=mode)
        size = (max(1, math.floor(h * scale)), max(1, math.floor(w * scale)))
    size = (max(1, int(size[0])), max(1, int(size[1])))
    return F.interpolate(x, size=size, mode=mode)


def sizes_of(items: Ragged) -> list[tuple[int, int]]:
    return [(int(t.shape[-2]), int(t.shape[-1])) for t in items]


def to_canvas(items: Ragged, multiple: int = 1, border: int = 0) -> tuple[torch.Tensor, list[tuple[int, int]]]:
    """Stack samples of different sizes into [B,C,H,W] (top-left placed, edges replicated).

    ``multiple`` rounds the canvas up; ``border`` first pads every sample by reflection on all four sides (for a
    filter of radius ``border``), so that the canvas can be filtered without padding.
    """
    sizes = sizes_of(items)
    hmax = max(h for h, _ in sizes) + 2 * border
    wmax = max(w for _, w in sizes) + 2 * border
    hmax += (-hmax) % multiple
    wmax += (-wmax) % multiple
    padded = []
    for t in items:
        if border:
            t = pad_reflect(t, (border, border, border, border))
        ph, pw = hmax - t.shape[-2], wmax - t.shape[-1]
        if ph or pw:
            t = F.pad(t, (0, pw, 0, ph), mode="replicate")
        padded.append(t)
    return torch.cat(padded, dim=0), sizes


def from_canvas(canvas: torch.Tensor, sizes: Sequence[tuple[int, int]]) -> Ragged:
    return [canvas[i : i + 1, :, :h, :w] for i, (h, w) in enumerate(sizes)]


def same_size(items: Ragged) -> bool:
    first = items[0].shape
    return all(t.shape == first for t in items)
