"""Exponential moving average of the generator (BasicSR's model_ema): ema = decay * ema + (1 - decay) * net."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ema_update"]


@torch.no_grad()
def ema_update(ema: nn.Module, net: nn.Module, decay: float) -> None:
    """Update ``ema`` in place from ``net`` (same architecture); buffers are copied as they are.

    The arithmetic is BasicSR's (``mul_(decay).add_(p, alpha=1 - decay)``), done with one multi-tensor kernel per
    operation rather than two small kernels per tensor (RRDBNet has ~700 tensors).
    """
    ema_params = dict(ema.named_parameters())
    pairs = [(ema_params[name], p.detach()) for name, p in net.named_parameters()]
    targets: list[torch.Tensor] = [e for e, _ in pairs]
    sources = [p.to(e.dtype) for e, p in pairs]
    torch._foreach_mul_(targets, decay)
    torch._foreach_add_(targets, sources, alpha=1 - decay)
    ema_buffers = dict(ema.named_buffers())
    for name, b in net.named_buffers():
        ema_buffers[name].copy_(b)
