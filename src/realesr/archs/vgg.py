"""VGG19 feature extractor for the perceptual loss, with torchvision's state-dict layout (no torchvision needed).

``features.N`` indices follow torchvision's ``vgg19().features``, so the ImageNet weights file
``vgg19-dcbb9e9d.pth`` loads directly. Layer names follow BasicSR (``conv3_4``, ``relu3_4``, ``pool3`` ...);
the perceptual loss of Real-ESRGAN reads the conv outputs *before* the ReLU.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
from torch import nn

from realesr.cache import Checksum, DownloadError, Progress, cache_dir, download
from realesr.errors import ModelNotFoundError, WeightsFormatError

__all__ = [
    "VGG19_LAYER_NAMES",
    "VGG19_URL",
    "VGG19_FILENAME",
    "VGGFeatureExtractor",
    "vgg19_weights_path",
    "load_vgg19_imagenet",
]

log = logging.getLogger("realesr.train")

VGG19_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
VGG19_FILENAME = "vgg19-dcbb9e9d.pth"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Channels per block of VGG19 ("E" configuration): 2, 2, 4, 4, 4 convolutions.
_BLOCKS = ((64, 2), (128, 2), (256, 4), (512, 4), (512, 4))


def _layer_names() -> tuple[str, ...]:
    names = []
    for block, (_, n_conv) in enumerate(_BLOCKS, start=1):
        for i in range(1, n_conv + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return tuple(names)


VGG19_LAYER_NAMES = _layer_names()  # index in this tuple == index in torchvision's features


class VGGFeatureExtractor(nn.Module):
    """Frozen VGG19 truncated after the deepest requested layer; returns ``{layer_name: features}``.

    Inputs are RGB in [0, 1]; with ``use_input_norm`` they are normalised by the ImageNet mean and std
    (``range_norm`` first maps [-1, 1] to [0, 1]). The parameters never require gradients, but gradients
    flow through to the input.
    """

    mean: torch.Tensor  # buffers, registered in __init__
    std: torch.Tensor

    def __init__(
        self, layer_names: list[str] | tuple[str, ...], use_input_norm: bool = True, range_norm: bool = False
    ) -> None:
        super().__init__()
        unknown = [n for n in layer_names if n not in VGG19_LAYER_NAMES]
        if unknown:
            raise ValueError(f"not VGG19 layers: {unknown}")
        self.layer_names = tuple(layer_names)
        self.use_input_norm = use_input_norm
        self.range_norm = range_norm
        last = max(VGG19_LAYER_NAMES.index(n) for n in layer_names)
        layers: list[nn.Module] = []
        in_ch = 3
        for out_ch, n_conv in _BLOCKS:
            for _ in range(n_conv):
                # Not in-place: the conv outputs before the ReLU are what the loss reads.
                layers += [nn.Conv2d(in_ch, out_ch, 3, 1, 1), nn.ReLU(inplace=False)]
                in_ch = out_ch
            layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers[: last + 1])
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> VGGFeatureExtractor:
        # Always in eval mode: a fixed feature space (no layers care today, but the contract is "frozen").
        return super().train(False)

    def load_torchvision_state_dict(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Load torchvision-format weights (``features.N.weight``); classifier keys are ignored."""
        wanted = self.features.state_dict()
        sub = {k[len("features.") :]: v for k, v in state_dict.items() if k.startswith("features.")}
        missing = [k for k in wanted if k not in sub]
        if missing:
            raise WeightsFormatError(
                f"VGG19 weights lack {len(missing)} feature tensors (first: features.{missing[0]})"
            )
        for k, v in wanted.items():
            if tuple(sub[k].shape) != tuple(v.shape):
                raise WeightsFormatError(
                    f"VGG19 weights: features.{k} has shape {tuple(sub[k].shape)}, expected {tuple(v.shape)}"
                )
        self.features.load_state_dict({k: sub[k] for k in wanted})

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.range_norm:
            x = (x + 1) / 2
        if self.use_input_norm:
            x = (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)
        out = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            name = VGG19_LAYER_NAMES[index]
            if name in self.layer_names:
                out[name] = x
        return out


def vgg19_weights_path() -> Path:
    """Where the ImageNet VGG19 weights are looked for and downloaded to."""
    return cache_dir() / VGG19_FILENAME


def _download(url: str, dest: Path, progress: Progress | None = None) -> None:
    # torchvision names its files by the first 8 hex digits of their SHA-256.
    checksum = Checksum(sha256_prefix=dest.stem.rsplit("-", 1)[-1])
    try:
        download(url, dest, checksum, progress)
    except DownloadError as err:
        raise ModelNotFoundError(
            f"VGG19 ImageNet weights are not in {dest.parent} and downloading {url} failed ({err}); "
            f"put {dest.name} there (or set REALESR_CACHE_DIR), or set loss.perceptual.weights to a .pth path"
        ) from None


def _read(path: Path) -> dict[str, torch.Tensor] | str:
    """The state dict in ``path``, or why it is not one (one line)."""
    if not path.is_file():
        return "not a regular file"
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means "not a weights file"
        return (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        return "it does not hold a state dict of tensors"
    return sd


def load_vgg19_imagenet(
    source: str = "imagenet", allow_download: bool = True, progress: bool | Progress = False
) -> dict[str, torch.Tensor]:
    """The torchvision VGG19 ImageNet state dict: ``imagenet`` (cache, else download) or a .pth path.

    A corrupt file in the cache is downloaded again when downloads are allowed, else reported in one line."""
    callback = progress if callable(progress) else None
    if source != "imagenet":
        path = Path(source)
        if not path.exists():
            raise ModelNotFoundError(f"VGG19 weights file not found: {path}")
        sd = _read(path)
        if isinstance(sd, str):
            raise WeightsFormatError(f"{path} is not a readable VGG19 weights file ({sd})")
        return sd
    path = vgg19_weights_path()
    if path.is_file():
        sd = _read(path)
        if not isinstance(sd, str):
            return sd
        if not allow_download:
            raise WeightsFormatError(
                f"{path} is corrupt ({sd}); delete it so it is downloaded again from "
                f"{VGG19_URL}, or set loss.perceptual.weights to a .pth path"
            )
        log.warning("%s is corrupt (%s); downloading it again from %s", path, sd, VGG19_URL)
    elif not allow_download:
        raise ModelNotFoundError(
            f"VGG19 ImageNet weights not found at {path} (downloads disabled); "
            f"put {VGG19_URL} there, or set loss.perceptual.weights to a .pth path"
        )
    else:
        log.info("downloading VGG19 ImageNet weights from %s to %s", VGG19_URL, path)
    _download(VGG19_URL, path, callback)
    sd = _read(path)
    if isinstance(sd, str):
        raise WeightsFormatError(f"{path}: the downloaded VGG19 weights are not readable ({sd})")
    return sd
