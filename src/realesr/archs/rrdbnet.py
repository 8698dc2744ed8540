"""RRDBNet, the ESRGAN / Real-ESRGAN generator, with the official BasicSR state-dict layout.

Every official RRDBNet checkpoint (RealESRGAN_x4plus, RealESRNet_x4plus, RealESRGAN_x2plus,
RealESRGAN_x4plus_anime_6B) loads into this module with ``strict=True``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from realesr.archs.base import Architecture, StateDict
from realesr.errors import WeightsFormatError

__all__ = ["ARCH", "RRDBNet", "ResidualDenseBlock", "RRDB", "default_init_weights"]


@torch.no_grad()
def default_init_weights(modules, scale: float = 1.0, bias_fill: float = 0.0) -> None:
    """Kaiming-normal init scaled down, as BasicSR does: small residual branches make deep RRDB stacks trainable."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                m.weight.mul_(scale)
                if m.bias is not None:
                    m.bias.fill_(bias_fill)


class ResidualDenseBlock(nn.Module):
    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(num_feat, num_grow_ch, 3, 1, 1)
        self.conv2 = nn.Conv2d(num_feat + num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv3 = nn.Conv2d(num_feat + 2 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv4 = nn.Conv2d(num_feat + 3 * num_grow_ch, num_grow_ch, 3, 1, 1)
        self.conv5 = nn.Conv2d(num_feat + 4 * num_grow_ch, num_feat, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)
        default_init_weights([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.lrelu(self.conv1(x))
        x2 = self.lrelu(self.conv2(torch.cat((x, x1), 1)))
        x3 = self.lrelu(self.conv3(torch.cat((x, x1, x2), 1)))
        x4 = self.lrelu(self.conv4(torch.cat((x, x1, x2, x3), 1)))
        x5 = self.conv5(torch.cat((x, x1, x2, x3, x4), 1))
        return x5 * 0.2 + x


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int = 32) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.rdb3(self.rdb2(self.rdb1(x)))
        return out * 0.2 + x


class RRDBNet(nn.Module):
    """Generator of Real-ESRGAN.

    Scales 4 and 8 upsample the features by nearest interpolation + conv, two or three times.
    Scales 2 and 1 first fold the input with pixel-unshuffle (3 -> 12 or 48 channels) and then
    run the same x4 trunk, as the official RealESRGAN_x2plus; so such inputs need sides divisible
    by 2 (scale 2) or 4 (scale 1): callers pad.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        scale: int = 4,
    ) -> None:
        super().__init__()
        if scale not in (1, 2, 4, 8):
            raise ValueError(f"RRDBNet scale must be 1, 2, 4 or 8, not {scale}")
        self.scale = scale
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.num_feat = num_feat
        self.num_block = num_block
        self.num_grow_ch = num_grow_ch
        unshuffle = {1: 4, 2: 2}.get(scale, 1)
        self.unshuffle_factor = unshuffle
        self.conv_first = nn.Conv2d(num_in_ch * unshuffle * unshuffle, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        if scale == 8:
            self.conv_up3 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(negative_slope=0.2, inplace=True)

    @property
    def size_multiple(self) -> int:
        """Input sides must be a multiple of this (pixel-unshuffle)."""
        return self.unshuffle_factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = F.pixel_unshuffle(x, self.unshuffle_factor) if self.unshuffle_factor > 1 else x
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        feat = self.lrelu(self.conv_up1(F.interpolate(feat, scale_factor=2, mode="nearest")))
        feat = self.lrelu(self.conv_up2(F.interpolate(feat, scale_factor=2, mode="nearest")))
        if self.scale == 8:
            feat = self.lrelu(self.conv_up3(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))


# ------------------------------------------------------------------------------------------ its record


def _recognises(sd: StateDict) -> bool:
    # conv_first and conv_last alone are shared by SwinIR, HAT, DAT and others: a HAT file was taken for a
    # broken RRDBNet. The trunk conv and the upsampling convs are RRDBNet's own names.
    return all(f"{name}.weight" in sd for name in ("conv_first", "conv_body", "conv_up1", "conv_hr", "conv_last"))


def _read_kwargs(sd: StateDict, hints: Mapping[str, Any]) -> dict[str, Any]:
    scale_hint = hints.get("scale")
    w_first = tuple(sd["conv_first.weight"].shape)
    num_feat, in_first = w_first[0], w_first[1]
    num_out_ch = tuple(sd["conv_last.weight"].shape)[0]
    block_ids = {int(k.split(".")[1]) for k in sd if k.startswith("body.") and k.split(".")[1].isdigit()}
    num_block = len(block_ids)
    if block_ids != set(range(num_block)):
        raise WeightsFormatError(f"RRDBNet body blocks are not numbered 0..{num_block - 1}: {sorted(block_ids)}")
    num_grow_ch = tuple(sd["body.0.rdb1.conv1.weight"].shape)[0] if num_block else 32
    # Scales 2 and 1 fold the input by pixel-unshuffle: conv_first sees 4x / 16x the output channels.
    # The same tensors would fit an x4 net with that many input channels; no official model is one,
    # so only a saved scale (hint) picks it.
    if "conv_up3.weight" in sd:
        scale, num_in_ch = 8, in_first
    elif in_first == 16 * num_out_ch and scale_hint in (None, 1):
        scale, num_in_ch = 1, num_out_ch
    elif in_first == 4 * num_out_ch and scale_hint in (None, 2):
        scale, num_in_ch = 2, num_out_ch
    else:
        scale, num_in_ch = 4, in_first
    if scale_hint is not None and scale_hint != scale:
        raise WeightsFormatError(f"metadata says scale {scale_hint} but the tensors make an x{scale} RRDBNet")
    return dict(
        num_in_ch=num_in_ch,
        num_out_ch=num_out_ch,
        num_feat=num_feat,
        num_block=num_block,
        num_grow_ch=num_grow_ch,
        scale=scale,
    )


def _kwargs_of(net: nn.Module) -> dict[str, Any]:
    assert isinstance(net, RRDBNet)
    return dict(
        num_in_ch=net.num_in_ch,
        num_out_ch=net.num_out_ch,
        num_feat=net.num_feat,
        num_block=net.num_block,
        num_grow_ch=net.num_grow_ch,
        scale=net.scale,
    )


def _describe(k: Mapping[str, Any]) -> str:
    blocks = f"{k['num_block']} block{'' if k['num_block'] == 1 else 's'}"
    return f"{blocks}, {k['num_feat']} feat, grow {k['num_grow_ch']}"


def _from_config(network: Any, scale: int) -> dict[str, Any]:
    return dict(
        num_in_ch=3,
        num_out_ch=3,
        num_feat=network.num_feat,
        num_block=network.num_block,
        num_grow_ch=network.num_grow_ch,
        scale=scale,
    )


def _bytes_per_pixel(k: Mapping[str, Any]) -> float:
    """Peak fp32 activation memory per input pixel. The largest tensors live at the output resolution (num_feat
    channels x scale^2 pixels each); about four of them coexist (nearest-upsampled input, conv output, activation,
    next conv); the dense blocks hold num_feat + 4 grow channels at the input's. For x4 this gives 23 KB;
    bench/bench_upscale.py measured 12 KB (peak RSS above the loaded model, 128x128 input): on the safe side."""
    feat, grow, scale = int(k["num_feat"]), int(k["num_grow_ch"]), int(k["scale"])
    return 4.0 * (feat * scale**2 * 4 + (feat + 4 * grow) * 3) * 1.25


def _ncnn_recognises(types: Counter[str]) -> bool:
    return types["Concat"] > 0  # the dense blocks


def _ncnn_import(layers: list, convs: list, prelus: list, source: str) -> tuple[dict[str, torch.Tensor], dict]:
    # The graph's x2 stages are nearest Interps by 2 on features: two for x4, three for x8.
    ups = sum(
        1 for layer in layers if layer.type == "Interp" and int(layer.get(0)) == 1 and float(layer.get(1, 1.0)) == 2.0
    )
    if ups not in (2, 3):
        raise WeightsFormatError(f"{source}: RRDBNet graph with {ups} nearest x2 upsampling stages (expected 2 or 3)")
    if prelus:
        raise WeightsFormatError(f"{source}: an RRDBNet graph has no PReLU layers")
    trunk = len(convs) - (4 + ups)
    if trunk <= 0 or trunk % 15:
        raise WeightsFormatError(
            f"{source}: {len(convs)} convolutions do not make an RRDBNet (1 + 15 per block + 1 + {ups} + 2)"
        )
    names = ["conv_first"]
    for b in range(trunk // 15):
        names += [f"body.{b}.rdb{r}.conv{c}" for r in (1, 2, 3) for c in range(1, 6)]
    names += ["conv_body"] + [f"conv_up{i}" for i in range(1, ups + 1)] + ["conv_hr", "conv_last"]
    sd: dict[str, torch.Tensor] = {}
    for key, (_layer, weight, bias) in zip(names, convs):
        sd[f"{key}.weight"] = weight
        sd[f"{key}.bias"] = bias
    return sd, {}


_LRELU02 = " 9=2 -23310=1,2.000000e-01"


def _ncnn_export(g: Any, net: nn.Module, x: str) -> str:
    assert isinstance(net, RRDBNet)
    if net.unshuffle_factor > 1:
        x = g.add("Reorg", [x], f"0={net.unshuffle_factor} 1=0")  # mode 0 = PyTorch pixel_unshuffle order
    feat = g.conv(x, net.conv_first)
    trunk = feat
    for block in cast("Iterable[RRDB]", net.body):
        block_in = trunk
        for rdb in (block.rdb1, block.rdb2, block.rdb3):
            rdb_in = trunk
            dense = [rdb_in]
            for conv in (rdb.conv1, rdb.conv2, rdb.conv3, rdb.conv4):
                cat = dense[0] if len(dense) == 1 else g.add("Concat", dense, "0=0")
                dense.append(g.conv(cat, conv, _LRELU02))
            x5 = g.conv(g.add("Concat", dense, "0=0"), rdb.conv5)
            trunk = g.add("Eltwise", [x5, rdb_in], "0=1 -23301=2,2.000000e-01,1.000000e+00")
        trunk = g.add("Eltwise", [trunk, block_in], "0=1 -23301=2,2.000000e-01,1.000000e+00")
    out = g.add("BinaryOp", [feat, g.conv(trunk, net.conv_body)], "0=0")
    ups = [net.conv_up1, net.conv_up2] + ([net.conv_up3] if net.scale == 8 else [])
    for conv in ups:
        out = g.conv(g.add("Interp", [out], "0=1 1=2.000000e+00 2=2.000000e+00"), conv, _LRELU02)
    out = g.conv(out, net.conv_hr, _LRELU02)
    return g.conv(out, net.conv_last)


ARCH = Architecture(
    name="RRDBNet",
    cls=RRDBNet,
    recognises=_recognises,
    read_kwargs=_read_kwargs,
    kwargs_of=_kwargs_of,
    net_scale=lambda k: int(k["scale"]),
    describe=_describe,
    bytes_per_pixel=_bytes_per_pixel,
    size_multiple=lambda k: {1: 4, 2: 2}.get(int(k["scale"]), 1),
    scales=(1, 2, 4, 8),
    hint_keys=("scale",),
    from_config=_from_config,
    config_keys=("num_feat", "num_block", "num_grow_ch"),
    ncnn_recognises=_ncnn_recognises,
    ncnn_import=_ncnn_import,
    ncnn_export=_ncnn_export,
    onnx_notes="x1/x2 fold the input by pixel-unshuffle (ONNX SpaceToDepth-like reshapes): input sides must be "
    "multiples of 4 (x1) or 2 (x2); the nearest x2 upsamplings export as Resize.",
)
