"""Noise statistics, JPEG against Pillow (libjpeg), unsharp masking against a hand computation."""

import io
import math

import numpy as np
import pytest
import torch
from PIL import Image

from realesr.degrade import (
    DegradationConfig,
    add_noise,
    gaussian_noise,
    jpeg_compress,
    poisson_noise,
    quantization_tables,
    usm_sharpen,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def _photo(shared_data, name, top, left, h, w):
    a = np.asarray(Image.open(shared_data / "train" / "photos" / name).convert("RGB"))
    return a[top : top + h, left : left + w].copy()


def _to_tensor(a):
    return torch.from_numpy(a).permute(2, 0, 1).unsqueeze(0).float() / 255.0


def _psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return 10 * math.log10(255.0**2 / mse)


# ------------------------------------------------------------------------------------------------ noise
def test_gaussian_noise_mean_std_and_gray():
    g = torch.Generator().manual_seed(0)
    x = torch.full((2, 3, 128, 128), 0.5)
    noise = gaussian_noise(x, torch.tensor([10.0, 25.0]), torch.tensor([False, True]), g)
    n = noise[0].numel()
    for i, sigma in enumerate((10.0, 25.0)):
        assert abs(noise[i].mean().item()) < 4 * sigma / 255 / math.sqrt(n / (3 if i else 1))
        assert abs(noise[i].std().item() / (sigma / 255) - 1) < 0.03
    assert not torch.equal(noise[0, 0], noise[0, 1])  # colour noise: independent channels
    assert torch.equal(noise[1, 0], noise[1, 1]) and torch.equal(noise[1, 1], noise[1, 2])  # grey noise


def test_poisson_noise_variance_scales_with_signal_and_scale_squared(shared_data):
    a = _photo(shared_data, "004.png", 50, 50, 160, 160)
    x = _to_tensor(a).repeat(2, 1, 1, 1)
    levels = 2 ** math.ceil(math.log2(len(np.unique(a))))  # the official's 'photon count' per unit intensity
    g = torch.Generator().manual_seed(1)
    noise = poisson_noise(x, torch.tensor([1.0, 2.0]), torch.tensor([False, False]), g)
    signal = x[0].double().sum().item()
    for i, scale in enumerate((1.0, 2.0)):
        # E[noise^2 | x] = scale^2 x / levels  =>  sum(noise^2) / sum(x) ~ scale^2 / levels
        ratio = noise[i].double().pow(2).sum().item() / signal
        assert abs(ratio / (scale**2 / levels) - 1) < 0.05, (ratio, scale**2 / levels)
        assert abs(noise[i].double().mean().item()) < 4 * math.sqrt(ratio * signal) / noise[i].numel()
    # signal dependence: brighter pixels are noisier
    q = (x[0] * 255).round()
    dark, bright = q < 60, q > 180
    assert noise[0][bright].var() > 2 * noise[0][dark].var()


def test_poisson_gray_noise_is_shared_by_channels():
    x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    noise = poisson_noise(x, torch.tensor([1.0]), torch.tensor([True]), torch.Generator().manual_seed(3))
    assert torch.equal(noise[0, 0], noise[0, 2])


def test_poisson_gray_noise_counts_the_levels_of_the_gray_image():
    # The official (BasicSR generate_poisson_noise_pt) draws grey Poisson noise on rgb_to_grayscale(img) rounded to
    # 8 bits, with vals = 2^ceil(log2(#distinct grey levels)) counted on the grey image, not on the colour one.
    # Here grey has 30 levels (vals 32) while the colour image has about 150 (vals 256): the variance tells which.
    gen = np.random.default_rng(5)
    levels = 40 + 6 * np.arange(30)  # 6 apart, so the +-2 blue offsets never collide
    lum = gen.choice(levels, size=(96, 96))
    blue = lum + gen.integers(-2, 3, size=lum.shape)  # grey = L + 0.114 d rounds back to L
    a = np.stack([lum, lum, blue], axis=-1).astype(np.uint8)
    gray = np.round(0.2989 * lum + 0.587 * lum + 0.114 * blue)
    assert len(np.unique(gray)) == 30 and len(np.unique(a)) > 128
    x = _to_tensor(a)
    noise = poisson_noise(x, torch.tensor([1.5]), torch.tensor([True]), torch.Generator().manual_seed(6))
    ratio = noise[0, 0].double().pow(2).sum().item() / (gray / 255.0).sum()
    assert abs(ratio / (1.5**2 / 32) - 1) < 0.06, (ratio, 1.5**2 / 32)


def test_add_noise_clips_and_is_reproducible():
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    args = (torch.tensor([1, 0, 1, 0]), torch.tensor([30.0] * 4), torch.tensor([3.0] * 4), torch.tensor([0, 1, 1, 0]))
    a = add_noise(x, *args, torch.Generator().manual_seed(9))
    b = add_noise(x, *args, torch.Generator().manual_seed(9))
    assert torch.equal(a, b)
    assert a.min() >= 0 and a.max() <= 1
    assert (a - x).abs().mean() > 0.01


# ------------------------------------------------------------------------------------------------ JPEG
@pytest.mark.parametrize("quality", [30, 60, 90])
def test_quantization_tables_equal_libjpeg(quality):
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (90, 40, 200)).save(buf, "JPEG", quality=quality)
    tables = Image.open(buf).quantization  # natural (row-major) order
    y, c = quantization_tables(torch.tensor([float(quality)]))
    assert y[0].flatten().int().tolist() == list(tables[0])
    assert c[0].flatten().int().tolist() == list(tables[1])


@pytest.mark.parametrize("chroma", ["nearest", "fancy"])
def test_jpeg_matches_pillow_on_real_photos(shared_data, chroma):
    # odd sizes exercise the edge replication to the 16-pixel MCU grid; "nearest" (the official DiffJPEG's
    # upsampling, the chain's default) must meet the acceptance bound as well as libjpeg's "fancy"
    crops = [
        _photo(shared_data, "001.png", 100, 80, 117, 150),
        _photo(shared_data, "012.png", 40, 200, 117, 150),
        _photo(shared_data, "027.png", 300, 10, 117, 150),
    ]
    x = torch.cat([_to_tensor(c) for c in crops])
    for quality in (30, 60, 90):
        out = jpeg_compress(x, torch.full((3,), float(quality)), chroma)
        ours = (out.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
        for i, crop in enumerate(crops):
            buf = io.BytesIO()
            Image.fromarray(crop).save(buf, "JPEG", quality=quality)
            ref = np.asarray(Image.open(buf).convert("RGB"))
            p_ref = _psnr(ours[i], ref)
            assert p_ref >= 30.0, (quality, i, p_ref)
            # and the result is really compressed: as far from the input as Pillow's own output, within 1.5 dB
            assert abs(_psnr(ours[i], crop) - _psnr(ref, crop)) < 1.5


def _jfif_chroma(rgb):
    """Cb, Cr (JFIF, ITU-T T.871) of [B,3,H,W] in 8-bit levels, without the +128 offset."""
    r, g, b = rgb[:, 0], rgb[:, 1], rgb[:, 2]
    return torch.stack([-0.168736 * r - 0.331264 * g + 0.5 * b, 0.5 * r - 0.418688 * g - 0.081312 * b], dim=1)


def test_chain_default_chroma_upsampling_repeats_samples_as_the_official(shared_data):
    # The official DiffJPEG (BasicSR diffjpeg.py, chroma_upsampling.repeat) copies each 4:2:0 chroma sample to its
    # 2x2 pixels, so the decoded Cb/Cr is constant on every aligned 2x2 block. The chain's default must do the same
    # for its LR statistics to match the official; libjpeg's triangular filter does not.
    assert DegradationConfig().jpeg_chroma_upsampling == "nearest"
    crop = _photo(shared_data, "021.png", 120, 160, 48, 64)
    x = 0.2 + 0.6 * _to_tensor(crop)  # mid-tones: the decoder's [0, 255] clamp never bites
    spread = {}
    for mode in ("nearest", "fancy"):
        out = jpeg_compress(x, torch.tensor([40.0]), mode) * 255.0
        assert 0.0 < out.min() and out.max() < 255.0
        chroma = _jfif_chroma(out.double())
        blocks = chroma.reshape(1, 2, 24, 2, 32, 2)
        spread[mode] = (blocks.amax(dim=(3, 5)) - blocks.amin(dim=(3, 5))).max().item()
    assert spread["nearest"] < 0.05, spread
    assert spread["fancy"] > 1.0, spread


def test_jpeg_per_sample_quality_and_gradient(shared_data):
    x = _to_tensor(_photo(shared_data, "015.png", 200, 200, 32, 40)).repeat(2, 1, 1, 1)
    x.requires_grad_(True)
    out = jpeg_compress(x, torch.tensor([20.0, 95.0]))
    err = (out - x).abs().mean(dim=(1, 2, 3))
    assert err[0] > 2 * err[1]  # lower quality, larger error
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    # a batch equals its samples coded alone
    single = jpeg_compress(x[1:].detach(), torch.tensor([95.0]))
    torch.testing.assert_close(out[1:].detach(), single)


# ------------------------------------------------------------------------------------------------ USM
def _hand_usm_row(row, weight=0.5, threshold=10.0, size=51, sigma=8.0):
    r = size // 2
    taps = np.exp(-((np.arange(size) - r) ** 2) / (2 * sigma**2))
    taps /= taps.sum()

    def blur(v):
        padded = np.concatenate([v[1 : r + 1][::-1], v, v[-r - 1 : -1][::-1]])  # reflect, edge not repeated
        return np.array([np.dot(padded[i : i + size], taps) for i in range(len(v))])

    residual = row - blur(row)
    mask = (np.abs(residual) * 255 > threshold).astype(np.float64)
    soft = blur(mask)
    sharp = np.clip(row + weight * residual, 0, 1)
    return soft * sharp + (1 - soft) * row


def test_usm_on_step_edge_matches_hand_computation():
    w = 120
    row = np.where(np.arange(w) < 57, 0.2, 0.8)
    img = torch.from_numpy(np.tile(row, (3, 30, 1))).unsqueeze(0).float()  # rows identical: 1-D problem
    out = usm_sharpen(img)
    expected = _hand_usm_row(row)
    np.testing.assert_allclose(out[0, 1, 15].numpy(), expected, atol=2e-6)
    np.testing.assert_allclose(out[0, 0].numpy(), np.tile(expected, (30, 1)), atol=2e-6)
    # overshoot on both sides of the edge, untouched far away (below threshold)
    assert out[0, 0, 0, 55] < 0.2 - 0.02 and out[0, 0, 0, 58] > 0.8 + 0.02
    assert abs(out[0, 0, 0, 0].item() - 0.2) < 0.01


def test_usm_leaves_flat_image_alone_and_stays_in_range(shared_data):
    flat = torch.full((1, 3, 40, 40), 0.4)
    torch.testing.assert_close(usm_sharpen(flat), flat)
    x = _to_tensor(_photo(shared_data, "003.png", 300, 300, 96, 96))
    y = usm_sharpen(x)
    assert y.min() >= 0 and y.max() <= 1 and (y - x).abs().max() > 0.02
