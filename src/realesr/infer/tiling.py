"""Tiled network evaluation with blended overlaps.

RRDBNet's receptive field spans hundreds of pixels, so a tile's output near its border differs from what the
whole-image pass gives there. Cropping each tile's padded output and pasting it (the official RealESRGANer) leaves
those differences as hard steps: visible seams. Here neighbouring tiles overlap by ``2 * pad`` input pixels and
their outputs are cross-faded across the middle half of that overlap with a raised-cosine ramp, so a tile is
never used closer than ``pad / 2`` to the edge of what it read. The 1-D weights of all tiles along an axis sum to
exactly 1 everywhere, so the 2-D weights (outer products) also sum to 1 and no normalisation buffer the size of the
output is needed.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

__all__ = ["TileSpan", "axis_weights", "split_axis", "tiled_forward"]


@dataclass(frozen=True)
class TileSpan:
    """One tile along one axis, in input pixels: core ``[start, end)``, padded read ``[read_start, read_end)``."""

    start: int
    end: int
    read_start: int
    read_end: int


def split_axis(length: int, tile: int, pad: int, multiple: int = 1) -> list[TileSpan]:
    """Split ``[0, length)`` into cores of at most ``tile`` pixels (equal sizes, aligned to ``multiple``).

    Equal cores rather than ``tile, tile, ..., remainder`` avoid a last sliver whose padded read is mostly pad.
    Every boundary and read start is a multiple of ``multiple`` (reads are widened by ``pad`` rounded up to it);
    only the last core and read end at ``length`` itself, which need not be one (a window-attention model pads its
    right and bottom edge itself, for a tile as for the whole image).
    """
    units = -(-length // multiple)
    tile_units = max(1, tile // multiple)
    count = math.ceil(units / tile_units)
    bounds = [min(length, round(k * units / count) * multiple) for k in range(count + 1)]
    pad = math.ceil(pad / multiple) * multiple
    return [
        TileSpan(start, end, max(0, start - pad), min(length, end + pad)) for start, end in itertools.pairwise(bounds)
    ]


def _ramp_down(position: torch.Tensor, centre: float, half_width: float) -> torch.Tensor:
    """1 before ``centre - half_width``, 0 after ``centre + half_width``, raised cosine between; r(c+t) + r(c-t) = 1."""
    if half_width <= 0:
        return (position < centre).to(position.dtype)
    t = ((position - centre) / half_width).clamp(-1.0, 1.0)
    return 0.5 * (1.0 - torch.sin(t * (math.pi / 2)))


def axis_weights(spans: list[TileSpan], index: int, scale: int, blend: float) -> torch.Tensor:
    """Blend weights over tile ``index``'s output read (``(read_end - read_start) * scale`` samples).

    ``blend`` is the half-width of the cross-fade in input pixels, centred on each boundary between cores; it
    must not exceed the pad (beyond the read there is no data) nor half of the smallest core (so that the two
    ramps of a tile never overlap, which keeps the weights summing to one).
    """
    span = spans[index]
    # Output sample centres, in input-pixel units (sample i covers [i/scale, (i+1)/scale)).
    position = (torch.arange((span.read_end - span.read_start) * scale, dtype=torch.float64) + 0.5) / scale
    position = position + span.read_start
    weight = torch.ones_like(position)
    if index > 0:
        weight = weight * (1.0 - _ramp_down(position, span.start, blend))
    if index < len(spans) - 1:
        weight = weight * _ramp_down(position, span.end, blend)
    return weight


def tiled_forward(
    net: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    scale: int,
    tile: int,
    pad: int,
    multiple: int = 1,
    blend: float | None = None,
    out_channels: int | None = None,
    on_tile: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Run ``net`` over ``x`` ([B,C,H,W], sides multiples of ``multiple``) tile by tile; returns [B,C',H*s,W*s].

    The result is accumulated in float32 on ``x``'s device; ``net`` receives slices of ``x`` as they are (the
    caller chooses dtype and memory format). ``blend`` defaults to ``pad / 2`` capped at half the smallest core.
    """
    batch, _, height, width = x.shape
    rows = split_axis(height, tile, pad, multiple)
    cols = split_axis(width, tile, pad, multiple)
    if blend is None:
        # Half the pad: each tile is then used no closer than pad/2 to where its read stops.
        blend = pad / 2
    smallest_core = min(min(s.end - s.start for s in rows), min(s.end - s.start for s in cols))
    pad_used = max(max(s.start - s.read_start for s in rows + cols), max(s.read_end - s.end for s in rows + cols))
    blend = max(0.0, min(float(blend), smallest_core / 2, float(pad_used)))
    output = None
    total = len(rows) * len(cols)
    for r, row in enumerate(rows):
        weight_y = axis_weights(rows, r, scale, blend).to(device=x.device, dtype=torch.float32)
        for c, col in enumerate(cols):
            # A contiguous copy: convolutions on a strided view take a much slower path.
            window = x[:, :, row.read_start : row.read_end, col.read_start : col.read_end].contiguous()
            piece = net(window).float()
            del window
            if output is None:
                channels = out_channels or piece.shape[1]
                output = torch.zeros(batch, channels, height * scale, width * scale, device=x.device)
            weight_x = axis_weights(cols, c, scale, blend).to(device=x.device, dtype=torch.float32)
            piece.mul_(weight_y[:, None] * weight_x[None, :])
            output[
                :, :, row.read_start * scale : row.read_end * scale, col.read_start * scale : col.read_end * scale
            ].add_(piece)
            del piece
            if on_tile is not None:
                on_tile(r * len(cols) + c + 1, total)
    assert output is not None
    return output
