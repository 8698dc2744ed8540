"""The architecture registry: a network the rest of realesr never heard of works through one record.

`TinySR` below is made up for this test (a conv, a PReLU and a pixel-shuffle tail under its own key names). Adding
it to ``realesr.archs.ARCHITECTURES`` is all it takes for detection, loading, the safetensors round trip, the
Upscaler, ``realesr convert`` and the trainer's generator to handle it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

from realesr import archs, cli
from realesr.archs import Architecture
from realesr.errors import UsageError, WeightsFormatError
from realesr.infer.upscaler import Upscaler
from realesr.weights import (
    detect_arch,
    load_model,
    load_state_dict,
    save_model,
    spec_of,
)

pytestmark = pytest.mark.usefixtures("single_torch_thread")


class TinySR(nn.Module):
    def __init__(self, channels: int = 3, width: int = 8, upscale: int = 2) -> None:
        super().__init__()
        self.channels, self.width, self.upscale, self.scale = channels, width, upscale, upscale
        self.head = nn.Conv2d(channels, width, 3, 1, 1)
        self.act = nn.PReLU(width)
        self.tail = nn.Conv2d(width, channels * upscale * upscale, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pixel_shuffle(self.tail(self.act(self.head(x))), self.upscale)


def _read(sd: Mapping[str, torch.Tensor], hints: Mapping[str, Any]) -> dict[str, Any]:
    width, channels = sd["head.weight"].shape[:2]
    upscale = int(round((sd["tail.weight"].shape[0] / channels) ** 0.5))
    return {"channels": int(channels), "width": int(width), "upscale": upscale}


TINY = Architecture(
    name="TinySR",
    cls=TinySR,
    recognises=lambda sd: "head.weight" in sd and "tail.weight" in sd,
    read_kwargs=_read,
    kwargs_of=lambda net: {"channels": net.channels, "width": net.width, "upscale": net.upscale},
    net_scale=lambda k: int(k["upscale"]),
    describe=lambda k: f"{k['width']} feat",
    bytes_per_pixel=lambda k: 4.0 * (k["width"] * 3 + k["channels"] * k["upscale"] ** 2 * 2),
    scales=(2, 3, 4),
    from_config=lambda network, scale: {"channels": 3, "width": network.num_feat, "upscale": scale},
)


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setattr(archs, "ARCHITECTURES", [*archs.ARCHITECTURES, TINY])


def test_without_its_record_the_network_is_unknown():
    sd = TinySR().state_dict()
    with pytest.raises(WeightsFormatError, match="not a state dict of RRDBNet nor SRVGGNetCompact"):
        detect_arch(sd)


def test_a_registered_architecture_is_detected_saved_loaded_and_run(registered, tmp_path, shared_data, monkeypatch):
    torch.manual_seed(0)
    net = TinySR(width=6, upscale=3).eval()
    spec = detect_arch(net.state_dict())
    assert (spec.arch, spec.kwargs, spec.scale) == ("TinySR", {"channels": 3, "width": 6, "upscale": 3}, 3)
    assert spec_of(net) == spec and "TinySR x3 (6 feat)" in spec.description
    # Round trips through safetensors (architecture in the metadata) and a plain .pth state dict.
    save_model(net, tmp_path / "tiny.safetensors")
    torch.save({"params_ema": net.state_dict()}, tmp_path / "tiny.pth")
    for path in (tmp_path / "tiny.safetensors", tmp_path / "tiny.pth"):
        loaded = load_model(path)
        assert type(loaded.net) is TinySR and loaded.spec == spec
        for key, value in net.state_dict().items():
            assert torch.equal(loaded.net.state_dict()[key], value)
    # The Upscaler runs it like any other network: same output as calling the module.
    photo = next(p for p in sorted((shared_data / "test").rglob("*.png")))
    crop = np.asarray(Image.open(photo).convert("RGB"))[:20, :27]
    lr = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1)[None].float() / 255
    up = Upscaler(load_model(tmp_path / "tiny.safetensors"), device="cpu", tile=0)
    with torch.no_grad():
        assert torch.allclose(up.upscale_tensor(lr), net(lr), atol=1e-6)
    # `realesr convert` goes through the same generic code.
    monkeypatch.setattr(cli, "COMMANDS", ("convert",))
    assert cli.main(["convert", str(tmp_path / "tiny.pth"), str(tmp_path / "c.safetensors")]) == 0
    assert load_state_dict(tmp_path / "c.safetensors").keys() == net.state_dict().keys()
    # It has no ncnn mapping: said in one line, not a traceback.
    assert cli.main(["convert", str(tmp_path / "tiny.pth"), str(tmp_path / "c.param")]) == 2


def test_the_trainer_builds_a_registered_generator(registered):
    from realesr.train.config import config_from_dict, resolve
    from realesr.train.loop import build_generator

    cfg = resolve(
        config_from_dict({"network": {"arch": "TinySR", "num_feat": 5}, "scale": 4, "data": {"train": "somewhere"}})
    )
    net = build_generator(cfg)
    assert type(net) is TinySR and (net.width, net.upscale) == (5, 4)


def test_cache_dir_expands_home_and_users_and_names_the_variable(monkeypatch, tmp_path):
    import os
    import pwd

    from realesr.cache import cache_dir

    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("REALESR_CACHE_DIR", "~/models")
    assert cache_dir() == tmp_path / "models"
    me = pwd.getpwuid(os.getuid())
    monkeypatch.setenv("REALESR_CACHE_DIR", f"~{me.pw_name}/m")
    assert cache_dir() == __import__("pathlib").Path(me.pw_dir) / "m"
    monkeypatch.setenv("REALESR_CACHE_DIR", "~nosuchuser-realesr/m")
    with pytest.raises(UsageError, match="REALESR_CACHE_DIR.*no user 'nosuchuser-realesr'"):
        cache_dir()
    monkeypatch.setattr(cli, "COMMANDS", ("models",))
    assert cli.main(["models"]) == 2


def test_a_transformer_sharing_first_and_last_conv_names_is_not_taken_for_a_broken_rrdbnet():
    """HAT, SwinIR and DAT files also hold conv_first and conv_last: they are not RRDBNets that "do not fit"."""
    sd = {
        "relative_position_index_SA": torch.zeros(64, 64, dtype=torch.int64),  # integer tables are fine there
        "conv_first.weight": torch.zeros(16, 3, 3, 3),
        "conv_first.bias": torch.zeros(16),
        "layers.0.residual_group.blocks.0.norm1.weight": torch.zeros(16),
        "conv_after_body.weight": torch.zeros(16, 16, 3, 3),
        "conv_last.weight": torch.zeros(3, 16, 3, 3),
    }
    with pytest.raises(WeightsFormatError, match="not a state dict of RRDBNet nor SRVGGNetCompact") as info:
        detect_arch(sd)
    assert "does not fit" not in str(info.value)


def test_every_record_describes_its_model_for_the_pipeline():
    for arch in archs.ARCHITECTURES:
        net = arch.cls()
        traits = arch.traits(arch.kwargs_of(net))
        assert traits.scale == net.scale and traits.size.multiple_of == net.size_multiple
        assert traits.bytes_per_pixel > 0 and "fp32" in traits.precisions
