"""Architecture recognition: which network a state dict holds, from its keys and shapes alone."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from realesr import archs
from realesr.archs import Architecture, ModelTraits, SizeRules
from realesr.errors import WeightsFormatError

__all__ = ["ModelSpec", "OutputResize", "check_resize_factor", "detect_arch", "spec_of", "traits_of"]

# A factor beyond this is no resize a graph means (the largest official tail is x0.75).
_MAX_TOTAL_SCALE = 16


def check_resize_factor(factor: object, net_scale: int, source: str = "output resize") -> float:
    """``factor`` as a float if it is a bicubic output-resize factor realesr reproduces: finite, in (0, 1),
    turning the x``net_scale`` network into a whole overall scale; else a WeightsFormatError saying why."""
    try:
        value = float(factor)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise WeightsFormatError(f"{source}: factor {factor!r} is not a number") from None
    total = net_scale * value
    if not math.isfinite(value) or not 0 < value < 1:
        raise WeightsFormatError(
            f"{source}: factor {factor!r} must be a finite number in (0, 1) (a down-resize of the x{net_scale} output)"
        )
    if abs(total - round(total)) > 1e-6 or not 1 <= round(total) <= _MAX_TOTAL_SCALE:
        raise WeightsFormatError(
            f"{source}: factor {factor!r} times the network's x{net_scale} is {total:g}, not a whole scale"
        )
    return value


class OutputResize(nn.Module):
    """A network followed by a fixed bicubic resize of its output.

    The ncnn realesr-animevideov3 x2/x3 models of the data package are the x4 network with exactly
    this tail (an ncnn ``Interp`` bicubic by 0.5 / 0.75); this module reproduces those graphs.
    ``scale`` is the overall integer factor, so tiling code can treat it as any other generator.
    """

    def __init__(self, net: nn.Module, factor: float) -> None:
        super().__init__()
        # Every architecture sets an int .scale; nn.Module's __getattr__ types it Tensor | Module.
        net_scale = int(cast(int, net.scale))
        factor = check_resize_factor(factor, net_scale)
        total = net_scale * factor
        self.net = net
        self.factor = float(factor)
        self.scale = int(round(total))
        self.size_multiple = spec_of(net).size_multiple

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
        archs.arch_named(self.arch)  # an unknown name is a WeightsFormatError listing the known ones
        if self.output_resize is not None:
            check_resize_factor(self.output_resize, self.net_scale)

    @property
    def architecture(self) -> Architecture:
        return archs.arch_named(self.arch)

    @property
    def net_scale(self) -> int:
        return self.architecture.net_scale(self.kwargs)

    @property
    def size_multiple(self) -> int:
        """Input sides must be a multiple of this (pixel-unshuffle of RRDBNet x1/x2)."""
        return self.architecture.size_multiple(self.kwargs)

    @property
    def traits(self) -> ModelTraits:
        """What the pipeline asks of the model (the architecture's traits; the overall scale with a resize tail)."""
        return self.architecture.traits(self.kwargs).with_scale(self.scale)

    def build_network(self) -> nn.Module:
        """The bare network (without the output resize), randomly initialised."""
        try:
            return self.architecture.build(self.kwargs)
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
    def shape(self) -> str:
        """The architecture's short shape ("23 blocks, 64 feat, grow 32")."""
        return self.architecture.describe(self.kwargs)

    @property
    def description(self) -> str:
        tail = f", then bicubic x{self.output_resize:g} of the x{self.net_scale} output" if self.output_resize else ""
        chans = "" if (self.num_in_ch, self.num_out_ch) == (3, 3) else f", {self.num_in_ch}->{self.num_out_ch} ch"
        return f"{self.arch} x{self.scale} ({self.shape}{chans}{tail}), {self.num_params:,} params"

    def hints(self) -> dict[str, Any]:
        """The kwargs that tensors cannot show, for :func:`detect_arch` (saved beside the tensors)."""
        return {k: self.kwargs[k] for k in self.architecture.hint_keys if k in self.kwargs}

    def to_metadata(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"arch": self.arch, "kwargs": dict(self.kwargs), "scale": self.scale}
        if self.output_resize:
            meta["output_resize"] = self.output_resize
        return meta


def _summary(sd: Mapping[str, Any], limit: int = 6) -> str:
    keys = list(sd.keys())
    shown = ", ".join(f"{k} {tuple(getattr(sd[k], 'shape', ()))}" for k in keys[:limit])
    more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
    return f"{len(keys)} entries: {shown}{more}" if keys else "no tensors"


def _spec_from(arch: Architecture, kwargs: dict[str, Any]) -> ModelSpec:
    return ModelSpec(
        arch.name, kwargs, arch.net_scale(kwargs), int(kwargs.get("num_in_ch", 3)), int(kwargs.get("num_out_ch", 3))
    )


def detect_arch(
    sd: Mapping[str, torch.Tensor], hints: Mapping[str, Any] | None = None, finite: bool = True
) -> ModelSpec:
    """Recognise the network of an (unwrapped) state dict and check that every tensor fits it.

    The records of ``realesr.archs.ARCHITECTURES`` are asked in turn. ``hints`` (constructor kwargs saved
    beside the tensors, e.g. by :func:`save_model`) only settle what tensors cannot show (``act_type``
    ReLU vs LeakyReLU in an SRVGGNetCompact, ``scale`` 4 for an RRDBNet whose input channels look like
    pixel-unshuffle); a hint that contradicts the tensors is an error. Raises :class:`WeightsFormatError`
    naming what was found when the dict is not a known network. ``finite``: also refuse NaN or infinite values
    (a damaged file; off when saving, so that a diverged training run can still be written and looked at).
    """
    if not sd:
        raise WeightsFormatError("the state dict is empty")
    arch = archs.recognise(sd) if all(isinstance(k, str) for k in sd) else None
    # Integer buffers (HAT's position tables, BatchNorm counters) are fine in other architectures' files: only
    # realesr's own networks are floating-point throughout, so only a recognised dict must be.
    _check_tensors(sd, finite, floats_only=arch is not None)
    if arch is None:
        raise WeightsFormatError(f"not a state dict of {' nor '.join(archs.arch_names())}; found {_summary(sd)}")
    try:
        kwargs = arch.read_kwargs(sd, dict(hints or {}))
    except KeyError as err:
        raise WeightsFormatError(f"incomplete {arch.name} state dict: missing {err}; found {_summary(sd)}") from err
    except (IndexError, ValueError, TypeError, ZeroDivisionError, AttributeError) as err:
        # The keys looked like this network but their numbering or shapes do not (e.g. "body.x.weight", a
        # 1-D tensor where a convolution belongs): whatever the reader tripped on, it is not this network.
        raise WeightsFormatError(
            f"looks like {arch.name} but is not one ({type(err).__name__}: {err}); found {_summary(sd)}"
        ) from err
    spec = _spec_from(arch, kwargs)
    _check_shapes(spec, sd)
    return spec


def _check_tensors(sd: Mapping[str, Any], finite: bool, floats_only: bool = True) -> None:
    """Every entry a named, non-empty, floating-point tensor with finite values: a file that passes this can only
    fail detection by not being a known network, never by tripping the readers of shapes."""
    for key, value in sd.items():
        if not isinstance(key, str):
            raise WeightsFormatError(f"a key is {type(key).__name__} {key!r}, not a tensor name")
        if not isinstance(value, torch.Tensor):
            raise WeightsFormatError(f"{key} is a {type(value).__name__}, not a tensor")
        if floats_only and not value.is_floating_point():
            raise WeightsFormatError(f"{key} holds {value.dtype} values; network weights are floating-point")
        if value.numel() == 0:
            raise WeightsFormatError(f"{key} has shape {tuple(value.shape)}: no values (a layer of zero channels)")
        if finite and value.device.type != "meta" and not bool(torch.isfinite(value).all()):
            raise WeightsFormatError(f"{key} holds NaN or infinite values; the file is damaged")


def _check_shapes(spec: ModelSpec, sd: Mapping[str, torch.Tensor]) -> None:
    with torch.device("meta"):
        expected = spec.build_network().state_dict()
    problems = state_dict_mismatch(expected, sd, shown=5)
    if problems:
        raise WeightsFormatError(f"looks like {spec.arch} x{spec.scale} but does not fit it: {'; '.join(problems)}")


def state_dict_mismatch(
    expected: Mapping[str, torch.Tensor], given: Mapping[str, torch.Tensor], shown: int = 3
) -> list[str]:
    """What keeps ``given`` from loading strictly into a network whose state dict is ``expected``: a phrase each
    for the keys missing, the keys unexpected, the tensors of other shapes (the first ``shown`` of each named);
    empty when it fits. The one wording of a mismatch for detection, strict loads and the trainer's init_from."""
    missing = [k for k in expected if k not in given]
    unexpected = [k for k in given if k not in expected]
    wrong = [
        f"{k} {tuple(given[k].shape)} (network {tuple(v.shape)})"
        for k, v in expected.items()
        if k in given and tuple(given[k].shape) != tuple(v.shape)
    ]
    problems = []
    for label, names in (("missing", missing), ("unexpected", unexpected), ("wrong shapes", wrong)):
        if names:
            more = f" and {len(names) - shown} more" if len(names) > shown else ""
            problems.append(f"{label} {', '.join(names[:shown])}{more}")
    return problems


def spec_of(net: nn.Module) -> ModelSpec:
    """The :class:`ModelSpec` of a live network (also through ``torch.compile`` and :class:`OutputResize`)."""
    net = getattr(net, "_orig_mod", net)
    if isinstance(net, OutputResize):
        inner = spec_of(net.net)
        return ModelSpec(inner.arch, inner.kwargs, net.scale, inner.num_in_ch, inner.num_out_ch, net.factor)
    arch = archs.arch_of(net)
    return _spec_from(arch, arch.kwargs_of(net))


def traits_of(net: nn.Module) -> ModelTraits:
    """What the pipeline asks of a live network: its own ``traits`` (spandrel's models, ONNX files), else its
    architecture's record; for any other module, the documented contract of ``Upscaler(nn.Module)``: an int
    ``.scale``, optionally ``.size_multiple`` and ``.num_in_ch``, and RRDBNet's width for the memory estimate."""
    net = getattr(net, "_orig_mod", net)
    own = getattr(net, "traits", None)
    if isinstance(own, ModelTraits):
        return own
    if isinstance(net, OutputResize) or any(type(net) is arch.cls for arch in archs.ARCHITECTURES):
        return spec_of(net).traits
    scale = getattr(net, "scale", None)
    if not isinstance(scale, int) or isinstance(scale, bool) or scale <= 0:
        raise WeightsFormatError(f"the network ({type(net).__name__}) has no integer .scale attribute")
    multiple = getattr(net, "size_multiple", 1)
    channels = getattr(net, "num_in_ch", 3)
    return ModelTraits(
        arch=type(net).__name__,
        scale=scale,
        in_channels=int(channels) if isinstance(channels, int) else 3,
        out_channels=int(channels) if isinstance(channels, int) else 3,
        size=SizeRules(multiple_of=int(multiple) if isinstance(multiple, int) and multiple > 0 else 1),
        bytes_per_pixel=archs.arch_named("RRDBNet").bytes_per_pixel(dict(num_feat=64, num_grow_ch=32, scale=scale)),
    )
