"""Which precision ``precision="auto"`` runs, and the check that bf16 keeps the picture on the CPU.

The one place where the choice is made: :func:`auto_precision` (device, what the model supports, the CPU's
native bf16) and :func:`check_half` (bf16/fp16 output against fp32 on a small real crop). The Upscaler calls
both; a model descriptor that says which precisions a network supports passes them as ``supported``.

Why bf16 on a CPU at all: on CPUs that compute bf16 products in hardware (AMX, AVX512-BF16) oneDNN's bf16
convolutions run about twice as fast as fp32 with AVX512-BF16 (measured on AMD Zen 4) and more with AMX
(bench/cpu.py; docs/upscale.md has the figures), and for the zoo's networks the output stays within half a
level of fp32 on average. Elsewhere bf16 is emulated and slower,
so auto stays fp32 there.
"""

from __future__ import annotations

import copy
import json
import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources

import torch
from torch import nn
from torch.nn import functional as F

from realesr.devices import cpu_info

__all__ = [
    "MAX_MEAN_LEVELS",
    "MIN_PSNR_DB",
    "HalfCheck",
    "auto_precision",
    "check_half",
    "half_network",
    "probe_crop",
]

PRECISIONS = ("fp32", "fp16", "bf16")
# The picture is kept when half precision's 8-bit output differs from fp32's by at most this on average and
# the PSNR between the two is at least MIN_PSNR_DB (issue 21's bar; x4plus measures 0.34 levels / 51.2 dB).
MAX_MEAN_LEVELS = 0.5
MIN_PSNR_DB = 45.0
# Side of the crop the check runs on: big enough for tens of thousands of output samples, small enough that
# both passes cost a few per cent of one 256x256 image.
PROBE_SIDE = 32


def auto_precision(device: torch.device, supported: tuple[str, ...] = PRECISIONS) -> str:
    """What ``precision="auto"`` runs in on ``device``, among the precisions the model supports: bf16 (else fp16)
    on GPUs, fp16 on MPS, bf16 on CPUs with native bf16 (subject to :func:`check_half`), else fp32."""
    if device.type == "cuda":
        wanted: tuple[str, ...] = ("bf16", "fp16") if torch.cuda.is_bf16_supported() else ("fp16",)
    elif device.type == "mps":
        wanted = ("fp16",)
    elif device.type == "cpu" and cpu_info().native_bf16:
        wanted = ("bf16",)
    else:
        wanted = ()
    return next((p for p in wanted if p in supported), "fp32")


# "packed" (default) or "eager": how the CPU runs bf16 (REALESR_CPU_BF16_PATH=eager is the plain-torch fallback).
CPU_BF16_PATH_ENV = "REALESR_CPU_BF16_PATH"


def half_network(
    net: nn.Module, dtype: torch.dtype, device: torch.device, channels_last: bool = True
) -> tuple[nn.Module, torch.dtype]:
    """``net`` (fp32, on ``device``) for half-precision inference, and the dtype its input should come in.

    On the CPU in bf16 the first and last convolutions stay fp32: the first reads the 8-bit picture, which
    bf16's 8-bit mantissa rounds by up to half a level, the last writes it, and the residual sums between them
    stay fp32 (bf16 + fp32 is fp32). On RRDBNet this cuts bf16's mean difference to fp32 by about 40 %
    (docs/upscale.md). The network is then packed for oneDNN (cpu_packed.py: weights packed once, convolution
    and LeakyReLU fused, concatenations in bf16), which makes those fp32 ends cost almost nothing; where it
    cannot be traced, or whose layers do not take channels-last tensors (``channels_last`` False: attention
    models reshape with views), layers cast their inputs with hooks instead (slower). Elsewhere: a plain cast.
    """
    if device.type != "cpu" or dtype != torch.bfloat16:
        return copy.deepcopy(net).to(dtype), dtype
    if channels_last and os.environ.get(CPU_BF16_PATH_ENV, "packed") != "eager":
        from realesr.infer.cpu_packed import available, pack_network

        packed = pack_network(net, dtype, keep_fp32=("first", "last")) if available() else None
        if packed is not None:
            return packed, torch.float32
    half = copy.deepcopy(net).to(dtype)
    convs = [m for m in half.modules() if isinstance(m, nn.Conv2d)]
    if len(convs) < 3:
        return half, dtype
    for conv in (convs[0], convs[-1]):
        conv.float()
    for module in half.modules():
        if any(True for _ in module.parameters(recurse=False)):
            module.register_forward_pre_hook(_cast_input_to_parameters)
    return half, torch.float32


def _cast_input_to_parameters(module: nn.Module, args: tuple) -> tuple:
    dtype = next(module.parameters()).dtype
    return tuple(a.to(dtype) if isinstance(a, torch.Tensor) and a.is_floating_point() else a for a in args)


@dataclass(frozen=True)
class HalfCheck:
    """Half precision against fp32 on one crop: mean absolute difference and PSNR of the 8-bit outputs."""

    precision: str
    mean_levels: float
    psnr_db: float
    crop: tuple[int, int, int]  # top, left, side of the input crop

    @property
    def passed(self) -> bool:
        return self.mean_levels <= MAX_MEAN_LEVELS and self.psnr_db >= MIN_PSNR_DB

    def describe(self) -> str:
        verdict = "kept" if self.passed else f"not kept (needs <= {MAX_MEAN_LEVELS} and >= {MIN_PSNR_DB:g} dB)"
        return (
            f"{self.precision} vs fp32 on a {self.crop[2]} px crop: mean {self.mean_levels:.3f} levels, "
            f"PSNR {self.psnr_db:.1f} dB: {verdict}"
        )


def probe_crop(x: torch.Tensor, side: int = PROBE_SIDE, multiple: int = 1) -> tuple[int, int, int]:
    """(top, left, side) of the most textured ``side``-pixel window of ``x`` [B,C,H,W] (its first image): flat
    regions would pass any precision."""
    height, width = x.shape[-2:]
    side = max(min(side, height, width) // multiple * multiple, min(multiple, height, width))
    if side >= height and side >= width:
        return 0, 0, side
    grey = x[:1].float().mean(dim=1, keepdim=True)
    stride = max(side // 2, 1)
    mean = F.avg_pool2d(grey, side, stride)
    variance = F.avg_pool2d(grey * grey, side, stride) - mean * mean
    index = int(variance.flatten().argmax())
    columns = variance.shape[-1]
    return (index // columns) * stride, (index % columns) * stride, side


def _levels(y: torch.Tensor) -> torch.Tensor:
    return y.float().clamp(0, 1).mul(255).round()


def check_half(
    run_fp32: Callable[[torch.Tensor], torch.Tensor],
    run_half: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    precision: str,
    multiple: int = 1,
) -> HalfCheck:
    """Run a small crop of ``x`` (fp32, [B,C,H,W]) through both networks and compare the 8-bit outputs."""
    top, left, side = probe_crop(x, PROBE_SIDE, multiple)
    crop = x[:1, :, top : top + side, left : left + side].float()
    with torch.inference_mode():
        ref = _levels(run_fp32(crop))
        half = run_half(crop)
    if not torch.isfinite(half).all():
        return HalfCheck(precision, math.inf, 0.0, (top, left, side))
    diff = ref - _levels(half)
    mse = float((diff * diff).mean())
    psnr = math.inf if mse == 0 else 10 * math.log10(255.0**2 / mse)
    return HalfCheck(precision, float(diff.abs().mean()), psnr, (top, left, side))


# A check is a property of the weights and the CPU, not of the Upscaler: device lists, pools, the page and Ray
# build several Upscalers of one model in a process, and each would otherwise pay for it again.
_checked: dict[tuple, HalfCheck] = {}
_lock = threading.Lock()


def remembered(key: tuple | None) -> HalfCheck | None:
    if key is None:
        return None
    with _lock:
        return _checked.get(key)


def remember(key: tuple | None, check: HalfCheck) -> None:
    if key is not None:
        with _lock:
            _checked[key] = check


# Written by `python bench/cpu.py --checks`: bf16 (as half_network runs it) against fp32 for the zoo's models
# whose weights were on disk, over fixed crops of real photos and drawings of ../shared/data. A zoo model in it
# gets that verdict without a check at run time; other models (files, modules, blends) are checked on their
# first input.
CHECKS_FILE = "bf16_checks.json"


def measured_check(model_name: str, source: str) -> HalfCheck | None:
    """The recorded bf16 verdict of a zoo model loaded by its name (not of a file that happens to share it)."""
    if source.startswith("file:") or "blended" in source or source in ("", "module"):
        return None
    entry = _recorded().get(model_name)
    if entry is None:
        return None
    return HalfCheck("bf16", float(entry["mean_levels"]), float(entry["psnr_db"]), (0, 0, int(entry["side"])))


_table: dict[str, dict] | None = None


def _recorded() -> dict[str, dict]:
    global _table
    if _table is None:
        try:
            text = (resources.files("realesr.infer") / CHECKS_FILE).read_text()
            _table = dict(json.loads(text).get("models", {}))
        except (OSError, ValueError):
            _table = {}
    return _table
