"""The user's own models: a folder of weight files that ``-m NAME`` finds beside the zoo, and what a model is.

``realesr models add FILE [--name N]`` checks that the file loads (realesr's own architectures, else spandrel's
with the ``models`` extra) and copies it, bytes unchanged, to ``models_dir()/N.<suffix>``; ``-m N`` then finds
it (zoo names come first and cannot be taken). :func:`inspect_model` gives a :class:`ModelCard` for any model
(zoo name, user model name or file): what ``realesr models inspect``, ``realesr models`` and the page show.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from realesr.archs import ModelTraits
from realesr.atomic import atomic_path
from realesr.errors import UsageError

__all__ = [
    "MODELS_ENV",
    "ModelCard",
    "add_model",
    "find_user_model",
    "inspect_model",
    "models_dir",
    "user_models",
]

MODELS_ENV = "REALESR_MODELS_DIR"
# The suffixes a user model may have, in the order a name is looked up (an ncnn .param needs its .bin beside it).
SUFFIXES = (".safetensors", ".pth", ".pt", ".ckpt", ".param", ".onnx")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,99}$")


def models_dir() -> Path:
    """``$REALESR_MODELS_DIR`` (``~`` expanded), else the platform's user data folder's ``models``."""
    env = os.environ.get(MODELS_ENV)
    if env:
        expanded = os.path.expanduser(env)
        if expanded.startswith("~"):
            raise UsageError(f"{MODELS_ENV}={env!r}: cannot expand {expanded.split(os.sep, 1)[0]!r} on this machine")
        return Path(expanded)
    from platformdirs import user_data_dir

    return Path(user_data_dir("realesr", appauthor=False)) / "models"


def _usable(path: Path) -> bool:
    return path.is_file() and (path.suffix != ".param" or path.with_suffix(".bin").is_file())


def find_user_model(name: str) -> Path | None:
    """The file of the user model ``name``, or None."""
    if not _NAME.match(name):
        return None
    folder = models_dir()
    return next((folder / f"{name}{s}" for s in SUFFIXES if _usable(folder / f"{name}{s}")), None)


def user_models() -> list[tuple[str, Path]]:
    """(name, file) of every model in the user's folder, by name."""
    folder = models_dir()
    if not folder.is_dir():
        return []
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix in SUFFIXES and _NAME.match(path.stem) and _usable(path):
            found.setdefault(path.stem, find_user_model(path.stem) or path)
    return sorted(found.items())


@dataclass(frozen=True)
class ModelCard:
    """What a model is: ``origin`` "realesr" (its own architectures), "spandrel", or "onnx"; ``traits`` what the
    pipeline asks of it; ``params`` its parameter count; ``where`` where its weights are."""

    name: str
    origin: str
    description: str
    traits: ModelTraits
    params: int
    where: str

    def memory_per_megapixel(self, precision: str = "fp32") -> float:
        """Estimated peak activation bytes of a whole-image pass per million input pixels."""
        return self.traits.bytes_per_pixel * 1e6 * (1.0 if precision == "fp32" else 0.5)


def inspect_model(name_or_path: str | os.PathLike) -> ModelCard:
    """Load a model (never downloading) and describe it; raises what :func:`realesr.weights.load_model` raises."""
    from realesr.weights.zoo import load_model

    loaded = load_model(name_or_path, allow_download=False)
    net = loaded.net
    description = loaded.description
    origin = "realesr" if loaded.spec is not None else str(getattr(net, "origin", "spandrel"))
    if type(net).__name__ == "OnnxNetwork":
        origin = "onnx"
    params = sum(p.numel() for p in net.parameters())
    if loaded.spec is not None:
        params = loaded.spec.num_params
    return ModelCard(loaded.name, origin, description, loaded.traits, params, loaded.source)


def add_model(source: str | os.PathLike, name: str | None = None, replace: bool = False) -> tuple[Path, ModelCard]:
    """Check that ``source`` loads, then copy it (and an ncnn .bin beside it) into :func:`models_dir` as
    ``name`` (default: the file's stem). Returns the new file and its card."""
    from realesr.weights.zoo import ZOO

    path = Path(os.path.expanduser(os.fspath(source)))
    if not path.is_file():
        raise UsageError(f"{path}: no such file", params=("model",))
    suffix = path.suffix.lower()
    if suffix == ".bin" and path.with_suffix(".param").is_file():
        path, suffix = path.with_suffix(".param"), ".param"
    if suffix not in SUFFIXES:
        raise UsageError(f"{path}: not a weights file ({', '.join(SUFFIXES)})", params=("model",))
    name = name or path.stem
    if not _NAME.match(name):
        raise UsageError(
            f"model name {name!r}: use letters, digits and . _ + - (at most 100, not starting with a sign)",
            params=("name",),
        )
    if name in ZOO:
        raise UsageError(f"{name!r} is an official model's name; choose another with --name", params=("name",))
    existing = find_user_model(name)
    if existing is not None and not replace:
        raise UsageError(f"a model named {name!r} is already in {existing.parent} ({existing.name})", params=("name",))
    card = inspect_model(path)  # refuses files that do not load (pickled code, unknown tensors) before any copy
    folder = models_dir()
    folder.mkdir(parents=True, exist_ok=True)
    dest = folder / f"{name}{suffix}"
    if existing is not None and existing != dest:
        existing.unlink()
    pairs = [(path, dest)] + ([(path.with_suffix(".bin"), dest.with_suffix(".bin"))] if suffix == ".param" else [])
    for src, dst in reversed(pairs):  # the .bin first: a .param is only found with its .bin beside it
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    return dest, ModelCard(name, card.origin, card.description, card.traits, card.params, str(dest))
