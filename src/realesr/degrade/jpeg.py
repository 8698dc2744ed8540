"""Differentiable baseline JPEG (YCbCr, 4:2:0, 8x8 DCT, IJG-scaled standard tables), batched, quality per sample.

What a real encoder + decoder (libjpeg, as used by Pillow and OpenCV) does, in float arithmetic:
RGB -> full-range YCbCr (JFIF), edge replication to a multiple of 16 (a whole 4:2:0 MCU), chroma 2x2 averaging,
level shift by 128, orthonormal 8x8 DCT-II, division by the quantisation table and rounding, then the inverse.
The rounding passes its gradient straight through (forward = exact rounding, like the official non-differentiable
DiffJPEG used in training; backward = identity). Differences from the official DiffJPEG, all towards libjpeg:
IJG table scaling with rounding and clamping to [1, 255] (the official multiplies the base table by a float factor),
edge replication instead of zero padding, and by default libjpeg's "fancy" (triangular) chroma upsampling instead of
nearest neighbour.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

# ITU-T T.81 Annex K tables, row-major in frequency (row = vertical frequency).
_LUMA_TABLE = (
    (16, 11, 10, 16, 24, 40, 51, 61),
    (12, 12, 14, 19, 26, 58, 60, 55),
    (14, 13, 16, 24, 40, 57, 69, 56),
    (14, 17, 22, 29, 51, 87, 80, 62),
    (18, 22, 37, 56, 68, 109, 103, 77),
    (24, 35, 55, 64, 81, 104, 113, 92),
    (49, 64, 78, 87, 103, 121, 120, 101),
    (72, 92, 95, 98, 112, 100, 103, 99),
)
_CHROMA_TABLE = (
    (17, 18, 24, 47, 99, 99, 99, 99),
    (18, 21, 26, 66, 99, 99, 99, 99),
    (24, 26, 56, 99, 99, 99, 99, 99),
    (47, 66, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
    (99, 99, 99, 99, 99, 99, 99, 99),
)

_RGB_TO_YCBCR = (
    (0.299, 0.587, 0.114),
    (-0.168735892, -0.331264108, 0.5),
    (0.5, -0.418687589, -0.081312411),
)
_YCBCR_TO_RGB = (
    (1.0, 0.0, 1.402),
    (1.0, -0.344136286, -0.714136286),
    (1.0, 1.772, 0.0),
)


def dct_matrix(n: int = 8, dtype=torch.float32, device=None) -> torch.Tensor:
    """Orthonormal DCT-II matrix D (D @ block @ D.T is the JPEG forward DCT)."""
    k = torch.arange(n, dtype=torch.float64).view(-1, 1)
    x = torch.arange(n, dtype=torch.float64).view(1, -1)
    d = torch.cos((2 * x + 1) * k * math.pi / (2 * n)) * math.sqrt(2.0 / n)
    d[0] /= math.sqrt(2.0)
    return d.to(dtype=dtype, device=device)


def quality_to_scale(quality: torch.Tensor) -> torch.Tensor:
    """IJG jpeg_quality_scaling in its integer arithmetic: 5000/q below 50, else 200 - 2q (percent), floored.

    Fractional qualities (the official draws them uniformly) fall on the step of the integer below the scale.
    """
    q = quality.clamp(1.0, 100.0)
    return torch.floor(torch.where(q < 50, 5000.0 / q, 200.0 - 2.0 * q))


def quantization_tables(quality: torch.Tensor, dtype=torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample (luma, chroma) tables [B,8,8] as libjpeg builds them: floor((base*scale + 50)/100) in [1, 255]."""
    quality = quality.to(torch.float64).flatten()
    scale = quality_to_scale(quality).view(-1, 1, 1)
    tables = []
    for base in (_LUMA_TABLE, _CHROMA_TABLE):
        base_t = torch.tensor(base, dtype=torch.float64, device=quality.device)
        tables.append(torch.floor((base_t * scale + 50.0) / 100.0).clamp(1.0, 255.0).to(dtype))
    return tables[0], tables[1]


def _round_ste(x: torch.Tensor) -> torch.Tensor:
    return x + (torch.round(x) - x).detach()


def _code_plane(plane: torch.Tensor, table: torch.Tensor, dct2: torch.Tensor) -> torch.Tensor:
    """DCT, quantise, dequantise, inverse DCT of a level-shifted plane [B,H,W] (H, W multiples of 8).

    table: [B,8,8]; dct2: the 64x64 matrix kron(D, D) acting on row-major flattened blocks, so that the whole
    plane is transformed by one matrix product.
    """
    b, h, w = plane.shape
    blocks = plane.reshape(b, h // 8, 8, w // 8, 8).permute(0, 1, 3, 2, 4).reshape(b, -1, 64)
    t = table.reshape(b, 1, 64)
    coeffs = blocks @ dct2.T
    coeffs = _round_ste(coeffs / t) * t
    blocks = coeffs @ dct2
    return blocks.reshape(b, h // 8, w // 8, 8, 8).permute(0, 1, 3, 2, 4).reshape(b, h, w)


def _clamp_to_sizes(plane: torch.Tensor, sizes: list[tuple[int, int]]) -> torch.Tensor:
    """Replicate each sample's last valid row / column of plane [B,C,H,W] beyond its own (h, w)."""
    b, c, h, w = plane.shape
    rows = torch.stack([torch.arange(h).clamp(max=sh - 1) for sh, _ in sizes]).to(plane.device)
    cols = torch.stack([torch.arange(w).clamp(max=sw - 1) for _, sw in sizes]).to(plane.device)
    plane = plane.gather(2, rows.view(b, 1, h, 1).expand(b, c, h, w))
    return plane.gather(3, cols.view(b, 1, 1, w).expand(b, c, h, w))


def jpeg_compress(
    x: torch.Tensor,
    quality: torch.Tensor | float,
    chroma_upsampling: str = "fancy",
    sizes: list[tuple[int, int]] | None = None,
) -> torch.Tensor:
    """JPEG-compress and decode x [B,3,H,W] in [0,1] at a quality per sample ([B] tensor or a number).

    ``sizes``: each sample's own (h, w) when x is a canvas of samples of different sizes placed top-left with
    replicated edges; the decoder then treats each sample's chroma edge as libjpeg does for an image of that size.
    Returns [B,3,H,W] in [0,1] (not rounded to 8 bits; a real decoder would round).
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"jpeg_compress expects [B,3,H,W], got {tuple(x.shape)}")
    b, _, h, w = x.shape
    if not torch.is_tensor(quality):
        quality = torch.full((b,), float(quality))
    quality = quality.flatten()
    if quality.numel() == 1 and b > 1:
        quality = quality.expand(b)
    if quality.numel() != b:
        raise ValueError(f"{quality.numel()} qualities for a batch of {b}")
    y_table, c_table = quantization_tables(quality.detach().cpu())
    y_table, c_table = y_table.to(x.device, x.dtype), c_table.to(x.device, x.dtype)
    d = dct_matrix(8, torch.float64)
    dct2 = torch.kron(d, d).to(device=x.device, dtype=x.dtype)

    pad_h, pad_w = (-h) % 16, (-w) % 16
    img = x * 255.0
    if pad_h or pad_w:
        img = F.pad(img, (0, pad_w, 0, pad_h), mode="replicate")
    m = torch.tensor(_RGB_TO_YCBCR, dtype=x.dtype, device=x.device)
    ycc = torch.einsum("ij,bjhw->bihw", m, img)
    luma = _code_plane(ycc[:, 0] - 128.0, y_table, dct2) + 128.0
    # the forward matrix has no +128 offset on Cb/Cr, so chroma is already level-shifted
    chroma = F.avg_pool2d(ycc[:, 1:], 2)
    cb = _code_plane(chroma[:, 0].contiguous(), c_table, dct2)
    cr = _code_plane(chroma[:, 1].contiguous(), c_table, dct2)
    chroma = torch.stack([cb, cr], dim=1)
    # libjpeg's upsampler replicates the last chroma sample of the image's own ceil(size / 2), not the MCU padding
    own = [(h, w)] * b if sizes is None else [(int(sh), int(sw)) for sh, sw in sizes]
    chroma_sizes = [((sh + 1) // 2, (sw + 1) // 2) for sh, sw in own]
    if any(cs != tuple(chroma.shape[-2:]) for cs in chroma_sizes):
        chroma = _clamp_to_sizes(chroma, chroma_sizes)
    if chroma_upsampling == "fancy":
        chroma = F.interpolate(chroma, scale_factor=2, mode="bilinear", align_corners=False)
    elif chroma_upsampling == "nearest":
        chroma = chroma.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)
    else:
        raise ValueError(f"chroma_upsampling must be 'fancy' or 'nearest', got {chroma_upsampling!r}")
    ycc = torch.cat([luma.unsqueeze(1), chroma], dim=1)
    rgb = torch.einsum("ij,bjhw->bihw", torch.tensor(_YCBCR_TO_RGB, dtype=x.dtype, device=x.device), ycc)
    rgb = rgb[:, :, :h, :w].clamp(0.0, 255.0)
    return rgb / 255.0
