"""The contestants of an evaluation: MATLAB bicubic and networks (names, weight files, live modules)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from realesr.errors import ModelNotFoundError
from realesr.imagefiles import to_uint8
from realesr.infer import Upscaler
from realesr.metrics import imresize
from realesr.weights import load_model

BICUBIC = "bicubic"


@dataclass
class EvalModel:
    """A labelled upscaler ``HxWx3 uint8 -> (H*scale)x(W*scale)x3 uint8``; ``scale`` None when unknown."""

    label: str
    upscale: Callable[[np.ndarray], np.ndarray]
    scale: int | None


def bicubic_model(scale: int) -> EvalModel:
    """MATLAB-style bicubic upscaling rounded to uint8 (the baseline of every SR table)."""
    return EvalModel(label=BICUBIC, upscale=lambda lr: to_uint8(imresize(lr, scale=scale), peak=255.0), scale=scale)


def label_for(model) -> str:
    if isinstance(model, (str, Path)):
        path = Path(model)
        return path.stem if path.suffix else str(model)
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
    source = model
    if isinstance(model, (str, Path)):
        try:
            source = load_model(str(model), allow_download=allow_download, progress=True)
        except OSError as err:  # a download that cannot reach the network
            raise ModelNotFoundError(f"model {model}: not available offline and the download failed ({err})") from err
    upscaler = Upscaler(model=source, device=device, precision=precision, tile=tile)
    return EvalModel(label=label or label_for(model), upscale=upscaler, scale=upscaler.scale)
