"""What realesr needs to know about an architecture, in one record (the idea of spandrel's descriptors).

Each network module (rrdbnet.py, srvgg.py) ends with one :class:`Architecture`; ``realesr.archs.ARCHITECTURES``
lists them. The generic code asks these records and never compares architecture names: weight-file
detection and loading (``realesr.weights.spec``), ncnn import/export (``realesr.weights.ncnn``), ONNX export,
building a generator for training, and the CLI's descriptions. Adding a network is one module with its class
and its record, plus its entry in the list.

The ncnn hooks take the parsed layers and a graph writer from ``realesr.weights.ncnn`` as plain arguments, so
this package never imports ``realesr.weights`` (which imports it).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from torch import nn

__all__ = ["PRECISIONS", "Architecture", "ModelTraits", "SizeRules", "StateDict", "Tiling"]

StateDict = Mapping[str, torch.Tensor]
PRECISIONS = ("fp32", "fp16", "bf16")
# How a model takes tiles: "local" (a tile's output depends on pixels near it: tiles with enough padding match
# the whole image), "discouraged" (tiling works but shows, e.g. window attention read off its window grid), "global"
# (every output pixel attends to the whole image: tiles differ everywhere, so the whole image runs when it fits).
Tiling = Literal["local", "discouraged", "global"]


@dataclass(frozen=True)
class SizeRules:
    """What input sizes a model takes, and so what it pads to and how tiles are cut.

    ``multiple_of``: sides must divide by it; ``minimum``: sides at least this; ``square``: height equals width;
    ``window``: the side of its attention windows (0: none), which tiles' reads line up with so that each window
    sees the pixels it sees in the whole image. Padding is by reflection on the right and bottom, then cropped
    (as spandrel's descriptors do: replicate padding changes SAFMN's output by 1.7 levels on average).
    """

    multiple_of: int = 1
    minimum: int = 0
    square: bool = False
    window: int = 0

    def padded(self, height: int, width: int) -> tuple[int, int]:
        """The smallest (height, width) at least this large that these rules accept."""
        h, w = max(height, self.minimum), max(width, self.minimum)
        h, w = -(-h // self.multiple_of) * self.multiple_of, -(-w // self.multiple_of) * self.multiple_of
        return (max(h, w), max(h, w)) if self.square else (h, w)

    @property
    def tile_unit(self) -> int:
        """Tile cores and reads are multiples of this: the size multiple and the attention window."""
        return math.lcm(self.multiple_of, self.window or 1)

    def describe(self) -> str:
        parts = [f"multiple of {self.multiple_of}"] if self.multiple_of > 1 else []
        parts += [f"at least {self.minimum} px"] if self.minimum else []
        parts += ["square"] if self.square else []
        parts += [f"{self.window} px attention windows"] if self.window else []
        return ", ".join(parts) or "any"


@dataclass(frozen=True)
class ModelTraits:
    """What the pipeline asks a loaded model, the same for realesr's networks and for spandrel's models.

    ``bytes_per_pixel``: estimated peak activation memory of one fp32 forward pass per input pixel (half
    precisions need half); ``precisions``: those its layers run soundly in; ``channels_last``: whether its layers
    gain from that memory format (realesr's convolutional networks do; attention models reshape with views that
    it would break); ``licence``: shown where a model's licence is not the permissive default.
    """

    arch: str
    scale: int
    in_channels: int = 3
    out_channels: int = 3
    size: SizeRules = field(default_factory=SizeRules)
    precisions: tuple[str, ...] = PRECISIONS
    tiling: Tiling = "local"
    bytes_per_pixel: float = 23_000.0
    channels_last: bool = True
    licence: str = ""

    def with_scale(self, scale: int) -> ModelTraits:
        return replace(self, scale=scale)


@dataclass(frozen=True)
class Architecture:
    """Everything about one architecture.

    ``recognises(sd)`` is a cheap test on the key names (the first record that says yes reads the dict);
    ``read_kwargs(sd, hints)`` reads the constructor arguments from tensor shapes, using ``hints`` (saved
    beside the tensors) only for what tensors cannot show, and raises ``WeightsFormatError`` when the
    tensors do not fit; ``hint_keys`` names those kwargs. ``kwargs_of(net)`` gives a live network's
    arguments; ``net_scale(kwargs)`` its factor; ``size_multiple(kwargs)`` what input sides must divide by;
    ``describe(kwargs)`` a short shape for people ("23 blocks, 64 feat"). ``scales`` and ``in_channels``
    are what the class accepts, ``precisions`` what it runs soundly in, ``tiling`` how it takes tiles (see
    :data:`Tiling`), ``bytes_per_pixel(kwargs)`` its peak fp32 activation memory per input pixel (the
    Upscaler's automatic tile size and ``realesr models inspect`` use it).

    ``from_config(network, scale)`` gives the kwargs of a fresh generator from the trainer's
    ``NetworkConfig``, of which it reads ``config_keys`` (the trainer checks them and refuses to resume a run
    whose values differ: the tensors' shapes depend on them).
    ncnn: ``ncnn_recognises(layer_types)`` tells its graph apart,
    ``ncnn_import(layers, convs, prelus, source)`` maps the parsed weights onto the state-dict keys and
    returns ``(state_dict, hints)``, ``ncnn_export(writer, net, blob)`` writes its layers and returns the
    output blob. ``onnx_notes``: what an ONNX export of it needs to know (docs and errors quote it).
    """

    name: str
    cls: type[nn.Module]
    recognises: Callable[[StateDict], bool]
    read_kwargs: Callable[[StateDict, Mapping[str, Any]], dict[str, Any]]
    kwargs_of: Callable[[nn.Module], dict[str, Any]]
    net_scale: Callable[[Mapping[str, Any]], int]
    describe: Callable[[Mapping[str, Any]], str]
    bytes_per_pixel: Callable[[Mapping[str, Any]], float]
    size_multiple: Callable[[Mapping[str, Any]], int] = lambda kwargs: 1
    scales: tuple[int, ...] = (1, 2, 3, 4, 8)
    in_channels: tuple[int, ...] = (1, 3, 4)
    precisions: tuple[str, ...] = PRECISIONS
    tiling: Tiling = "local"
    hint_keys: tuple[str, ...] = ()
    from_config: Callable[[Any, int], dict[str, Any]] | None = None
    config_keys: tuple[str, ...] = ()
    ncnn_recognises: Callable[[Counter[str]], bool] | None = None
    ncnn_import: Callable[..., tuple[dict[str, torch.Tensor], dict[str, Any]]] | None = None
    ncnn_export: Callable[[Any, nn.Module, str], str] | None = None
    onnx_notes: str = ""

    def build(self, kwargs: Mapping[str, Any]) -> nn.Module:
        return self.cls(**kwargs)

    def traits(self, kwargs: Mapping[str, Any]) -> ModelTraits:
        """The model-level descriptor of this network built with ``kwargs``."""
        return ModelTraits(
            arch=self.name,
            scale=self.net_scale(kwargs),
            in_channels=int(kwargs.get("num_in_ch", 3)),
            out_channels=int(kwargs.get("num_out_ch", 3)),
            size=SizeRules(multiple_of=self.size_multiple(kwargs)),
            precisions=self.precisions,
            tiling=self.tiling,
            bytes_per_pixel=self.bytes_per_pixel(kwargs),
        )
