"""The contestants of an evaluation: MATLAB bicubic and networks (names, weight files, live modules)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from realesr.errors import ModelNotFoundError, RealesrError, UsageError
from realesr.metrics import imresize

BICUBIC = "bicubic"


@dataclass
class EvalModel:
    """A labelled upscaler ``HxWx3 uint8 -> (H*scale)x(W*scale)x3 uint8``; ``scale`` None when unknown."""

    label: str
    upscale: Callable[[np.ndarray], np.ndarray]
    scale: int | None


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), 0, 255).astype(np.uint8)


def bicubic_model(scale: int) -> EvalModel:
    """MATLAB-style bicubic upscaling rounded to uint8 (the baseline of every SR table)."""
    return EvalModel(label=BICUBIC, upscale=lambda lr: to_uint8(imresize(lr, scale=scale)), scale=scale)


def _integral(value) -> int | None:
    if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
        if value > 0 and float(value).is_integer():
            return int(value)
    return None


def _scale_of(*candidates) -> int | None:
    """The upscaling factor a model announces (``.scale``, ``.netscale`` or ``.spec.scale``), if any."""
    for obj in candidates:
        for attr in ("scale", "netscale"):
            found = _integral(getattr(obj, attr, None))
            if found:
                return found
        found = _integral(getattr(getattr(obj, "spec", None), "scale", None))
        if found:
            return found
    return None


def label_for(model) -> str:
    if isinstance(model, str):
        path = Path(model)
        return path.stem if path.suffix else model
    name = getattr(model, "name", None)
    return name if isinstance(name, str) and name else type(model).__name__


def load_eval_model(
    model,
    scale: int,
    device: str = "auto",
    tile: int | None = None,
    allow_download: bool = True,
    label: str | None = None,
    precision: str = "fp32",
) -> EvalModel:
    """``bicubic``, a model name or weights path, an ``nn.Module`` or a ``LoadedModel`` as an :class:`EvalModel`.

    ``precision`` defaults to fp32 so that scores do not depend on the device; "auto" lets the inference
    module pick half precision on GPUs. Raises ModelNotFoundError (also when a download is needed and
    impossible) or another RealesrError.
    """
    if isinstance(model, str) and model.lower() == BICUBIC:
        return bicubic_model(scale)
    try:
        from realesr.infer import Upscaler
    except ImportError:  # a partial install without the inference module: plain whole-image forward passes
        Upscaler = None

    source = model
    if isinstance(model, (str, Path)):
        try:
            from realesr.weights import load_model
        except ImportError as err:
            raise UsageError(f"loading {model} needs realesr.weights, which cannot be imported: {err}") from err
        try:
            source = load_model(str(model), allow_download=allow_download, progress=True)
        except RealesrError:
            raise
        except OSError as err:  # a download that cannot reach the network
            raise ModelNotFoundError(f"model {model}: not available offline and the download failed ({err})") from err
    if Upscaler is not None:
        upscaler = Upscaler(model=source, device=device, precision=precision, tile=tile)
    else:
        if precision != "fp32":
            raise UsageError(f"precision {precision!r} needs realesr.infer, which is not installed")
        upscaler = WholeImageUpscaler(getattr(source, "net", source), device)
    model_scale = _scale_of(upscaler, source, getattr(source, "net", None))
    return EvalModel(label=label or label_for(model), upscale=upscaler, scale=model_scale)


class WholeImageUpscaler:
    """One fp32 forward pass over the whole image: the reference way to score a network (no tile seams)."""

    def __init__(self, net, device: str = "auto") -> None:
        import torch

        if not isinstance(net, torch.nn.Module):
            raise UsageError(f"cannot evaluate a {type(net).__name__}: expected a model name, a file or an nn.Module")
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.net = net.to(self.device).float().eval()
        self.scale = getattr(net, "scale", None)
        self.multiple = int(getattr(net, "size_multiple", 1) or 1)

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        import torch
        import torch.nn.functional as F

        h, w = lr.shape[:2]
        x = torch.from_numpy(np.ascontiguousarray(lr)).permute(2, 0, 1)[None].to(self.device, torch.float32) / 255.0
        pad_h, pad_w = (-h) % self.multiple, (-w) % self.multiple
        if pad_h or pad_w:  # networks that unshuffle pixels need sides divisible by their multiple
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="reflect")
        with torch.inference_mode():
            y = self.net(x)
        scale = y.shape[-1] // x.shape[-1]
        y = y[..., : h * scale, : w * scale]
        return to_uint8(y[0].permute(1, 2, 0).float().cpu().numpy() * 255.0)
