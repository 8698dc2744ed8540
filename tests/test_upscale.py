"""Upscaler: sizes, modes and bit depths of real files, tiling, outscale, precision fallback, OOM retry.

Tiny random networks wherever the real weights are not the point; the real RealESRGAN_x4plus only for the
tiled-versus-whole acceptance on a 96x96 crop of a real photo.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from realesr.archs import RRDBNet, SRVGGNetCompact
from realesr.errors import UsageError
from realesr.imagefiles import read_image
from realesr.infer import Upscaler
from realesr.infer import upscaler as upscaler_module
from realesr.infer.tiling import axis_weights, split_axis, tiled_forward

INPUTS = "real_lr/RealESRGAN_inputs"


class Nearest(nn.Module):
    """Exact nearest-neighbour upsampling, as a 'network' whose output is known in closed form."""

    def __init__(self, scale: int = 2, size_multiple: int = 1) -> None:
        super().__init__()
        self.scale, self.size_multiple = scale, size_multiple
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, x):
        return F.interpolate(x, scale_factor=self.scale, mode="nearest") + self.dummy


class LocalNet(nn.Module):
    """Two 3x3 convs then x2 nearest: every output depends on input pixels at most 2 away."""

    scale, size_multiple = 2, 1

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 3, 3, padding=1)

    def forward(self, x):
        return F.interpolate(self.b(torch.relu(self.a(x))), scale_factor=2, mode="nearest")


@pytest.fixture(scope="module")
def tiny_vgg():
    torch.manual_seed(0)
    return SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4)


@pytest.mark.slow
def test_real_files_keep_modes_depths_and_get_scaled(shared_data, tiny_vgg):
    up = Upscaler(tiny_vgg, device="cpu", tile=0)
    for path in sorted((shared_data / INPUTS).iterdir()):
        image = read_image(path)
        out = up.upscale_image(image)
        assert out.array.dtype == image.array.dtype, path.name
        assert out.array.shape[:2] == (image.height * 4, image.width * 4), path.name
        assert out.mode == image.mode, path.name
        assert out.icc_profile == image.icc_profile and out.exif == image.exif


def test_uint16_keeps_full_precision():
    rng = np.random.default_rng(0)
    array = rng.integers(0, 65536, (9, 13, 3), dtype=np.uint16)
    out = Upscaler(Nearest(2), device="cpu")(array)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, array.repeat(2, 0).repeat(2, 1))  # no 8-bit rounding anywhere


def test_grey_and_alpha_paths_are_exact_with_a_known_network():
    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (7, 5), dtype=np.uint8)
    up = Upscaler(Nearest(3), device="cpu")
    np.testing.assert_array_equal(up(grey), grey.repeat(3, 0).repeat(3, 1))
    rgba = rng.integers(0, 256, (7, 5, 4), dtype=np.uint8)
    expected = rgba.repeat(3, 0).repeat(3, 1)
    np.testing.assert_array_equal(up(rgba), expected)
    out = Upscaler(Nearest(3), device="cpu", alpha="bicubic")(rgba)
    np.testing.assert_array_equal(out[..., :3], expected[..., :3])
    assert np.abs(out[..., 3].astype(int) - expected[..., 3]).mean() < 40  # bicubic, not nearest
    la = rng.integers(0, 65536, (4, 6, 2), dtype=np.uint16)
    np.testing.assert_array_equal(up(la), la.repeat(3, 0).repeat(3, 1))
    opaque = rgba.copy()
    opaque[..., 3] = 255
    assert (up(opaque)[..., 3] == 255).all()


def test_python_api_returns_the_same_kind(tiny_vgg):
    up = Upscaler(tiny_vgg, device="cpu")
    for mode in ("RGB", "RGBA", "L", "LA"):
        out = up(Image.new(mode, (10, 6)))
        assert isinstance(out, Image.Image) and out.mode == mode and out.size == (40, 24)
    grey16 = Image.fromarray(np.full((6, 10), 40000, np.uint16))
    out = up(grey16)
    assert out.mode.startswith("I;16") and out.size == (40, 24)
    array = np.zeros((6, 10, 3), np.uint8)
    assert isinstance(up(array), np.ndarray) and up(array).shape == (24, 40, 3)
    assert up(np.zeros((6, 10, 1), np.uint8)).shape == (24, 40, 1)
    y = up.upscale_tensor(torch.rand(2, 3, 6, 10))
    assert y.shape == (2, 3, 24, 40) and y.dtype == torch.float32
    with pytest.raises(UsageError):
        up(torch.zeros(1, 3, 4, 4))
    with pytest.raises(UsageError):
        up(np.zeros((4, 4, 5), np.uint8))


@pytest.mark.parametrize("outscale", [0.5, 1.0, 1.7, 2.0, 3.5, 4.0, 6.25])
def test_outscale_gives_the_exact_size(tiny_vgg, outscale):
    up = Upscaler(tiny_vgg, device="cpu", outscale=outscale)
    for shape in ((17, 23, 3), (17, 23), (17, 23, 4)):
        out = up(np.zeros(shape, np.uint8))
        assert out.shape[:2] == (round(17 * outscale), round(23 * outscale))
        assert out.shape[2:] == shape[2:]


def test_outscale_resize_is_smooth_on_a_ramp():
    ramp = np.tile(np.linspace(0, 65535, 32).astype(np.uint16), (8, 1))
    out = Upscaler(Nearest(2), device="cpu", outscale=1.5)(ramp).astype(float)
    assert out.shape == (12, 48)
    # An antialiased bicubic of a nearest-doubled linear ramp is monotone, close to the ramp at the new size.
    assert (np.diff(out[4]) >= -1).all()
    assert np.abs(out[4] - np.linspace(0, 65535, 48)).max() < 2500


def test_size_multiple_is_padded_and_cropped():
    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=2)  # pixel-unshuffle: sides must be even
    out = Upscaler(net, device="cpu")(np.zeros((7, 9, 3), np.uint8))
    assert out.shape == (14, 18, 3)
    ramp = np.arange(35 * 33, dtype=np.uint16).reshape(35, 33)
    out = Upscaler(Nearest(2, size_multiple=4), device="cpu", tile=16, tile_pad=4)(ramp)
    np.testing.assert_array_equal(out, np.arange(35 * 33, dtype=np.uint16).reshape(35, 33).repeat(2, 0).repeat(2, 1))


def test_blend_weights_sum_to_one_and_tiles_cover_the_axis():
    for length, tile, pad, multiple in ((96, 40, 48, 1), (100, 16, 5, 2), (37, 37, 3, 1), (64, 20, 8, 4)):
        spans = split_axis(length, tile, pad, multiple)
        assert spans[0].start == 0 and spans[-1].end == length
        assert all(a.end == b.start for a, b in zip(spans, spans[1:]))
        assert all((s.end - s.start) <= max(tile, multiple) and s.start % multiple == 0 for s in spans)
        for scale in (1, 4):
            total = torch.zeros(length * scale, dtype=torch.float64)
            for i, span in enumerate(spans):
                total[span.read_start * scale : span.read_end * scale] += axis_weights(spans, i, scale, min(pad, 4))
            torch.testing.assert_close(total, torch.ones_like(total))


def test_tiles_equal_whole_image_for_a_local_network():
    """With a pad beyond the receptive field, blended tiles reproduce the whole-image output."""
    net = LocalNet().eval()
    x = torch.rand(1, 3, 45, 61)
    with torch.no_grad():
        whole = net(x)
        tiled = tiled_forward(net, x, scale=2, tile=16, pad=4)  # blend 2: used >= 2 px from a read edge
        cut = tiled_forward(net, x, scale=2, tile=16, pad=0)
    torch.testing.assert_close(tiled, whole, atol=1e-5, rtol=0)
    assert (cut - whole).abs().max() > 1e-3  # without a pad the tiles do differ: the check above can fail


def test_out_of_memory_halves_the_tile():
    class Picky(Nearest):
        def forward(self, x):
            if x.shape[-1] * x.shape[-2] > 40 * 40:
                raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
            return super().forward(x)

    array = np.random.default_rng(0).integers(0, 256, (90, 100, 3), dtype=np.uint8)
    up = Upscaler(Picky(2), device="cpu", tile=0, tile_pad=4)
    out = up(array)
    np.testing.assert_array_equal(out, array.repeat(2, 0).repeat(2, 1))
    assert 0 < up.last_tile_used <= 32


def test_non_finite_half_output_falls_back_to_fp32():
    class OverflowsInHalf(Nearest):
        def forward(self, x):
            y = super().forward(x.float()).to(x.dtype)
            return y * torch.inf if x.dtype != torch.float32 else y

    up = Upscaler(OverflowsInHalf(2), device="cpu", precision="bf16")
    array = np.full((8, 8, 3), 100, np.uint8)
    with pytest.warns(RuntimeWarning, match="not finite"):
        out = up(array)
    assert up.fell_back_to_fp32
    np.testing.assert_array_equal(out, np.full((16, 16, 3), 100, np.uint8))


def test_cpu_tiles_by_itself_when_memory_is_short(monkeypatch, tiny_vgg):
    up = Upscaler(tiny_vgg, device="cpu")
    monkeypatch.setattr(upscaler_module, "available_memory_bytes", lambda: 24 << 30)
    up(np.zeros((32, 32, 3), np.uint8))
    assert up.last_tile_used == 0
    # The 24 GB machine and a 4000x3000 photo: the whole-image pass would not fit, so it tiles.
    assert 0 < up._auto_tile(3000, 4000) < 4000
    x4plus_like = Nearest(4)  # a module without a record is estimated as a RRDBNet of its scale
    full = Upscaler(x4plus_like, device="cpu")
    tile = full._auto_tile(3000, 4000)
    assert 0 < tile and (tile + 2 * full.tile_pad) ** 2 * full._bytes_per_input_pixel() < 12 << 30
    monkeypatch.setattr(upscaler_module, "available_memory_bytes", lambda: 6 << 20)
    up(np.zeros((96, 96, 3), np.uint8))
    assert 0 < up.last_tile_used < 96


def test_bad_arguments_are_usage_errors(tiny_vgg):
    for kwargs in (
        {"precision": "fp8"},
        {"tile": -1},
        {"tile": 8},
        {"outscale": 0},
        {"alpha": "none"},
        {"device": "tpu"},
        {"tile_pad": -2},
    ):
        with pytest.raises(UsageError):
            Upscaler(tiny_vgg, **kwargs)


@pytest.fixture(scope="module")
def x4plus():
    from realesr.weights import load_model

    return load_model("RealESRGAN_x4plus", allow_download=False, progress=False)


@pytest.mark.slow
def test_tiled_matches_whole_image_with_the_real_x4plus(shared_data, x4plus):
    """Acceptance: default pad, --tile 40, 96x96 crop of a real photo: mean < 0.25 levels, < 1 % over 2 levels."""
    photo = read_image(shared_data / INPUTS / "ADE_val_00000114.jpg").array[80:176, 80:176]
    whole = Upscaler(x4plus, device="cpu", tile=0)(photo).astype(np.int16)
    tiled = Upscaler(x4plus, device="cpu", tile=40)(photo).astype(np.int16)
    diff = np.abs(tiled - whole)
    assert diff.mean() < 0.25, diff.mean()
    assert (diff > 2).mean() < 0.01, (diff > 2).mean()
