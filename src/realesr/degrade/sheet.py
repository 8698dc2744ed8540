"""Contact sheets: a GT crop beside its degraded LR versions (nearest-neighbour upscaled), labelled."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from PIL import Image, ImageDraw, ImageFont

from realesr.degrade.config import RESIZE_MODES
from realesr.degrade.kernels import KERNEL_TYPE_NAMES
from realesr.imagefiles import to_uint8

_DIRECTIONS = ("up", "down", "keep")


def _kernel_label(params: Mapping[str, torch.Tensor], stem: str, i: int) -> str:
    kind = KERNEL_TYPE_NAMES[int(params[f"{stem}_type"][i])]
    size = int(params[f"{stem}_size"][i])
    if kind == "identity":
        return "none"
    if kind == "sinc":
        return f"sinc {size}px w={float(params[f'{stem}_omega'][i]):.2f}"
    sx, sy = float(params[f"{stem}_sigma_x"][i]), float(params[f"{stem}_sigma_y"][i])
    text = f"{kind} {size}px s={sx:.2f}"
    if kind.endswith("aniso"):
        text += f"/{sy:.2f} t={float(params[f'{stem}_theta'][i]):.2f}"
    if kind.startswith(("generalized", "plateau")):
        text += f" b={float(params[f'{stem}_beta'][i]):.2f}"
    return text


def _noise_label(params: Mapping[str, torch.Tensor], stage: int, i: int) -> str:
    gray = "gray" if int(params[f"noise{stage}_gray"][i]) else "color"
    if int(params[f"noise{stage}_gaussian"][i]):
        return f"gauss s={float(params[f'noise{stage}_sigma'][i]):.1f} {gray}"
    return f"poisson x{float(params[f'noise{stage}_poisson_scale'][i]):.2f} {gray}"


def label_lines(params: Mapping[str, torch.Tensor], i: int) -> list[str]:
    """Short lines naming every drawn parameter of sample i, in the order the chain applies them."""
    r1 = (
        f"{_DIRECTIONS[int(params['resize1_direction'][i])]} x{float(params['resize1_scale'][i]):.2f} "
        f"{RESIZE_MODES[int(params['resize1_mode'][i])]}"
    )
    r2 = (
        f"{_DIRECTIONS[int(params['resize2_direction'][i])]} x{float(params['resize2_scale'][i]):.2f} "
        f"{RESIZE_MODES[int(params['resize2_mode'][i])]}"
    )
    final_resize = RESIZE_MODES[int(params["final_resize_mode"][i])]
    sinc = _kernel_label(params, "sinc", i)
    jpeg2 = f"jpeg q{float(params['jpeg2_quality'][i]):.0f}"
    resize_sinc = f"{final_resize} + {sinc}" if sinc != "none" else f"{final_resize}, no sinc"
    final = f"{resize_sinc}; {jpeg2}" if int(params["final_resize_first"][i]) else f"{jpeg2}; {resize_sinc}"
    return [
        f"1 blur {_kernel_label(params, 'kernel1', i)}",
        f"1 resize {r1}",
        f"1 noise {_noise_label(params, 1, i)}",
        f"1 jpeg q{float(params['jpeg1_quality'][i]):.0f}",
        "2 blur " + (_kernel_label(params, "kernel2", i) if int(params["blur2_apply"][i]) else "none"),
        f"2 resize {r2}",
        f"2 noise {_noise_label(params, 2, i)}",
        f"3 {final}",
    ]


def tensor_to_pil(x: torch.Tensor) -> Image.Image:
    """[3,H,W] float in [0,1] -> 8-bit RGB PIL image."""
    return Image.fromarray(to_uint8(x.detach().permute(1, 2, 0).cpu().numpy()))


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    words, lines, current = text.split(" "), [], ""
    for word in words:
        trial = f"{current} {word}".strip()
        if current and draw.textlength(trial, font=font) > width:
            lines.append(current)
            current = word
        else:
            current = trial
    return lines + [current] if current else lines


def contact_sheet(gt: torch.Tensor, lqs: torch.Tensor, labels: Sequence[Sequence[str]], title: str = "") -> Image.Image:
    """One row: GT [3,H,W] then each LR [K,3,h,w] upscaled by nearest neighbour to H x W, a label under each."""
    h, w = gt.shape[-2:]
    tiles = [tensor_to_pil(gt)] + [tensor_to_pil(lq).resize((w, h), Image.Resampling.NEAREST) for lq in lqs]
    try:
        font = ImageFont.load_default(size=13)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    line_h = int(probe.textbbox((0, 0), "Ag", font=font)[3]) + 3
    all_labels = [[title or "GT", f"{w}x{h}"]] + [list(lines) for lines in labels]
    wrapped = [[piece for line in lines for piece in _wrap(probe, line, font, w - 8)] for lines in all_labels]
    text_h = line_h * max(len(lines) for lines in wrapped) + 8
    gap = 4
    sheet = Image.new("RGB", (len(tiles) * (w + gap) - gap, h + text_h), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for j, (tile, lines) in enumerate(zip(tiles, wrapped)):
        x0 = j * (w + gap)
        sheet.paste(tile, (x0, 0))
        for n, line in enumerate(lines):
            draw.text((x0 + 4, h + 4 + n * line_h), line, fill=(0, 0, 0), font=font)
    return sheet
