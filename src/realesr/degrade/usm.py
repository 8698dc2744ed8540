"""Unsharp masking of the GT, as the official USMSharp (radius 51, sigma 8, weight 0.5, threshold 10)."""

from __future__ import annotations


import torch
import torch.nn.functional as F

from realesr.degrade.kernels import pad_reflect


def opencv_gaussian_sigma(size: int) -> float:
    """Sigma OpenCV's getGaussianKernel uses for sigma <= 0: 0.3 ((size - 1) / 2 - 1) + 0.8 (8.0 for 51 taps)."""
    return 0.3 * ((size - 1) * 0.5 - 1) + 0.8


def gaussian_taps(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2.0
    taps = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    return taps / taps.sum()


def separable_blur(x: torch.Tensor, taps: torch.Tensor) -> torch.Tensor:
    """Filter [B,C,H,W] with the outer product of taps (reflect padding), as two 1-D passes."""
    b, c, h, w = x.shape
    k = taps.numel()
    r = k // 2
    taps = taps.to(device=x.device, dtype=x.dtype)
    flat = x.reshape(b * c, 1, h, w)
    flat = pad_reflect(flat, (r, r, r, r))
    flat = F.conv2d(flat, taps.view(1, 1, 1, k))
    flat = F.conv2d(flat, taps.view(1, 1, k, 1))
    return flat.view(b, c, h, w)


def usm_sharpen(img: torch.Tensor, weight: float = 0.5, threshold: float = 10.0, radius: int = 50,
                sigma: float | None = None) -> torch.Tensor:
    """Sharpen [B,C,H,W] (or [C,H,W]) in [0,1]: img + weight (img - blur), blended in by a soft mask.

    The mask is 1 where |img - blur| exceeds ``threshold`` 8-bit levels, softened by the same Gaussian; the
    sharpened image is clipped to [0, 1]. ``radius`` is rounded up to an odd tap count (50 -> 51, the official) and
    ``sigma`` defaults to OpenCV's rule for that size (8.0).
    """
    squeeze = img.dim() == 3
    if squeeze:
        img = img.unsqueeze(0)
    size = radius + 1 if radius % 2 == 0 else radius
    taps = gaussian_taps(size, opencv_gaussian_sigma(size) if sigma is None else sigma)
    blur = separable_blur(img, taps)
    residual = img - blur
    mask = (residual.abs() * 255.0 > threshold).to(img.dtype)
    soft_mask = separable_blur(mask, taps)
    sharp = torch.clamp(img + weight * residual, 0.0, 1.0)
    out = soft_mask * sharp + (1.0 - soft_mask) * img
    return out.squeeze(0) if squeeze else out


__all__ = ["usm_sharpen", "opencv_gaussian_sigma", "gaussian_taps", "separable_blur"]
