"""ONNX: export a network for other runtimes, and run an exported file through onnxruntime as an ``nn.Module``.

The file carries what realesr needs to use it again, in its ``metadata_props``: ``realesr`` (the JSON of the
:class:`ModelSpec`: architecture, constructor kwargs, scale, output resize), and for other tools the plain keys
``architecture``, ``scale``, ``size_multiple``, ``precision`` and ``source``. Input ``input`` and output ``output``
are [N, C, H, W] in [0, 1] (not clamped), N, H and W dynamic. ``onnx`` and ``onnxruntime`` come from the
``[onnx]`` extra and are imported only here, when needed.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from realesr.atomic import atomic_path
from realesr.errors import MissingExtraError, WeightsFormatError
from realesr.weights.spec import ModelSpec, spec_of

__all__ = ["OPSET", "OnnxNetwork", "export_onnx", "is_onnx", "read_onnx_spec"]

# Opset 17 is what onnxruntime >= 1.14 and most other runtimes (TensorRT 8.6, OpenVINO 2023) read.
OPSET = 17
METADATA_KEY = "realesr"


def _need(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingExtraError("ONNX support", "onnx", module) from None


def export_onnx(net: nn.Module, path: str | os.PathLike, fp16: bool = False, source: str = "") -> Path:
    """Write ``net`` as ONNX (opset :data:`OPSET`, dynamic batch/height/width) to ``path``, atomically.

    ``fp16`` stores weights and runs the graph in half precision (input and output float16): half the size,
    faster on GPUs; for the CPU, fp32 is the one to use. The architecture's ``onnx_notes`` say what an
    exported graph of it requires (e.g. the input sides of an RRDBNet x2 must be even).
    """
    onnx = _need("onnx")
    spec = spec_of(net)
    inner = getattr(net, "_orig_mod", net)
    # A private copy: exporting must not change the caller's network (dtype, train mode).
    with torch.device("meta"):
        copy = spec.build()
    copy.load_state_dict(inner.state_dict(), assign=True)
    copy = copy.to(torch.float16 if fp16 else torch.float32).eval().requires_grad_(False)
    multiple = spec.size_multiple
    side = 8 * multiple
    dummy = torch.rand(1, spec.num_in_ch, side, side + multiple, dtype=torch.float16 if fp16 else torch.float32)
    path = Path(path)
    with atomic_path(path, ".onnx.tmp") as tmp:
        with warnings.catch_warnings():
            # The TorchScript exporter warns about its own deprecation and about traced shape arithmetic that
            # the dynamic axes below make symbolic anyway.
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    copy,
                    (dummy,),
                    str(tmp),
                    input_names=["input"],
                    output_names=["output"],
                    dynamic_axes={
                        "input": {0: "batch", 2: "height", 3: "width"},
                        "output": {0: "batch", 2: "out_height", 3: "out_width"},
                    },
                    opset_version=OPSET,
                    do_constant_folding=True,
                    dynamo=False,
                )
            except RuntimeError as err:  # the exporter's failure on an unsupported operator
                detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
                raise WeightsFormatError(f"cannot export {spec.arch} to ONNX: {detail}") from None
        model = onnx.load(str(tmp))
        props = {
            METADATA_KEY: json.dumps(spec.to_metadata(), sort_keys=True),
            "architecture": spec.arch,
            "scale": str(spec.scale),
            "size_multiple": str(multiple),
            "precision": "fp16" if fp16 else "fp32",
            "source": source,
        }
        del model.metadata_props[:]
        for key, value in props.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        model.producer_name = "realesr"
        model.doc_string = f"{spec.description}; input [N,{spec.num_in_ch},H,W] in [0,1]" + (
            f", H and W multiples of {multiple}" if multiple > 1 else ""
        )
        onnx.save(model, str(tmp))
    return path


def _metadata(path: Path) -> dict[str, str]:
    ort = _need("onnxruntime")
    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types for a bad file
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise WeightsFormatError(f"{path}: not a readable ONNX model ({detail})") from None
    return dict(session.get_modelmeta().custom_metadata_map)


def read_onnx_spec(path: str | os.PathLike) -> ModelSpec:
    """The :class:`ModelSpec` recorded in an ONNX file written by :func:`export_onnx`."""
    path = Path(path)
    meta = _metadata(path).get(METADATA_KEY)
    if meta is None:
        raise WeightsFormatError(
            f"{path}: an ONNX model not exported by realesr (no {METADATA_KEY!r} metadata): "
            f"its scale and input rules are unknown; export it with `realesr convert`"
        )
    try:
        info = json.loads(meta)
        return ModelSpec(
            info["arch"],
            dict(info["kwargs"]),
            int(info["scale"]),
            int(info["kwargs"].get("num_in_ch", 3)),
            int(info["kwargs"].get("num_out_ch", 3)),
            info.get("output_resize"),
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise WeightsFormatError(f"{path}: its {METADATA_KEY!r} metadata is not a model description ({err})") from None


class OnnxNetwork(nn.Module):
    """An exported model run by onnxruntime, usable wherever realesr takes a network (the Upscaler, its tiling).

    It has no parameters; ``.to(...)`` changes nothing. Inputs go to onnxruntime as contiguous numpy arrays on
    the CPU (cast to the graph's input dtype), the output comes back as a tensor of the input's device and dtype.
    """

    def __init__(self, path: str | os.PathLike, spec: ModelSpec | None = None, threads: int = 0) -> None:
        super().__init__()
        ort = _need("onnxruntime")
        self.path = Path(path)
        self.spec = spec or read_onnx_spec(self.path)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self._session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name
        self._dtype = np.float16 if "float16" in self._session.get_inputs()[0].type else np.float32
        self.scale = self.spec.scale
        self.size_multiple = self.spec.size_multiple
        self.traits = self.spec.traits
        self.precision = "fp16" if self._dtype is np.float16 else "fp32"

    def __deepcopy__(self, memo: dict) -> OnnxNetwork:
        return self  # a session is not copyable; the runtime's precision is fixed by the file

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy(), dtype=self._dtype)
        (out,) = self._session.run(None, {self._input: array})
        return torch.from_numpy(np.asarray(out, dtype=np.float32)).to(x.device, x.dtype)

    def extra_repr(self) -> str:
        return f"{self.path.name}, {self.spec.description}, onnxruntime {self.precision}"


def is_onnx(path: str | os.PathLike) -> bool:
    # ONNX is a bare protobuf without a magic number: the suffix is all there is to go by.
    return Path(path).suffix.lower() == ".onnx"
