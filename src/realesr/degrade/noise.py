"""Additive Gaussian and Poisson noise with per-sample parameters, as the official ``*_noise_pt`` functions.

Random numbers come from ``generator`` (a torch.Generator on any device; the global RNG when None); they are
drawn on the generator's device and moved to the image's device, so a CPU generator gives the same noise whatever
device the images are on.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

# ITU-R BT.601 luma weights, as torchvision's rgb_to_grayscale used by the official.
_GRAY_WEIGHTS = (0.2989, 0.587, 0.114)


def _gen_device(generator: torch.Generator | None, fallback: torch.device) -> torch.device:
    return generator.device if generator is not None else fallback


def randn_like_on(x_shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    dev = _gen_device(generator, like.device)
    return torch.randn(tuple(x_shape), generator=generator, device=dev, dtype=like.dtype).to(like.device)


def rgb_to_gray(x: torch.Tensor) -> torch.Tensor:
    r, g, b = _GRAY_WEIGHTS
    return r * x[:, 0:1] + g * x[:, 1:2] + b * x[:, 2:3]


def gaussian_noise(
    x: torch.Tensor, sigma: torch.Tensor, gray: torch.Tensor, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Noise N(0, (sigma/255)^2) per sample; grey samples get the same noise in every channel.

    sigma: [B] in 8-bit levels; gray: [B] bool.
    """
    b, c, h, w = x.shape
    sigma = sigma.to(device=x.device, dtype=x.dtype).view(b, 1, 1, 1) / 255.0
    gray = gray.to(device=x.device).bool().view(b, 1, 1, 1)
    color_noise = randn_like_on((b, c, h, w), x, generator)
    gray_noise = randn_like_on((b, 1, h, w), x, generator)
    return torch.where(gray, gray_noise.expand(b, c, h, w), color_noise) * sigma


def _levels(q: torch.Tensor, sizes: Sequence[tuple[int, int]] | None) -> torch.Tensor:
    """Per sample, 2^ceil(log2(#distinct values)) of the 8-bit-quantised image q: the official's Poisson
    'photon count'. Counted with a 256-bin histogram rather than torch.unique (a sort)."""
    vals = []
    for i in range(q.shape[0]):
        sample = q[i] if sizes is None else q[i, :, : sizes[i][0], : sizes[i][1]]
        n = int(torch.count_nonzero(torch.bincount((sample * 255.0).round().long().flatten(), minlength=256)))
        vals.append(2.0 ** math.ceil(math.log2(max(n, 1))))
    return torch.tensor(vals, dtype=q.dtype, device=q.device).view(-1, 1, 1, 1)


def _poisson(rate: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    dev = _gen_device(generator, rate.device)
    return torch.poisson(rate.to(dev), generator=generator).to(rate.device)


def poisson_noise(
    x: torch.Tensor,
    scale: torch.Tensor,
    gray: torch.Tensor,
    generator: torch.Generator | None = None,
    sizes: Sequence[tuple[int, int]] | None = None,
) -> torch.Tensor:
    """Signal-dependent noise scale * (Poisson(v x) / v - x) with v = 2^ceil(log2(#levels)) per sample.

    Its variance is scale^2 x / v (about scale^2 x / 256 on 8-bit content). Grey samples draw the noise on the
    luma and add it to every channel. ``sizes`` limits the level count to each sample's valid region (padded
    canvases).
    """
    b, c, h, w = x.shape
    scale = scale.to(device=x.device, dtype=x.dtype).view(b, 1, 1, 1)
    gray = gray.to(device=x.device).bool()
    q = torch.clamp((x * 255.0).round(), 0, 255) / 255.0
    v = _levels(q, sizes)
    noise = _poisson(q * v, generator) / v - q
    if bool(gray.any()):
        g = torch.clamp((rgb_to_gray(x) * 255.0).round(), 0, 255) / 255.0
        vg = _levels(g, sizes)
        gray_noise = _poisson(g * vg, generator) / vg - g
        noise = torch.where(gray.view(b, 1, 1, 1), gray_noise.expand(b, c, h, w), noise)
    return noise * scale


def add_noise(
    x: torch.Tensor,
    use_gaussian: torch.Tensor,
    sigma: torch.Tensor,
    poisson_scale: torch.Tensor,
    gray: torch.Tensor,
    generator: torch.Generator | None = None,
    sizes: Sequence[tuple[int, int]] | None = None,
) -> torch.Tensor:
    """Gaussian or Poisson noise chosen per sample, then clip to [0, 1] (the official clip=True, rounds=False)."""
    use_gaussian = use_gaussian.bool().cpu()
    out = x.clone()
    idx_g = torch.nonzero(use_gaussian).flatten()
    idx_p = torch.nonzero(~use_gaussian).flatten()
    if idx_g.numel():
        ig = idx_g.to(x.device)
        out[ig] = x[ig] + gaussian_noise(x[ig], sigma[idx_g], gray[idx_g], generator)
    if idx_p.numel():
        ip = idx_p.to(x.device)
        sub_sizes = None if sizes is None else [sizes[i] for i in idx_p.tolist()]
        out[ip] = x[ip] + poisson_noise(x[ip], poisson_scale[idx_p], gray[idx_p], generator, sub_sizes)
    return out.clamp_(0.0, 1.0)
