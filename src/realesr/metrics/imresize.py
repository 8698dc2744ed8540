"""MATLAB-compatible bicubic ``imresize`` (the resize every SR benchmark is defined with).

MATLAB's ``imresize(img, scale, 'bicubic')`` differs from PIL/OpenCV/torch bicubic in three ways that move PSNR by
tenths of a dB: the cubic kernel uses a = -0.5; when shrinking, the kernel is stretched by 1/scale (antialiasing)
and scaled by ``scale``; pixels outside the image are taken by symmetric reflection that repeats the edge pixel.
Output pixel ``x`` (1-based) samples the input at ``u = x / scale + 0.5 * (1 - 1 / scale)``.

The resize is separable: along each dimension every output sample is a weighted sum of a few input samples.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import cast

import numpy as np

from realesr.errors import UsageError

CUBIC_SUPPORT = 4.0


def cubic_kernel(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    absx = np.abs(np.asarray(x, dtype=np.float64))
    absx2 = absx * absx
    absx3 = absx2 * absx
    inner = (1.5 * absx3 - 2.5 * absx2 + 1.0) * (absx <= 1)
    outer = (-0.5 * absx3 + 2.5 * absx2 - 4.0 * absx + 2.0) * ((absx > 1) & (absx <= 2))
    return inner + outer


def contributions(
    in_length: int, out_length: int, scale: float, antialiasing: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Source indices and weights ``[out_length, taps]`` so that ``out[i] = sum_t weights[i, t] * in[indices[i, t]]``.

    ``scale`` is the factor MATLAB uses for the kernel (the requested one, not ``out/in`` after rounding). Indices
    are 0-based and already folded back into the signal by MATLAB's symmetric extension.
    """
    if in_length < 1 or out_length < 1:
        raise UsageError(f"imresize: lengths must be positive (in={in_length}, out={out_length})")
    shrink_aa = scale < 1 and antialiasing
    kernel_width = CUBIC_SUPPORT / scale if shrink_aa else CUBIC_SUPPORT
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1.0 - 1.0 / scale)
    left = np.floor(u - kernel_width / 2.0)
    taps = int(math.ceil(kernel_width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    if shrink_aa:
        weights = scale * cubic_kernel(distance * scale)
    else:
        weights = cubic_kernel(distance)
    weights = weights / weights.sum(axis=1, keepdims=True)
    # Symmetric extension as MATLAB: the sequence 1..n, n..1 repeated (edge pixel duplicated).
    period = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    source = period[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    return source, weights


def _plan(
    in_shape: tuple[int, ...], scale: float | Sequence[float] | None, output_shape: Sequence[int] | None
) -> list[tuple[int, int, float]]:
    """(dimension, output length, kernel scale) for each resized dimension, in MATLAB's order."""
    if (scale is None) == (output_shape is None):
        raise UsageError("imresize: give exactly one of scale= or output_shape=")
    if scale is not None:
        if np.isscalar(scale):
            # np.isscalar narrows to numpy's generic union, which float() cannot take in the stubs.
            scales: tuple[float, ...] = (float(cast(float, scale)),) * 2
        else:
            scales = tuple(float(s) for s in cast("Sequence[float]", scale))
        if len(scales) != 2 or min(scales) <= 0:
            raise UsageError(f"imresize: scale must be a positive number or a pair, got {scale!r}")
        # MATLAB rounds the output size up; the kernel still uses the requested scale.
        lengths = tuple(int(math.ceil(n * s - 1e-9)) for n, s in zip(in_shape, scales))
    elif output_shape is not None:  # always, by the check above; the test tells mypy
        lengths = tuple(int(v) for v in output_shape)
        if len(lengths) != 2 or min(lengths) < 1:
            raise UsageError(f"imresize: output_shape must be two positive sizes, got {output_shape!r}")
        scales = tuple(out / n for out, n in zip(lengths, in_shape))
    # MATLAB resizes along the dimension with the smaller scale first (stable for ties: rows first).
    order = sorted(range(2), key=lambda d: scales[d])
    return [(d, lengths[d], scales[d]) for d in order]


def imresize(
    array,
    scale: float | Sequence[float] | None = None,
    output_shape: Sequence[int] | None = None,
    antialiasing: bool = True,
):
    """Resize like MATLAB's ``imresize(array, scale)`` / ``imresize(array, output_shape)`` with 'bicubic'.

    ``array``: numpy HxW or HxWxC (any numeric dtype, computed and returned as float64, not rounded: round and
    clip yourself to get MATLAB's uint8 output), or a torch tensor ``[..., H, W]`` (returned as a floating tensor
    on the same device; integer tensors are computed in float64).
    """
    try:
        import torch

        is_tensor = isinstance(array, torch.Tensor)
    except ImportError:  # pragma: no cover - torch is a dependency, but numpy use need not import it
        is_tensor = False

    if is_tensor:
        if array.ndim < 2:
            raise UsageError(f"imresize: a tensor needs at least 2 dimensions [..., H, W], got {tuple(array.shape)}")
        out = array if array.is_floating_point() else array.to(torch.float64)
        base = out.ndim - 2
        for dim, length, s in _plan(tuple(out.shape[-2:]), scale, output_shape):
            source, weights = contributions(out.shape[base + dim], length, s, antialiasing)
            source_t = torch.from_numpy(source).to(out.device)
            weights_t = torch.from_numpy(weights).to(device=out.device, dtype=out.dtype)
            view = [1] * out.ndim
            view[base + dim] = length
            acc: torch.Tensor | None = None
            for t in range(source.shape[1]):
                term = out.index_select(base + dim, source_t[:, t]) * weights_t[:, t].reshape(view)
                acc = term if acc is None else acc + term
            assert acc is not None  # contributions() always gives at least one tap
            out = acc
        return out

    arr = np.asarray(array, dtype=np.float64)
    if arr.ndim not in (2, 3):
        raise UsageError(f"imresize: expected an HxW or HxWxC array, got shape {arr.shape}")
    for dim, length, s in _plan(arr.shape[:2], scale, output_shape):
        source, weights = contributions(arr.shape[dim], length, s, antialiasing)
        view = [1] * arr.ndim
        view[dim] = length
        total = np.zeros(arr.shape[:dim] + (length,) + arr.shape[dim + 1 :], dtype=np.float64)
        # One pass per tap keeps memory at one output-sized array (a dense matrix would be in x out).
        for t in range(source.shape[1]):
            total += np.take(arr, source[:, t], axis=dim) * weights[:, t].reshape(view)
        arr = total
    return arr
