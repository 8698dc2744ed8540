"""Where tensors run: the one device picker of realesr (inference, degradation, training, evaluation), and how much
memory the process may still use. A leaf module: it imports nothing of realesr but the errors, and torch only
when asked for a device (so the CLI can plan a batch without loading torch)."""

from __future__ import annotations

import functools
import os
import platform
from dataclasses import dataclass
from typing import TYPE_CHECKING

from realesr.errors import UsageError

if TYPE_CHECKING:
    import torch

__all__ = ["DEVICES", "NATIVE_BF16_ENV", "CpuInfo", "available_memory_bytes", "cpu_info", "pick_device"]

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


# "0" or "1" overrides the detection of native bf16 below (tests force it off; a user can too).
NATIVE_BF16_ENV = "REALESR_NATIVE_BF16"
# Instruction sets that compute bf16 products in hardware: Intel AMX tiles, the AVX-512 dot product VDPBF16PS
# (Cooper Lake, Sapphire Rapids, AMD Zen 4+), and the Arm BF16 extension. Without one, oneDNN emulates bf16 with
# fp32 instructions plus conversions, which is slower than plain fp32.
_NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16", "bf16")


@dataclass(frozen=True)
class CpuInfo:
    """What this CPU is, as the OS reports it: ``model`` (name), ``flags`` (/proc/cpuinfo flags or Features),
    ``torch_isa`` (torch's own vectorisation level, "" when torch was not asked), ``native_bf16`` and
    ``bf16_reason`` (which flag, or why not)."""

    model: str
    flags: frozenset[str]
    torch_isa: str
    native_bf16: bool
    bf16_reason: str

    def describe(self) -> str:
        bf16 = "native bf16" if self.native_bf16 else "no native bf16"
        isa = f", torch {self.torch_isa}" if self.torch_isa else ""
        return f"{self.model} ({os.cpu_count()} CPUs{isa}, {bf16}: {self.bf16_reason})"


def _proc_cpuinfo() -> tuple[str, frozenset[str]]:
    model, flags = "", frozenset[str]()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and not model:
                    model = value.strip()
                elif key in ("flags", "features") and not flags:
                    flags = frozenset(value.split())
    except OSError:
        pass
    return model or platform.processor() or platform.machine() or "unknown CPU", flags


def _torch_reports() -> tuple[str, bool | None]:
    """torch's vectorisation level and whether its oneDNN can run bf16 convolutions at all (None: not said)."""
    import torch

    isa = str(torch.backends.cpu.get_cpu_capability())
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    try:
        runs_bf16 = bool(check()) if check is not None else None
    except RuntimeError:
        runs_bf16 = None
    return isa, runs_bf16


@functools.lru_cache(maxsize=1)
def _detect() -> CpuInfo:
    model, flags = _proc_cpuinfo()
    isa, runs_bf16 = _torch_reports()
    hits = [flag for flag in _NATIVE_BF16_FLAGS if flag in flags]
    if not hits:
        native, reason = False, "no amx_bf16/avx512_bf16/bf16 flag" if flags else "CPU flags unknown"
    elif runs_bf16 is False:
        native, reason = False, f"{hits[0]} present but torch's oneDNN reports no bf16 support"
    else:
        native, reason = True, "+".join(hits)
    return CpuInfo(model, flags, isa, native, reason)


def cpu_info() -> CpuInfo:
    """This CPU, detected once per process (imports torch); ``REALESR_NATIVE_BF16=0|1`` overrides ``native_bf16``."""
    info = _detect()
    forced = os.environ.get(NATIVE_BF16_ENV, "").strip()
    if forced in ("0", "1"):
        native = forced == "1"
        return CpuInfo(info.model, info.flags, info.torch_isa, native, f"set by {NATIVE_BF16_ENV}={forced}")
    return info
