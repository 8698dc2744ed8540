"""Validation during training: PSNR/SSIM of the EMA generator on fixed LR inputs, and a few SR samples saved.

The LR inputs are made once per run: the training degradation seeded per (val.seed, file name) by
:func:`realesr.degrade.degraded_lr` (so every validation sees the same inputs, so does a resumed run, and they are
the LR images ``realesr degrade`` and ``realesr eval --degrade`` make with that seed) and MATLAB-bicubic
downscaling.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from realesr import imagefiles
from realesr.data import list_images, read_rgb
from realesr.degrade import DegradationConfig, degraded_lr
from realesr.imagefiles import write_image
from realesr.metrics import imresize, psnr, ssim

__all__ = ["ValImage", "build_validation_set", "to_uint8", "validate"]


@dataclass
class ValImage:
    name: str
    hr: np.ndarray  # HxWx3 uint8
    lr: dict[str, torch.Tensor]  # kind ("degraded" | "bicubic") -> [1, 3, h, w] float in [0, 1]


def to_uint8(t: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] (or [3, H, W]) float in [0, 1] -> HxWx3 uint8, rounded as every image written
    (:func:`realesr.imagefiles.to_uint8`)."""
    if t.dim() == 4:
        t = t[0]
    return imagefiles.to_uint8(t.detach().float().permute(1, 2, 0).cpu().numpy())


def build_validation_set(folder: str, scale: int, size_multiple: int, max_images: int, max_size: int, seed: int,
                         degraded: bool, bicubic: bool,
                         degradation_cfg: DegradationConfig | None = None) -> list[ValImage]:
    """HR images cropped to a multiple of ``scale * size_multiple`` (and centre-cropped to ``max_size``), with
    their LR versions computed once, on the CPU, from fixed seeds."""
    paths = list_images(folder)
    degradation_cfg = degradation_cfg if degradation_cfg is not None else DegradationConfig.for_scale(scale)
    if max_images:
        paths = paths[:max_images]
    multiple = scale * size_multiple
    out = []
    for path in paths:
        hr = np.round(read_rgb(path) * 255).astype(np.uint8)
        h, w = hr.shape[:2]
        if max_size:
            ch, cw = min(h, max_size), min(w, max_size)
            top, left = (h - ch) // 2, (w - cw) // 2
            hr = hr[top : top + ch, left : left + cw]
            h, w = hr.shape[:2]
        hr = np.ascontiguousarray(hr[: h - h % multiple, : w - w % multiple])
        if hr.shape[0] == 0 or hr.shape[1] == 0:
            continue
        lr = {}
        hr_t = torch.from_numpy(hr).permute(2, 0, 1)[None].float() / 255
        if degraded:
            # the seeded LR `realesr eval --degrade` and `realesr degrade --crop 0` make of this file, in 8 bits as
            # they write it
            lq = degraded_lr(hr_t, degradation_cfg, scale, seed, path.name)
            lr["degraded"] = torch.round(lq.clamp(0, 1) * 255) / 255
        if bicubic:
            lr_np = np.clip(np.round(imresize(hr, scale=1 / scale)), 0, 255)  # MATLAB's uint8 output
            lr["bicubic"] = torch.from_numpy(np.ascontiguousarray(lr_np)).permute(2, 0, 1)[None].float() / 255
        out.append(ValImage(path.stem, hr, lr))
    return out


def sample_strip(lr: np.ndarray, sr: np.ndarray, hr: np.ndarray | None = None, gap: int = 4) -> np.ndarray:
    """LR (nearest-neighbour enlarged to the SR size) | SR | GT side by side on a white background, HxWx3 uint8."""
    h, w = sr.shape[:2]
    ry, rx = max(1, h // lr.shape[0]), max(1, w // lr.shape[1])
    big = np.repeat(np.repeat(lr, ry, axis=0), rx, axis=1)[:h, :w]
    panels = [big, sr] + ([hr[:h, :w]] if hr is not None else [])
    strip = np.full((h, len(panels) * w + (len(panels) - 1) * gap, 3), 255, np.uint8)
    for i, panel in enumerate(panels):
        strip[: panel.shape[0], i * (w + gap) : i * (w + gap) + panel.shape[1]] = panel
    return strip


@torch.no_grad()
def validate(net: nn.Module, images: list[ValImage], device: torch.device, crop_border: int,
             sample_dir: Path | None = None, num_samples: int = 0,
             autocast_dtype: torch.dtype | None = None,
             on_sample: Callable[[str, np.ndarray], None] | None = None) -> dict[str, dict[str, float]]:
    """Mean PSNR/SSIM (Y channel, ``crop_border`` cropped) per LR kind. For the first ``num_samples`` images of each
    kind an LR | SR | GT strip is written to ``sample_dir/NAME_KIND.png`` and passed to ``on_sample(tag, strip)``."""
    was_training = net.training
    net.eval()
    sums: dict[str, list[float]] = {}
    try:
        for index, item in enumerate(images):
            for kind, lr in item.lr.items():
                x = lr.to(device)
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    sr = net(x)
                sr_img = to_uint8(sr.float())
                acc = sums.setdefault(kind, [0.0, 0.0, 0])
                acc[0] += psnr(sr_img, item.hr, crop_border=crop_border, y_channel=True)
                acc[1] += ssim(sr_img, item.hr, crop_border=crop_border, y_channel=True)
                acc[2] += 1
                if index < num_samples and (sample_dir is not None or on_sample is not None):
                    strip = sample_strip(to_uint8(lr), sr_img, item.hr)
                    if sample_dir is not None:
                        sample_dir.mkdir(parents=True, exist_ok=True)
                        write_image(sample_dir / f"{item.name}_{kind}.png", strip)
                    if on_sample is not None:
                        on_sample(f"{item.name}_{kind}", strip)
    finally:
        net.train(was_training)
    return {kind: {"psnr": s[0] / s[2], "ssim": s[1] / s[2]} for kind, s in sums.items()}
