"""Networks with the official Real-ESRGAN / BasicSR state-dict layouts, and the registry of architectures.

``ARCHITECTURES`` is the plain list of :class:`Architecture` records that weights detection, ncnn and ONNX
export, the trainer and the CLI ask; a new network is one module ending in its record, added here.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from realesr.archs import rrdbnet, srvgg
from realesr.archs.base import PRECISIONS, Architecture, ModelTraits, SizeRules, Tiling
from realesr.archs.discriminator import UNetDiscriminatorSN
from realesr.archs.rrdbnet import RRDBNet
from realesr.archs.srvgg import SRVGGNetCompact
from realesr.errors import WeightsFormatError

__all__ = [
    "ARCHITECTURES",
    "PRECISIONS",
    "Architecture",
    "ModelTraits",
    "RRDBNet",
    "SRVGGNetCompact",
    "SizeRules",
    "Tiling",
    "UNetDiscriminatorSN",
    "arch_named",
    "arch_of",
    "arch_names",
    "recognise",
]

# Adding a network: its module (class + record) and its entry here. Order matters only for recognise(): the first
# record whose key test says yes reads the state dict.
ARCHITECTURES: tuple[Architecture, ...] = (rrdbnet.ARCH, srvgg.ARCH)


def arch_names() -> tuple[str, ...]:
    return tuple(a.name for a in ARCHITECTURES)


def arch_named(name: str) -> Architecture:
    for arch in ARCHITECTURES:
        if arch.name == name:
            return arch
    raise WeightsFormatError(f"unknown architecture {name!r}; known: {', '.join(arch_names())}")


def arch_of(net: nn.Module) -> Architecture:
    """The record of a live network (its exact class; subclasses are not assumed to keep the layout)."""
    for arch in ARCHITECTURES:
        if type(net) is arch.cls:
            return arch
    raise WeightsFormatError(f"{type(net).__name__} is not a network realesr can describe ({', '.join(arch_names())})")


def recognise(sd: Mapping[str, torch.Tensor]) -> Architecture | None:
    return next((arch for arch in ARCHITECTURES if arch.recognises(sd)), None)
