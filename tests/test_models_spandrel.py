"""Models of other architectures through spandrel (the `models` extra): detection, parity with spandrel's own
forward, tiles, precisions, the CLI, video and the page.

Ten architectures are built here randomly initialised and small (fixed seeds, widths of 12-16, one or two blocks)
and saved as .pth and .safetensors; nothing is downloaded. The reference is spandrel's own descriptor call on the
same tensors (its reflect padding to the size requirements, clamping, cropping), rounded as realesr rounds.
Runs where spandrel imports (CI: a second environment with torch 2.14 + torchvision 0.29, see .ci/run); skipped
elsewhere.
"""

from __future__ import annotations

import io
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

spandrel = pytest.importorskip("spandrel")

from PIL import Image  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

from realesr import cli  # noqa: E402
from realesr.errors import UsageError, WeightsFormatError  # noqa: E402
from realesr.infer.upscaler import Upscaler  # noqa: E402
from realesr.weights import load_model  # noqa: E402
from realesr.weights.community import SpandrelNetwork  # noqa: E402

pytestmark = pytest.mark.usefixtures("single_torch_thread")
archs = spandrel.architectures


@dataclass(frozen=True)
class Case:
    build: Callable[[], torch.nn.Module]
    arch: str  # spandrel's architecture name
    scale: int
    channels: int  # 1 grey, 3 RGB, 4 RGBA
    tiling: str  # what realesr's traits say
    tile: int  # a tile size that lines up with its windows (input pixels)


def _tame(net: torch.nn.Module, factor: float, bias: float | None = None) -> torch.nn.Module:
    """Scale (and shift) the last convolution: a random SPAN's output is mostly outside [0, 1], a random ESRGAN's
    near 0 (clamped: nothing to compare); this keeps most of it inside, varying with the input."""
    last = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)][-1]
    with torch.no_grad():
        last.weight.mul_(factor)
        if bias is not None:
            last.bias.fill_(bias)
    return net


CASES = {
    "SwinIR": Case(
        lambda: archs.SwinIR.SwinIR(
            img_size=16,
            embed_dim=12,
            depths=[2],
            num_heads=[2],
            window_size=8,
            upscale=2,
            upsampler="pixelshuffledirect",
        ),
        "SwinIR",
        2,
        3,
        "discouraged",
        16,
    ),
    "HAT": Case(
        lambda: archs.HAT.HAT(
            img_size=16,
            embed_dim=12,
            depths=(2,),
            num_heads=(2,),
            window_size=8,
            compress_ratio=3,
            squeeze_factor=2,
            upscale=2,
            num_feat=16,
        ),
        "HAT",
        2,
        3,
        "local",
        16,
    ),
    "DAT": Case(
        lambda: archs.DAT.DAT(img_size=16, embed_dim=16, split_size=[4, 8], depth=[2], num_heads=[2], upscale=2),
        "DAT",
        2,
        3,
        "local",
        16,
    ),
    "SPAN": Case(
        lambda: _tame(archs.SPAN.SPAN(num_in_ch=3, num_out_ch=3, feature_channels=12, upscale=2), 0.02),
        "SPAN",
        2,
        3,
        "local",
        16,
    ),
    "OmniSR": Case(lambda: archs.OmniSR.OmniSR(num_feat=16, window_size=8, up_scale=2), "OmniSR", 2, 3, "global", 16),
    "RealPLKSR": Case(
        lambda: archs.PLKSR.RealPLKSR(dim=16, n_blocks=2, upscaling_factor=2, kernel_size=7),
        "PLKSR",
        2,
        3,
        "local",
        16,
    ),
    "SAFMN": Case(lambda: archs.SAFMN.SAFMN(dim=16, n_blocks=2, upscaling_factor=2), "SAFMN", 2, 3, "local", 16),
    "ESRGAN-RGBA": Case(
        lambda: _tame(archs.ESRGAN.ESRGAN(in_nc=4, out_nc=4, num_filters=16, num_blocks=1, scale=2), 10.0, 0.5),
        "ESRGAN",
        2,
        4,
        "local",
        16,
    ),
    "RCAN": Case(
        lambda: archs.RCAN.RCAN(scale=2, n_resgroups=1, n_resblocks=1, n_feats=16, reduction=4),
        "RCAN",
        2,
        3,
        "local",
        16,
    ),
    "DnCNN-grey": Case(lambda: archs.DnCNN.DnCNN(in_nc=1, out_nc=1, nc=16, nb=4), "DnCNN", 1, 1, "local", 16),
}


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, tuple[Path, Path, dict[str, torch.Tensor]]]:
    """name -> (.pth, .safetensors, state dict) of each small random network."""
    folder = tmp_path_factory.mktemp("spandrel_models")
    out = {}
    for index, (name, case) in enumerate(CASES.items()):
        torch.manual_seed(index)
        sd = {k: v.contiguous() for k, v in case.build().eval().state_dict().items()}
        pth, st = folder / f"{name}.pth", folder / f"{name}.safetensors"
        torch.save(sd, pth)
        save_file(sd, str(st))
        out[name] = (pth, st, sd)
    return out


def _image(shared: Path, channels: int, height: int = 47, width: int = 45) -> np.ndarray:
    """A crop of a real photo (odd sides: padding to windows and multiples is exercised) as uint8 HxW / HxWxC."""
    rgb = np.asarray(Image.open(shared / "test" / "Set14" / "baboon.png").convert("RGB"))[
        60 : 60 + height, 80 : 80 + width
    ]
    if channels == 1:
        return np.asarray(Image.fromarray(rgb).convert("L"))
    if channels == 4:
        alpha = np.linspace(40, 255, width, dtype=np.float32)[None, :].repeat(height, 0).astype(np.uint8)
        return np.dstack([rgb, alpha])
    return rgb


def _spandrel_reference(sd: dict[str, torch.Tensor], array: np.ndarray) -> np.ndarray:
    """spandrel's own load and call on the same tensors, rounded to uint8 as realesr writes."""
    descriptor = spandrel.ModelLoader().load_from_state_dict(dict(sd)).eval()
    planes = array[..., None] if array.ndim == 2 else array
    x = torch.from_numpy(planes).permute(2, 0, 1)[None].float() / 255
    y = descriptor(x)[0].permute(1, 2, 0).numpy()
    y = np.clip(np.round(y * 255), 0, 255).astype(np.uint8)
    return y[..., 0] if array.ndim == 2 else y


def _diff(a: np.ndarray, b: np.ndarray) -> tuple[float, int]:
    d = np.abs(a.astype(np.int16) - b.astype(np.int16))
    return float(d.mean()), int(d.max())


def test_ten_architectures_are_detected_from_pth_and_safetensors(models):
    for name, case in CASES.items():
        for path in models[name][:2]:
            loaded = load_model(path)
            assert loaded.spec is None and isinstance(loaded.net, SpandrelNetwork), name
            traits = loaded.traits
            assert (traits.arch, traits.scale, traits.in_channels) == (case.arch, case.scale, case.channels), name
            assert traits.tiling == case.tiling, name


@pytest.mark.parametrize("name", list(CASES))
def test_whole_image_equals_spandrels_own_forward(models, shared_data, name):
    case = CASES[name]
    _pth, st, sd = models[name]
    array = _image(shared_data, case.channels)
    reference = _spandrel_reference(sd, array)
    # The output must vary, or an agreement would say nothing.
    assert reference.std() > 2 and ((reference > 0) & (reference < 255)).mean() > 0.3, name
    out = Upscaler(st, device="cpu", tile=0)(array)
    assert out.shape == reference.shape, name
    mean, top = _diff(out, reference)
    print(f"{name}: realesr whole vs spandrel: mean {mean:.3f}, max {top} levels")
    assert mean <= 0.5 and top <= 2, (name, mean, top)


@pytest.mark.parametrize("name", [n for n, c in CASES.items() if c.tiling != "global"])
def test_tiles_agree_with_the_whole_image(models, shared_data, name):
    case = CASES[name]
    array = _image(shared_data, case.channels, 64, 64)
    path = models[name][1]
    whole = Upscaler(path, device="cpu", tile=0)(array)
    tiled_up = Upscaler(path, device="cpu", tile=case.tile, tile_pad=16)
    tiled = tiled_up(array)
    assert tiled_up.last_tile_used == case.tile
    mean, top = _diff(tiled, whole)
    print(f"{name}: tiles of {case.tile} px (pad 16) vs whole: mean {mean:.3f}, max {top} levels")
    assert mean <= 1.0, (name, mean)


def test_window_models_tile_on_their_window_grid(models):
    up = Upscaler(models["DAT"][1], device="cpu", tile=20)
    assert up.traits.size.window == 8 and up.traits.size.tile_unit == 8  # split sizes 4 and 8
    x = torch.rand(1, 3, 40, 40)
    seen: list[tuple[int, int]] = []
    original = up._net

    def spy(t):
        seen.append(tuple(t.shape[-2:]))
        return original(t)

    up._net = spy  # type: ignore[assignment]
    up.upscale_tensor(x)
    # reads start on multiples of 8 (the 20-px tile rounds down to 16-px cores), each as large as the windows need
    assert seen and all(h % 8 == 0 and w % 8 == 0 for h, w in seen)


def test_global_attention_runs_whole_and_says_so_when_it_must_tile(models, shared_data, monkeypatch):
    array = _image(shared_data, 3, 64, 64)
    path = models["OmniSR"][1]
    auto = Upscaler(path, device="cpu")
    whole = auto(array)
    assert auto.last_tile_used == 0 and auto.run_notes() == []
    forced = Upscaler(path, device="cpu", tile=16, tile_pad=16)
    with pytest.warns(RuntimeWarning, match="attends over the whole image"):
        tiled = forced(array)
    assert forced.run_notes() and "OmniSR" in forced.run_notes()[0]
    mean, _top = _diff(tiled, whole)
    print(f"OmniSR: forced tiles of 16 px vs whole: mean {mean:.3f} levels (global attention)")


def test_precisions_follow_what_the_model_supports(models, shared_data):
    swinir = models["SwinIR"][1]
    with pytest.raises(UsageError, match="fp16"):  # spandrel: SwinIR's layers misbehave in fp16
        Upscaler(swinir, device="cpu", precision="fp16")
    array = _image(shared_data, 3)
    span = Upscaler(models["SPAN"][1], device="cpu")
    assert span.traits.precisions == ("fp32", "fp16", "bf16") and span.precision == "fp32"  # auto on a CPU
    fp32 = span(array)
    bf16 = Upscaler(models["SPAN"][1], device="cpu", precision="bf16")(array)
    mean, _ = _diff(bf16, fp32)
    print(f"SPAN bf16 vs fp32: mean {mean:.3f} levels")
    assert 0 < mean < 3, mean  # bf16 keeps 8 bits of mantissa: a few levels at most on average
    # SwinIR claims bf16 but its attention mask stays fp32 off its training size: fp32 takes over, said once.
    up = Upscaler(swinir, device="cpu", tile=0, precision="bf16")
    with pytest.warns(RuntimeWarning, match="fp32"):
        out = up(array)
    assert up.fell_back_to_fp32
    np.testing.assert_array_equal(out, Upscaler(swinir, device="cpu", tile=0)(array))


def test_a_restoration_model_takes_an_output_scale(models, shared_data):
    grey = _image(shared_data, 1)
    out = Upscaler(models["DnCNN-grey"][0], device="cpu", outscale=2)(grey)
    assert out.shape == (grey.shape[0] * 2, grey.shape[1] * 2)
    rgb = _image(shared_data, 3)  # a grey network on a colour photo: each plane on its own
    per_plane = Upscaler(models["DnCNN-grey"][0], device="cpu")(rgb)
    ref = np.dstack([_spandrel_reference(models["DnCNN-grey"][2], np.ascontiguousarray(rgb[..., c])) for c in range(3)])
    assert _diff(per_plane, ref)[1] <= 1


def test_a_pickle_with_code_is_refused_and_spandrel_never_gets_a_path(tmp_path, models, monkeypatch):
    class Payload:
        def __reduce__(self):
            return (print, ("this must never run",))

    bad = tmp_path / "evil.pth"
    torch.save({"params_ema": Payload()}, bad)
    with pytest.raises(WeightsFormatError, match="refused to unpickle"):
        load_model(bad)

    def no_paths(*_a, **_k):
        raise AssertionError("spandrel was given a path")

    monkeypatch.setattr(spandrel.ModelLoader, "load_from_file", no_paths)
    monkeypatch.setattr(spandrel.ModelLoader, "load_state_dict_from_file", no_paths)
    assert load_model(models["HAT"][0]).traits.arch == "HAT"


def test_tensors_spandrel_does_not_know_either_are_one_line(tmp_path):
    path = tmp_path / "odd.safetensors"
    save_file({"head.weight": torch.zeros(4, 3, 3, 3)}, str(path))
    with pytest.raises(WeightsFormatError, match="does not know it either") as info:
        load_model(path)
    assert "\n" not in str(info.value)


def test_cli_inspect_add_list_and_upscale_by_name(models, tmp_path, monkeypatch, capsys, shared_data):
    monkeypatch.setenv("REALESR_MODELS_DIR", str(tmp_path / "mine"))
    monkeypatch.setenv("REALESR_CACHE_DIR", str(tmp_path / "cache"))
    assert cli.main(["models", "inspect", str(models["SwinIR"][0])]) == 0
    text = capsys.readouterr().out
    for expected in ("SwinIR (spandrel)", "x2", "RGB -> RGB", "at least 16 px", "8 px attention windows", "fp32, bf16"):
        assert expected in text, (expected, text)
    assert "GiB per megapixel" in text
    assert cli.main(["models", "add", str(models["SPAN"][1]), "--name", "tiny-span"]) == 0
    assert (tmp_path / "mine" / "tiny-span.safetensors").read_bytes() == models["SPAN"][1].read_bytes()
    capsys.readouterr()
    assert cli.main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "tiny-span" in listing and "SPAN (spandrel)" in listing
    image = tmp_path / "in.png"
    Image.fromarray(_image(shared_data, 3)).save(image)
    assert cli.main(["upscale", str(image), "-o", str(tmp_path / "out"), "-m", "tiny-span", "--no-progress"]) == 0
    out = np.asarray(Image.open(tmp_path / "out" / "in_out.png"))
    assert out.shape == (94, 90, 3)
    assert cli.main(["models", "add", str(models["SPAN"][1]), "--name", "RealESRGAN_x4plus"]) == 2


def test_a_video_runs_through_a_spandrel_model(models, tmp_path):
    av = pytest.importorskip("av")
    from realesr.infer.video import VideoOptions, upscale_video

    src = tmp_path / "clip.mp4"
    with av.open(str(src), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 48, 32, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    up = Upscaler(models["SAFMN"][1], device="cpu")
    result = upscale_video(up, src, tmp_path / "out.mp4", VideoOptions())
    with av.open(str(result.output)) as done:
        frames = list(done.decode(video=0))
    assert len(frames) == 3 and (frames[0].width, frames[0].height) == (96, 64)


def test_the_page_offers_and_runs_a_users_model(models, tmp_path, monkeypatch, shared_data):
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from realesr.serve.app import available_models, create_app
    from realesr.weights.library import add_model

    monkeypatch.setenv("REALESR_MODELS_DIR", str(tmp_path / "mine"))
    add_model(models["RCAN"][1], "tiny-rcan")
    choices = available_models()
    assert any(c.name == "tiny-rcan" and c.available and c.scale == 2 for c in choices)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        app = create_app(models=choices, token="page-token-1", allow_download=False, work_dir=tmp_path / "work")
    headers = {"Authorization": "Bearer page-token-1"}
    image = tmp_path / "in.png"
    Image.fromarray(_image(shared_data, 3)).save(image)
    with TestClient(app, base_url="http://127.0.0.1:7860") as client:
        listed = client.get("/api/models", headers=headers).json()["models"]
        assert "tiny-rcan" in [m["name"] for m in listed]
        with open(image, "rb") as f:
            files = {"file": ("in.png", f, "image/png")}
            job = client.post("/api/jobs", headers=headers, files=files, data={"model": "tiny-rcan"}).json()
        deadline = time.monotonic() + 60
        while (state := client.get(f"/api/jobs/{job['id']}", headers=headers).json())["state"] not in (
            "done",
            "failed",
        ):
            assert time.monotonic() < deadline, state
            time.sleep(0.05)
        assert state["state"] == "done", state
        result = client.get(f"/api/jobs/{job['id']}/result", headers=headers).content
    expected = Upscaler(tmp_path / "mine" / "tiny-rcan.safetensors", device="cpu")(_image(shared_data, 3))
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(result))), expected)


def test_a_spandrel_extra_arches_model_loads_with_its_licence_shown(tmp_path, monkeypatch, capsys):
    """spandrel_extra_arches is not installed by the extra; a stand-in registry shows what happens when a user has
    it: its model loads, and its licence line is in `realesr models inspect`."""
    import sys
    import types

    class Mine(torch.nn.Module):
        def __init__(self, width: int) -> None:
            super().__init__()
            self.mine_head = torch.nn.Conv2d(3, width, 3, padding=1)
            self.mine_tail = torch.nn.Conv2d(width, 12, 3, padding=1)

        def forward(self, x):
            return torch.nn.functional.pixel_shuffle(self.mine_tail(self.mine_head(x)), 2)

    class MineArch(spandrel.Architecture):
        def __init__(self) -> None:
            super().__init__(id="MineNC", detect=lambda sd: "mine_head.weight" in sd)

        def load(self, state_dict):
            model = Mine(int(state_dict["mine_head.weight"].shape[0]))
            return spandrel.ImageModelDescriptor(
                model,
                state_dict,
                architecture=self,
                purpose="SR",
                tags=[],
                supports_half=True,
                supports_bfloat16=True,
                scale=2,
                input_channels=3,
                output_channels=3,
            )

    registry = spandrel.ArchRegistry()
    registry.add(spandrel.ArchSupport.from_architecture(MineArch()))
    monkeypatch.setitem(sys.modules, "spandrel_extra_arches", types.SimpleNamespace(EXTRA_REGISTRY=registry))
    path = tmp_path / "mine.safetensors"
    torch.manual_seed(0)
    save_file({k: v.contiguous() for k, v in Mine(8).state_dict().items()}, str(path))
    assert cli.main(["models", "inspect", str(path)]) == 0
    text = capsys.readouterr().out
    assert "MineNC (spandrel_extra_arches)" in text and "non-commercial" in text
    up = Upscaler(path, device="cpu")
    assert any("licence" in note for note in up.notes)


def test_the_network_runs_outside_inference_mode_too(models):
    """spandrel's call runs in inference mode; realesr's network gives a tensor that can be updated in place."""
    net = load_model(models["SPAN"][1]).net
    with torch.no_grad():
        y = net(torch.rand(1, 3, 20, 18))
    y.add_(1.0)  # an inference tensor would raise here
    assert y.shape == (1, 3, 40, 36) and not y.is_inference()


def test_auto_on_a_cpu_with_native_bf16_checks_each_model(models, shared_data, monkeypatch):
    """On a bf16 CPU auto tries bf16 where the model supports it; SwinIR claims it but fails in its layers off its
    training size: auto then runs fp32 (no error), with the same output as fp32."""
    monkeypatch.setenv("REALESR_NATIVE_BF16", "1")
    array = _image(shared_data, 3)
    up = Upscaler(models["SwinIR"][1], device="cpu", tile=0)
    out = up(array)
    assert up.precision == "fp32" and "fails in SwinIR" in up.precision_note
    np.testing.assert_array_equal(out, Upscaler(models["SwinIR"][1], device="cpu", tile=0, precision="fp32")(array))
    assert Upscaler(models["RCAN"][1], device="cpu").precision == "bf16"  # spandrel: RCAN supports bf16, not fp16
