"""Blur kernels of the paper (Gaussian family, plateau, circular sinc) and batched 2-D filtering.

Kernels are built in float64 with numpy on a grid centred at zero: entry [row, col] is evaluated at x = col - c,
y = row - c with c = (size - 1) / 2, as the official ``mesh_grid``. Every kernel is normalised to sum to 1 and
zero-padded (centred) to ``pad_to``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from realesr.degrade.config import KERNEL_TYPES, DegradationConfig

SINC_TYPE = len(KERNEL_TYPES)  # type index recorded for a sinc kernel
IDENTITY_TYPE = SINC_TYPE + 1  # type index recorded for the identity (no final sinc)
KERNEL_TYPE_NAMES = KERNEL_TYPES + ("sinc", "identity")


def mesh_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) coordinate planes of a size x size kernel, centred at zero."""
    ax = np.arange(size, dtype=np.float64) - (size - 1) / 2.0
    xx, yy = np.meshgrid(ax, ax)
    return xx, yy


def sigma_matrix(sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """Covariance R diag(sx^2, sy^2) R^T with R the rotation by theta (radians)."""
    rot = np.array([[math.cos(theta), -math.sin(theta)], [math.sin(theta), math.cos(theta)]])
    return rot @ np.diag([sigma_x**2, sigma_y**2]) @ rot.T


def _mahalanobis_sq(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    inv = np.linalg.inv(sigma_matrix(sigma_x, sigma_y, theta))
    xx, yy = mesh_grid(size)
    return inv[0, 0] * xx * xx + (inv[0, 1] + inv[1, 0]) * xx * yy + inv[1, 1] * yy * yy


def _normalised(kernel: np.ndarray) -> np.ndarray:
    return kernel / kernel.sum()


def gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float) -> np.ndarray:
    """Anisotropic Gaussian exp(-1/2 x^T S^-1 x), normalised (isotropic when sigma_x == sigma_y)."""
    return _normalised(np.exp(-0.5 * _mahalanobis_sq(size, sigma_x, sigma_y, theta)))


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """Generalized Gaussian exp(-1/2 (x^T S^-1 x)^beta), normalised; beta = 1 is the Gaussian."""
    return _normalised(np.exp(-0.5 * np.power(_mahalanobis_sq(size, sigma_x, sigma_y, theta), beta)))


def plateau_kernel(size: int, sigma_x: float, sigma_y: float, theta: float, beta: float) -> np.ndarray:
    """Plateau-shaped 1 / (1 + (x^T S^-1 x)^beta), normalised."""
    return _normalised(1.0 / (np.power(_mahalanobis_sq(size, sigma_x, sigma_y, theta), beta) + 1.0))


def circular_lowpass_kernel(cutoff: float, size: int) -> np.ndarray:
    """2-D sinc (ideal circular low-pass with cutoff omega rad/pixel): omega J1(omega r) / (2 pi r), normalised.

    At r = 0 the limit omega^2 / (4 pi) is used.
    """
    xx, yy = mesh_grid(size)
    r = np.sqrt(xx * xx + yy * yy)
    j1 = torch.special.bessel_j1(torch.from_numpy(cutoff * r)).numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        kernel = cutoff * j1 / (2.0 * math.pi * r)
    c = (size - 1) // 2
    kernel[c, c] = cutoff**2 / (4.0 * math.pi)
    return _normalised(kernel)


def pad_kernel(kernel: np.ndarray, pad_to: int) -> np.ndarray:
    """Zero-pad a square odd kernel symmetrically to pad_to x pad_to."""
    size = kernel.shape[0]
    if size > pad_to:
        raise ValueError(f"kernel of size {size} does not fit in {pad_to}")
    p = (pad_to - size) // 2
    return np.pad(kernel, ((p, p), (p, p)))


def identity_kernel(pad_to: int) -> np.ndarray:
    kernel = np.zeros((pad_to, pad_to))
    kernel[pad_to // 2, pad_to // 2] = 1.0
    return kernel


@dataclass
class KernelDraw:
    """One drawn kernel and the parameters that made it (for labels and statistics)."""

    kernel: np.ndarray  # pad_to x pad_to, float64, sums to 1
    type_index: int  # index into KERNEL_TYPE_NAMES
    size: int
    sigma_x: float = 0.0
    sigma_y: float = 0.0
    theta: float = 0.0
    beta: float = 0.0
    omega: float = 0.0  # sinc cutoff, 0 when not a sinc

    @property
    def type_name(self) -> str:
        return KERNEL_TYPE_NAMES[self.type_index]


def _split_beta(rng: np.random.Generator, beta_range: tuple[float, float]) -> float:
    # The official draws beta below or above 1 with even odds (so [1, 2] for plateaus gives beta = 1 half the time).
    if rng.uniform() < 0.5:
        return float(rng.uniform(beta_range[0], 1.0))
    return float(rng.uniform(1.0, beta_range[1]))


def random_mixed_kernel(
    rng: np.random.Generator,
    kernel_list: tuple[str, ...],
    kernel_prob: tuple[float, ...],
    size: int,
    sigma_range: tuple[float, float],
    betag_range: tuple[float, float],
    betap_range: tuple[float, float],
    rotation_range: tuple[float, float] = (-math.pi, math.pi),
) -> KernelDraw:
    """Draw one kernel of the Gaussian / generalized / plateau family as the paper (unpadded)."""
    name = kernel_list[int(rng.choice(len(kernel_list), p=np.asarray(kernel_prob) / np.sum(kernel_prob)))]
    type_index = KERNEL_TYPES.index(name)
    sigma_x = float(rng.uniform(*sigma_range))
    if name.endswith("aniso"):
        sigma_y = float(rng.uniform(*sigma_range))
        theta = float(rng.uniform(*rotation_range))
    else:
        sigma_y, theta = sigma_x, 0.0
    if name in ("iso", "aniso"):
        kernel = gaussian_kernel(size, sigma_x, sigma_y, theta)
        return KernelDraw(kernel, type_index, size, sigma_x, sigma_y, theta, 1.0)
    if name.startswith("generalized"):
        beta = _split_beta(rng, betag_range)
        kernel = generalized_gaussian_kernel(size, sigma_x, sigma_y, theta, beta)
    else:
        beta = _split_beta(rng, betap_range)
        kernel = plateau_kernel(size, sigma_x, sigma_y, theta, beta)
    return KernelDraw(kernel, type_index, size, sigma_x, sigma_y, theta, beta)


def _draw_odd_size(rng: np.random.Generator, size_range: tuple[int, int]) -> int:
    sizes = np.arange(size_range[0], size_range[1] + 1, 2)
    return int(sizes[rng.integers(len(sizes))])


def random_blur_kernel(rng: np.random.Generator, cfg: DegradationConfig, second: bool) -> KernelDraw:
    """kernel1 (second=False) or kernel2 (second=True) exactly as the official data set draws them, padded."""
    blur = cfg.blur2 if second else cfg.blur1
    size = _draw_odd_size(rng, cfg.kernel_size_range)
    if rng.uniform() < blur.sinc_prob:
        cutoff_range = cfg.sinc_cutoff_small if size < cfg.sinc_small_kernel_limit else cfg.sinc_cutoff_large
        omega = float(rng.uniform(*cutoff_range))
        draw = KernelDraw(circular_lowpass_kernel(omega, size), SINC_TYPE, size, omega=omega)
    else:
        draw = random_mixed_kernel(
            rng, blur.kernel_list, blur.kernel_prob, size, blur.sigma, blur.betag_range, blur.betap_range
        )
    draw.kernel = pad_kernel(draw.kernel, blur.kernel_size)
    return draw


def random_final_sinc(rng: np.random.Generator, cfg: DegradationConfig) -> KernelDraw:
    """The final sinc filter (with probability final.sinc_prob) or the identity, padded to kernel1's size."""
    size_to = cfg.blur1.kernel_size  # the official pads the final sinc as kernel1 (blur_kernel_size)
    if rng.uniform() < cfg.final.sinc_prob:
        size = _draw_odd_size(rng, cfg.kernel_size_range)
        omega = float(rng.uniform(*cfg.final.sinc_cutoff))
        return KernelDraw(pad_kernel(circular_lowpass_kernel(omega, size), size_to), SINC_TYPE, size, omega=omega)
    return KernelDraw(identity_kernel(size_to), IDENTITY_TYPE, 1)


# ---------------------------------------------------------------------------------------------- filtering
def pad_reflect(x: torch.Tensor, pad: tuple[int, int, int, int]) -> torch.Tensor:
    """Reflect padding (the official filter2D), falling back to replicate where the image is too small to reflect."""
    left, right, top, bottom = pad
    if max(left, right) < x.shape[-1] and max(top, bottom) < x.shape[-2]:
        return F.pad(x, pad, mode="reflect")
    return F.pad(x, pad, mode="replicate")


def filter2d(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """Correlate each image of x [B,C,H,W] with its own kernel [B,k,k] (or one kernel [k,k] / [1,k,k] for all).

    Reflect padding keeps the size, as the official filter2D. The kernels of the paper are point-symmetric, so
    correlation and convolution coincide.
    """
    if kernel.dim() == 2:
        kernel = kernel.unsqueeze(0)
    b, c, h, w = x.shape
    k = kernel.shape[-1]
    if k % 2 != 1 or kernel.shape[-2] != k:
        raise ValueError(f"kernels must be square with an odd size, got {tuple(kernel.shape)}")
    kernel = kernel.to(device=x.device, dtype=x.dtype)
    padded = pad_reflect(x, (k // 2, k // 2, k // 2, k // 2))
    if kernel.shape[0] == 1:
        weight = kernel.expand(c, k, k).unsqueeze(1)
        return F.conv2d(padded, weight, groups=c)
    if kernel.shape[0] != b:
        raise ValueError(f"{kernel.shape[0]} kernels for a batch of {b}")
    weight = kernel.repeat_interleave(c, dim=0).unsqueeze(1)
    out = F.conv2d(padded.reshape(1, b * c, h + k - 1, w + k - 1), weight, groups=b * c)
    return out.view(b, c, h, w)
