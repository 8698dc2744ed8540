"""precision="auto": native bf16 detection, bf16 against fp32 for the zoo's models on real images, the quality
check that sends a model back to fp32, and fp32 staying what it was.

The suite runs with REALESR_NATIVE_BF16=0 (conftest); tests here set it to 1, to 0, or remove it to use the
real detection. bf16 against fp32 is measured with plain torch (the network cast with ``.to(torch.bfloat16)``),
independently of the Upscaler's own check.
"""

from __future__ import annotations

import copy
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn import functional as F

from realesr import devices
from realesr.archs import RRDBNet
from realesr.imagefiles import read_image
from realesr.infer import Upscaler
from realesr.infer import precision as precision_module

pytestmark = pytest.mark.usefixtures("single_torch_thread")

INPUTS = "real_lr/RealESRGAN_inputs"


def _cpuinfo_flags() -> set[str]:
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    for line in text.splitlines():
        if line.lower().startswith(("flags", "features")):
            return set(line.split(":", 1)[1].split())
    return set()


def _fresh_detection(monkeypatch, value: str | None) -> None:
    devices._detect.cache_clear()
    if value is None:
        monkeypatch.delenv(devices.NATIVE_BF16_ENV, raising=False)
    else:
        monkeypatch.setenv(devices.NATIVE_BF16_ENV, value)
    precision_module._checked.clear()


def test_native_bf16_is_read_from_the_cpu_flags(monkeypatch):
    _fresh_detection(monkeypatch, None)
    flags = _cpuinfo_flags()
    info = devices.cpu_info()
    assert info.native_bf16 == bool(flags & {"amx_bf16", "avx512_bf16", "bf16"}), info
    assert info.torch_isa == torch.backends.cpu.get_cpu_capability()
    # The OS's answer and torch's must both agree: flags without oneDNN support are not native.
    monkeypatch.setattr(devices, "_proc_cpuinfo", lambda: ("X", frozenset({"avx512f", "amx_bf16"})))
    monkeypatch.setattr(devices, "_torch_reports", lambda: ("AVX512", False))
    devices._detect.cache_clear()
    assert not devices.cpu_info().native_bf16
    monkeypatch.setattr(devices, "_torch_reports", lambda: ("AVX512", True))
    devices._detect.cache_clear()
    assert devices.cpu_info().native_bf16 and "amx_bf16" in devices.cpu_info().bf16_reason
    monkeypatch.setattr(devices, "_proc_cpuinfo", lambda: ("Y", frozenset({"avx2", "fma", "avx512f"})))
    devices._detect.cache_clear()
    assert not devices.cpu_info().native_bf16
    devices._detect.cache_clear()


def test_auto_follows_the_detection_and_the_models_precisions(monkeypatch):
    cpu = torch.device("cpu")
    _fresh_detection(monkeypatch, "1")
    assert precision_module.auto_precision(cpu) == "bf16"
    assert precision_module.auto_precision(cpu, ("fp32", "fp16")) == "fp32"  # a model without bf16 support
    _fresh_detection(monkeypatch, "0")
    assert precision_module.auto_precision(cpu) == "fp32"


class BreaksInBf16(nn.Module):
    """x2 nearest, shifted by +256, carried through a middle layer, and back: exact in fp32, but the middle
    layer's bf16 input near 256 has steps of 2 (0.008 of the range)."""

    scale = 2

    def __init__(self) -> None:
        super().__init__()
        self.up, self.middle, self.down = nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1), nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            for conv, bias in ((self.up, 256.0), (self.middle, 0.0), (self.down, -256.0)):
                conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
                conv.bias.fill_(bias)

    def forward(self, x):
        return F.interpolate(self.down(self.middle(self.up(x))), scale_factor=2, mode="nearest")


def _photo(shared_data, side=40) -> np.ndarray:
    return read_image(shared_data / INPUTS / "0014.jpg").array[40 : 40 + side, 40 : 40 + side].copy()


def test_a_model_that_loses_the_picture_in_bf16_runs_fp32(monkeypatch, shared_data):
    _fresh_detection(monkeypatch, "1")
    photo = _photo(shared_data)
    up = Upscaler(BreaksInBf16(), device="cpu", tile=0)
    assert up.precision == "bf16"  # the candidate, before the check
    out = up(photo)
    assert up.precision == "fp32" and not up.precision_check.passed
    assert up.precision_check.mean_levels > 0.5 and "fp32" in up.precision_note
    np.testing.assert_array_equal(out, photo.repeat(2, 0).repeat(2, 1))  # the exact fp32 result
    # And the forced bf16 really is that far off (the check measured something real):
    forced = Upscaler(BreaksInBf16(), device="cpu", precision="bf16", tile=0)(photo).astype(int)
    assert np.abs(forced - photo.repeat(2, 0).repeat(2, 1)).mean() > 0.5


def test_fp32_is_exactly_todays_path_and_auto_without_native_bf16_is_fp32(monkeypatch, shared_data):
    torch.manual_seed(1)
    net = RRDBNet(num_block=1, num_feat=16, num_grow_ch=8, scale=4).eval()
    photo = _photo(shared_data, 24)
    x = torch.from_numpy(photo).permute(2, 0, 1)[None].float() / 255
    with torch.no_grad():
        direct = (copy.deepcopy(net)(x)[0].clamp(0, 1).permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    for native in ("1", "0"):
        _fresh_detection(monkeypatch, native)
        explicit = Upscaler(copy.deepcopy(net), device="cpu", precision="fp32", tile=0)
        assert explicit.precision == "fp32" and explicit._dtype == torch.float32
        assert np.abs(explicit(photo).astype(int) - direct).max() <= 1  # summation order only
    auto = Upscaler(copy.deepcopy(net), device="cpu", tile=0)  # native bf16 forced off
    assert auto.precision == "fp32"
    np.testing.assert_array_equal(auto(photo), explicit(photo))


def test_bf16_runs_without_native_bf16_and_the_alpha_16bit_tiled_path_inherits_auto(monkeypatch, shared_data):
    torch.manual_seed(2)
    net = RRDBNet(num_block=1, num_feat=16, num_grow_ch=8, scale=2).eval()
    rgba16 = read_image(shared_data / INPUTS / "tree_alpha_16bit.png").array[:48, :48]
    assert rgba16.dtype == np.uint16 and rgba16.shape[2] == 4
    _fresh_detection(monkeypatch, "0")
    slow_bf16 = Upscaler(copy.deepcopy(net), device="cpu", precision="bf16", tile=24)(rgba16)  # emulated: works
    fp32 = Upscaler(copy.deepcopy(net), device="cpu", precision="fp32", tile=24)(rgba16)
    _fresh_detection(monkeypatch, "1")
    auto = Upscaler(copy.deepcopy(net), device="cpu", tile=24)
    out = auto(rgba16)
    assert auto.precision == "bf16" and auto.precision_check.passed
    assert out.dtype == np.uint16 and out.shape == (96, 96, 4)
    np.testing.assert_array_equal(out, slow_bf16)  # the same bf16 network, whoever detected what
    levels = np.abs(out.astype(float) - fp32.astype(float)) / 257
    assert levels.mean() < 0.5 and 0 < levels.max()


# ------------------------------------------------------------------------------------------ the zoo


def _zoo(name: str):
    from realesr.weights import find_model, load_model

    return load_model(name, allow_download=False, progress=False).net if find_model(name).path else None


def _rrdb_proxy(scale: int):
    """RRDBNet at ``scale`` carrying x4plus's real trained weights (what is on disk offline): x2 takes its first
    conv from x4plus's (each of the 4 unshuffled copies of a channel gets a quarter), x8 repeats conv_up2."""
    x4 = _zoo("RealESRGAN_x4plus")
    net = RRDBNet(scale=scale)
    sd = x4.state_dict()
    if scale == 2:
        sd["conv_first.weight"] = sd["conv_first.weight"].repeat_interleave(4, dim=1) / 4
    if scale == 8:
        sd["conv_up3.weight"], sd["conv_up3.bias"] = sd["conv_up2.weight"], sd["conv_up2.bias"]
    net.load_state_dict(sd)
    return net.eval()


def _general(denoise: float | None):
    from realesr.weights import find_model, load_model

    if not find_model("realesr-general-x4v3").path or (
        denoise is not None and not find_model("realesr-general-wdn-x4v3").path
    ):
        return None
    return load_model("realesr-general-x4v3", denoise_strength=denoise, allow_download=False).net


NETWORKS = {
    "RealESRGAN_x4plus": lambda: _zoo("RealESRGAN_x4plus"),
    "RealESRGAN_x4plus_anime_6B": lambda: _zoo("RealESRGAN_x4plus_anime_6B"),
    "realesr-animevideov3": lambda: _zoo("realesr-animevideov3"),
    "RealESRGAN_x2plus": lambda: _zoo("RealESRGAN_x2plus") or _rrdb_proxy(2),
    "RRDBNet x8 head": lambda: _rrdb_proxy(8),
    "realesr-general-x4v3": lambda: _general(None),
    "realesr-general-x4v3 -dn 0.5": lambda: _general(0.5),
}
SLOW = {"RealESRGAN_x4plus", "RealESRGAN_x2plus", "RRDBNet x8 head"}


def _levels(y: torch.Tensor) -> torch.Tensor:
    return y.float().clamp(0, 1).mul(255).round()


# The crops of the recorded table (bench/cpu.py CHECK_CROPS; the table lists them, and a test below checks that).
CHECK_SIDE = 32
CHECK_CROPS = (
    (f"{INPUTS}/0014.jpg", 40, 40),
    (f"{INPUTS}/OST_009.png", 100, 150),
    (f"{INPUTS}/ADE_val_00000114.jpg", 80, 80),
    ("real_lr/RealSRSet/comic1.png", 60, 60),
)


def _bf16_against_fp32(net: nn.Module, shared_data: Path, side: int) -> tuple[float, float]:
    """Mean |difference| and PSNR of 8-bit outputs: the plain fp32 network (contiguous, as the official tool
    runs it) against bf16 as the Upscaler runs it, over the table's crops."""
    bf16 = Upscaler(copy.deepcopy(net), device="cpu", precision="bf16", tile=0)
    diffs = []
    for file, top, left in CHECK_CROPS:
        rgb = read_image(shared_data / file).array[..., :3]
        x = torch.from_numpy(rgb[top : top + side, left : left + side].copy()).permute(2, 0, 1)[None] / 255.0
        with torch.inference_mode():
            diffs.append((_levels(net(x)) - _levels(bf16.upscale_tensor(x))).flatten())
    diff = torch.cat(diffs)
    return float(diff.abs().mean()), 10 * math.log10(255**2 / max(float((diff * diff).mean()), 1e-12))


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in NETWORKS], ids=list(NETWORKS)
)
def test_zoo_model_in_bf16_keeps_the_picture_or_runs_fp32(monkeypatch, shared_data, name):
    net = NETWORKS[name]()
    if net is None:
        pytest.skip(f"{name}: weights not on disk and tests never download (the runtime check covers it)")
    net = net.eval()
    side = 24 if "x8" in name else CHECK_SIDE
    mean, psnr = _bf16_against_fp32(net, shared_data, side)
    keeps = mean <= 0.5 and psnr >= 45
    _fresh_detection(monkeypatch, "1")
    if name in precision_module._recorded():  # a zoo model: auto takes the recorded verdict, which must hold
        from realesr.weights import load_model

        up = Upscaler(load_model(name, allow_download=False), device="cpu", tile=0)
        recorded = precision_module._recorded()[name]
        assert recorded["side"] == side and abs(recorded["mean_levels"] - mean) < 0.02, (recorded, mean)
        assert up.precision == ("bf16" if keeps else "fp32"), (up.precision_note, mean, psnr)
    else:  # anything else: auto checks a crop of its first input, whose figures must be what they are
        up = Upscaler(net, device="cpu", tile=0)
        file, top, left = CHECK_CROPS[0]
        image = read_image(shared_data / file).array[top : top + side + 16, left : left + side + 16, :3]
        up(image)
        y, x, crop = up.precision_check.crop
        rgb = np.ascontiguousarray(image[y : y + crop, x : x + crop])
        bf16 = Upscaler(copy.deepcopy(net), device="cpu", precision="bf16", tile=0)
        fp32 = Upscaler(copy.deepcopy(net), device="cpu", precision="fp32", tile=0)
        d = bf16(rgb).astype(float) - fp32(rgb).astype(float)
        assert abs(np.abs(d).mean() - up.precision_check.mean_levels) < 0.02, (up.precision_note, np.abs(d).mean())
        assert up.precision == ("bf16" if up.precision_check.passed else "fp32")
    print(f"{name}: bf16 vs fp32 over the crops: mean {mean:.3f} levels, PSNR {psnr:.1f} dB; {up.precision_note}")
    if not keeps:
        warnings.warn(f"{name} misses in bf16 over the crops (mean {mean:.3f}, {psnr:.1f} dB)", stacklevel=1)


def test_the_recorded_table_names_its_crops_and_only_zoo_models():
    from realesr.weights import ZOO

    table = json.loads((Path(precision_module.__file__).with_name(precision_module.CHECKS_FILE)).read_text())
    assert table["crops"] == [f"{f} ({t},{left}) {CHECK_SIDE}px" for f, t, left in CHECK_CROPS]
    assert set(table["models"]) <= set(ZOO) and "RealESRGAN_x4plus" in table["models"]
    # A file that shares a zoo name is not the zoo model: it gets checked, not the recorded verdict.
    assert precision_module.measured_check("RealESRGAN_x4plus", "file: /x/RealESRGAN_x4plus.pth") is None
