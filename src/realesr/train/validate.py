"""Validation during training: PSNR/SSIM of the EMA generator on fixed LR inputs, and a few SR samples saved.

The LR inputs are made once per run: the training degradation seeded per (val.seed, file name) by
:func:`realesr.degrade.degraded_lr` (so every validation sees the same inputs, so does a resumed run, and they are
the LR images ``realesr degrade`` and ``realesr eval --degrade`` make with that seed) and MATLAB-bicubic
downscaling.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from realesr import imagefiles
from realesr.data import list_images, read_rgb
from realesr.degrade import DegradationConfig, degraded_lr
from realesr.imagefiles import write_image

if TYPE_CHECKING:
    from realesr.train.config import TrainConfig
from realesr.errors import ConfigError, UsageError
from realesr.metrics import imresize, niqe, psnr, ssim
from realesr.metrics.fullref import SSIM_WINDOW
from realesr.metrics.niqe import NIQE_BLOCK

__all__ = [
    "ValImage",
    "ValItem",
    "ValSet",
    "build_validation_set",
    "build_validation_sets",
    "to_uint8",
    "validate_sets",
]

log = logging.getLogger("realesr.train")


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


def build_validation_set(
    folder: str,
    scale: int,
    size_multiple: int,
    max_images: int,
    max_size: int,
    seed: int,
    degraded: bool,
    bicubic: bool,
    degradation_cfg: DegradationConfig | None = None,
) -> list[ValImage]:
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


@dataclass
class ValItem:
    name: str
    lr: torch.Tensor  # [1, 3, h, w] float in [0, 1]
    hr: np.ndarray | None  # HxWx3 uint8 (h * scale, w * scale); None for a real set


@dataclass
class ValSet:
    name: str
    kind: str  # "synthetic" | "paired" | "real"
    items: list[ValItem]

    @property
    def metrics(self) -> tuple[str, ...]:
        return ("niqe",) if self.kind == "real" else ("psnr", "ssim")


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255


def _read_u8(path: Path) -> np.ndarray:
    return np.round(read_rgb(path) * 255).astype(np.uint8)


def _lr_crop(h: int, w: int, size_multiple: int, max_lr: int) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the centred LR crop: at most ``max_lr`` a side (0: whole), a multiple of
    ``size_multiple``."""
    ch, cw = (min(h, max_lr), min(w, max_lr)) if max_lr else (h, w)
    ch, cw = ch - ch % size_multiple, cw - cw % size_multiple
    return (h - ch) // 2, (w - cw) // 2, ch, cw


def build_validation_sets(
    cfg: TrainConfig, size_multiple: int, degradation_cfg: DegradationConfig | None = None
) -> list[ValSet]:
    """Every validation set of ``cfg.val``, read and (synthetic ones) degraded once, on the CPU: ``val.folder`` as
    the sets ``degraded`` and ``bicubic``, then ``val.sets`` in order. Paired LR/HR are matched by file stem and
    centre-cropped alike (HR crop = LR crop x scale); a real set's SR must hold NIQE's 96-px blocks."""
    from realesr.train.config import val_set_names

    val = cfg.val
    names = val_set_names(cfg)
    out = _folder_sets(cfg, size_multiple, degradation_cfg) if val.folder else []
    for index, (vs, name) in enumerate(zip(val.sets, names[len(names) - len(val.sets) :])):
        key = f"val.sets[{index}]"
        if not Path(vs.path).is_dir():
            raise ConfigError(f"config key '{key}.path': validation folder not found: {vs.path}", key=f"{key}.path")
        items: list[ValItem] = []
        if vs.kind == "synthetic":
            images = build_validation_set(
                vs.path, cfg.scale, size_multiple, val.max_images, val.max_size, val.seed, True, False, degradation_cfg
            )
            items = [ValItem(i.name, i.lr["degraded"], i.hr) for i in images]
        elif vs.kind == "paired":
            items = _paired_items(cfg, vs, key, size_multiple)
        else:
            items = _real_items(cfg, vs, name, size_multiple)
        if vs.kind != "real":
            items = _scorable(items, name, val.crop_border)
        if not items:
            raise ConfigError(f"config key '{key}.path': no usable validation image in {vs.path}", key=f"{key}.path")
        out.append(ValSet(name, vs.kind, items))
    return out


def _folder_sets(cfg: TrainConfig, size_multiple: int, degradation_cfg: DegradationConfig | None) -> list[ValSet]:
    """``val.folder``'s images as the sets ``degraded`` and ``bicubic`` (those asked for)."""
    val, scale = cfg.val, cfg.scale
    images = build_validation_set(
        val.folder,
        scale,
        size_multiple,
        val.max_images,
        val.max_size,
        val.seed,
        val.degraded,
        val.bicubic,
        degradation_cfg,
    )
    out = []
    for kind in ("degraded", "bicubic"):
        if getattr(val, kind):
            scored = _scorable([ValItem(i.name, i.lr[kind], i.hr) for i in images], kind, val.crop_border)
            if not scored:  # a mean over no image is no score (and was a ZeroDivisionError)
                raise ConfigError(
                    f"config key 'val.folder': no image in {val.folder} keeps SSIM's {SSIM_WINDOW} px once "
                    f"2 x val.crop_border ({val.crop_border}) is cut, after the crop to val.max_size "
                    f"({val.max_size}) and to a multiple of scale x the network's input multiple "
                    f"({scale * size_multiple})",
                    key="val.folder",
                )
            out.append(ValSet(kind, "synthetic", scored))
    return out


def _paired_items(cfg: TrainConfig, vs, key: str, size_multiple: int) -> list[ValItem]:
    """A paired set: LR and HR matched by file stem, centre-cropped alike (HR crop = LR crop x scale)."""
    val, scale = cfg.val, cfg.scale
    if not Path(vs.lr).is_dir():
        raise ConfigError(f"config key '{key}.lr': LR folder not found: {vs.lr}", key=f"{key}.lr")
    lr_by_stem = {p.stem: p for p in list_images(vs.lr)}
    hr_paths = list_images(vs.path)
    missing = [p.name for p in hr_paths if p.stem not in lr_by_stem]
    if missing:
        raise ConfigError(
            f"config key '{key}.lr': no LR image in {vs.lr} for {', '.join(missing[:5])}"
            f"{' ...' if len(missing) > 5 else ''} (LR and HR are matched by file name)",
            key=f"{key}.lr",
        )
    items = []
    for path in hr_paths[: val.max_images or None]:
        hr, lr = _read_u8(path), _read_u8(lr_by_stem[path.stem])
        if hr.shape[0] < lr.shape[0] * scale or hr.shape[1] < lr.shape[1] * scale:
            raise ConfigError(
                f"config key '{key}': {path.name} is {hr.shape[1]}x{hr.shape[0]}, smaller than "
                f"its LR ({lr.shape[1]}x{lr.shape[0]}) x {scale}",
                key=key,
            )
        top, left, ch, cw = _lr_crop(lr.shape[0], lr.shape[1], size_multiple, val.max_size // scale)
        if ch and cw:
            hr_crop = hr[top * scale : (top + ch) * scale, left * scale : (left + cw) * scale]
            items.append(
                ValItem(path.stem, _to_tensor(lr[top : top + ch, left : left + cw]), np.ascontiguousarray(hr_crop))
            )
    return items


def _real_items(cfg: TrainConfig, vs, name: str, size_multiple: int) -> list[ValItem]:
    """A real set (no GT): the images whose SR holds NIQE's blocks."""
    val, scale = cfg.val, cfg.scale
    items = []
    for path in list_images(vs.path)[: val.max_images or None]:
        lr = _read_u8(path)
        top, left, ch, cw = _lr_crop(lr.shape[0], lr.shape[1], size_multiple, val.max_size // scale)
        if min(ch, cw) * scale - 2 * val.crop_border < NIQE_BLOCK:
            log.warning(
                "validation set %s: %s skipped, its SR would be under NIQE's %d px", name, path.name, NIQE_BLOCK
            )
            continue
        items.append(ValItem(path.stem, _to_tensor(lr[top : top + ch, left : left + cw]), None))
    return items


def _scorable(items: list[ValItem], name: str, crop_border: int) -> list[ValItem]:
    """The items whose HR keeps SSIM's 11x11 window once ``crop_border`` is cut from each side (PSNR/SSIM are
    undefined otherwise); the others are skipped with a warning."""
    kept = []
    for item in items:
        if item.hr is not None and min(item.hr.shape[:2]) < 2 * crop_border + SSIM_WINDOW:
            log.warning(
                "validation set %s: %s skipped, %dx%d is under SSIM's window once val.crop_border %d is cut",
                name,
                item.name,
                item.hr.shape[1],
                item.hr.shape[0],
                crop_border,
            )
            continue
        kept.append(item)
    return kept


@torch.no_grad()
def validate_sets(
    net: nn.Module,
    sets: list[ValSet],
    device: torch.device,
    crop_border: int,
    sample_dir: Path | None = None,
    num_samples: int = 0,
    autocast_dtype: torch.dtype | None = None,
    on_sample: Callable[[str, np.ndarray], None] | None = None,
) -> dict[str, dict[str, float]]:
    """Mean metrics per set: PSNR/SSIM (Y channel, ``crop_border`` cropped) against the GT, NIQE (Y, the same
    border cropped) of a real set's SR, all on the 8-bit SR as written. The first ``num_samples`` items of each set
    give an LR | SR | GT (real: LR | SR) strip, ``sample_dir/NAME_SET.png``, also passed to ``on_sample``."""
    was_training = net.training
    net.eval()
    results: dict[str, dict[str, float]] = {}
    try:
        for vset in sets:
            sums = dict.fromkeys(vset.metrics, 0.0)
            for index, item in enumerate(vset.items):
                with torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                    sr = net(item.lr.to(device))
                sr_img = to_uint8(sr.float())
                if item.hr is None:
                    try:
                        sums["niqe"] += niqe(sr_img, crop_border=crop_border)
                    except UsageError as err:  # e.g. an untrained network's flat output: undefined, not fatal
                        log.warning("validation set %s: %s: %s; NIQE of the set is NaN", vset.name, item.name, err)
                        sums["niqe"] = math.nan
                else:
                    sums["psnr"] += psnr(sr_img, item.hr, crop_border=crop_border, y_channel=True)
                    sums["ssim"] += ssim(sr_img, item.hr, crop_border=crop_border, y_channel=True)
                if index < num_samples and (sample_dir is not None or on_sample is not None):
                    strip = sample_strip(to_uint8(item.lr), sr_img, item.hr)
                    if sample_dir is not None:
                        sample_dir.mkdir(parents=True, exist_ok=True)
                        write_image(sample_dir / f"{item.name}_{vset.name}.png", strip)
                    if on_sample is not None:
                        on_sample(f"{item.name}_{vset.name}", strip)
            results[vset.name] = {m: v / len(vset.items) for m, v in sums.items()}
    finally:
        net.train(was_training)
    return results
