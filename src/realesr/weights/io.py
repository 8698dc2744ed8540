"""Reading and writing weight files: PyTorch pickles (tensors only), safetensors, ncnn."""

from __future__ import annotations

import json
import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from realesr.atomic import atomic_path
from realesr.errors import NotWeightsError, WeightsFormatError
from realesr.weights.ncnn import MAGIC, read_ncnn
from realesr.weights.spec import ModelSpec, check_resize_factor, detect_arch, spec_of, state_dict_mismatch

__all__ = ["load_strict", "load_state_dict", "unwrap_state_dict", "save_model", "read_weights", "WeightsFile"]

# Official BasicSR checkpoints keep the EMA weights (the released ones) under params_ema.
_WRAPPER_KEYS = ("params_ema", "params", "state_dict", "model_state_dict", "model", "net_g", "generator")
METADATA_KEY = "realesr"


@dataclass
class WeightsFile:
    """The tensors of a weights file plus what the file says beyond them (ncnn tail, saved metadata)."""

    state_dict: dict[str, torch.Tensor]
    format: str  # "pytorch" | "safetensors" | "ncnn"
    hints: dict[str, Any] | None = None  # constructor kwargs that tensors cannot show (see detect_arch)
    output_resize: float | None = None
    metadata: dict[str, Any] | None = None


def unwrap_state_dict(obj: Any, source: str = "checkpoint") -> dict[str, torch.Tensor]:
    """The network's state dict inside a checkpoint: ``params_ema`` first, then ``params``, ...;
    ``module.`` prefixes (DataParallel / DDP) stripped; everything converted to plain tensors."""
    seen = 0
    while isinstance(obj, Mapping) and not _is_tensor_dict(obj) and seen < 4:
        seen += 1
        for key in _WRAPPER_KEYS:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
        else:
            nested = {k: type(v).__name__ for k, v in list(obj.items())[:8]}
            raise WeightsFormatError(
                f"{source}: no state dict inside; top-level entries: {nested} (looked for {', '.join(_WRAPPER_KEYS)})"
            )
    if not isinstance(obj, Mapping):
        raise WeightsFormatError(f"{source}: holds a {type(obj).__name__}, not a state dict")
    if not _is_tensor_dict(obj):
        raise WeightsFormatError(f"{source}: entries are not all tensors under names")
    sd = {}
    for key, value in obj.items():
        while key.startswith("module."):
            key = key[len("module.") :]
        if key.startswith("_orig_mod."):  # torch.compile wrapper
            key = key[len("_orig_mod.") :]
        sd[key] = value
    return sd


def _is_tensor_dict(obj: Mapping) -> bool:
    # String keys too: a dict of tensors under int keys is no state dict (and "key.startswith" would trip on it).
    return len(obj) > 0 and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _sniff(path: Path) -> str:
    with open(path, "rb") as f:
        head = f.read(16)
    # Content first: a ".bin" may as well be a PyTorch file (pytorch_model.bin) as ncnn weights.
    if head.startswith(str(MAGIC).encode()):
        return "ncnn"
    # safetensors before pickle: its 8-byte header length may well start with the byte 0x80.
    if len(head) >= 9 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < path.stat().st_size:
        return "safetensors"
    if head[:2] == b"PK" or (head[:1] == b"\x80" and head[1:2] in (b"\x02", b"\x03", b"\x04", b"\x05")):
        return "pytorch"
    if path.suffix in (".param", ".bin"):
        return "ncnn"
    if path.suffix in (".pth", ".pt", ".ckpt"):
        return "pytorch"
    if path.suffix == ".safetensors":
        return "safetensors"
    return "unknown"


def read_weights(path: str | os.PathLike) -> WeightsFile:
    """Read a weights file of any supported format; see :func:`load_state_dict`."""
    path = Path(path)
    if path.is_dir():
        raise NotWeightsError(f"{path} is a folder, not a weights file")
    if not path.exists() and path.suffix not in (".param", ".bin"):
        raise WeightsFormatError(f"{path}: no such file")
    # A named pipe or a device would block (or never end) on open(): only regular files are read.
    if path.exists() and not path.is_file():
        raise WeightsFormatError(f"{path} is not a regular file (a pipe, socket or device); give a weights file")
    if path.suffix.lower() == ".onnx":
        raise WeightsFormatError(
            f"{path}: an ONNX model holds a graph, not weights realesr converts; run it with "
            f"-m {path.name}, or convert from the original weights file"
        )
    kind = _sniff(path) if path.exists() else "ncnn"
    if kind == "ncnn":
        model = read_ncnn(path)
        return WeightsFile(model.state_dict, "ncnn", dict(model.hints) or None, model.output_resize)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind == "pytorch":
        return WeightsFile(_read_torch(path), "pytorch")
    raise NotWeightsError(f"{path}: not a weights file realesr reads (.pth/.pt, .safetensors, ncnn .param+.bin)")


def load_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The network tensors of a ``.pth``/``.pt`` (loaded with ``weights_only``: tensors only, no code),
    ``.safetensors`` or ncnn (``.param`` or ``.bin``, the other beside it) file, unwrapped from
    ``params_ema`` / ``params`` / ``state_dict`` and ``module.`` prefixes, on the CPU."""
    return read_weights(path).state_dict


def _read_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()
        text = str(err)
        if "global" not in text.lower():
            # Not the safe unpickler refusing a class or function: the bytes themselves are broken.
            detail = next((ln.strip() for ln in reversed(first) if ln.strip() and "http" not in ln), "")
            raise WeightsFormatError(
                f"{path}: corrupt PyTorch checkpoint (cannot unpickle it: {detail[:160]}); delete it or fetch it again"
            ) from err
        reason = next((ln for ln in first if "Unsupported" in ln or "global" in ln.lower()), first[0] if first else "")
        reason = reason.split(" Please use")[0].split(". Please")[0]
        raise WeightsFormatError(
            f"{path}: refused to unpickle: it holds more than tensors (code or objects), which could run code "
            f"when loaded. Only plain state dicts are read. ({reason.strip()[:200]})"
        ) from err
    except Exception as err:  # noqa: BLE001 - torch.load fails on a bad file with many kinds of error
        detail = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        raise WeightsFormatError(
            f"{path}: corrupt or not a PyTorch checkpoint ({type(err).__name__}: {detail})"
        ) from err
    return unwrap_state_dict(obj, str(path))


def _read_safetensors(path: Path) -> WeightsFile:
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            sd = {key: f.get_tensor(key) for key in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise WeightsFormatError(f"{path}: not a readable safetensors file ({err})") from err
    meta = None
    if METADATA_KEY in metadata:
        try:
            meta = json.loads(metadata[METADATA_KEY])
        except json.JSONDecodeError as err:
            raise WeightsFormatError(f"{path}: metadata {METADATA_KEY!r} is not JSON") from err
    hints = output_resize = None
    if isinstance(meta, dict):
        kwargs = meta.get("kwargs") or {}
        # detect_arch reads only the kwargs tensors cannot show (the record's hint_keys).
        hints = dict(kwargs) if isinstance(kwargs, dict) else None
        output_resize = meta.get("output_resize")
    return WeightsFile(unwrap_state_dict(sd, str(path)), "safetensors", hints, output_resize, meta)


def save_model(net: nn.Module, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> Path:
    """Write ``net``'s weights as safetensors, its architecture (arch, kwargs, scale) as JSON in the
    metadata under ``"realesr"``, plus ``metadata`` (strings); atomically (temp file + rename)."""
    spec = spec_of(net)
    inner = getattr(net, "_orig_mod", net)
    inner = getattr(inner, "net", inner) if spec.output_resize else inner
    sd = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in inner.state_dict().items()}
    return save_state_dict(sd, spec, path, metadata)


def save_state_dict(
    sd: Mapping[str, torch.Tensor], spec: ModelSpec, path: str | os.PathLike, metadata: Mapping[str, str] | None = None
) -> Path:
    """Write ``sd`` as is (values and dtypes) to safetensors with ``spec`` in the metadata, after
    checking that detection from the tensors gives that spec; atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    detected = detect_arch(sd, spec.hints(), finite=False)
    if spec.output_resize is not None:
        check_resize_factor(spec.output_resize, spec.net_scale, f"{path}: output resize")
    if (detected.arch, detected.kwargs) != (spec.arch, spec.kwargs):
        raise WeightsFormatError(f"tensors say {detected.arch} {detected.kwargs}, the spec {spec.arch} {spec.kwargs}")
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta[METADATA_KEY] = json.dumps(spec.to_metadata(), sort_keys=True)
    meta["format"] = "pt"
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in sd.items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def load_strict(net: nn.Module, sd: Mapping[str, torch.Tensor], what: str) -> None:
    """``net.load_state_dict(sd)`` (strict), but a mismatch is one WeightsFormatError naming the keys and shapes
    that differ (e.g. a run resumed with another network width), not PyTorch's multi-line RuntimeError."""
    parts = state_dict_mismatch(net.state_dict(), sd)
    if parts:
        raise WeightsFormatError(
            f"{what} does not fit the network: {'; '.join(parts)}; was the network "
            f"configuration (width, blocks, scale) changed?"
        )
    net.load_state_dict(sd)
