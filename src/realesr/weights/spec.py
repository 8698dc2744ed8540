"""Architecture recognition: which network a state dict holds, from its keys and shapes alone."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch
from torch import nn
from torch.nn import functional as F

from realesr.archs import RRDBNet, SRVGGNetCompact
from realesr.errors import WeightsFormatError

__all__ = ["ModelSpec", "OutputResize", "detect_arch", "spec_of"]

ARCHS = ("RRDBNet", "SRVGGNetCompact")


class OutputResize(nn.Module):
    """A network followed by a fixed bicubic resize of its output.

    The ncnn realesr-animevideov3 x2/x3 models of the data package are the x4 network with exactly
    this tail (an ncnn ``Interp`` bicubic by 0.5 / 0.75); this module reproduces those graphs.
    ``scale`` is the overall integer factor, so tiling code can treat it as any other generator.
    """

    def __init__(self, net: nn.Module, factor: float) -> None:
        super().__init__()
        net_scale = int(net.scale)
        total = net_scale * factor
        if not (0 < factor < 1) or abs(total - round(total)) > 1e-6:
            raise ValueError(f"output resize factor {factor} must be in (0, 1) and make the x{net_scale} scale an integer")
        self.net = net
        self.factor = float(factor)
        self.scale = int(round(total))
        self.size_multiple = int(getattr(net, "size_multiple", 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.net(x)
        size = (x.shape[-2] * self.scale, x.shape[-1] * self.scale)
        # ncnn's bicubic Interp: a = -0.75, half-pixel centres, no antialiasing -- as PyTorch's bicubic.
        return F.interpolate(out, size=size, mode="bicubic", align_corners=False)


@dataclass(frozen=True)
class ModelSpec:
    """What network a weights file holds.

    ``kwargs`` are the constructor arguments of ``arch``; ``scale`` is the factor of the whole model,
    which differs from the network's own only when ``output_resize`` (a bicubic factor applied after
    the network, see :class:`OutputResize`) is set.
    """

    arch: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    scale: int = 4
    num_in_ch: int = 3
    num_out_ch: int = 3
    output_resize: float | None = None

    def __post_init__(self) -> None:
        if self.arch not in ARCHS:
            raise WeightsFormatError(f"unknown architecture {self.arch!r}; known: {', '.join(ARCHS)}")

    @property
    def net_scale(self) -> int:
        return int(self.kwargs["scale"] if self.arch == "RRDBNet" else self.kwargs["upscale"])

    def build_network(self) -> nn.Module:
        """The bare network (without the output resize), randomly initialised."""
        cls = RRDBNet if self.arch == "RRDBNet" else SRVGGNetCompact
        try:
            return cls(**self.kwargs)
        except (TypeError, ValueError) as err:
            raise WeightsFormatError(f"cannot build {self.arch} with {self.kwargs}: {err}") from err

    def build(self) -> nn.Module:
        net = self.build_network()
        return OutputResize(net, self.output_resize) if self.output_resize else net

    @property
    def num_params(self) -> int:
        # Built on the meta device: counting 16.7 M parameters must not cost an initialisation.
        with torch.device("meta"):
            net = self.build_network()
        return sum(p.numel() for p in net.parameters())

    @property
    def description(self) -> str:
        k = self.kwargs
        def count(n: int, noun: str) -> str:
            return f"{n} {noun}{'' if n == 1 else 's'}"

        if self.arch == "RRDBNet":
            shape = f"{count(k['num_block'], 'block')}, {k['num_feat']} feat, grow {k['num_grow_ch']}"
        else:
            shape = f"{count(k['num_conv'], 'conv')}, {k['num_feat']} feat, {k['act_type']}"
        tail = f", then bicubic x{self.output_resize:g} of the x{self.net_scale} output" if self.output_resize else ""
        chans = "" if (self.num_in_ch, self.num_out_ch) == (3, 3) else f", {self.num_in_ch}->{self.num_out_ch} ch"
        return f"{self.arch} x{self.scale} ({shape}{chans}{tail}), {self.num_params:,} params"

    def to_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"arch": self.arch, "kwargs": dict(self.kwargs), "scale": self.scale}
        if self.output_resize:
            meta["output_resize"] = self.output_resize
        return meta


def _shape(sd: Mapping[str, torch.Tensor], key: str) -> tuple[int, ...]:
    return tuple(sd[key].shape)


def _summary(sd: Mapping[str, Any], limit: int = 6) -> str:
    keys = list(sd.keys())
    shown = ", ".join(f"{k} {tuple(getattr(sd[k], 'shape', ()))}" for k in keys[:limit])
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{len(keys)} entries: {shown}{more}" if keys else "no tensors"


def _detect_rrdbnet(sd: Mapping[str, torch.Tensor], scale_hint: int | None) -> ModelSpec:
    w_first = _shape(sd, "conv_first.weight")
    w_last = _shape(sd, "conv_last.weight")
    num_feat, in_first = w_first[0], w_first[1]
    num_out_ch = w_last[0]
    block_ids = {int(k.split(".")[1]) for k in sd if k.startswith("body.") and k.split(".")[1].isdigit()}
    num_block = len(block_ids)
    if block_ids != set(range(num_block)):
        raise WeightsFormatError(f"RRDBNet body blocks are not numbered 0..{num_block - 1}: {sorted(block_ids)}")
    num_grow_ch = _shape(sd, "body.0.rdb1.conv1.weight")[0] if num_block else 32
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
    kwargs = dict(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_block=num_block,
                  num_grow_ch=num_grow_ch, scale=scale)
    return ModelSpec("RRDBNet", kwargs, scale, num_in_ch, num_out_ch)


def _detect_srvgg(sd: Mapping[str, torch.Tensor], act_type: str | None) -> ModelSpec:
    conv_ids = sorted(int(k.split(".")[1]) for k in sd if k.startswith("body.") and k.endswith(".weight")
                      and sd[k].ndim == 4)
    prelu_ids = sorted(int(k.split(".")[1]) for k in sd if k.startswith("body.") and k.endswith(".weight")
                       and sd[k].ndim == 1)
    if not conv_ids or conv_ids != list(range(0, 2 * len(conv_ids), 2)):
        raise WeightsFormatError(f"SRVGGNetCompact convolutions must be body.0, body.2, ...; found body.{conv_ids}")
    first = _shape(sd, f"body.{conv_ids[0]}.weight")
    last = _shape(sd, f"body.{conv_ids[-1]}.weight")
    num_feat, num_in_ch = first[0], first[1]
    num_conv = len(conv_ids) - 2
    if prelu_ids:
        if prelu_ids != list(range(1, 2 * len(conv_ids) - 2, 2)):
            raise WeightsFormatError(f"SRVGGNetCompact PReLU weights must follow every conv but the last; found body.{prelu_ids}")
        detected_act = "prelu"
    else:
        # ReLU and LeakyReLU carry no weights; the file cannot tell them apart, so a caller may say.
        detected_act = act_type if act_type in ("relu", "leakyrelu") else "relu"
    if act_type is not None and act_type != detected_act:
        raise WeightsFormatError(f"metadata says act_type={act_type!r} but the tensors say {detected_act!r}")
    out = last[0]
    candidates = [num_in_ch, 3, 1] + [c for c in range(1, out + 1) if out % c == 0]
    for num_out_ch in candidates:
        if out % num_out_ch == 0 and math.isqrt(out // num_out_ch) ** 2 == out // num_out_ch and out // num_out_ch > 0:
            upscale = math.isqrt(out // num_out_ch)
            break
    else:  # pragma: no cover - candidates always include out itself
        raise WeightsFormatError(f"SRVGGNetCompact last conv has {out} channels: not channels x scale^2")
    kwargs = dict(num_in_ch=num_in_ch, num_out_ch=num_out_ch, num_feat=num_feat, num_conv=num_conv,
                  upscale=upscale, act_type=detected_act)
    return ModelSpec("SRVGGNetCompact", kwargs, upscale, num_in_ch, num_out_ch)


def detect_arch(sd: Mapping[str, torch.Tensor], hints: Mapping[str, Any] | None = None) -> ModelSpec:
    """Recognise the network of an (unwrapped) state dict and check that every tensor fits it.

    ``hints`` (constructor kwargs saved beside the tensors, e.g. by :func:`save_model`) only settle
    what tensors cannot show: ``act_type`` ReLU vs LeakyReLU in an SRVGGNetCompact, and ``scale`` 4
    for an RRDBNet whose input channels look like pixel-unshuffle; a hint that contradicts the
    tensors is an error. Raises :class:`WeightsFormatError` naming what was found when the dict is
    not a known network.
    """
    hints = hints or {}
    act_type = hints.get("act_type")
    if not sd:
        raise WeightsFormatError("the state dict is empty")
    try:
        if "conv_first.weight" in sd and "conv_last.weight" in sd:
            spec = _detect_rrdbnet(sd, hints.get("scale"))
        elif "body.0.weight" in sd and all(k.startswith("body.") for k in sd):
            spec = _detect_srvgg(sd, act_type)
        else:
            raise WeightsFormatError(
                f"not an RRDBNet (conv_first/body/conv_last) nor an SRVGGNetCompact (body.N) state dict; "
                f"found {_summary(sd)}")
    except (KeyError, IndexError) as err:
        raise WeightsFormatError(f"incomplete state dict: missing {err}; found {_summary(sd)}") from err
    _check_shapes(spec, sd)
    return spec


def _check_shapes(spec: ModelSpec, sd: Mapping[str, torch.Tensor]) -> None:
    with torch.device("meta"):
        expected = spec.build_network().state_dict()
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {tuple(v.shape)})" for k, v in expected.items()
             if k in sd and tuple(sd[k].shape) != tuple(v.shape)]
    problems = []
    if missing:
        problems.append(f"missing {', '.join(missing[:5])}" + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:5])}" + (f" and {len(unexpected) - 5} more" if len(unexpected) > 5 else ""))
    if wrong:
        problems.append(f"wrong shapes {', '.join(wrong[:3])}")
    if problems:
        raise WeightsFormatError(f"looks like {spec.arch} x{spec.scale} but does not fit it: {'; '.join(problems)}")


def spec_of(net: nn.Module) -> ModelSpec:
    """The :class:`ModelSpec` of a live network (also through ``torch.compile`` and :class:`OutputResize`)."""
    net = getattr(net, "_orig_mod", net)
    if isinstance(net, OutputResize):
        inner = spec_of(net.net)
        return ModelSpec(inner.arch, inner.kwargs, net.scale, inner.num_in_ch, inner.num_out_ch, net.factor)
    if isinstance(net, RRDBNet):
        kwargs = dict(num_in_ch=net.num_in_ch, num_out_ch=net.num_out_ch, num_feat=net.num_feat,
                      num_block=net.num_block, num_grow_ch=net.num_grow_ch, scale=net.scale)
        return ModelSpec("RRDBNet", kwargs, net.scale, net.num_in_ch, net.num_out_ch)
    if isinstance(net, SRVGGNetCompact):
        kwargs = dict(num_in_ch=net.num_in_ch, num_out_ch=net.num_out_ch, num_feat=net.num_feat,
                      num_conv=net.num_conv, upscale=net.upscale, act_type=net.act_type)
        return ModelSpec("SRVGGNetCompact", kwargs, net.upscale, net.num_in_ch, net.num_out_ch)
    raise WeightsFormatError(f"{type(net).__name__} is not a network realesr can describe (RRDBNet, SRVGGNetCompact)")
