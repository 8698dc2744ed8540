"""Weights files and `convert` under hostile conditions: bad resize factors, full disks, read-only or impossible
output folders, junk VGG files, a changed network width. Each is one line on stderr with the documented exit code."""

from __future__ import annotations

import errno
import json
import math

import pytest
import torch

from realesr import cli
from realesr.archs import SRVGGNetCompact
from realesr.errors import RealesrError, WeightsFormatError
from realesr.weights import OutputResize, load_model, save_model
from realesr.weights.ncnn import export_ncnn
from realesr.weights.spec import ModelSpec

pytestmark = pytest.mark.usefixtures("single_torch_thread")

BAD_FACTORS = ["0.3", "0", "-0.5", "nan", "inf", "1e300", "2", "1"]


@pytest.fixture
def convert_only(monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ("convert", "models"))


def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return SRVGGNetCompact(num_feat=4, num_conv=1, upscale=4).eval()


@pytest.mark.parametrize("factor", BAD_FACTORS)
def test_an_ncnn_interp_with_a_bad_factor_is_refused_at_load(tmp_path, factor, capsys, convert_only):
    param, _ = export_ncnn(OutputResize(tiny(), 0.5), tmp_path / "m.param", fp16=False)
    text = param.read_text().replace("1=5.000000e-01 2=5.000000e-01", f"1={factor} 2={factor}")
    assert f"1={factor}" in text
    param.write_text(text)
    with pytest.raises(WeightsFormatError, match="Interp|factor"):
        load_model(param)
    assert cli.main(["convert", str(param), str(tmp_path / "o.safetensors")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err and not (tmp_path / "o.safetensors").exists()


@pytest.mark.parametrize("factor", [0.3, 0.0, -0.5, math.nan, 1e300, 2.0, "half"])
def test_a_safetensors_output_resize_with_a_bad_factor_is_refused(tmp_path, factor, capsys, convert_only):
    from safetensors import safe_open
    from safetensors.torch import save_file

    good = save_model(OutputResize(tiny(), 0.5), tmp_path / "good.safetensors")
    with safe_open(str(good), framework="pt") as f:
        meta = f.metadata()
        tensors = {k: f.get_tensor(k) for k in f.keys()}  # noqa: SIM118 - safe_open is no dict
    info = json.loads(meta["realesr"])
    info["output_resize"] = factor
    meta["realesr"] = json.dumps(info)
    save_file(tensors, str(tmp_path / "bad.safetensors"), metadata=meta)
    with pytest.raises(WeightsFormatError, match="factor"):
        load_model(tmp_path / "bad.safetensors")
    assert cli.main(["convert", str(tmp_path / "bad.safetensors"), str(tmp_path / "o.param")]) == 2
    assert "factor" in capsys.readouterr().err and not (tmp_path / "o.param").exists()


@pytest.mark.parametrize("factor", [0.3, 0.0, -1.0, math.nan, 1e300])
def test_such_files_cannot_be_written(tmp_path, factor):
    with pytest.raises(WeightsFormatError, match="factor"):
        OutputResize(tiny(), factor)
    with pytest.raises(WeightsFormatError, match="factor"):
        ModelSpec(
            "SRVGGNetCompact",
            dict(num_in_ch=3, num_out_ch=3, num_feat=4, num_conv=1, upscale=4, act_type="prelu"),
            1,
            output_resize=factor,
        )


def test_convert_to_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, capsys, monkeypatch, convert_only):
    import safetensors.torch

    save_model(tiny(), tmp_path / "in.safetensors")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    out = tmp_path / "out"
    out.mkdir()
    assert cli.main(["convert", str(tmp_path / "in.safetensors"), str(out / "o.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "o.safetensors" in err
    monkeypatch.setattr("realesr.atomic.os.fsync", full)  # the ncnn writer's flush to disk
    assert cli.main(["convert", str(tmp_path / "in.safetensors"), str(out / "o.param")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err
    assert list(out.iterdir()) == []  # no temporary file left behind


def test_convert_into_a_read_only_or_impossible_folder_is_refused_before_work(
    tmp_path, capsys, monkeypatch, convert_only
):
    save_model(tiny(), tmp_path / "in.safetensors")
    (tmp_path / "afile").write_text("x")
    # A folder under a regular file can never exist (this holds for root too, who ignores permissions).
    assert cli.main(["convert", str(tmp_path / "in.safetensors"), str(tmp_path / "afile" / "o.safetensors")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    # A read-only mount: the kernel refuses even root with EROFS; simulated where the temporary file is created.
    real_open = open

    def read_only(path, mode="r", *args, **kwargs):
        if "x" in mode or "w" in mode:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", read_only)
    assert cli.main(["convert", str(tmp_path / "in.safetensors"), str(tmp_path / "o.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Read-only file system" in err


def test_a_junk_vgg_file_is_one_line_or_fetched_again(tmp_path, monkeypatch):
    from realesr.archs import vgg

    monkeypatch.setenv("REALESR_CACHE_DIR", str(tmp_path))
    (tmp_path / vgg.VGG19_FILENAME).write_bytes(b"\x80\x02 not a pickle")
    with pytest.raises(WeightsFormatError) as info:
        vgg.load_vgg19_imagenet(allow_download=False)
    assert "corrupt" in str(info.value) and "\n" not in str(info.value)
    (tmp_path / "junk.pth").write_bytes(b"PK junk")
    with pytest.raises(WeightsFormatError, match="not a readable VGG19 weights file") as info:
        vgg.load_vgg19_imagenet(str(tmp_path / "junk.pth"))
    assert "\n" not in str(info.value)
    # With downloads allowed the corrupt file is replaced, through the checksum-checked downloader.
    fetched = []

    def fake_download(url, dest, checksum=None, progress=None, opener=None):
        fetched.append((url, checksum))
        torch.save({"features.0.weight": torch.zeros(1)}, dest)
        return dest

    monkeypatch.setattr(vgg, "download", fake_download)
    assert set(vgg.load_vgg19_imagenet()) == {"features.0.weight"}
    assert fetched == [(vgg.VGG19_URL, vgg.Checksum(sha256_prefix="dcbb9e9d"))]


def test_initialising_from_weights_of_another_width_names_the_shapes(tmp_path):
    from realesr.train.loop import init_generator_from

    net = SRVGGNetCompact(num_feat=8, num_conv=1, upscale=4)
    other = SRVGGNetCompact(num_feat=6, num_conv=1, upscale=4).state_dict()
    with pytest.raises(RealesrError) as info:
        init_generator_from(net, other, strict=True, what="init weights x.pth")
    message = str(info.value)
    assert (
        "\n" not in message and "body.0.weight" in message and "(6, 3, 3, 3)" in message and "(8, 3, 3, 3)" in message
    )


def test_resuming_with_another_network_width_is_one_line(tmp_path, shared_data):
    from pathlib import Path

    from realesr.train import train
    from realesr.train.config import load_config

    smoke = Path(__file__).resolve().parents[1] / "configs" / "smoke.yaml"

    def cfg(*extra):
        return load_config(
            smoke,
            [
                f"output_dir={tmp_path}",
                f"data.train={shared_data / 'train' / 'photos'}",
                "val.folder=",
                "val_every=0",
                "total_iters=1",
                "save_every=1",
                "stage=esrnet",
                "data.num_workers=0",
                *extra,
            ],
        )

    assert train(cfg(), show_progress=False).iteration == 1
    width = cfg().network.num_feat
    with pytest.raises(RealesrError) as info:
        train(cfg("total_iters=2", f"network.num_feat={width + 2}"), resume="auto", show_progress=False)
    message = str(info.value)
    assert "\n" not in message and "conv_first.weight" in message and f"({width}, " in message
    assert f"({width + 2}, " in message
