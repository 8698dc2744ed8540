"""DDP under torchrun: the process group from torchrun's environment, and small helpers.

No launcher of our own: ``torchrun --nproc_per_node=N -m realesr train CONFIG`` sets RANK, LOCAL_RANK and
WORLD_SIZE; without them training runs in one process.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from realesr.devices import (
    pick_device,  # the one device picker; re-exported for train.loop
)
from realesr.errors import UsageError
from realesr.schema import Int, Invalid

__all__ = [
    "DistInfo",
    "all_reduce_sum",
    "barrier",
    "env_int",
    "init_distributed",
    "pick_device",
    "shutdown_distributed",
]


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(backend: str, device: torch.device) -> DistInfo:
    """Join the process group torchrun describes (if any); ``backend`` auto picks nccl on CUDA, gloo otherwise."""
    world_size = env_int("WORLD_SIZE", 1, 1)
    if world_size <= 1:
        return DistInfo()
    rank = env_int("RANK", None, 0, world_size - 1)
    local_rank = env_int("LOCAL_RANK", 0)
    if not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return DistInfo(rank=rank, local_rank=local_rank, world_size=world_size)


def env_int(name: str, default: int | None, low: int = 0, high: int = 2**20) -> int:
    """An integer torchrun (or the user) put in the environment, checked: UsageError naming the variable."""
    text = os.environ.get(name)
    if text is None:
        if default is None:
            raise UsageError(f"${name} is not set (WORLD_SIZE > 1 asks for a torchrun process group)")
        return default
    try:
        return Int(low, high, text=True).check(text, "")
    except Invalid as err:
        raise UsageError(f"${name} {err.why}") from None


def shutdown_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(info: DistInfo) -> None:
    if info.enabled:
        dist.barrier()
