"""Checkpoints: one folder per save, written atomically, the last K and the best kept.

``<run>/checkpoints/iter_00005000/`` holds ``net_g.safetensors``, ``net_g_ema.safetensors``,
``net_d.safetensors`` (esrgan) and ``state.pt`` (optimisers, schedulers, grad scaler, RNG states,
iteration, training pair pool, data position). The folder is written under a temporary name and renamed,
so a crash mid-save never leaves a half checkpoint that ``--resume auto`` would pick.
"""

from __future__ import annotations

import os
import random
import re
import shutil
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from realesr.errors import RealesrError
from realesr.schema import Float, Int, Nullable, Record, Seq
from realesr.statefiles import StateFileError, check_state

__all__ = [
    "CheckpointError",
    "capture_rng_states",
    "latest_checkpoint",
    "load_checkpoint",
    "prune_checkpoints",
    "restore_rng_states",
    "save_checkpoint",
]

_ITER_DIR = re.compile(r"^iter_(\d{8,})$")
WEIGHT_FILES = ("net_g", "net_g_ema", "net_d")


class CheckpointError(RealesrError):
    """A checkpoint that is missing or cannot be read (exit code 2)."""

    exit_code = 2


_POOL = Record(
    {"pool_size": Int(0), "batch_size": Int(1), "ptr": Int(0)}, required=frozenset({"pool_size", "batch_size", "ptr"})
)
# What `loop.restore` reads from state.pt (written by `loop.training_state`); tensors inside are not looked at here,
# their shapes are checked when loaded into the optimisers and the pool.
STATE_SHAPE = Record(
    {
        "iteration": Int(0),
        "world_size": Int(1, 2**20),
        "best_value": Float(finite=False),  # -inf or +inf: no best yet
        "best_psnr": Float(finite=False),  # older checkpoints
        "best_iteration": Int(0),
        "skipped_total": Int(0),
        "opt_g": Record({}),
        "opt_d": Record({}),
        "scaler": Record({}),
        "rng": Seq(Record({}, required=frozenset({"python", "numpy", "torch"})), min_len=1, max_len=2**20),
        "synth": Seq(Nullable(Record({"pool": Nullable(_POOL)})), max_len=2**20),
        "config": Nullable(Record({})),
    },
    required=frozenset({"iteration", "opt_g", "scaler", "rng", "synth"}),
)


def capture_rng_states() -> dict:
    """Python, NumPy and torch (CPU and every CUDA device) generator states, as weights_only-loadable values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_states(state: dict) -> None:
    random.setstate(_as_tuple(state["python"]))
    n = state["numpy"]
    np.random.set_state(
        (n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(x):
    return tuple(_as_tuple(v) for v in x) if isinstance(x, (list, tuple)) else x


def _contiguous(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}


def save_checkpoint(folder: Path, weights: dict[str, dict[str, torch.Tensor]], state: dict) -> Path:
    """Write ``weights`` (name -> state dict, saved as ``name.safetensors``) and ``state`` into ``folder``,
    atomically (written beside it, then renamed; an existing folder of that name is replaced)."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        for name, sd in weights.items():
            save_file(_contiguous(sd), str(tmp / f"{name}.safetensors"))
        torch.save(state, tmp / "state.pt")
        if folder.exists():
            old = folder.with_name(f".{folder.name}.old{os.getpid()}")
            os.replace(folder, old)
            os.replace(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def load_checkpoint(folder: Path) -> tuple[dict[str, dict[str, torch.Tensor]], dict]:
    folder = Path(folder)
    state_path = folder / "state.pt"
    if not state_path.is_file():
        raise CheckpointError(f"{folder} is not a checkpoint (no state.pt)")
    remedy = f"resume from another checkpoint (--resume {folder.parent}/iter_...) or start a new run"
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a damaged file, whatever the unpickler says
        first = " ".join(str(err).split())[:300]
        raise CheckpointError(f"cannot read {state_path}: {first}; {remedy}") from None
    try:
        state = check_state(state, STATE_SHAPE, state_path, what="the checkpoint's training state", remedy=remedy)
    except StateFileError as err:
        raise CheckpointError(str(err)) from None
    weights = {}
    for name in WEIGHT_FILES:
        path = folder / f"{name}.safetensors"
        if path.is_file():
            try:
                weights[name] = load_file(str(path))
            except Exception as err:  # noqa: BLE001 - safetensors and the OS fail in their own ways on a bad file
                first = " ".join(str(err).split())[:300]
                raise CheckpointError(f"cannot read {path}: {first}; {remedy}") from None
    if "net_g" not in weights:
        raise CheckpointError(f"{folder} has no net_g.safetensors")
    return weights, state


def _iteration_dirs(ckpt_root: Path) -> list[tuple[int, Path]]:
    if not ckpt_root.is_dir():
        return []
    found = []
    for p in ckpt_root.iterdir():
        m = _ITER_DIR.match(p.name)
        if m and (p / "state.pt").is_file():
            found.append((int(m.group(1)), p))
    return sorted(found)


def latest_checkpoint(ckpt_root: Path) -> Path | None:
    dirs = _iteration_dirs(Path(ckpt_root))
    return dirs[-1][1] if dirs else None


def prune_checkpoints(ckpt_root: Path, keep_last: int) -> None:
    """Delete all but the newest ``keep_last`` iteration folders (``best`` lives apart and stays)."""
    for _, path in _iteration_dirs(Path(ckpt_root))[:-keep_last]:
        shutil.rmtree(path, ignore_errors=True)
