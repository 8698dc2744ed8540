"""ncnn models (``.param`` graph + ``.bin`` weights): the file format, import and export.

What is particular to one architecture (which graph it is, which conv is which state-dict key, which layers
it writes) is in its record in ``realesr.archs`` (``ncnn_recognises``, ``ncnn_import``, ``ncnn_export``).

Format facts this relies on (ncnn ``ParamDict`` / ``ModelBin``): the text ``.param`` starts with the
magic 7767517, then ``layer_count blob_count``, then one line per layer ``Type name n_in n_out
inputs... outputs... k=v...`` where a key ``-233xx`` holds an array ``count,v1,v2...``. The ``.bin``
holds the weights of the layers in file order. A Convolution's weight array starts with a 4-byte
tag -- 0x01306B47 for fp16 (then the halves, padded to 4 bytes), 0 for fp32, 0x000D4B38 for int8 --
and is followed, when ``5=1``, by the fp32 bias without tag; PReLU slopes are fp32 without tag.
Weights are laid out [out, in, kh, kw] as in PyTorch.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from realesr import archs
from realesr.atomic import atomic_write_bytes
from realesr.errors import WeightsFormatError
from realesr.weights.spec import OutputResize

__all__ = ["NcnnModel", "NcnnLayer", "read_ncnn", "export_ncnn", "ncnn_paths"]

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_FP32 = 0x00000000
TAG_INT8 = 0x000D4B38

# Layers that carry no weights in the .bin: they only shape the graph.
_WEIGHTLESS = {
    "Input",
    "Split",
    "Concat",
    "Eltwise",
    "BinaryOp",
    "Interp",
    "PixelShuffle",
    "ReLU",
    "Reorg",
    "Noop",
    "Clip",
    "Sigmoid",
    "TanH",
    "Crop",
    "Reshape",
    "Permute",
}


@dataclass
class NcnnLayer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, object]

    def get(self, key: int, default: Any = 0) -> Any:
        # Any: a param is an int, a float or a list of them by its key, which each caller knows and converts.
        return self.params.get(key, default)


@dataclass
class NcnnModel:
    """A parsed ncnn model: its layers, and the weights mapped onto the official state-dict keys."""

    layers: list[NcnnLayer]
    state_dict: dict[str, torch.Tensor]
    arch: str
    hints: dict[str, Any] = field(default_factory=dict)  # kwargs the graph shows but tensors cannot (its record's)
    output_resize: float | None = None
    weight_dtype: str = "fp32"
    param_path: Path | None = None


def ncnn_paths(path: str | os.PathLike) -> tuple[Path, Path]:
    """The (.param, .bin) pair of either file of an ncnn model."""
    path = Path(path)
    if path.suffix == ".bin":
        return path.with_suffix(".param"), path
    if path.suffix == ".param":
        return path, path.with_suffix(".bin")
    return path.with_name(path.name + ".param"), path.with_name(path.name + ".bin")


def _parse_value(text: str) -> object:
    if any(c in text for c in ".eE") and not text.lstrip("-").isdigit():
        return float(text)
    return int(text)


def parse_param(text: str, source: str = ".param") -> list[NcnnLayer]:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0].strip() != str(MAGIC):
        raise WeightsFormatError(f"{source}: not an ncnn text .param file (first line must be {MAGIC})")
    try:
        layer_count, _blob_count = (int(v) for v in lines[1].split())
    except (IndexError, ValueError) as err:
        raise WeightsFormatError(f"{source}: second line must be 'layer_count blob_count'") from err
    layers = []
    for lineno, line in enumerate(lines[2:], start=3):
        fields = line.split()
        try:
            ltype, name, n_in, n_out = fields[0], fields[1], int(fields[2]), int(fields[3])
            inputs = fields[4 : 4 + n_in]
            outputs = fields[4 + n_in : 4 + n_in + n_out]
            params: dict[int, object] = {}
            for item in fields[4 + n_in + n_out :]:
                key_text, value_text = item.split("=", 1)
                key = int(key_text)
                if key <= -23300:  # array parameter: -23300 - id = count,values...
                    values = value_text.split(",")
                    params[-23300 - key] = [_parse_value(v) for v in values[1 : int(values[0]) + 1]]
                else:
                    params[key] = _parse_value(value_text)
        except (IndexError, ValueError) as err:
            raise WeightsFormatError(f"{source} line {lineno}: cannot parse {line.strip()[:80]!r}") from err
        if len(inputs) != n_in or len(outputs) != n_out:
            raise WeightsFormatError(f"{source} line {lineno}: fewer blobs than declared")
        layers.append(NcnnLayer(ltype, name, inputs, outputs, params))
    if len(layers) != layer_count:
        raise WeightsFormatError(f"{source}: header says {layer_count} layers, file has {len(layers)}")
    return layers


class _BinReader:
    def __init__(self, data: bytes, source: str) -> None:
        self.data = data
        self.pos = 0
        self.source = source
        self.dtypes: set[str] = set()

    def _take(self, nbytes: int, what: str) -> bytes:
        if self.pos + nbytes > len(self.data):
            raise WeightsFormatError(
                f"{self.source}: ends at byte {len(self.data)} while reading {what} ({nbytes} bytes from {self.pos}); "
                f"the .bin does not belong to this .param or is truncated"
            )
        chunk = self.data[self.pos : self.pos + nbytes]
        self.pos += nbytes
        return chunk

    def raw_fp32(self, count: int, what: str) -> np.ndarray:
        return np.frombuffer(self._take(4 * count, what), dtype="<f4").astype(np.float32)

    def tagged(self, count: int, what: str) -> np.ndarray:
        tag = int.from_bytes(self._take(4, what + " tag"), "little")
        if tag == TAG_FP16:
            self.dtypes.add("fp16")
            nbytes = 2 * count
            chunk = self._take(nbytes + (-nbytes) % 4, what)
            return np.frombuffer(chunk[:nbytes], dtype="<f2").astype(np.float32)
        if tag == TAG_FP32:
            self.dtypes.add("fp32")
            return self.raw_fp32(count, what)
        if tag == TAG_INT8:
            raise WeightsFormatError(
                f"{self.source}: {what} holds int8-quantised weights, which realesr cannot "
                f"use; convert the fp32 or fp16 model instead"
            )
        raise WeightsFormatError(
            f"{self.source}: {what} has unknown weight tag 0x{tag:08X} (quantised or "
            f"not an ncnn .bin); expected 0x{TAG_FP16:08X} (fp16) or 0 (fp32)"
        )


def _conv_shape(layer: NcnnLayer) -> tuple[int, int, int, int]:
    out_ch = int(layer.get(0))
    kw = int(layer.get(1))
    kh = int(layer.get(11, kw))
    size = int(layer.get(6))
    if out_ch <= 0 or kw <= 0 or size % (out_ch * kh * kw):
        raise WeightsFormatError(
            f"Convolution {layer.name}: weight_data_size {size} is not out {out_ch} x in x {kh}x{kw}"
        )
    for key, what, expected in ((2, "dilation", 1), (3, "stride", 1), (4, "pad", kw // 2)):
        if int(layer.get(key, 1 if key != 4 else 0)) != expected:
            raise WeightsFormatError(
                f"Convolution {layer.name}: {what} {layer.get(key)} is not {expected}; "
                f"not a layer of a known architecture"
            )
    return out_ch, size // (out_ch * kh * kw), kh, kw


def read_ncnn(path: str | os.PathLike) -> NcnnModel:
    """Parse an ncnn model of a known architecture into its official state-dict tensors (fp32)."""
    param_path, bin_path = ncnn_paths(path)
    for p in (param_path, bin_path):
        if not p.is_file():
            raise WeightsFormatError(
                f"ncnn model needs both {param_path.name} and {bin_path.name} side by side; {p} is missing"
            )
    try:
        text = param_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise WeightsFormatError(
            f"{param_path}: not a text ncnn .param (binary .param files are not supported)"
        ) from err
    layers = parse_param(text, str(param_path))
    reader = _BinReader(bin_path.read_bytes(), str(bin_path))

    convs: list[tuple[NcnnLayer, torch.Tensor, torch.Tensor | None]] = []
    prelus: list[tuple[NcnnLayer, torch.Tensor]] = []
    for layer in layers:
        if layer.type == "Convolution":
            out_ch, in_ch, kh, kw = _conv_shape(layer)
            weight = reader.tagged(int(layer.get(6)), f"Convolution {layer.name} weights")
            bias = reader.raw_fp32(out_ch, f"Convolution {layer.name} bias") if int(layer.get(5)) else None
            convs.append(
                (
                    layer,
                    torch.from_numpy(weight.reshape(out_ch, in_ch, kh, kw).copy()),
                    None if bias is None else torch.from_numpy(bias.copy()),
                )
            )
        elif layer.type == "PReLU":
            slope = reader.raw_fp32(int(layer.get(0, 1)), f"PReLU {layer.name} slopes")
            prelus.append((layer, torch.from_numpy(slope.copy())))
        elif layer.type not in _WEIGHTLESS:
            raise WeightsFormatError(
                f"{param_path}: layer {layer.name} of type {layer.type} is not part of an graph of a known architecture"
            )
    if reader.pos != len(reader.data):
        raise WeightsFormatError(
            f"{bin_path}: {len(reader.data) - reader.pos} bytes left after the last layer; "
            f"the .bin does not belong to this .param"
        )
    if not convs:
        raise WeightsFormatError(f"{param_path}: no Convolution layers")
    if any(b is None for _, _, b in convs):
        raise WeightsFormatError(
            f"{param_path}: a Convolution without bias; the convs of every known architecture have one"
        )

    types = Counter(layer.type for layer in layers)
    output_resize = _output_resize(layers)
    dtype = "fp16" if reader.dtypes == {"fp16"} else "fp32" if reader.dtypes == {"fp32"} else "mixed"
    arch = next(
        (a for a in archs.ARCHITECTURES if a.ncnn_recognises and a.ncnn_import and a.ncnn_recognises(types)), None
    )
    if arch is None or arch.ncnn_import is None:
        known = ", ".join(a.name for a in archs.ARCHITECTURES if a.ncnn_import)
        raise WeightsFormatError(
            f"{param_path}: not the ncnn graph of a known architecture ({known}); layer types: {dict(types)}"
        )
    sd, hints = arch.ncnn_import(layers, convs, prelus, str(param_path))
    return NcnnModel(layers, sd, arch.name, hints, output_resize, dtype, param_path)


def _output_resize(layers: list[NcnnLayer]) -> float | None:
    """The factor of a final bicubic down-resize (the animevideov3 x2/x3 graphs), else None."""
    last = layers[-1]
    if last.type != "Interp":
        return None
    try:
        h, w = float(last.get(1, 1.0)), float(last.get(2, 1.0))
    except (TypeError, ValueError):
        h = w = math.nan
    if last.get(0) != 3 or h != w or not math.isfinite(h) or not 0 < h < 1 or last.get(3, 0) or last.get(4, 0):
        raise WeightsFormatError(
            f"the graph ends with an Interp ({last.params}) realesr does not reproduce; "
            f"only a bicubic resize by one finite factor in (0, 1) is supported"
        )
    return h


# ----------------------------------------------------------------------------------------------- export


class _GraphWriter:
    """Builds an ncnn graph; blobs read by several layers get the Split layers ncnn requires."""

    def __init__(self, fp16: bool) -> None:
        self.fp16 = fp16
        self.layers: list[list] = []  # [type, name, inputs, outputs, params]
        self.weights = bytearray()
        self.counter: Counter[str] = Counter()

    def add(self, ltype: str, inputs: list[str], params: str = "", output: str | None = None) -> str:
        self.counter[ltype] += 1
        name = f"{ltype.lower()}_{self.counter[ltype]}"
        out = output or f"{name}_out"
        self.layers.append([ltype, name, list(inputs), [out], params])
        return out

    def conv(self, x: str, conv: nn.Conv2d, act: str = "", output: str | None = None) -> str:
        w = conv.weight.detach().to("cpu", torch.float32).contiguous()
        out_ch, _in_ch, kh, kw = w.shape
        params = f"0={out_ch} 1={kw} 11={kh} 4={kw // 2} 5=1 6={w.numel()}{act}"
        flat = w.numpy().ravel()
        if self.fp16:
            halves = flat.astype("<f2").tobytes()
            self.weights += TAG_FP16.to_bytes(4, "little") + halves + b"\0" * ((-len(halves)) % 4)
        else:
            self.weights += TAG_FP32.to_bytes(4, "little") + flat.astype("<f4").tobytes()
        assert conv.bias is not None  # every convolution of the exported architectures has a bias
        self.weights += conv.bias.detach().to("cpu", torch.float32).numpy().astype("<f4").tobytes()
        return self.add("Convolution", [x], params, output)

    def prelu(self, x: str, prelu: nn.PReLU) -> str:
        slope = prelu.weight.detach().to("cpu", torch.float32).numpy().astype("<f4")
        self.weights += slope.tobytes()
        return self.add("PReLU", [x], f"0={slope.size}")

    def text(self) -> str:
        consumers = Counter(b for layer in self.layers for b in layer[2])
        final: list[list] = []
        renames: dict[str, list[str]] = {}
        for layer in self.layers:
            layer[2] = [renames[b].pop(0) if b in renames else b for b in layer[2]]
            final.append(layer)
            for blob in layer[3]:
                if consumers[blob] > 1:
                    copies = [f"{blob}_splitncnn_{i}" for i in range(consumers[blob])]
                    renames[blob] = list(copies)
                    final.append(["Split", f"splitncnn_{blob}", [blob], copies, ""])
        blobs = sum(len(layer[3]) for layer in final)
        lines = [str(MAGIC), f"{len(final)} {blobs}"]
        for ltype, name, ins, outs, params in final:
            lines.append(
                f"{ltype:<24} {name:<24} {len(ins)} {len(outs)} {' '.join(ins + outs)}"
                + (f" {params}" if params else "")
            )
        return "\n".join(lines) + "\n"


def export_ncnn(net: nn.Module, param_path: str | os.PathLike, fp16: bool = True) -> tuple[Path, Path]:
    """Write ``net`` as an ncnn model: ``param_path`` and the ``.bin`` beside it (both atomically).

    The graph uses the layers of the official realesrgan-ncnn-vulkan models (input blob ``data``,
    output ``output``), so ncnn tools run it. ``fp16`` stores the conv weights as tagged halves
    (the official files' choice: half the size); biases and PReLU slopes are always fp32.
    """
    net = getattr(net, "_orig_mod", net)
    resize = None
    if isinstance(net, OutputResize):
        net, resize = net.net, net.factor
    g = _GraphWriter(fp16)
    x = g.add("Input", [], "", output="data")
    arch = archs.arch_of(net)
    if arch.ncnn_export is None:
        raise WeightsFormatError(f"{arch.name} has no ncnn export")
    out = arch.ncnn_export(g, net, x)
    if resize:
        out = g.add("Interp", [out], f"0=3 1={resize:e} 2={resize:e}")
    g.layers[-1][3] = ["output"]
    param_path, bin_path = ncnn_paths(param_path)
    atomic_write_bytes(bin_path, bytes(g.weights))
    atomic_write_bytes(param_path, g.text().encode())
    return param_path, bin_path
