"""Blur and sinc kernels against closed forms and the paper's sampling rules."""

import math

import numpy as np
import pytest
import torch

from realesr.degrade import KERNEL_TYPE_NAMES, DegradationConfig, filter2d
from realesr.degrade.kernels import (
    circular_lowpass_kernel,
    gaussian_kernel,
    generalized_gaussian_kernel,
    plateau_kernel,
    random_blur_kernel,
    random_final_sinc,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _moments(kernel):
    n = kernel.shape[0]
    ax = np.arange(n) - (n - 1) / 2
    x, y = np.meshgrid(ax, ax)  # x along columns, y along rows
    k = kernel / kernel.sum()
    mx, my = (k * x).sum(), (k * y).sum()
    return mx, my, np.array([[(k * x * x).sum(), (k * x * y).sum()], [(k * x * y).sum(), (k * y * y).sum()]])


@pytest.mark.parametrize("sx,sy,theta", [(3.0, 1.2, 0.7), (1.5, 2.5, -2.1), (2.0, 2.0, 0.0)])
def test_anisotropic_gaussian_covariance_from_moments(sx, sy, theta):
    # Large support so truncation is negligible; the sampled Gaussian's second moments equal the continuous ones.
    kernel = gaussian_kernel(61, sx, sy, theta)
    mx, my, cov = _moments(kernel)
    c, s = math.cos(theta), math.sin(theta)
    expected = np.array(
        [
            [c * c * sx**2 + s * s * sy**2, c * s * (sx**2 - sy**2)],
            [c * s * (sx**2 - sy**2), s * s * sx**2 + c * c * sy**2],
        ]
    )
    assert abs(mx) < 1e-9 and abs(my) < 1e-9
    np.testing.assert_allclose(cov, expected, atol=1e-6)
    np.testing.assert_allclose(sorted(np.linalg.eigvalsh(cov)), sorted([sx**2, sy**2]), rtol=1e-6)


def test_generalized_gaussian_beta_one_is_gaussian():
    for sx, sy, th in [(1.3, 0.6, 0.4), (2.7, 2.7, 0.0)]:
        np.testing.assert_allclose(
            generalized_gaussian_kernel(21, sx, sy, th, 1.0), gaussian_kernel(21, sx, sy, th), atol=1e-12
        )
    # beta != 1 differs: heavier (beta < 1) or lighter (beta > 1) tails than the Gaussian
    g = gaussian_kernel(21, 2.0, 2.0, 0.0)
    assert generalized_gaussian_kernel(21, 2.0, 2.0, 0.0, 0.5)[10, 0] > g[10, 0]
    assert generalized_gaussian_kernel(21, 2.0, 2.0, 0.0, 3.0)[10, 0] < g[10, 0]


def test_generalized_and_plateau_closed_forms_isotropic():
    sigma, beta, n = 1.7, 1.6, 15
    ax = np.arange(n) - (n - 1) / 2
    x, y = np.meshgrid(ax, ax)
    q = (x * x + y * y) / sigma**2
    gen = np.exp(-0.5 * q**beta)
    plat = 1.0 / (1.0 + q**beta)
    np.testing.assert_allclose(generalized_gaussian_kernel(n, sigma, sigma, 0.0, beta), gen / gen.sum(), atol=1e-12)
    np.testing.assert_allclose(plateau_kernel(n, sigma, sigma, 0.0, beta), plat / plat.sum(), atol=1e-12)


def test_plateau_anisotropic_closed_form():
    sx, sy, theta, beta, n = 2.2, 0.9, 1.1, 1.3, 21
    ax = np.arange(n) - (n - 1) / 2
    x, y = np.meshgrid(ax, ax)
    # rotate coordinates into the kernel's principal axes
    u = math.cos(theta) * x + math.sin(theta) * y
    v = -math.sin(theta) * x + math.cos(theta) * y
    q = (u / sx) ** 2 + (v / sy) ** 2
    plat = 1.0 / (1.0 + q**beta)
    np.testing.assert_allclose(plateau_kernel(n, sx, sy, theta, beta), plat / plat.sum(), atol=1e-12)


def test_random_kernels_sum_to_one_odd_sizes_padded_and_type_frequencies():
    cfg = DegradationConfig()
    rng = np.random.default_rng(123)
    n = 3000
    counts = {name: 0 for name in KERNEL_TYPE_NAMES}
    sizes = set()
    for second in (False, True):
        for _ in range(n // 2):
            d = random_blur_kernel(rng, cfg, second)
            assert d.kernel.shape == (21, 21)
            assert abs(d.kernel.sum() - 1.0) < 1e-9
            assert d.size % 2 == 1 and 7 <= d.size <= 21
            sizes.add(d.size)
            pad = (21 - d.size) // 2
            outside = np.ones((21, 21), bool)
            outside[pad : 21 - pad, pad : 21 - pad] = False
            assert not d.kernel[outside].any(), "padding must be zeros"
            # point symmetry (so correlation = convolution)
            np.testing.assert_allclose(d.kernel, d.kernel[::-1, ::-1], atol=1e-12)
            if d.type_name == "sinc":
                limit = math.pi / 3 if d.size < 13 else math.pi / 5
                assert limit <= d.omega <= math.pi
            else:
                lo, hi = (0.2, 1.5) if second else (0.2, 3.0)
                assert lo <= d.sigma_x <= hi and lo <= d.sigma_y <= hi
            counts[d.type_name] += 1
    assert sizes == set(range(7, 22, 2))
    expected = {"sinc": 0.1}
    for name, p in zip(cfg.kernel_list, cfg.kernel_prob):
        expected[name] = 0.9 * p
    for name, p in expected.items():
        f = counts[name] / n
        assert abs(f - p) < 4.5 * math.sqrt(p * (1 - p) / n) + 1e-3, (name, f, p)


def test_plateau_beta_sampling_follows_official_split():
    # The official draws beta in [low, 1] or [1, high] with even odds; for plateaus [1, 2] half are exactly 1.
    cfg = DegradationConfig(kernel_list=("plateau_iso",), kernel_prob=(1.0,), sinc_prob=0.0)
    rng = np.random.default_rng(5)
    betas = np.array([random_blur_kernel(rng, cfg, False).beta for _ in range(400)])
    assert ((betas >= 1.0) & (betas <= 2.0)).all()
    assert 0.4 < np.mean(betas == 1.0) < 0.6


def test_final_sinc_probability_and_identity():
    cfg = DegradationConfig()
    rng = np.random.default_rng(7)
    draws = [random_final_sinc(rng, cfg) for _ in range(1000)]
    frac = np.mean([d.type_name == "sinc" for d in draws])
    assert abs(frac - 0.8) < 0.06
    ident = next(d for d in draws if d.type_name == "identity")
    assert ident.kernel[10, 10] == 1.0 and ident.kernel.sum() == 1.0
    for d in draws:
        assert abs(d.kernel.sum() - 1) < 1e-9
        if d.type_name == "sinc":
            assert math.pi / 3 <= d.omega <= math.pi


@pytest.mark.parametrize("omega", [math.pi / 2, math.pi / 3])
def test_sinc_frequency_response_passes_below_and_stops_above_cutoff(omega):
    kernel = circular_lowpass_kernel(omega, 21)
    n = 256
    padded = np.zeros((n, n))
    padded[:21, :21] = kernel
    response = np.abs(np.fft.fft2(padded))
    f = np.fft.fftfreq(n) * 2 * math.pi  # radians per pixel
    fx, fy = np.meshgrid(f, f)
    radius = np.hypot(fx, fy)
    passband = response[radius < 0.75 * omega]
    stopband = response[(radius > 1.25 * omega) & (radius < math.pi)]
    # An ideal low-pass truncated to 21 taps: Gibbs ripple (up to ~17%) around the ideal 1 / 0.
    assert abs(passband.mean() - 1) < 0.1 and passband.min() > 0.8 and passband.max() < 1.2
    assert stopband.mean() < 0.03 and stopband.max() < 0.15
    # at the DC the gain is exactly 1 (normalised kernel)
    assert abs(response[0, 0] - 1) < 1e-9


def test_sinc_closed_form_value():
    # omega J1(omega r) / (2 pi r) before normalisation: compare ratios between taps (normalisation cancels).
    omega = 2.0
    k = circular_lowpass_kernel(omega, 11)
    j1 = torch.special.bessel_j1(torch.tensor([omega * 3.0], dtype=torch.float64)).item()
    value_r3 = omega * j1 / (2 * math.pi * 3.0)
    value_0 = omega**2 / (4 * math.pi)
    assert abs(k[5, 8] / k[5, 5] - value_r3 / value_0) < 1e-9


def test_filter2d_per_sample_kernels_match_single_convolutions():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 20, 17, generator=g)
    kernels = torch.from_numpy(np.stack([gaussian_kernel(21, 1 + i, 0.5, 0.3 * i) for i in range(3)])).float()
    out = filter2d(x, kernels)
    for i in range(3):
        ref = torch.nn.functional.conv2d(
            torch.nn.functional.pad(x[i : i + 1], (10, 10, 10, 10), mode="reflect"),
            kernels[i].expand(3, 1, 21, 21),
            groups=3,
        )
        torch.testing.assert_close(out[i : i + 1], ref, atol=1e-6, rtol=0)
    # a delta kernel is the identity; a constant image stays constant
    delta = torch.zeros(1, 21, 21)
    delta[0, 10, 10] = 1
    torch.testing.assert_close(filter2d(x, delta), x)
    torch.testing.assert_close(filter2d(torch.full((1, 3, 9, 9), 0.3), kernels[:1]), torch.full((1, 3, 9, 9), 0.3))
