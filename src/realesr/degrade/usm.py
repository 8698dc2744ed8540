"""Unsharp masking of the GT, as the official USMSharp (radius 51, sigma 8, weight 0.5, threshold 10)."""

from __future__ import annotations

import functools

import numpy as np
import torch


def opencv_gaussian_sigma(size: int) -> float:
    """Sigma OpenCV's getGaussianKernel uses for sigma <= 0: 0.3 ((size - 1) / 2 - 1) + 0.8 (8.0 for 51 taps)."""
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def gaussian_taps(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    taps = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return taps / taps.sum()


@functools.lru_cache(maxsize=64)
def _blur_matrix(n: int, size: int, sigma: float) -> torch.Tensor:
    """[n, n] matrix of the 1-D Gaussian filter with reflect padding folded in (replicate when n is too short)."""
    taps = gaussian_taps(size, sigma).numpy()
    r = size // 2
    rows = np.repeat(np.arange(n), size)
    src = (np.arange(n)[:, None] + np.arange(size)[None, :] - r).reshape(-1)
    if r < n:
        src = np.abs(src)
        src = np.where(src > n - 1, 2 * (n - 1) - src, src)
    else:
        src = np.clip(src, 0, n - 1)
    m = np.zeros((n, n))
    np.add.at(m, (rows, src), np.tile(taps, n))
    return torch.from_numpy(m)


def separable_blur(x: torch.Tensor, size: int, sigma: float) -> torch.Tensor:
    """Filter [B,C,H,W] with the size x size Gaussian (outer product of 1-D taps), reflect padding.

    Done as two matrix products with the padding folded into banded matrices: exactly the padded 2-D
    convolution, and several times faster than a 51-tap convolution on a CPU.
    """
    h, w = x.shape[-2:]
    mh = _blur_matrix(h, size, float(sigma)).to(device=x.device, dtype=x.dtype)
    mw = _blur_matrix(w, size, float(sigma)).to(device=x.device, dtype=x.dtype)
    return mh @ x @ mw.T


def usm_sharpen(
    img: torch.Tensor, weight: float = 0.5, threshold: float = 10.0, radius: int = 50, sigma: float | None = None
) -> torch.Tensor:
    """Sharpen [B,C,H,W] (or [C,H,W]) in [0,1]: img + weight (img - blur), blended in by a soft mask.

    The mask is 1 where |img - blur| exceeds ``threshold`` 8-bit levels, softened by the same Gaussian; the
    sharpened image is clipped to [0, 1]. ``radius`` is rounded up to an odd tap count (50 -> 51, the official) and
    ``sigma`` defaults to OpenCV's rule for that size (8.0).
    """
    squeeze = img.dim() == 3
    if squeeze:
        img = img.unsqueeze(0)
    size = radius + 1 if radius % 2 == 0 else radius
    sigma = opencv_gaussian_sigma(size) if sigma is None else float(sigma)
    blur = separable_blur(img, size, sigma)
    residual = img - blur
    mask = (residual.abs() * 255.0 > threshold).to(img.dtype)
    soft_mask = separable_blur(mask, size, sigma)
    sharp = torch.clamp(img + weight * residual, 0.0, 1.0)
    out = soft_mask * sharp + (1.0 - soft_mask) * img
    return out.squeeze(0) if squeeze else out


__all__ = ["usm_sharpen", "opencv_gaussian_sigma", "gaussian_taps", "separable_blur"]
