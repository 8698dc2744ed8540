"""Aligned random crops of GT / LQ batches, with an offset drawn per sample."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from realesr.errors import DataError


def paired_random_crop(
    gt: torch.Tensor | Sequence[torch.Tensor],
    lq: torch.Tensor,
    gt_size: int,
    scale: int,
    generator: torch.Generator | None = None,
):
    """Crop gt_size x gt_size from GT (one tensor or a list of aligned tensors, [B,C,H,W]) and the matching
    (gt_size/scale)^2 from LQ [B,C,H/scale,W/scale], at an LQ-grid offset drawn per sample.

    Returns (gt_crop, lq_crop), gt_crop in the same form as ``gt``.
    """
    single = torch.is_tensor(gt)
    gts: list[torch.Tensor] = [gt] if isinstance(gt, torch.Tensor) else list(gt)
    if not gts:
        raise ValueError("paired_random_crop: no GT tensor given")
    if gt_size % scale:
        raise DataError(f"gt_size {gt_size} is not a multiple of the scale {scale}")
    lq_size = gt_size // scale
    b, _, h_lq, w_lq = lq.shape
    for t in gts:
        if t.shape[0] != b or t.shape[-2] != h_lq * scale or t.shape[-1] != w_lq * scale:
            raise DataError(f"GT of {tuple(t.shape)} does not match LQ of {tuple(lq.shape)} at scale {scale}")
    if h_lq < lq_size or w_lq < lq_size:
        raise DataError(f"LQ of {h_lq}x{w_lq} is smaller than the patch {lq_size}x{lq_size} (gt_size {gt_size})")
    dev = generator.device if generator is not None else torch.device("cpu")
    tops = torch.randint(0, h_lq - lq_size + 1, (b,), generator=generator, device=dev).tolist()
    lefts = torch.randint(0, w_lq - lq_size + 1, (b,), generator=generator, device=dev).tolist()
    lq_c = torch.stack([lq[i, :, t : t + lq_size, x : x + lq_size] for i, (t, x) in enumerate(zip(tops, lefts))])
    gt_c = [
        torch.stack(
            [
                g[i, :, t * scale : t * scale + gt_size, x * scale : x * scale + gt_size]
                for i, (t, x) in enumerate(zip(tops, lefts))
            ]
        )
        for g in gts
    ]
    return (gt_c[0] if single else gt_c), lq_c
