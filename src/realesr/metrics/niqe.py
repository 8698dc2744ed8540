"""NIQE (Mittal, Soundararajan & Bovik 2012), computed as the reference MATLAB ``niqe`` release does.

Steps: luma rounded to integers; the image cut to whole 96x96 blocks; at two scales (the second made with
MATLAB-style bicubic ``imresize`` by 0.5) the MSCN coefficients with the 7x7 Gaussian window of the pristine
model (replicate padding); per block 18 features from asymmetric generalised Gaussian (AGGD) moment fits of the
MSCN values and of their products with four neighbours; the score is the Mahalanobis-like distance between the
multivariate Gaussian of the image's block features and that of the pristine model. Lower is more natural.

Scores are only comparable with the standard pristine parameters, which ship with the package.
"""

from __future__ import annotations

import functools
import importlib.resources
import io
import math

import numpy as np

from realesr.errors import UsageError
from realesr.metrics.color import rgb_to_y
from realesr.metrics.imresize import imresize

NIQE_BLOCK = 96
_PARAMS_FILE = "niqe_pris_params.npz"
# The shape grid of the moment-matching fit in the reference code: 0.2, 0.201, ..., 10.
_GAMMA_GRID = np.arange(0.2, 10.001, 0.001)
_gamma = np.vectorize(math.gamma, otypes=[np.float64])
_R_GRID = _gamma(2.0 / _GAMMA_GRID) ** 2 / (_gamma(1.0 / _GAMMA_GRID) * _gamma(3.0 / _GAMMA_GRID))
_NEIGHBOUR_SHIFTS = ((0, 1), (1, 0), (1, 1), (1, -1))


@functools.lru_cache(maxsize=1)
def pristine_params() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(mu_pris_param [36], cov_pris_param [36x36], gaussian_window [7x7]) of the standard NIQE model."""
    data = importlib.resources.files("realesr.metrics").joinpath(_PARAMS_FILE).read_bytes()
    with np.load(io.BytesIO(data)) as params:
        mu = np.asarray(params["mu_pris_param"], dtype=np.float64).reshape(-1)
        cov = np.asarray(params["cov_pris_param"], dtype=np.float64)
        window = np.asarray(params["gaussian_window"], dtype=np.float64)
    return mu, cov, window


def _filter_replicate(x: np.ndarray, window: np.ndarray) -> np.ndarray:
    """2-D correlation with edge replication, same size (MATLAB ``imfilter(x, w, 'replicate')``)."""
    kh, kw = window.shape
    ph, pw = kh // 2, kw // 2
    padded = np.pad(x, ((ph, kh - 1 - ph), (pw, kw - 1 - pw)), mode="edge")
    h, w = x.shape
    out = np.zeros_like(x)
    for i in range(kh):
        for j in range(kw):
            out += window[i, j] * padded[i : i + h, j : j + w]
    return out


def _aggd_fit(values: np.ndarray) -> tuple[float, float, float]:
    """(shape alpha, left scale, right scale) of an AGGD by moment matching on the reference grid.

    The moments stay in the dtype of ``values`` (single precision for MSCN maps, see :func:`_mscn`).
    """
    values = values.ravel()
    left = values[values < 0]
    right = values[values > 0]
    if left.size == 0 or right.size == 0:
        # A one-sided block gives NaN like the reference code; such blocks are dropped from the covariance.
        return math.nan, math.nan, math.nan
    left_std = np.sqrt(np.mean(left * left))
    right_std = np.sqrt(np.mean(right * right))
    gamma_hat = left_std / right_std
    r_hat = np.mean(np.abs(values)) ** 2 / np.mean(values * values)
    r_hat_norm = r_hat * (gamma_hat**3 + 1) * (gamma_hat + 1) / (gamma_hat**2 + 1) ** 2
    if not np.isfinite(r_hat_norm):
        return math.nan, math.nan, math.nan
    alpha = float(_GAMMA_GRID[np.argmin((_R_GRID - r_hat_norm) ** 2)])
    spread = math.sqrt(math.gamma(1.0 / alpha) / math.gamma(3.0 / alpha))
    return alpha, float(left_std) * spread, float(right_std) * spread


def _block_features(block: np.ndarray) -> list[float]:
    alpha, beta_l, beta_r = _aggd_fit(block)
    features = [alpha, (beta_l + beta_r) / 2.0]
    for shift in _NEIGHBOUR_SHIFTS:
        products = block * np.roll(block, shift, axis=(0, 1))
        alpha, beta_l, beta_r = _aggd_fit(products)
        finite = math.isfinite(alpha)
        mean = (beta_r - beta_l) * math.gamma(2.0 / alpha) / math.gamma(1.0 / alpha) if finite else math.nan
        features.extend([alpha, mean, beta_l, beta_r])
    return features


def _mscn(img: np.ndarray, window: np.ndarray) -> np.ndarray:
    """Mean-subtracted contrast-normalised coefficients, ``(I - mu) / (sigma + 1)``.

    The local moments are rounded to single precision like the reference implementations: in exact double
    precision, moment-matching near-ties on the shape grid flip and baboon.png scores 5.72996 instead of MATLAB's
    published 5.72957; with single-precision moments it scores 5.72958.
    """
    src = img.astype(np.float32)
    mu = _filter_replicate(img, window).astype(np.float32)
    second = _filter_replicate(img * img, window).astype(np.float32)
    sigma = np.sqrt(np.abs(second - mu * mu))
    return (src - mu) / (sigma + np.float32(1.0))


def niqe_of_luma(luma: np.ndarray) -> float:
    """NIQE of a 2-D luma image with values in [0, 255] (rounded by the caller as MATLAB does)."""
    mu_pris, cov_pris, window = pristine_params()
    img = np.asarray(luma, dtype=np.float64)
    rows, cols = img.shape[0] // NIQE_BLOCK, img.shape[1] // NIQE_BLOCK
    if rows < 1 or cols < 1:
        raise UsageError(f"NIQE needs an image of at least {NIQE_BLOCK}x{NIQE_BLOCK} pixels, got {img.shape[:2]}")
    img = img[: rows * NIQE_BLOCK, : cols * NIQE_BLOCK]

    per_scale = []
    for scale in (1, 2):
        mscn = _mscn(img, window)
        size = NIQE_BLOCK // scale
        feats = [
            _block_features(mscn[r * size : (r + 1) * size, c * size : (c + 1) * size])
            for c in range(cols)
            for r in range(rows)
        ]
        per_scale.append(np.asarray(feats, dtype=np.float64))
        if scale == 1:
            img = imresize(img / 255.0, scale=0.5) * 255.0
    features = np.concatenate(per_scale, axis=1)

    complete = features[~np.isnan(features).any(axis=1)]
    if complete.shape[0] < 1:
        raise UsageError("NIQE: no block of the image has finite features (is it constant?)")
    mu_image = np.nanmean(features, axis=0)
    if complete.shape[0] > 1:
        cov_image = np.cov(complete, rowvar=False)
    else:
        cov_image = np.zeros_like(cov_pris)
    inv_cov = np.linalg.pinv((cov_pris + cov_image) / 2.0)
    diff = mu_pris - mu_image
    return float(math.sqrt(max(float(diff @ inv_cov @ diff), 0.0)))


def niqe(img, crop_border: int = 0) -> float:
    """NIQE of an HxWx3 RGB (or HxW greyscale) image with values in [0, 255]; lower is better.

    The luma is BT.601 Y rounded to integers, as MATLAB computes it from a uint8 image.
    """
    if crop_border < 0:
        raise UsageError(f"crop_border must be >= 0, got {crop_border}")
    luma = rgb_to_y(img, round_output=True)
    if crop_border:
        luma = luma[crop_border:-crop_border, crop_border:-crop_border]
    return niqe_of_luma(luma)
