"""Models of other architectures (SwinIR, HAT, DAT, SPAN, OmniSR, RealPLKSR, ...) through spandrel.

The optional extra ``pip install 'realesr[models]'`` adds spandrel (MIT). realesr's own architectures are always
tried first (the official networks keep their exact, parity-tested path); only a state dict none of them takes is
offered to spandrel. spandrel never sees a path: the file is read by realesr's own safe loader
(``realesr.weights.io.read_weights``: tensors only, no pickle code runs) and spandrel gets the tensors.

A loaded model is a :class:`SpandrelNetwork`, an ``nn.Module`` with ``.scale`` and ``.traits``
(:class:`realesr.archs.ModelTraits`), so the Upscaler, tiles, video, the page, several devices and Ray treat it
as any other network. Its forward is spandrel's own call (reflect padding to the model's size requirements,
the model's call function, clamping to [0, 1], cropping).

``spandrel_extra_arches`` (architectures some of which carry non-commercial licences) is not installed by the
extra; when a user installs it, its models load too, and their traits carry a licence line that ``realesr models
inspect`` and the upscale summary show.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from realesr.archs import PRECISIONS, ModelTraits, SizeRules, Tiling
from realesr.errors import WeightsFormatError

__all__ = ["EXTRA_LICENCE", "SpandrelNetwork", "load_community", "unavailable_reason"]

INSTALL_HINT = "pip install 'realesr[models]'"
EXTRA_LICENCE = (
    "from spandrel_extra_arches: its architectures may carry non-commercial licences (check this model's and "
    "its architecture's licence before any commercial use)"
)
# Architectures whose every output pixel depends on the whole image, whatever spandrel's tiling flag says:
# OmniSR's global self-attention makes 16-px tiles differ by 2.4 levels on average at any padding.
_GLOBAL = {"OmniSR"}
_TILING: dict[str, Tiling] = {"SUPPORTED": "local", "DISCOURAGED": "discouraged", "INTERNAL": "global"}
# Windows beyond this are not attention windows tiles could line up with (a whole-image "window").
_MAX_WINDOW = 64
# The Swin-family layers spandrel ships call torch.meshgrid without indexing=: a two-line UserWarning on every
# run of `realesr upscale` that says nothing about the user's images.
warnings.filterwarnings("ignore", message=r"torch\.meshgrid: in an upcoming release", category=UserWarning)


def unavailable_reason() -> str | None:
    """None when spandrel imports; else one line saying why (not installed, or its torchvision is broken)."""
    try:
        import spandrel  # noqa: F401
    except ImportError as err:
        return f"spandrel is not installed ({INSTALL_HINT})" if err.name == "spandrel" else _one_line(err)
    except Exception as err:  # noqa: BLE001 - torchvision's operator registration fails with RuntimeError
        return f"spandrel does not import here: {_one_line(err)}"
    return None


def _one_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]


def _registry() -> tuple[Any, set[str]]:
    """spandrel's registry, plus spandrel_extra_arches' when installed (and the ids that come from it)."""
    import spandrel

    try:
        import spandrel_extra_arches
    except ImportError:
        return spandrel.MAIN_REGISTRY, set()
    registry = spandrel.MAIN_REGISTRY.copy()
    extra = spandrel_extra_arches.EXTRA_REGISTRY
    added = registry.add(*extra, ignore_duplicates=True)
    return registry, {support.architecture.id for support in added}


def load_community(sd: Mapping[str, torch.Tensor], source: str, own_error: WeightsFormatError) -> SpandrelNetwork:
    """The spandrel model of ``sd`` (fp32, CPU, eval). ``own_error`` is why realesr's own architectures refused
    it: raised (with how to get spandrel) when spandrel is absent or does not know the tensors either."""
    reason = unavailable_reason()
    if reason is not None:
        raise WeightsFormatError(
            f"{own_error}; other architectures (SwinIR, HAT, DAT, SPAN, OmniSR, RealPLKSR, ...) need spandrel: {reason}"
        ) from None
    import spandrel

    registry, extra_ids = _registry()
    tensors = {k: v.to(torch.float32) if v.is_floating_point() else v for k, v in sd.items()}
    support = next((s for s in registry.architectures("detection") if s.detect(tensors)), None)
    if support is None:
        raise WeightsFormatError(f"{own_error}; spandrel {spandrel.__version__} does not know it either") from None
    arch = support.architecture
    try:
        descriptor = arch.load(tensors)
    except Exception as err:  # noqa: BLE001 - a mismatched dict fails in the model's constructor or load_state_dict
        raise WeightsFormatError(
            f"{source}: looks like {arch.name} (spandrel) but does not fit it: {_one_line(err)}"
        ) from None
    if not isinstance(descriptor, spandrel.ImageModelDescriptor):
        raise WeightsFormatError(
            f"{source}: a {arch.name} {descriptor.purpose} model takes a mask besides the image; realesr runs "
            "super-resolution and restoration models"
        )
    if arch.id in extra_ids:
        return SpandrelNetwork(descriptor, f"{arch.name} {EXTRA_LICENCE}", origin="spandrel_extra_arches")
    return SpandrelNetwork(descriptor)


def _window(model: nn.Module) -> int:
    """The least common multiple of the attention windows (``window_size``, ``split_size``) of any layer."""
    sizes: set[int] = set()
    for module in model.modules():
        for name in ("window_size", "split_size"):
            value = getattr(module, name, None)
            values = value if isinstance(value, (tuple, list)) else [value]
            sizes |= {int(v) for v in values if isinstance(v, int) and not isinstance(v, bool) and v > 1}
    window = math.lcm(*sizes) if sizes else 0
    return window if window <= _MAX_WINDOW else 0


def _bytes_per_pixel(model: nn.Module, scale: int, out_channels: int, window: int) -> float:
    """An estimate of the peak fp32 activation memory per input pixel: a dozen feature maps of the widest layer
    coexist (a transformer block's input, q, k, v, its MLP's hidden layer, the residuals), the attention of a
    window (window^2 scores per head, a few heads), and the output-resolution tail (the upsampler's conv output,
    its shuffle, the clamped copy and the crop: eight output planes); a quarter more for the allocator.
    bench/bench_models_memory.py: 1.2-4.4x the measured peak for SwinIR, HAT, SPAN, RealPLKSR, OmniSR, SAFMN at
    their released sizes (safe side); ``realesr models inspect`` labels it an estimate."""
    widest = max(
        [m.out_channels for m in model.modules() if isinstance(m, nn.Conv2d)]
        + [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
        + [out_channels]
    )
    attention = 16 * window * window if window else 0
    return 4.0 * (12 * widest + attention + 8 * out_channels * scale * scale) * 1.25


class SpandrelNetwork(nn.Module):
    """A spandrel model as a realesr network: ``.scale``, ``.traits``, ``.arch``, ``.description``."""

    def __init__(self, descriptor: Any, licence: str = "", origin: str = "spandrel") -> None:
        super().__init__()
        self.origin = origin
        self.model = descriptor.model.float().eval().requires_grad_(False)
        self._descriptor = descriptor
        self.arch = str(descriptor.architecture.name)
        self.scale = int(descriptor.scale)
        req = descriptor.size_requirements
        window = _window(self.model)
        precisions = tuple(
            p
            for p, ok in zip(PRECISIONS, (True, descriptor.supports_half, descriptor.supports_bfloat16))
            if ok  # spandrel's .to() refuses the others: their layers misbehave in them
        )
        tiling = "global" if str(descriptor.architecture.id) in _GLOBAL else _TILING[descriptor.tiling.name]
        self.traits = ModelTraits(
            arch=self.arch,
            scale=self.scale,
            in_channels=int(descriptor.input_channels),
            out_channels=int(descriptor.output_channels),
            size=SizeRules(int(req.multiple_of), int(req.minimum), bool(req.square), window),
            precisions=precisions,
            tiling=tiling,
            bytes_per_pixel=_bytes_per_pixel(self.model, self.scale, int(descriptor.output_channels), window),
            channels_last=False,
            licence=licence,
        )
        self.tags = tuple(str(t) for t in descriptor.tags)
        self.num_params = sum(p.numel() for p in self.model.parameters())
        self.purpose = str(descriptor.purpose)

    @property
    def description(self) -> str:
        tags = f" ({', '.join(self.tags)})" if self.tags else ""
        ins, outs = self.traits.in_channels, self.traits.out_channels
        chans = "" if (ins, outs) == (3, 3) else f", {ins}->{outs} ch"
        return f"{self.arch} x{self.scale}{tags}{chans}, {self.num_params:,} params ({self.origin})"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self._descriptor(x)
        # spandrel's call runs in inference mode; outside it its result could not be updated in place.
        return out if torch.is_inference_mode_enabled() else out.clone()

    def extra_repr(self) -> str:
        return self.description
