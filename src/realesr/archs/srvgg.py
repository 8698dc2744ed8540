"""SRVGGNetCompact, the small VGG-style network of realesr-animevideov3 and realesr-general-x4v3.

Official layout: ``body.0`` first conv, then (activation, conv) pairs, the last conv producing
``num_out_ch * upscale**2`` channels for pixel shuffle; the nearest-upsampled input is added so the
network only learns the residual.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from realesr.archs.base import Architecture, StateDict
from realesr.errors import WeightsFormatError

__all__ = ["ARCH", "SRVGGNetCompact"]


class SRVGGNetCompact(nn.Module):
    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_conv: int = 16,
        upscale: int = 4,
        act_type: str = "prelu",
    ) -> None:
        super().__init__()
        if act_type not in ("prelu", "relu", "leakyrelu"):
            raise ValueError(f"act_type must be 'prelu', 'relu' or 'leakyrelu', not {act_type!r}")
        if not 1 <= upscale <= 8:
            raise ValueError(f"SRVGGNetCompact upscale must be in 1..8, not {upscale}")
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.num_feat = num_feat
        self.num_conv = num_conv
        self.upscale = upscale
        self.scale = upscale
        self.act_type = act_type

        def activation() -> nn.Module:
            if act_type == "prelu":
                return nn.PReLU(num_parameters=num_feat)
            if act_type == "relu":
                return nn.ReLU(inplace=True)
            return nn.LeakyReLU(negative_slope=0.1, inplace=True)

        layers: list[nn.Module] = [nn.Conv2d(num_in_ch, num_feat, 3, 1, 1), activation()]
        for _ in range(num_conv):
            layers += [nn.Conv2d(num_feat, num_feat, 3, 1, 1), activation()]
        layers.append(nn.Conv2d(num_feat, num_out_ch * upscale * upscale, 3, 1, 1))
        self.body = nn.ModuleList(layers)
        self.upsampler = nn.PixelShuffle(upscale)

    size_multiple = 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        out = self.upsampler(out)
        return out + F.interpolate(x, scale_factor=self.upscale, mode="nearest")


# ------------------------------------------------------------------------------------------ its record


def _recognises(sd: StateDict) -> bool:
    return "body.0.weight" in sd and all(k.startswith("body.") for k in sd)


def _read_kwargs(sd: StateDict, hints: Mapping[str, Any]) -> dict[str, Any]:
    act_type = hints.get("act_type")
    conv_ids = sorted(
        int(k.split(".")[1]) for k in sd if k.startswith("body.") and k.endswith(".weight") and sd[k].ndim == 4
    )
    prelu_ids = sorted(
        int(k.split(".")[1]) for k in sd if k.startswith("body.") and k.endswith(".weight") and sd[k].ndim == 1
    )
    if not conv_ids or conv_ids != list(range(0, 2 * len(conv_ids), 2)):
        raise WeightsFormatError(f"SRVGGNetCompact convolutions must be body.0, body.2, ...; found body.{conv_ids}")
    first = tuple(sd[f"body.{conv_ids[0]}.weight"].shape)
    last = tuple(sd[f"body.{conv_ids[-1]}.weight"].shape)
    num_feat, num_in_ch = first[0], first[1]
    num_conv = len(conv_ids) - 2
    if prelu_ids:
        if prelu_ids != list(range(1, 2 * len(conv_ids) - 2, 2)):
            raise WeightsFormatError(
                f"SRVGGNetCompact PReLU weights must follow every conv but the last; found body.{prelu_ids}"
            )
        detected_act = "prelu"
    else:
        # ReLU and LeakyReLU carry no weights; the file cannot tell them apart, so a caller may say.
        detected_act = act_type if act_type in ("relu", "leakyrelu") else "relu"
    if act_type is not None and act_type != detected_act:
        raise WeightsFormatError(f"metadata says act_type={act_type!r} but the tensors say {detected_act!r}")
    out = last[0]
    # The last conv gives out_ch * upscale^2 channels; prefer as many output channels as input ones.
    for num_out_ch in [num_in_ch, 3, 1] + [c for c in range(1, out + 1) if out % c == 0]:
        if out % num_out_ch == 0 and math.isqrt(out // num_out_ch) ** 2 == out // num_out_ch:
            upscale = math.isqrt(out // num_out_ch)
            break
    else:  # pragma: no cover - the candidates always include out itself
        raise WeightsFormatError(f"SRVGGNetCompact last conv has {out} channels: not channels x scale^2")
    return dict(
        num_in_ch=num_in_ch,
        num_out_ch=num_out_ch,
        num_feat=num_feat,
        num_conv=num_conv,
        upscale=upscale,
        act_type=detected_act,
    )


def _kwargs_of(net: nn.Module) -> dict[str, Any]:
    assert isinstance(net, SRVGGNetCompact)
    return dict(
        num_in_ch=net.num_in_ch,
        num_out_ch=net.num_out_ch,
        num_feat=net.num_feat,
        num_conv=net.num_conv,
        upscale=net.upscale,
        act_type=net.act_type,
    )


def _describe(k: Mapping[str, Any]) -> str:
    return f"{k['num_conv']} conv{'' if k['num_conv'] == 1 else 's'}, {k['num_feat']} feat, {k['act_type']}"


def _from_config(network: Any, scale: int) -> dict[str, Any]:
    return dict(
        num_in_ch=3,
        num_out_ch=3,
        num_feat=network.num_feat,
        num_conv=network.num_conv,
        upscale=scale,
        act_type=network.act_type,
    )


def _bytes_per_pixel(k: Mapping[str, Any]) -> float:
    """Peak fp32 activation memory per input pixel: the convolutions run at the input's resolution (a conv's
    input and output plus the PReLU's, num_feat channels each), then the pixel-shuffled output, the nearest
    skip and their sum at the output's (num_out_ch x scale^2 each); a quarter more for the allocator."""
    feat, out = int(k["num_feat"]), int(k["num_out_ch"]) * int(k["upscale"]) ** 2
    return 4.0 * (feat * 3 + out * 4) * 1.25


def _ncnn_recognises(types: Counter[str]) -> bool:
    return types["PixelShuffle"] > 0 and not types["Concat"]


def _activation_of(layer: Any) -> str | None:
    act = int(layer.get(9, 0))
    if act == 0:
        return None
    if act == 1:
        return "relu"
    if act == 2:
        slope = float(list(layer.params.get(10, [0.0]))[0])  # -23310=1,slope
        return f"leaky{slope:g}"
    return f"act{act}"


def _ncnn_import(layers: list, convs: list, prelus: list, source: str) -> tuple[dict[str, torch.Tensor], dict]:
    sd: dict[str, torch.Tensor] = {}
    if prelus:
        if len(prelus) != len(convs) - 1:
            raise WeightsFormatError(
                f"{source}: {len(convs)} convolutions but {len(prelus)} PReLU layers; "
                f"SRVGGNetCompact has one after every conv but the last"
            )
        act = "prelu"
    else:
        acts = {a for a in (_activation_of(layer) for layer, _, _ in convs[:-1]) if a is not None}
        acts |= {
            "relu" if float(layer.get(0, 0.0)) == 0 else f"leaky{float(layer.get(0)):g}"
            for layer in layers
            if layer.type == "ReLU"
        }
        mapping = {"relu": "relu", "leaky0.1": "leakyrelu"}
        if len(acts) != 1 or next(iter(acts)) not in mapping:
            raise WeightsFormatError(
                f"{source}: SRVGGNetCompact activations {sorted(map(str, acts))} are not one "
                f"of PReLU, ReLU, LeakyReLU(0.1)"
            )
        act = mapping[next(iter(acts))]
    for i, (_layer, weight, bias) in enumerate(convs):
        sd[f"body.{2 * i}.weight"] = weight
        sd[f"body.{2 * i}.bias"] = bias
    for i, (_layer, slope) in enumerate(prelus):
        sd[f"body.{2 * i + 1}.weight"] = slope
    return sd, {"act_type": act}


def _ncnn_export(g: Any, net: nn.Module, x: str) -> str:
    assert isinstance(net, SRVGGNetCompact)
    act = {"prelu": "", "relu": " 9=1", "leakyrelu": " 9=2 -23310=1,1.000000e-01"}[net.act_type]
    out = x
    layers = list(net.body)
    for layer in layers[:-1]:
        if isinstance(layer, nn.Conv2d):
            out = g.conv(out, layer, act)
        elif isinstance(layer, nn.PReLU):
            out = g.prelu(out, layer)
    out = g.add("PixelShuffle", [g.conv(out, layers[-1])], f"0={net.upscale}")
    s = f"{float(net.upscale):e}"
    base = g.add("Interp", [x], f"0=1 1={s} 2={s}")
    return g.add("BinaryOp", [out, base], "0=0")


ARCH = Architecture(
    name="SRVGGNetCompact",
    cls=SRVGGNetCompact,
    recognises=_recognises,
    read_kwargs=_read_kwargs,
    kwargs_of=_kwargs_of,
    net_scale=lambda k: int(k["upscale"]),
    describe=_describe,
    bytes_per_pixel=_bytes_per_pixel,
    scales=(1, 2, 3, 4, 5, 6, 7, 8),
    hint_keys=("act_type",),
    from_config=_from_config,
    config_keys=("num_feat", "num_conv", "act_type"),
    ncnn_recognises=_ncnn_recognises,
    ncnn_import=_ncnn_import,
    ncnn_export=_ncnn_export,
    onnx_notes="any input size; PixelShuffle exports as DepthToSpace (CRD mode) and the nearest skip as Resize.",
)
