"""The seeded degraded LR of an image: one function for validation, ``realesr eval --degrade`` and
``realesr degrade``, so one seed gives one LR image of a picture whichever command makes it.

The draws depend on the seed and the image's file name only (not on its position in a folder, nor on the other
inputs): the parameters from a NumPy generator, the device-side noise and crops from a torch generator, both
from ``SeedSequence([seed, crc32(name)])``.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

from realesr.degrade.config import DegradationConfig
from realesr.degrade.pipeline import degrade, sample_degradation_batch
from realesr.degrade.usm import usm_sharpen

__all__ = ["image_generators", "degraded_lr"]


def image_generators(seed: int, name: str) -> tuple[np.random.Generator, torch.Generator]:
    """The (parameter, noise) generators of the image called ``name`` (a file name, e.g. ``baby.png``)."""
    seq = np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))])
    rng = np.random.default_rng(seq)
    generator = torch.Generator().manual_seed(int(seq.generate_state(1, np.uint64)[0] >> 1))
    return rng, generator


@torch.no_grad()
def degraded_lr(
    gt: torch.Tensor, cfg: DegradationConfig, scale: int, seed: int, name: str, sharpen: bool = True
) -> torch.Tensor:
    """The training degradation of ``gt`` ([1, 3, H, W] float in [0, 1], H and W multiples of ``scale``), from its
    unsharp-masked version as in training; returns the LR [1, 3, H/scale, W/scale] float in [0, 1]."""
    rng, generator = image_generators(seed, name)
    params = sample_degradation_batch(cfg, rng, 1)
    return degrade(usm_sharpen(gt) if sharpen else gt, params, cfg, scale, generator=generator)
