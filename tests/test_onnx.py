"""ONNX export checked against a second implementation: onnxruntime's output on crops of real photos equals
PyTorch's, at sizes that are not multiples of 8; the file is self-describing and runs without realesr."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from realesr import cli
from realesr.archs import RRDBNet, SRVGGNetCompact
from realesr.errors import WeightsFormatError
from realesr.weights import OutputResize, load_model

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from realesr.weights.onnx import export_onnx

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def photo_crop(shared_data, height: int, width: int, name: str = "butterfly.png") -> torch.Tensor:
    with Image.open(shared_data / "test" / "Set5" / name) as im:
        array = np.asarray(im.convert("RGB"))[30 : 30 + height, 40 : 40 + width]
    return torch.from_numpy(array.copy()).permute(2, 0, 1)[None].float() / 255


def tiny(kind: str) -> torch.nn.Module:
    torch.manual_seed(3)
    if kind.startswith("rrdb"):
        return RRDBNet(num_feat=8, num_block=1, num_grow_ch=4, scale=int(kind[-1])).eval()
    if kind == "compact-x3-resize":
        return OutputResize(SRVGGNetCompact(num_feat=8, num_conv=2, upscale=4), 0.75).eval()
    return SRVGGNetCompact(num_feat=8, num_conv=2, upscale=int(kind[-1]), act_type="prelu").eval()


def run_ort(path, x: torch.Tensor) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


# Sizes: none a multiple of 8; RRDBNet x1 / x2 fold the input by 4 / 2, so theirs are multiples of that.
SIZES = {1: [(21, 30), (13, 38)], 2: [(18, 30), (26, 14)], 4: [(20, 28), (12, 36)]}


@pytest.mark.parametrize(
    "kind", ["rrdb-x1", "rrdb-x2", "rrdb-x4", "rrdb-x8", "compact-x4", "compact-x2", "compact-x3-resize"]
)
def test_onnxruntime_equals_pytorch_on_real_crops(tmp_path, shared_data, kind):
    net = tiny(kind)
    path = export_onnx(net, tmp_path / "m.onnx")
    multiple = int(getattr(net, "size_multiple", 1))
    for height, width in SIZES[multiple]:
        x = photo_crop(shared_data, height, width)
        with torch.no_grad():
            expected = net(x).numpy()
        got = run_ort(path, x)
        assert got.shape == expected.shape == (1, 3, height * net.scale, width * net.scale)
        assert np.abs(got - expected).max() <= 1e-4
    model = onnx.load(str(path))
    props = {p.key: p.value for p in model.metadata_props}
    inner = net.net if isinstance(net, OutputResize) else net
    assert props["architecture"] == type(inner).__name__ and props["scale"] == str(net.scale)
    assert props["size_multiple"] == str(multiple) and props["precision"] == "fp32"
    assert json.loads(props["realesr"])["arch"] == type(inner).__name__
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "height", "width"] and dims[1].dim_value == 3


def test_fp16_export_is_half_and_close(tmp_path, shared_data):
    net = tiny("compact-x4")
    path = export_onnx(net, tmp_path / "h.onnx", fp16=True)
    x = photo_crop(shared_data, 19, 23)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float16)"
    got = session.run(None, {"input": x.numpy().astype(np.float16)})[0].astype(np.float32)
    with torch.no_grad():
        expected = net(x).numpy()
    assert np.abs(got - expected).max() < 1e-2  # half precision: 11-bit mantissa
    assert session.get_modelmeta().custom_metadata_map["precision"] == "fp16"
    # Half the bytes of the weights, give or take the graph itself.
    assert path.stat().st_size < 0.75 * export_onnx(net, tmp_path / "f.onnx").stat().st_size


def test_the_exported_file_runs_without_realesr(tmp_path, shared_data):
    net = tiny("rrdb-x2")
    path = export_onnx(net, tmp_path / "m.onnx")
    x = photo_crop(shared_data, 22, 30)
    np.save(tmp_path / "x.npy", x.numpy())
    with torch.no_grad():
        np.save(tmp_path / "y.npy", net(x).numpy())
    script = (
        "import sys; sys.modules['realesr'] = None  # any import of realesr would fail\n"
        "import numpy as np, onnxruntime as ort\n"
        f"s = ort.InferenceSession({str(path)!r}, providers=['CPUExecutionProvider'])\n"
        f"x = np.load({str(tmp_path / 'x.npy')!r}); y = np.load({str(tmp_path / 'y.npy')!r})\n"
        "out = s.run(None, {'input': x})[0]\n"
        "meta = s.get_modelmeta().custom_metadata_map\n"
        "assert not [m for m in sys.modules if m.startswith(('torch', 'realesr')) and sys.modules[m]]\n"
        "print(out.shape, float(np.abs(out - y).max()), meta['architecture'], meta['scale'])\n"
    )
    done = subprocess.run(
        [sys.executable, "-I", "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr
    shape, diff, arch, scale = done.stdout.rsplit(" ", 3)
    assert shape.startswith("(1, 3, 44, 60)") and float(diff) <= 1e-4 and arch == "RRDBNet" and scale.strip() == "2"


def test_a_zoo_model_exports_and_upscale_runs_it_like_pytorch(tmp_path, shared_data, monkeypatch):
    monkeypatch.setenv("REALESR_CACHE_DIR", str(tmp_path / "cache"))  # the data package's files, offline
    monkeypatch.setattr(cli, "COMMANDS", ("convert", "upscale"))
    out = tmp_path / "animevideov3.onnx"
    assert cli.main(["convert", "realesr-animevideov3", str(out), "--no-download"]) == 0
    reference = load_model("realesr-animevideov3", allow_download=False)
    x = photo_crop(shared_data, 27, 35, "bird.png")
    with torch.no_grad():
        expected = reference.net(x).numpy()
    assert np.abs(run_ort(out, x) - expected).max() <= 1e-4
    loaded = load_model(out)
    assert loaded.scale == 4 and loaded.source.startswith("onnx (fp32")
    # The CLI with the same tiling and image handling: the same files as with the PyTorch model.
    Image.fromarray((x[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)).save(tmp_path / "in.png")
    for model, folder in ((str(out), "a"), ("realesr-animevideov3", "b")):
        assert (
            cli.main(
                [
                    "upscale",
                    str(tmp_path / "in.png"),
                    "-m",
                    model,
                    "-o",
                    str(tmp_path / folder),
                    "--tile",
                    "16",
                    "--no-progress",
                ]
            )
            == 0
        )
    a = np.asarray(Image.open(tmp_path / "a" / "in_out.png")).astype(int)
    b = np.asarray(Image.open(tmp_path / "b" / "in_out.png")).astype(int)
    assert a.shape == b.shape == (108, 140, 3)
    assert np.abs(a - b).max() <= 1 and (a != b).mean() < 0.01  # fp32 rounding may flip a level rarely


def test_onnx_cli_errors_are_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ("convert",))
    path = export_onnx(tiny("compact-x4"), tmp_path / "m.onnx")
    assert cli.main(["convert", str(path), str(tmp_path / "o.safetensors")]) == 2
    assert cli.main(["convert", str(path), str(tmp_path / "o.param"), "--fp16"]) == 2
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(WeightsFormatError, match="not a readable ONNX model"):
        load_model(tmp_path / "junk.onnx")
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("realesr: error:") for line in err)
