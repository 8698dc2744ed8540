"""`Upscaler`: a super-resolution network applied to whole images, on any device, tiled when needed."""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from realesr.archs import ModelTraits
from realesr.devices import available_memory_bytes, pick_device
from realesr.errors import RealesrError, UsageError, WeightsFormatError
from realesr.imagefiles import LoadedImage, array_layout, array_to_pil, pil_to_array
from realesr.infer import precision as _precision
from realesr.infer.tiling import tiled_forward
from realesr.weights import DEFAULT_MODEL
from realesr.weights.spec import traits_of

__all__ = ["DEFAULT_MODEL", "DEFAULT_TILE_PAD", "Upscaler", "layer_progress"]

# Input pixels each tile reads beyond its core on every side. RRDBNet's receptive field spans hundreds of pixels:
# with 48 px and the cross-fade of tiling.py, tiles of 40 on 96x96 photos differ from the whole-image output by
# 0.10-0.15 levels on average, 0.1-0.2 % of pixels by more than 2 (docs/upscale.md has the measurements).
DEFAULT_TILE_PAD = 48
MIN_TILE = 16
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
ALPHA_MODES = ("model", "bicubic")
# BT.601 luma, as the official tool's BGR2GRAY, to turn the 3-channel output of a grey input back into grey.
_LUMA = (0.299, 0.587, 0.114)


def _is_out_of_memory(err: BaseException) -> bool:
    if isinstance(err, torch.OutOfMemoryError):
        return True
    text = str(err).lower()
    return isinstance(err, (RuntimeError, MemoryError)) and (
        "out of memory" in text
        or "can't allocate memory" in text
        or "not enough memory" in text
        or isinstance(err, MemoryError)
    )


@dataclass(frozen=True)
class _Resolved:
    net: nn.Module
    name: str
    source: str


def _resolve_model(
    model, denoise_strength: float | None, allow_download: bool, progress: bool | Callable[[int, int | None], None]
) -> _Resolved:
    if isinstance(model, nn.Module):
        if denoise_strength is not None:
            raise UsageError("denoise_strength applies to model names, not to an nn.Module")
        return _Resolved(model, type(model).__name__, "module")
    if hasattr(model, "net") and isinstance(model.net, nn.Module):  # a weights.LoadedModel
        name = str(getattr(model, "name", type(model.net).__name__))
        return _Resolved(model.net, name, str(getattr(model, "source", "")))
    if isinstance(model, (str, os.PathLike)):
        try:
            from realesr.weights import load_model
        except ImportError as err:  # pragma: no cover - only before the weights package exists
            raise RealesrError(f"cannot load model {model!s}: realesr.weights is not available ({err})") from None
        loaded = load_model(
            str(model), denoise_strength=denoise_strength, allow_download=allow_download, progress=progress
        )
        return _Resolved(loaded.net, str(loaded.name), str(loaded.source))
    raise UsageError(f"model must be a name, a path, an nn.Module or a LoadedModel, not {type(model).__name__}")


class Upscaler:
    """Upscale images with a super-resolution network.

    Args:
        model: a model name ("RealESRGAN_x4plus", ...), a weights path, an ``nn.Module`` mapping [B,C,H,W] in
            [0,1] to [B,C,H*s,W*s] (with ``.scale``; ``.size_multiple`` if sides must divide), or a
            ``realesr.weights.LoadedModel``.
        device: "auto" (cuda, mps, else cpu), "cpu", "cuda", "cuda:N" or "mps".
        precision: "auto" (bf16 on GPUs that support it, else fp16; on the CPU bf16 where it has native bf16,
            AMX or AVX512-BF16, if a check on a crop of the first image keeps the picture, else fp32), "fp32",
            "fp16", "bf16". Half precision runs channels-last and falls back to fp32 when its output is not
            finite. ``precision_note`` says what auto chose and why.
        tile: None picks by itself (whole image when it fits the device's memory, else tiles); 0 always runs
            the whole image; N runs tiles of at most N input pixels a side, blended over their overlap.
        tile_pad: input pixels each tile reads beyond its core (default DEFAULT_TILE_PAD).
        outscale: final size factor (any float > 0): the network's scale, then an antialiased bicubic resize
            to round(h * outscale) x round(w * outscale). None: the network's scale.
        alpha: "model" runs the alpha channel through the network (as grey), "bicubic" resizes it.
        denoise_strength: 0..1 for the models with a denoise strength (realesr.weights.zoo.denoise_models).
        allow_download, progress: passed to ``realesr.weights.load_model`` for names.
        channels_last: run the network in channels-last memory format (faster on CPU and GPU).
    """

    def __init__(
        self,
        model=DEFAULT_MODEL,
        device: str | torch.device = "auto",
        precision: str = "auto",
        tile: int | None = None,
        tile_pad: int | None = None,
        outscale: float | None = None,
        alpha: str = "model",
        denoise_strength: float | None = None,
        allow_download: bool = True,
        progress: bool | Callable[[int, int | None], None] = False,
        channels_last: bool = True,
    ) -> None:
        if precision not in PRECISIONS:
            raise UsageError(
                f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}", params=("precision",)
            )
        if tile is not None and (not isinstance(tile, int) or tile < 0):
            raise UsageError(
                f"tile must be 0 (whole image) or a positive number of pixels, not {tile!r}", params=("tile",)
            )
        if tile_pad is not None and (not isinstance(tile_pad, int) or tile_pad < 0):
            raise UsageError(f"tile_pad must be a number of pixels >= 0, not {tile_pad!r}", params=("tile_pad",))
        if outscale is not None and not (
            isinstance(outscale, (int, float)) and math.isfinite(outscale) and outscale > 0
        ):
            raise UsageError(f"outscale must be a number > 0, not {outscale!r}", params=("outscale",))
        if alpha not in ALPHA_MODES:
            raise UsageError(f"alpha must be one of {', '.join(ALPHA_MODES)}, not {alpha!r}", params=("alpha",))
        if tile is not None and 0 < tile < MIN_TILE:
            raise UsageError(f"tile must be 0 or at least {MIN_TILE} pixels, not {tile}", params=("tile",))
        self.device = pick_device(device)
        resolved = _resolve_model(model, denoise_strength, allow_download, progress)
        self.model_name = resolved.name
        self.model_source = resolved.source
        net = resolved.net.eval()
        for p in net.parameters():
            p.requires_grad_(False)
        try:
            self.traits: ModelTraits = traits_of(net)
        except WeightsFormatError as err:
            raise UsageError(str(err)) from None
        self.scale = self.traits.scale
        self.size_rules = self.traits.size
        self.size_multiple = self.size_rules.multiple_of
        self.in_channels = self.traits.in_channels
        if self.in_channels not in (1, 3, 4) or self.traits.out_channels != self.in_channels:
            raise UsageError(
                f"{self.traits.arch} maps {self.in_channels} channels to {self.traits.out_channels}: only grey, RGB "
                "and RGBA networks with as many output channels as input ones are supported"
            )
        self.precision = self._pick_precision(precision)
        # On the CPU, auto's bf16 is checked against fp32 on the first input before it is trusted (precision.py).
        self._check_pending = precision == "auto" and self.device.type == "cpu" and self.precision != "fp32"
        self.precision_check: _precision.HalfCheck | None = None
        self.precision_note = f"{self.precision} ({'auto' if precision == 'auto' else 'asked for'})"
        # What a caller should tell the user: a licence beyond the permissive default, a global model tiled.
        self.notes: list[str] = [f"licence: {self.traits.licence}"] if self.traits.licence else []
        self.tile = tile
        self.tile_pad = DEFAULT_TILE_PAD if tile_pad is None else tile_pad
        self.outscale = outscale
        self.alpha = alpha
        self.fell_back_to_fp32 = False
        # Channels-last: cuDNN's tensor-core kernels want it for half precision, and on the CPU oneDNN's fp32
        # convolutions of RRDBNet run about 1.3x faster with it (bench/bench_upscale.py).
        self._channels_last = channels_last and self.traits.channels_last
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        # Module.to takes memory_format at runtime, but torch's overloads for it leave the keyword out.
        self._net_fp32 = net.to(self.device, dtype=torch.float32, memory_format=memory_format)  # type: ignore[call-overload]
        self._net = self._net_fp32
        self._dtype = self._input_dtype = torch.float32
        if self.precision != "fp32":
            self._dtype = torch.float16 if self.precision == "fp16" else torch.bfloat16
            # A separate half copy: the fp32 one stays for the non-finite fallback.
            self._net, self._input_dtype = _precision.half_network(
                self._net_fp32, self._dtype, self.device, self._channels_last
            )
        if self._check_pending:
            recorded = _precision.measured_check(self.model_name, self.model_source)
            if recorded is not None:
                self._apply_check(recorded, "measured by bench/cpu.py --checks")
        self.last_tile_used: int | None = None  # the tile size the last call ended with (0 = whole image)

    # ------------------------------------------------------------------------------------------ set-up

    def _pick_precision(self, precision: str) -> str:
        supported = self.traits.precisions
        if precision != "auto":
            if precision not in supported:
                raise UsageError(
                    f"{self.traits.arch} does not run soundly in {precision} (it supports {', '.join(supported)})",
                    params=("precision",),
                )
            return precision
        return _precision.auto_precision(self.device, supported)

    def _settle_precision(self, x: torch.Tensor) -> None:
        """Auto's half precision on the CPU: keep it if a crop of ``x`` comes out as in fp32, else use fp32."""
        self._check_pending = False
        key = ("cpu", self.precision, _fingerprint(self._net_fp32))
        check = _precision.remembered(key)
        if check is None:
            try:
                check = _precision.check_half(
                    lambda c: self._call_net(self._net_fp32, c),
                    lambda c: self._call_net(self._net, c.to(self._input_dtype)),
                    x,
                    self.precision,
                    self._tile_unit,
                )
            except RuntimeError as err:
                # A model that claims bf16 but mixes dtypes inside (SwinIR's fp32 attention mask off its
                # training size): auto does not hold that against the user, it runs fp32.
                if _is_out_of_memory(err):
                    raise
                self.precision_note = f"fp32 (auto: {self.precision} fails in {self.traits.arch}'s layers)"
                self.precision, self._net = "fp32", self._net_fp32
                self._dtype = self._input_dtype = torch.float32
                return
            _precision.remember(key, check)
        self._apply_check(check, "checked on this input")

    def _apply_check(self, check: _precision.HalfCheck, how: str) -> None:
        self._check_pending = False
        self.precision_check = check
        if check.passed:
            self.precision_note = f"{self.precision} (auto: {check.describe()}; {how})"
            return
        self.precision_note = f"fp32 (auto: {check.describe()}; {how})"
        self.precision, self._net = "fp32", self._net_fp32
        self._dtype = self._input_dtype = torch.float32

    @property
    def net(self) -> nn.Module:
        """The fp32 network (on the Upscaler's device)."""
        return self._net_fp32

    def _bytes_per_input_pixel(self) -> float:
        """Peak activation memory of one forward pass per input pixel: the model's fp32 estimate (its
        architecture's record, or spandrel's model's), halved for half precision."""
        return self.traits.bytes_per_pixel * (1.0 if self._dtype == torch.float32 else 0.5)

    @property
    def _tile_unit(self) -> int:
        return self.size_rules.tile_unit

    @property
    def _min_tile(self) -> int:
        unit = self._tile_unit
        return -(-max(MIN_TILE, self.size_rules.minimum) // unit) * unit

    def _auto_tile(self, height: int, width: int, batch: int = 1) -> int:
        """0 when the whole (padded) image fits in the memory budget, else the largest tile side that does."""
        if self.device.type == "cuda":
            free, _total = torch.cuda.mem_get_info(self.device)
            budget = free * 0.7
        elif self.device.type == "mps":
            budget = available_memory_bytes() * 0.4
        else:
            # Half the free RAM for activations: the output buffers and the caller's arrays need the rest.
            budget = min(available_memory_bytes() * 0.5, 64 << 30)
        budget -= self._output_bytes(height, width) * batch
        per_pixel = self._bytes_per_input_pixel() * batch
        if height * width * per_pixel <= budget:
            return 0
        side = int(math.sqrt(max(budget, 0) / per_pixel)) - 2 * self.tile_pad
        side = side // self._tile_unit * self._tile_unit
        return max(side, self._min_tile)

    def _output_bytes(self, height: int, width: int) -> float:
        return 4.0 * 3 * height * width * self.scale**2

    # ------------------------------------------------------------------------------------------ tensors

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._call_net(self._net, x)

    def _call_net(self, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        # A tile may be below the model's minimum or not square: padded here as the whole image is.
        height, width = x.shape[-2:]
        padded = self.size_rules.padded(height, width)
        if padded != (height, width):
            x = pad_right_bottom(x, padded[0] - height, padded[1] - width)
        if self._channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        out = net(x)
        if padded != (height, width):
            out = out[:, :, : height * self.scale, : width * self.scale]
        return out

    @torch.inference_mode()
    def upscale_tensor(self, x: torch.Tensor, on_tile: Callable[[int, int], None] | None = None) -> torch.Tensor:
        """[B,C,H,W] float in [0,1] (any device) -> [B,C,H*s,W*s] float32 on the Upscaler's device, not clamped.

        Pads with reflection to the network's size multiple and crops back; tiles as configured; on an
        out-of-memory error halves the tile and retries; reruns in fp32 when half precision is not finite.
        """
        if x.ndim != 4:
            raise UsageError(f"upscale_tensor expects [B,C,H,W], got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise UsageError(f"the network takes {self.in_channels} channels, got {x.shape[1]}")
        height, width = x.shape[-2:]
        x = x.to(self.device, dtype=torch.float32, non_blocking=True)
        padded = self.size_rules.padded(height, width)
        if padded != (height, width):
            x = pad_right_bottom(x, padded[0] - height, padded[1] - width)
        # (x stays fp32 here so that an fp32 rerun starts from the exact input, not from its half rounding.)
        if self._check_pending:
            self._settle_precision(x)
        try:
            out = self._run_with_retries(x.to(self._input_dtype), on_tile)
            problem = "" if self._dtype == torch.float32 or torch.isfinite(out).all() else "is not finite (overflow)"
        except RuntimeError as err:
            # A model that claims half precision but mixes dtypes inside (a float32 attention mask) fails here.
            if self._dtype == torch.float32 or _is_out_of_memory(err):
                raise
            problem = f"failed in the model's layers ({str(err).strip().splitlines()[0][:120]})"
        if problem:
            warnings.warn(
                f"{self.precision} output {problem}; running this and later images in fp32",
                RuntimeWarning,
                stacklevel=2,
            )
            self.fell_back_to_fp32 = True
            self._net, self._dtype, self._input_dtype = self._net_fp32, torch.float32, torch.float32
            out = self._run_with_retries(x, on_tile)
        out = out[:, :, : height * self.scale, : width * self.scale]
        if not torch.isfinite(out).all():
            # Clamping would turn NaN into black and Inf into white: a wrong picture written as if all were well.
            raise RealesrError(
                f"the network's output is not finite (NaN or Inf): the weights of {self.model_name} "
                "are broken or the network overflows on this input"
            )
        return out

    def _run_with_retries(self, x: torch.Tensor, on_tile) -> torch.Tensor:
        batch, _, height, width = x.shape
        tile = self.tile if self.tile is not None else self._auto_tile(height, width, batch)
        while True:
            try:
                if tile == 0 or (tile >= height and tile >= width):
                    self.last_tile_used = 0
                    out = self._forward(x).float()
                    if on_tile is not None:
                        on_tile(1, 1)
                    return out
                self.last_tile_used = tile
                self._note_tiling(tile)
                return tiled_forward(
                    self._forward, x, self.scale, tile, self.tile_pad, multiple=self._tile_unit, on_tile=on_tile
                )
            except (RuntimeError, MemoryError) as err:
                if not _is_out_of_memory(err):
                    raise
                if self.device.type == "cuda":
                    torch.cuda.empty_cache()
                current = tile if tile else max(height, width)
                tile = (current // 2) // self._tile_unit * self._tile_unit
                if tile < self._min_tile:
                    raise RealesrError(
                        f"out of memory even with tiles of {current} px on {self.device}; "
                        "free memory or run on another device",
                        params=("device",),
                    ) from None

    def _note_tiling(self, tile: int) -> None:
        if self.traits.tiling != "global":
            return
        why = "as asked" if self.tile else "the whole image does not fit in memory"
        note = (
            f"{self.traits.arch} attends over the whole image, so its tiles ({tile} px, {why}) differ from a "
            "whole-image run everywhere; --tile 0 runs the whole image"
        )
        if note not in self.notes:
            self.notes.append(note)
            warnings.warn(note, RuntimeWarning, stacklevel=3)

    def run_notes(self) -> list[str]:
        """What the last image's result should say about how it was made (a global-attention model tiled)."""
        if self.traits.tiling == "global" and self.last_tile_used:
            return [note for note in self.notes if "attends over the whole image" in note][-1:]
        return []

    # ------------------------------------------------------------------------------------------ images

    def __call__(self, img):
        """HxW / HxWxC uint8 or uint16 numpy array, PIL image, or LoadedImage -> the same kind, upscaled."""
        if isinstance(img, LoadedImage):
            return self.upscale_image(img)
        if isinstance(img, np.ndarray):
            return self.upscale_array(img)
        from PIL import Image  # a dependency of realesr.imagefiles: always there

        if isinstance(img, Image.Image):
            return self._upscale_pil(img)
        if isinstance(img, torch.Tensor):
            raise UsageError("for tensors use Upscaler.upscale_tensor(x) with x of shape [B,C,H,W] in [0,1]")
        raise UsageError(f"cannot upscale a {type(img).__name__}: pass a numpy array or a PIL image")

    def upscale_image(self, image: LoadedImage, on_tile=None) -> LoadedImage:
        """A decoded file -> the upscaled one, with the same ICC profile and EXIF."""
        return image.with_array(self.upscale_array(image.array, on_tile=on_tile))

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if self.outscale is None:
            return height * self.scale, width * self.scale
        return max(1, round(height * self.outscale)), max(1, round(width * self.outscale))

    @torch.inference_mode()
    def upscale_array(self, array: np.ndarray, on_tile=None) -> np.ndarray:
        """HxW, HxWx1, HxWx2 (grey+alpha), HxWx3 or HxWx4 uint8/uint16 (or float in [0,1]) -> same layout and dtype.

        uint16 goes through the network in floating point from the full 16-bit values and is rounded once, at
        the end, to 16 bits.
        """
        layout = array_layout(array)
        dtype, top, squeeze, channels = np.asarray(array).dtype, layout.peak, layout.squeeze, layout.channels
        planes = layout.planes
        colour_count = layout.colour_channels
        tensor = torch.from_numpy(planes if planes.flags.writeable else planes.copy())
        tensor = tensor[..., None] if channels == 1 else tensor
        tensor = tensor.permute(2, 0, 1)[None]  # [1,C,H,W] view, still integer
        colour = self._to_unit(tensor[:, :colour_count], top)
        height, width = planes.shape[:2]
        out_h, out_w = self.output_size(height, width)

        has_alpha = layout.has_alpha
        alpha_by_model = has_alpha and self.alpha == "model" and not self._alpha_is_opaque(tensor, top)
        # An RGBA network takes the alpha with the colour, in one pass.
        together = alpha_by_model and self.in_channels == 4
        steps = 2 if alpha_by_model and not together else 1
        progress = None
        if on_tile is not None:
            progress = _StepProgress(on_tile, steps)

        if together:
            result = self._upscale_colour(colour, progress, alpha=self._to_unit(tensor[:, -1:], top))
        else:
            result = self._upscale_colour(colour, progress)
        del colour
        if has_alpha and not together:
            alpha = self._to_unit(tensor[:, -1:], top)
            result = torch.cat([result, self._upscale_alpha(alpha, top, progress)], dim=1)
            del alpha
        if (out_h, out_w) != tuple(result.shape[-2:]):
            result = _resize(result, out_h, out_w)
        return self._to_array(result, dtype, squeeze)

    @torch.inference_mode()
    def upscale_arrays(self, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Several images through the network in one batch (a GPU gains from it), the same arrays as
        :meth:`upscale_array` gives one at a time.

        Only images of one shape and integer dtype without alpha are batched, and only while the batch gets the
        tile size one image would (so the result cannot depend on the batch); anything else runs one at a time.
        """
        arrays = [np.asarray(a) for a in arrays]
        first = arrays[0] if arrays else None
        if (
            first is None
            or len(arrays) == 1
            or first.dtype not in (np.uint8, np.uint16)
            or first.size == 0
            or not (first.ndim == 2 or (first.ndim == 3 and first.shape[2] in (1, 3)))
            or any(a.shape != first.shape or a.dtype != first.dtype for a in arrays)
        ):
            return [self.upscale_array(a) for a in arrays]
        height, width = first.shape[:2]
        if self.tile is None:
            padded = self.size_rules.padded(height, width)
            if self._auto_tile(*padded, batch=len(arrays)) != self._auto_tile(*padded, batch=1):
                half = len(arrays) // 2
                return self.upscale_arrays(arrays[:half]) + self.upscale_arrays(arrays[half:])
        layouts = [array_layout(a) for a in arrays]  # one shape and dtype: one peak, one squeeze for all
        top, squeeze = layouts[0].peak, layouts[0].squeeze
        planes = [layout.planes for layout in layouts]
        stacked = torch.stack([torch.from_numpy(p if p.flags.writeable else p.copy()) for p in planes])
        stacked = stacked[..., None] if stacked.ndim == 3 else stacked
        colour = self._to_unit(stacked.permute(0, 3, 1, 2), top)
        result = self._upscale_colour(colour, None)
        del colour
        out_h, out_w = self.output_size(height, width)
        if (out_h, out_w) != tuple(result.shape[-2:]):
            result = _resize(result, out_h, out_w)
        return [self._to_array(result[i : i + 1], first.dtype, squeeze) for i in range(len(arrays))]

    def _to_unit(self, integers: torch.Tensor, top: float | None) -> torch.Tensor:
        values = integers.to(self.device).float()
        if top is not None:
            values.div_(top)
        return values

    def _upscale_colour(self, colour: torch.Tensor, progress, alpha: torch.Tensor | None = None) -> torch.Tensor:
        """[B,1|3,H,W] in [0,1] -> [B,1|3,H*s,W*s]: grey goes through an RGB network as three equal channels, RGB
        through a grey one as a batch of its planes; an RGBA network gets ``alpha`` (else opaque) as its fourth
        channel and then returns [B,C+1,...] when ``alpha`` is given."""
        on_tile = progress.step() if progress else None
        grey = colour.shape[1] == 1
        if self.in_channels == 1 and not grey:
            out = self.upscale_tensor(colour.reshape(-1, 1, *colour.shape[-2:]), on_tile=on_tile)
            return out.reshape(colour.shape[0], colour.shape[1], *out.shape[-2:])
        rgb = colour.expand(-1, 3, -1, -1) if grey and self.in_channels >= 3 else colour
        if self.in_channels == 4:
            fourth = alpha if alpha is not None else torch.ones_like(rgb[:, :1])
            out = self.upscale_tensor(torch.cat([rgb, fourth], dim=1), on_tile=on_tile)
            rgb_out, alpha_out = out[:, :3], out[:, 3:]
        else:
            rgb_out, alpha_out = self.upscale_tensor(rgb, on_tile=on_tile), None
        if grey and self.in_channels >= 3:
            weights = torch.tensor(_LUMA, device=rgb_out.device).view(1, 3, 1, 1)
            rgb_out = (rgb_out * weights).sum(dim=1, keepdim=True)
        return rgb_out if alpha is None or alpha_out is None else torch.cat([rgb_out, alpha_out], dim=1)

    def _alpha_is_opaque(self, tensor: torch.Tensor, top: float | None) -> bool:
        alpha = tensor[:, -1]
        full = top if top is not None else 1.0
        return bool((alpha == full).all())

    def _upscale_alpha(self, alpha: torch.Tensor, top: float | None, progress) -> torch.Tensor:
        height, width = alpha.shape[-2:]
        if bool((alpha == 1.0).all()):
            # Fully opaque: keep it exactly opaque (the network would wobble around 1).
            return torch.ones(1, 1, height * self.scale, width * self.scale, device=alpha.device)
        if self.alpha == "bicubic":
            return F.interpolate(alpha, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return self._upscale_colour(alpha, progress)

    def _to_array(self, result: torch.Tensor, dtype: np.dtype, squeeze: bool) -> np.ndarray:
        result = result[0].clamp_(0.0, 1.0)
        if dtype == np.uint8 or dtype == np.uint16:
            top = 255.0 if dtype == np.uint8 else 65535.0
            integer_type = torch.uint8 if dtype == np.uint8 else torch.int32
            result = result.mul_(top).round_().to(integer_type)
        array = result.permute(1, 2, 0).cpu().numpy()
        if dtype == np.uint16:
            array = array.astype(np.uint16)
        elif dtype not in (np.uint8,):
            array = array.astype(dtype)
        if array.shape[2] == 1 and not squeeze:
            array = array[..., 0]
        return np.ascontiguousarray(array)

    def _upscale_pil(self, img):
        return array_to_pil(self.upscale_array(pil_to_array(img)), like=img)


class _StepProgress:
    """Maps per-pass tile callbacks of the colour and alpha passes onto one 0..total count."""

    def __init__(self, on_tile: Callable[[int, int], None], steps: int) -> None:
        self.on_tile, self.steps, self.index = on_tile, steps, -1

    def step(self) -> Callable[[int, int], None]:
        self.index += 1
        index, steps = self.index, self.steps

        def report(done: int, total: int) -> None:
            self.on_tile(index * total + done, steps * total)

        return report


def _fingerprint(net: nn.Module) -> tuple:
    """Tells networks' weights apart (for remembering precision checks) without hashing every byte."""
    with torch.no_grad():
        return (type(net).__name__,) + tuple(
            (tuple(p.shape), float(p.double().sum()), float(p.double().abs().sum())) for p in net.parameters()
        )


def pad_right_bottom(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Pad ``x`` on the right and bottom by reflection (as far as the image reaches), the rest by replication:
    spandrel's padding, so that a model runs on the very input its own descriptor would give it."""
    height, width = x.shape[-2:]
    reflect_h, reflect_w = min(pad_h, height - 1), min(pad_w, width - 1)
    if reflect_h or reflect_w:
        x = F.pad(x, (0, reflect_w, 0, reflect_h), mode="reflect")
    if pad_h > reflect_h or pad_w > reflect_w:
        x = F.pad(x, (0, pad_w - reflect_w, 0, pad_h - reflect_h), mode="replicate")
    return x


def _resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Antialiased bicubic to an exact size (antialiasing matters when outscale < the network's scale)."""
    shrinking = height < image.shape[-2] or width < image.shape[-1]
    return F.interpolate(image, size=(height, width), mode="bicubic", align_corners=False, antialias=shrinking)


@contextlib.contextmanager
def layer_progress(upscaler: Upscaler, on_layer: Callable[[int, int], None]) -> Iterator[None]:
    """While in the block, call ``on_layer(finished, per_pass)`` each time one of the network's stages (its
    top-level modules, and the blocks of a top-level Sequential or ModuleList) finishes in the calling thread:
    ``finished`` counts stages since the block began, ``per_pass`` is the number of stages in one forward pass.

    Progress inside one tile: an image that fits in memory runs as one tile, and a large network takes minutes on
    a CPU for it, so the per-tile callback alone would say 0 % until the end. An exception raised by
    ``on_layer`` (a cancelled job) stops the pass at that stage. Other threads using the same network are not
    counted."""
    thread = threading.get_ident()
    counter = [0]
    handles: list[torch.utils.hooks.RemovableHandle] = []
    for net in {id(net): net for net in (upscaler._net, upscaler._net_fp32)}.values():
        stages = _stages(net)
        per_pass = len(stages)

        def hook(_module, _inputs, _output, per_pass=per_pass) -> None:
            if threading.get_ident() == thread:
                counter[0] += 1
                on_layer(counter[0], per_pass)

        handles.extend(stage.register_forward_hook(hook) for stage in stages)
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _stages(net: nn.Module) -> list[nn.Module]:
    stages: list[nn.Module] = []
    for child in net.children():
        inner = list(child.children()) if isinstance(child, (nn.Sequential, nn.ModuleList)) else []
        stages.extend(inner if len(inner) > 1 else [child])
    return stages or [net]
