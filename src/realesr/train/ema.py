"""Exponential moving average of the generator (BasicSR's model_ema): ema = decay * ema + (1 - decay) * net."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ema_update"]


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """Update ``ema`` in place from ``net`` (same architecture); buffers are copied as they are."""
    ema_params = dict(ema.named_parameters())
    for name, p in net.named_parameters():
        ema_params[name].mul_(decay).add_(p.detach().to(ema_params[name].dtype), alpha=1 - decay)
    ema_buffers = dict(ema.named_buffers())
    for name, b in net.named_buffers():
        ema_buffers[name].copy_(b)
