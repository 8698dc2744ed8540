"""BT.601 luma as the SR literature computes it (MATLAB ``rgb2ycbcr``, studio range 16-235)."""

from __future__ import annotations

import numpy as np

from realesr.errors import UsageError

# ITU-R BT.601 coefficients for R'G'B' in [0, 1] -> Y' in [16, 235].
_Y_WEIGHTS = np.array([65.481, 128.553, 24.966], dtype=np.float64)


def as_rgb_array(img) -> np.ndarray:
    """An HxWx3 array from HxW (greyscale), HxWx1, HxWx3 or HxWx4 (alpha dropped) input, dtype kept."""
    arr = np.asarray(img)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise UsageError(f"expected an HxW or HxWxC image with 1, 3 or 4 channels, got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return arr[:, :, :3]


def rgb_to_y(img, round_output: bool = False) -> np.ndarray:
    """Y' of BT.601 YCbCr in [16, 235] (float64) from an RGB image with values in [0, 255].

    Greyscale input is treated as RGB with equal channels, as the benchmark protocol converts it.
    ``round_output=True`` rounds to integers like MATLAB's ``rgb2ycbcr`` on uint8 input.
    """
    rgb = as_rgb_array(img).astype(np.float64)
    y = rgb @ _Y_WEIGHTS / 255.0 + 16.0
    return np.round(y) if round_output else y
