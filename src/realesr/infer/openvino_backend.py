"""OpenVINO as an optional CPU backend (extra ``[openvino]``): a network converted once, for any input size,
and compiled for the CPU with an inference-precision hint (bf16 where the CPU has it).

Behind a flag, not the default: on an AMD EPYC (Zen 4, AVX512-BF16, no AMX) bench/cpu.py measured it 24 % faster
than realesr's own bf16 path on RealESRGAN_x4plus (89 % of the bf16 peak against 72 %), but converting x4plus
takes a minute or more before the first image, and its bf16 rounds the whole network (no fp32 first and last
layers), 0.29 levels from fp32 on the benchmark crop against 0.20 (docs/upscale.md).

    from realesr.infer import Upscaler
    from realesr.infer.openvino_backend import OpenVinoNetwork
    up = Upscaler(OpenVinoNetwork(load_model("RealESRGAN_x4plus").net, hint="bf16"), device="cpu")
"""

from __future__ import annotations

import copy
import dataclasses
from typing import Any

import numpy as np
import torch
from torch import nn

from realesr.errors import RealesrError, UsageError
from realesr.weights.spec import traits_of

__all__ = ["HINTS", "OpenVinoNetwork"]

HINTS = ("bf16", "f32", "f16")


def _openvino() -> Any:
    try:
        import openvino
    except ImportError:
        raise RealesrError("the OpenVINO backend needs the openvino package: pip install 'realesr[openvino]'") from None
    return openvino


class OpenVinoNetwork(nn.Module):
    """``net`` converted by OpenVINO (dynamic batch and size) and compiled for the CPU with ``hint`` as its
    INFERENCE_PRECISION_HINT. Takes and returns float32 tensors [B,C,H,W] on the CPU."""

    def __init__(self, net: nn.Module, hint: str = "bf16", threads: int = 0) -> None:
        super().__init__()
        if hint not in HINTS:
            raise UsageError(f"OpenVINO precision hint must be one of {', '.join(HINTS)}, not {hint!r}")
        ov = _openvino()
        traits = traits_of(net)
        # The Upscaler must not make a half copy of a compiled model: it runs in OpenVINO's precision.
        self.traits = dataclasses.replace(traits, precisions=("fp32",), channels_last=False)
        self.scale, self.hint = traits.scale, hint
        # Module.to takes memory_format at runtime, but torch's overloads for it leave the keyword out.
        source = copy.deepcopy(net).float().eval().to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]
        side = max(traits.size.padded(16, 16))
        example = torch.rand(1, traits.in_channels, side, side)
        model = ov.convert_model(
            source, example_input=example, input=[ov.PartialShape([-1, traits.in_channels, -1, -1])]
        )
        config = {"INFERENCE_PRECISION_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = str(threads)
        self._compiled = ov.Core().compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()

    def __deepcopy__(self, memo: dict) -> OpenVinoNetwork:
        return self  # a compiled model is not copyable; its precision is fixed by its hint

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(np.array(self._request.infer({0: array})[0], dtype=np.float32))

    def extra_repr(self) -> str:
        return f"OpenVINO CPU, {self.hint} hint, x{self.scale}"
