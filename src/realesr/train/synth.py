"""The one place where training pairs are synthesised: USM, the degradation chain, paired crop and pool.

It follows the official RealESRGANModel.feed_data: the LQ is degraded from the sharpened GT, GT, sharpened
GT and LQ are cropped together, the (LQ, GT) pair goes through the training pair pool, and the sharpened GT
is computed again from the GT that comes out of the pool.
"""

from __future__ import annotations

import functools
from typing import Any

import numpy as np
import torch

from realesr.degrade import (
    DegradationConfig,
    TrainingPairPool,
    degrade,
    paired_random_crop,
    sample_degradation_params,
    usm_sharpen,
)
from realesr.degrade.config import DegradationOverrides
from realesr.errors import ConfigError
from realesr.schema import Invalid

__all__ = ["PairSynthesizer", "degradation_config", "params_sampler"]


def degradation_config(scale: int, overrides: dict[str, Any]) -> DegradationConfig:
    """``DegradationConfig.for_scale(scale)`` with the ``data.degradation`` overrides applied. A loaded config has
    had them checked already (its schema holds :class:`DegradationOverrides`); checked again here, by the same
    rules, for a TrainConfig built in code."""
    try:
        DegradationOverrides().check(overrides, "data.degradation")
    except Invalid as err:
        raise ConfigError(f"config key '{err.where}': {err.why}", key=err.where) from None
    return DegradationConfig.for_scale(scale).replace_flat(overrides)


def _sample(cfg, rng: np.random.Generator) -> dict:
    return sample_degradation_params(cfg, rng)


def params_sampler(cfg):
    """A picklable ``rng -> params`` callable for the DataLoader workers."""
    return functools.partial(_sample, cfg)


class PairSynthesizer:
    """``(gt patches, batched degradation params) -> (lq, gt, gt_usm)`` on the patches' device."""

    def __init__(self, cfg, scale: int, gt_size: int, pool_size: int, batch_size: int, seed: int = 0) -> None:
        self.cfg = cfg
        self.scale = scale
        self.gt_size = gt_size
        # the pool shuffles with its own generator: seeded, and saved in the checkpoint
        self.pool = TrainingPairPool(pool_size, batch_size, seed=seed) if pool_size > 0 else None

    @torch.no_grad()
    def __call__(
        self,
        gt: torch.Tensor | None,
        params: dict,
        generator: torch.Generator | None = None,
        paired: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        """``gt``: patches to degrade (None when the batch is all paired); ``paired``: (lq, gt) crops of real pairs,
        which skip the chain and join the synthetic ones before the pool."""
        lq: torch.Tensor | None = None
        gt_usm: torch.Tensor | None = None
        if gt is not None:
            gt_usm = usm_sharpen(gt)
            lq = degrade(gt_usm, params, self.cfg, self.scale, generator=generator)
            (gt, gt_usm), lq = paired_random_crop([gt, gt_usm], lq, self.gt_size, self.scale, generator=generator)
        if paired is not None:
            real_lq, real_gt = paired
            real_usm = usm_sharpen(real_gt)
            if gt is None or lq is None or gt_usm is None:  # (all three are set together above)
                lq, gt, gt_usm = real_lq, real_gt, real_usm
            else:
                lq, gt, gt_usm = torch.cat([lq, real_lq]), torch.cat([gt, real_gt]), torch.cat([gt_usm, real_usm])
        if gt is None or lq is None or gt_usm is None:
            raise ValueError("a training batch needs synthetic patches or real pairs")
        if self.pool is not None:
            lq, gt = self.pool(lq, gt)
            gt_usm = usm_sharpen(gt)
        return lq.contiguous(), gt.contiguous(), gt_usm.contiguous()

    def state_dict(self) -> dict:
        return {"pool": self.pool.state_dict() if self.pool is not None else None}

    def load_state_dict(self, state: dict, device: torch.device | str | None = None) -> None:
        """``device``: where the training pairs live (the pool's queues go there)."""
        if self.pool is not None and state.get("pool") is not None:
            self.pool.load_state_dict(state["pool"], device=device)
