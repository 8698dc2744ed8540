"""PSNR and SSIM with the SR benchmark conventions (Y channel, border crop, Wang et al. SSIM)."""

from __future__ import annotations

import math

import numpy as np

from realesr.errors import UsageError
from realesr.metrics.color import rgb_to_y

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5
SSIM_C1 = (0.01 * 255) ** 2
SSIM_C2 = (0.03 * 255) ** 2


def _prepare(img, ref, crop_border: int, y_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Both images as float64 HxWxC (C = 1 for Y) in [0, 255], border cropped."""
    a = np.asarray(img)
    b = np.asarray(ref)
    if a.shape != b.shape:
        raise UsageError(f"image and reference differ in shape: {a.shape} vs {b.shape}")
    if crop_border < 0:
        raise UsageError(f"crop_border must be >= 0, got {crop_border}")
    if y_channel:
        a = rgb_to_y(a)[:, :, None]
        b = rgb_to_y(b)[:, :, None]
    else:
        a = a.astype(np.float64)
        b = b.astype(np.float64)
        if a.ndim == 2:
            a, b = a[:, :, None], b[:, :, None]
    if crop_border:
        a = a[crop_border:-crop_border, crop_border:-crop_border]
        b = b[crop_border:-crop_border, crop_border:-crop_border]
    if a.shape[0] < 1 or a.shape[1] < 1:
        raise UsageError(f"crop_border={crop_border} leaves nothing of a {np.asarray(img).shape[:2]} image")
    return a, b


def psnr(img, ref, crop_border: int = 4, y_channel: bool = True) -> float:
    """Peak signal-to-noise ratio in dB (peak 255) of ``img`` against ``ref``; ``inf`` when they are equal.

    Inputs: HxWx3 RGB (or HxW greyscale) arrays with values in [0, 255], normally uint8. With ``y_channel`` the
    BT.601 luma (16-235) is compared, as in the SR literature; else all channels.
    """
    a, b = _prepare(img, ref, crop_border, y_channel)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return math.inf
    return 10.0 * math.log10(255.0**2 / mse)


def gaussian_window_1d(size: int = SSIM_WINDOW, sigma: float = SSIM_SIGMA) -> np.ndarray:
    offsets = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    window = np.exp(-(offsets**2) / (2.0 * sigma**2))
    return window / window.sum()


def _filter_valid(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Separable 2-D correlation of HxW ``x`` with ``outer(window, window)``, 'valid' region only."""
    k = window.size
    h, w = x.shape
    rows = sum(window[i] * x[i : h - k + 1 + i, :] for i in range(k))
    return sum(window[j] * rows[:, j : w - k + 1 + j] for j in range(k))


def _ssim_plane(a: np.ndarray, b: np.ndarray, window: np.ndarray) -> float:
    mu_a = _filter_valid(a, window)
    mu_b = _filter_valid(b, window)
    var_a = _filter_valid(a * a, window) - mu_a**2
    var_b = _filter_valid(b * b, window) - mu_b**2
    cov = _filter_valid(a * b, window) - mu_a * mu_b
    ssim_map = ((2 * mu_a * mu_b + SSIM_C1) * (2 * cov + SSIM_C2)) / (
        (mu_a**2 + mu_b**2 + SSIM_C1) * (var_a + var_b + SSIM_C2)
    )
    return float(ssim_map.mean())


def ssim(img, ref, crop_border: int = 4, y_channel: bool = True) -> float:
    """Structural similarity (Wang et al. 2004): 11x11 Gaussian window, sigma 1.5, K1 = 0.01, K2 = 0.03, L = 255.

    Computed on the valid region of the filtered image (no padding), averaged over the map and, without
    ``y_channel``, over channels. Same inputs as :func:`psnr`.
    """
    a, b = _prepare(img, ref, crop_border, y_channel)
    if min(a.shape[:2]) < SSIM_WINDOW:
        raise UsageError(f"SSIM needs at least {SSIM_WINDOW}x{SSIM_WINDOW} pixels after cropping, got {a.shape[:2]}")
    window = gaussian_window_1d()
    return float(np.mean([_ssim_plane(a[:, :, c], b[:, :, c], window) for c in range(a.shape[2])]))
