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

from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["Architecture", "StateDict"]

StateDict = Mapping[str, torch.Tensor]


@dataclass(frozen=True)
class Architecture:
    """Everything about one architecture.

    ``recognises(sd)`` is a cheap test on the key names (the first record that says yes reads the dict);
    ``read_kwargs(sd, hints)`` reads the constructor arguments from tensor shapes, using ``hints`` (saved
    beside the tensors) only for what tensors cannot show, and raises ``WeightsFormatError`` when the
    tensors do not fit; ``hint_keys`` names those kwargs. ``kwargs_of(net)`` gives a live network's
    arguments; ``net_scale(kwargs)`` its factor; ``size_multiple(kwargs)`` what input sides must divide by;
    ``describe(kwargs)`` a short shape for people ("23 blocks, 64 feat"). ``scales`` and ``in_channels``
    are what the class accepts, ``half`` whether fp16/bf16 inference is sound.

    ``from_config(network, scale)`` gives the kwargs of a fresh generator from the trainer's
    ``NetworkConfig``. ncnn: ``ncnn_recognises(layer_types)`` tells its graph apart,
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
    size_multiple: Callable[[Mapping[str, Any]], int] = lambda kwargs: 1
    scales: tuple[int, ...] = (1, 2, 3, 4, 8)
    in_channels: tuple[int, ...] = (1, 3, 4)
    half: bool = True
    hint_keys: tuple[str, ...] = ()
    from_config: Callable[[Any, int], dict[str, Any]] | None = None
    ncnn_recognises: Callable[[Counter[str]], bool] | None = None
    ncnn_import: Callable[..., tuple[dict[str, torch.Tensor], dict[str, Any]]] | None = None
    ncnn_export: Callable[[Any, nn.Module, str], str] | None = None
    onnx_notes: str = ""

    def build(self, kwargs: Mapping[str, Any]) -> nn.Module:
        return self.cls(**kwargs)
