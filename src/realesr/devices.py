"""Where tensors run: the one device picker of realesr (inference, degradation, training, evaluation), and how much
memory the process may still use. A leaf module: it imports nothing of realesr but the errors, and torch only
when asked for a device (so the CLI can plan a batch without loading torch)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from realesr.errors import UsageError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICES", "available_memory_bytes", "pick_device"]

DEVICES = ("auto", "cpu", "cuda", "mps")


def _mps_available(torch_module) -> bool:
    mps = getattr(torch_module.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def pick_device(device: str | torch.device = "auto", local_rank: int = 0) -> torch.device:
    """ "auto" -> cuda (GPU ``local_rank``), else mps, else cpu; "cuda" -> GPU ``local_rank``; "cuda:N", "cpu",
    "mps" as they are. A device that does not exist here is a :class:`UsageError` (parameter "device")."""
    import torch

    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", local_rank)
        if _mps_available(torch):
            return torch.device("mps")
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and not index.isdigit()) or (index and kind != "cuda"):
        raise _device_error(f"device must be one of {', '.join(DEVICES)} (or cuda:N), not {device!r}")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise _device_error(f"device {name!r} requested but this PyTorch build sees no CUDA GPU")
        number = int(index) if index else local_rank
        if number >= torch.cuda.device_count():
            raise _device_error(f"device {name!r} requested but there are {torch.cuda.device_count()} CUDA GPU(s)")
        return torch.device("cuda", number)
    if kind == "mps" and not _mps_available(torch):
        raise _device_error("device 'mps' requested but Apple MPS is not available")
    return torch.device(kind)


def _device_error(message: str) -> UsageError:
    return UsageError(message, params=("device",))


def available_memory_bytes() -> int:
    """Memory the process may still use: MemAvailable, capped by a cgroup limit when there is one."""
    available = None
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    for limit_file, usage_file in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            with open(limit_file) as f:
                raw = f.read().strip()
            if raw == "max":
                continue
            with open(usage_file) as f:
                used = int(f.read().strip())
            room = int(raw) - used
            if room > 0 and int(raw) < (1 << 60):
                available = room if available is None else min(available, room)
        except (OSError, ValueError):
            continue
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 8 << 30
    return int(available)
