"""The training pair pool of the official (``_dequeue_and_enqueue``), with exact save/resume."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from realesr.errors import ConfigError


class TrainingPairPool:
    """A queue of ``pool_size`` (LQ, GT) pairs that mixes degradations across batches, as the official.

    While it fills, each batch is stored and returned unchanged. Once full, every call shuffles the pool, returns
    its first ``batch_size`` pairs and puts the incoming batch in their place. ``gt`` may be one tensor or a list of
    aligned tensors (e.g. GT and sharpened GT); the result has the same form. ``pool_size`` 0 disables the pool.
    The shuffles use an own CPU generator (seeded by ``seed``), saved in ``state_dict`` for an exact resume.
    """

    def __init__(self, pool_size: int = 180, batch_size: int = 12, seed: int | None = None) -> None:
        if not isinstance(pool_size, int) or pool_size < 0:
            raise ConfigError(f"pool_size: expected an integer >= 0, got {pool_size!r}")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigError(f"batch_size: expected a positive integer, got {batch_size!r}")
        if pool_size % batch_size:
            raise ConfigError(f"pool_size: {pool_size} must be a multiple of batch_size {batch_size}")
        self.pool_size = pool_size
        self.batch_size = batch_size
        self.generator = torch.Generator()
        if seed is None:
            self.generator.seed()
        else:
            self.generator.manual_seed(int(seed))
        self.queue_lq: torch.Tensor | None = None
        self.queue_gt: list[torch.Tensor] | None = None
        self.ptr = 0

    @property
    def full(self) -> bool:
        return self.queue_lq is not None and self.ptr == self.pool_size

    def __len__(self) -> int:
        return self.ptr

    def __call__(self, lq: torch.Tensor, gt: torch.Tensor | Sequence[torch.Tensor]):
        single = torch.is_tensor(gt)
        gts: list[torch.Tensor] = [gt] if isinstance(gt, torch.Tensor) else list(gt)
        if self.pool_size == 0:
            return lq, gt
        b = lq.shape[0]
        if b != self.batch_size or any(g.shape[0] != b for g in gts):
            raise ValueError(f"TrainingPairPool expects batches of {self.batch_size}, got {b}")
        if self.queue_lq is None:
            self.queue_lq = lq.new_zeros((self.pool_size, *lq.shape[1:]))
            self.queue_gt = [g.new_zeros((self.pool_size, *g.shape[1:])) for g in gts]
        assert self.queue_gt is not None  # filled together with queue_lq
        if (
            lq.shape[1:] != self.queue_lq.shape[1:]
            or len(gts) != len(self.queue_gt)
            or any(g.shape[1:] != q.shape[1:] for g, q in zip(gts, self.queue_gt))
        ):
            raise ValueError("TrainingPairPool: the batch shapes changed since the pool was filled")
        if self.queue_lq.device != lq.device:  # e.g. the first call after load_state_dict
            self.queue_lq = self.queue_lq.to(lq.device)
            self.queue_gt = [q.to(g.device) for q, g in zip(self.queue_gt, gts)]
        lq = lq.detach()
        gts = [g.detach() for g in gts]
        if self.ptr < self.pool_size:
            self.queue_lq[self.ptr : self.ptr + b] = lq
            for q, g in zip(self.queue_gt, gts):
                q[self.ptr : self.ptr + b] = g
            self.ptr += b
            out_lq, out_gt = lq, gts
        else:
            perm = torch.randperm(self.pool_size, generator=self.generator).to(self.queue_lq.device)
            self.queue_lq = self.queue_lq[perm]
            self.queue_gt = [q[perm] for q in self.queue_gt]
            out_lq = self.queue_lq[:b].clone()
            out_gt = [q[:b].clone() for q in self.queue_gt]
            self.queue_lq[:b] = lq
            for q, g in zip(self.queue_gt, gts):
                q[:b] = g
        return out_lq, (out_gt[0] if single else out_gt)

    def state_dict(self) -> dict[str, Any]:
        return {
            "pool_size": self.pool_size,
            "batch_size": self.batch_size,
            "ptr": self.ptr,
            "queue_lq": None if self.queue_lq is None else self.queue_lq.cpu().clone(),
            "queue_gt": None if self.queue_gt is None else [q.cpu().clone() for q in self.queue_gt],
            "generator": self.generator.get_state(),
        }

    def load_state_dict(self, state: dict[str, Any], device: torch.device | str | None = None) -> None:
        """Restore a state; the queues go to ``device`` (default: where this pool's queues are, else the CPU) and
        follow the batches' device on the next call."""
        if state["pool_size"] != self.pool_size or state["batch_size"] != self.batch_size:
            raise ConfigError(
                f"pool_size: saved pool is {state['pool_size']} x batch {state['batch_size']}, "
                f"this one {self.pool_size} x batch {self.batch_size}"
            )
        if device is None:
            device = self.queue_lq.device if self.queue_lq is not None else "cpu"
        self.ptr = int(state["ptr"])
        self.queue_lq = None if state["queue_lq"] is None else state["queue_lq"].to(device).clone()
        self.queue_gt = None if state["queue_gt"] is None else [q.to(device).clone() for q in state["queue_gt"]]
        self.generator.set_state(state["generator"])
