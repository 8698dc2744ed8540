"""Metrics against closed forms, independent hand computations and published benchmark figures."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from realesr.errors import UsageError
from realesr.metrics import cubic_kernel, imresize, niqe, psnr, rgb_to_y, ssim


def keys_cubic(x: float, a: float) -> float:
    """Keys (1981) cubic convolution kernel for a general ``a``, written from the paper's formula."""
    x = abs(x)
    if x <= 1:
        return (a + 2) * x**3 - (a + 3) * x**2 + 1
    if x < 2:
        return a * x**3 - 5 * a * x**2 + 8 * a * x - 4 * a
    return 0.0


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------- colour / PSNR


def test_rgb_to_y_bt601_studio_range():
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)
    assert rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
    # Pure primaries: Y' = 16 + 219 * (0.299, 0.587, 0.114) (BT.601 luma weights).
    for channel, weight in enumerate((0.299, 0.587, 0.114)):
        px = np.zeros((1, 1, 3), np.uint8)
        px[0, 0, channel] = 255
        assert rgb_to_y(px)[0, 0] == pytest.approx(16 + 219 * weight, abs=0.01)
    grey = np.array([[0, 128, 255]], np.uint8)
    np.testing.assert_allclose(rgb_to_y(grey), rgb_to_y(np.stack([grey] * 3, axis=-1)))


def test_psnr_identity_and_constant_offset():
    rng = np.random.default_rng(0)
    ref = rng.integers(20, 200, size=(24, 20, 3), dtype=np.uint8)
    assert psnr(ref, ref) == math.inf
    shifted = ref + np.uint8(5)
    # Every channel +5 moves Y' by 5 * 219 / 255.
    assert psnr(shifted, ref, crop_border=4) == pytest.approx(10 * math.log10(255**2 / (5 * 219 / 255) ** 2))
    assert psnr(shifted, ref, crop_border=0, y_channel=False) == pytest.approx(10 * math.log10(255**2 / 25))


def test_psnr_hand_computed_tiny_array_and_border_crop():
    ref = np.zeros((4, 4), np.uint8)
    img = ref.copy()
    img[1, 2] = 10  # one pixel off by 10 in 4 inner pixels -> MSE 100 / 4 (after a 1-pixel crop)
    img[0, 0] = 200  # in the cropped border: must not count
    assert psnr(img, ref, crop_border=1, y_channel=False) == pytest.approx(10 * math.log10(255**2 / 25.0))


def test_psnr_rejects_shape_mismatch():
    with pytest.raises(UsageError, match="shape"):
        psnr(np.zeros((8, 8, 3), np.uint8), np.zeros((8, 9, 3), np.uint8))


# ---------------------------------------------------------------------------------------------------- SSIM


def test_ssim_identity_and_constant_images():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    assert ssim(img, img) == pytest.approx(1.0)
    # Constant images: the variances vanish and SSIM = (2ab + C1) / (a^2 + b^2 + C1).
    a, b = 100.0, 140.0
    c1 = (0.01 * 255) ** 2
    expected = (2 * a * b + c1) / (a * a + b * b + c1)
    got = ssim(np.full((16, 16), a, np.uint8), np.full((16, 16), b, np.uint8), crop_border=0, y_channel=False)
    assert got == pytest.approx(expected)


def test_ssim_single_window_by_hand():
    """An 11x11 image has one valid window: SSIM is the weighted-statistics formula written out directly."""
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, size=(11, 11)).astype(np.float64)
    y = np.clip(x + rng.normal(0, 20, size=(11, 11)), 0, 255).round()
    weights = np.array(
        [[math.exp(-((i - 5) ** 2 + (j - 5) ** 2) / (2 * 1.5**2)) for j in range(11)] for i in range(11)]
    )
    weights /= weights.sum()
    mx, my = (weights * x).sum(), (weights * y).sum()
    vx = (weights * (x - mx) ** 2).sum()
    vy = (weights * (y - my) ** 2).sum()
    cxy = (weights * (x - mx) * (y - my)).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    expected = (2 * mx * my + c1) * (2 * cxy + c2) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    got = ssim(x.astype(np.uint8), y.astype(np.uint8), crop_border=0, y_channel=False)
    assert got == pytest.approx(expected, rel=1e-9)


# ------------------------------------------------------------------------------------------------- imresize


@pytest.mark.parametrize("x", [0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, -0.5, -1.5])
def test_cubic_kernel_is_keys_with_a_minus_half(x):
    assert cubic_kernel(np.array([x]))[0] == pytest.approx(keys_cubic(x, -0.5))


def test_constant_image_stays_constant():
    img = np.full((13, 17, 3), 77.0)
    for kwargs in ({"scale": 0.25}, {"scale": 4}, {"scale": 0.5}, {"output_shape": (5, 30)}):
        out = imresize(img, **kwargs)
        np.testing.assert_allclose(out, 77.0, atol=1e-9)
    assert imresize(img, scale=0.25).shape == (4, 5, 3)  # MATLAB rounds the size up: ceil(13/4), ceil(17/4)
    assert imresize(img, scale=4).shape == (52, 68, 3)


def test_linear_ramp_is_reproduced_away_from_borders():
    ramp = np.tile(np.arange(32, dtype=np.float64), (6, 1))  # value = column index (0-based)
    # x2 up: output column j samples the input at 0-based position (j + 1) / 2 + 0.25 - 1.
    up = imresize(ramp, scale=2)
    j = np.arange(up.shape[1])
    inner = slice(4, -4)
    expected = np.broadcast_to(((j + 1) / 2 - 0.75)[inner], up[:, inner].shape)
    np.testing.assert_allclose(up[:, inner], expected, atol=1e-12)
    # x2 down: output column j averages around 0-based position 2j + 0.5 with a symmetric kernel.
    down = imresize(ramp, scale=0.5)
    j = np.arange(down.shape[1])
    np.testing.assert_allclose(down[:, 2:-2], np.broadcast_to((2 * j + 0.5)[2:-2], down[:, 2:-2].shape), atol=1e-12)


def test_half_size_of_known_array_with_symmetric_border():
    """x0.5 with antialiasing: 8 taps at distances +-0.5, +-1.5, +-2.5, +-3.5 weighted 0.5 * k(d / 2)."""
    taps = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5])
    weights = np.array([0.5 * keys_cubic(d / 2, -0.5) for d in taps])
    assert weights.sum() == pytest.approx(1.0)
    signal = np.array([3.0, 8.0, 1.0, 6.0, 4.0, 9.0])
    # MATLAB's symmetric extension repeats the edge sample: ..., s1, s0 | s0, s1, ... | s5, s4, ...
    extended = np.concatenate([signal[3::-1], signal, signal[:1:-1]])  # 4 samples each side
    offset = 4
    expected = []
    for j in range(3):
        centre = 2 * j + 0.5  # 0-based input position of output j
        positions = centre - taps[::-1]  # input positions, ascending
        expected.append(sum(w * extended[int(p) + offset] for w, p in zip(weights, positions)))
    out = imresize(signal[None, :], output_shape=(1, 3))
    np.testing.assert_allclose(out[0], expected, atol=1e-12)


def test_torch_matches_numpy():
    rng = np.random.default_rng(3)
    img = rng.uniform(0, 1, size=(3, 20, 28))
    got = imresize(torch.from_numpy(img), scale=0.25)
    want = imresize(img.transpose(1, 2, 0), scale=0.25).transpose(2, 0, 1)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-12)


def test_imresize_argument_errors():
    with pytest.raises(UsageError):
        imresize(np.zeros((4, 4)))
    with pytest.raises(UsageError):
        imresize(np.zeros((4, 4)), scale=0.5, output_shape=(2, 2))


# --------------------------------------------------------------------------------------- benchmark protocol


def test_bicubic_x4_on_set5_matches_published_protocol_figures(shared_data):
    psnrs, ssims = [], []
    for path in sorted((shared_data / "test" / "Set5").glob("*.png")):
        hr = np.asarray(Image.open(path).convert("RGB"))
        h, w = hr.shape[:2]
        hr = hr[: h - h % 4, : w - w % 4]
        lr = to_uint8(imresize(hr, scale=0.25))
        sr = to_uint8(imresize(lr, scale=4))
        psnrs.append(psnr(sr, hr, crop_border=4))
        ssims.append(ssim(sr, hr, crop_border=4))
    assert len(psnrs) == 5
    assert np.mean(psnrs) == pytest.approx(28.431, abs=0.01)
    assert np.mean(ssims) == pytest.approx(0.8113, abs=0.001)


# ---------------------------------------------------------------------------------------------------- NIQE


def test_niqe_matches_matlab_on_baboon(shared_data):
    # MATLAB R2021a niqe_release on Set14 baboon.png: 5.72957338 (the figure BasicSR publishes for this file).
    img = np.asarray(Image.open(shared_data / "test" / "Set14" / "baboon.png").convert("RGB"))
    assert niqe(img) == pytest.approx(5.72957338, abs=2e-4)


def test_niqe_clean_photo_scores_lower_than_degraded(shared_data):
    path = sorted((shared_data / "train" / "photos").glob("*.png"))[0]
    photo = Image.open(path).convert("RGB")
    photo = photo.crop((0, 0, 384, 384))
    clean = np.asarray(photo)
    blurred = np.asarray(photo.filter(ImageFilter.GaussianBlur(2.0))).astype(np.float64)
    noisy = to_uint8(blurred + np.random.default_rng(4).normal(0, 12, blurred.shape))
    score_clean, score_bad = niqe(clean), niqe(noisy)
    assert math.isfinite(score_clean) and math.isfinite(score_bad)
    assert score_clean < score_bad


def test_niqe_rejects_too_small_image():
    with pytest.raises(UsageError, match="96"):
        niqe(np.zeros((50, 200, 3), np.uint8))


def test_niqe_params_ship_inside_the_package():
    import importlib.resources

    assert importlib.resources.files("realesr.metrics").joinpath("niqe_pris_params.npz").is_file()
