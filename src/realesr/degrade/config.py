"""Typed configuration of the high-order degradation model, with the official x4plus defaults.

Key names follow the official option files (``options/train_realesrgan_x4plus.yml``) so that the degradation
section of an official YAML loads as it is; a suffix ``2`` marks the second stage. A few keys the official hard-codes
in its data set or model (kernel sizes, the sinc cutoff ranges, the resize modes, the final-stage order) are exposed
here with the official values as defaults.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from typing import Any

from realesr.errors import ConfigError

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
CHROMA_UPSAMPLING = ("fancy", "nearest")
SUPPORTED_SCALES = (2, 4, 8)


def _pair(value: Any, key: str) -> tuple[float, float]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != 2:
        raise ConfigError(f"degradation.{key}: expected a [low, high] pair, got {value!r}", key=f"degradation.{key}")
    try:
        low, high = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise ConfigError(f"degradation.{key}: expected two numbers, got {value!r}", key=f"degradation.{key}") from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"degradation.{key}: values must be finite, got {value!r}", key=f"degradation.{key}")
    if low > high:
        raise ConfigError(f"degradation.{key}: low {low} is above high {high}", key=f"degradation.{key}")
    return low, high


def _probs(value: Any, key: str, n: int) -> tuple[float, ...]:
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != n:
        raise ConfigError(f"degradation.{key}: expected {n} probabilities, got {value!r}", key=f"degradation.{key}")
    try:
        probs = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(f"degradation.{key}: expected numbers, got {value!r}", key=f"degradation.{key}") from None
    if any(not math.isfinite(p) or p < 0 for p in probs):
        raise ConfigError(f"degradation.{key}: probabilities must be >= 0, got {value!r}", key=f"degradation.{key}")
    if abs(sum(probs) - 1.0) > 1e-6:
        raise ConfigError(f"degradation.{key}: probabilities must sum to 1, got {value!r} (sum {sum(probs):.6g})", key=f"degradation.{key}")
    return probs


def _names(value: Any, key: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not hasattr(value, "__len__") or len(value) == 0:
        raise ConfigError(f"degradation.{key}: expected a non-empty list of {what}s, got {value!r}", key=f"degradation.{key}")
    names = tuple(str(v) for v in value)
    for name in names:
        if name not in allowed:
            raise ConfigError(f"degradation.{key}: unknown {what} {name!r} (known: {', '.join(allowed)})", key=f"degradation.{key}")
    return names


def _prob(value: Any, key: str) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise ConfigError(f"degradation.{key}: expected a probability, got {value!r}", key=f"degradation.{key}") from None
    if not (0.0 <= p <= 1.0):
        raise ConfigError(f"degradation.{key}: probability must be in [0, 1], got {value!r}", key=f"degradation.{key}")
    return p


@dataclass
class DegradationConfig:
    """All probabilities and ranges of the second-order degradation (defaults: official x4plus).

    Units: ``blur_sigma*`` in HR pixels; ``noise_range*`` in 8-bit levels (sigma / 255 on [0, 1] images);
    ``poisson_scale_range*`` multiplies the unit-scale Poisson noise; ``jpeg_range*`` are JPEG qualities;
    ``resize_range`` is relative to the input, ``resize_range2`` relative to the LR target size;
    ``sinc_cutoff_*`` are radians per pixel.
    """

    # -- first blur (kernel1) --
    kernel_list: tuple[str, ...] = KERNEL_TYPES
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    blur_sigma: tuple[float, float] = (0.2, 3.0)
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    # -- second blur (kernel2) --
    kernel_list2: tuple[str, ...] = KERNEL_TYPES
    kernel_prob2: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob2: float = 0.1
    blur_sigma2: tuple[float, float] = (0.2, 1.5)
    betag_range2: tuple[float, float] = (0.5, 4.0)
    betap_range2: tuple[float, float] = (1.0, 2.0)
    # -- kernel geometry and sinc filters --
    blur_kernel_size: int = 21  # kernel1 and the final sinc are zero-padded to this size
    blur_kernel_size2: int = 21  # kernel2 is zero-padded to this size
    kernel_size_range: tuple[int, int] = (7, 21)  # odd sizes drawn uniformly in this range
    sinc_small_kernel_limit: int = 13  # sinc blur kernels smaller than this use sinc_cutoff_small
    sinc_cutoff_small: tuple[float, float] = (math.pi / 3, math.pi)
    sinc_cutoff_large: tuple[float, float] = (math.pi / 5, math.pi)
    final_sinc_prob: float = 0.8
    final_sinc_cutoff: tuple[float, float] = (math.pi / 3, math.pi)
    # -- first stage: resize, noise, JPEG --
    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    resize_modes: tuple[str, ...] = RESIZE_MODES
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)
    # -- second stage --
    second_blur_prob: float = 0.8
    resize_prob2: tuple[float, float, float] = (0.3, 0.4, 0.3)
    resize_range2: tuple[float, float] = (0.3, 1.2)
    resize_modes2: tuple[str, ...] = RESIZE_MODES
    gaussian_noise_prob2: float = 0.5
    noise_range2: tuple[float, float] = (1.0, 25.0)
    poisson_scale_range2: tuple[float, float] = (0.05, 2.5)
    gray_noise_prob2: float = 0.4
    jpeg_range2: tuple[float, float] = (30.0, 95.0)
    # -- final stage --
    final_resize_modes: tuple[str, ...] = RESIZE_MODES
    resize_before_jpeg_prob: float = 0.5  # [resize + sinc, JPEG] rather than [JPEG, resize + sinc]
    # -- JPEG emulation --
    # "nearest" repeats each chroma sample 2x2 as the official DiffJPEG does, so the LR statistics match the official
    # (libjpeg's "fancy" triangular upsampling lowers the JPEG error by 2.5-12 % in MSE: a measurable shift).
    jpeg_chroma_upsampling: str = "nearest"

    def __post_init__(self) -> None:
        self.validate()

    # ------------------------------------------------------------------ validation
    def validate(self) -> None:
        """Normalise the fields to their types and raise ConfigError naming the first bad key."""
        for suffix in ("", "2"):
            list_key, prob_key = f"kernel_list{suffix}", f"kernel_prob{suffix}"
            names = _names(getattr(self, list_key), list_key, KERNEL_TYPES, "kernel type")
            setattr(self, list_key, names)
            setattr(self, prob_key, _probs(getattr(self, prob_key), prob_key, len(names)))
            for key in (f"sinc_prob{suffix}",):
                setattr(self, key, _prob(getattr(self, key), key))
            for key in (f"blur_sigma{suffix}", f"betag_range{suffix}", f"betap_range{suffix}"):
                setattr(self, key, _pair(getattr(self, key), key))
            low = getattr(self, f"blur_sigma{suffix}")[0]
            if low <= 0:
                raise ConfigError(f"degradation.blur_sigma{suffix}: sigma must be > 0, got {low}", key=f"degradation.blur_sigma{suffix}")
            if getattr(self, f"betag_range{suffix}")[0] <= 0:
                raise ConfigError(f"degradation.betag_range{suffix}: beta must be > 0", key=f"degradation.betag_range{suffix}")
            if getattr(self, f"betap_range{suffix}")[0] <= 0:
                raise ConfigError(f"degradation.betap_range{suffix}: beta must be > 0", key=f"degradation.betap_range{suffix}")

        for key in ("blur_kernel_size", "blur_kernel_size2"):
            value = getattr(self, key)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1 or value % 2 == 0:
                raise ConfigError(f"degradation.{key}: expected an odd positive integer, got {value!r}", key=f"degradation.{key}")
        ks = self.kernel_size_range
        if (
            isinstance(ks, str)
            or not hasattr(ks, "__len__")
            or len(ks) != 2
            or not all(isinstance(v, int) and v > 0 and v % 2 == 1 for v in ks)
            or ks[0] > ks[1]
        ):
            raise ConfigError(f"degradation.kernel_size_range: expected [low, high] odd positive integers, got {ks!r}", key="degradation.kernel_size_range")
        self.kernel_size_range = (int(ks[0]), int(ks[1]))
        for key in ("blur_kernel_size", "blur_kernel_size2"):
            if self.kernel_size_range[1] > getattr(self, key):
                raise ConfigError(
                    f"degradation.kernel_size_range: largest size {ks[1]} exceeds {key} {getattr(self, key)}", key="degradation.kernel_size_range"
                )
        if not isinstance(self.sinc_small_kernel_limit, int):
            raise ConfigError(f"degradation.sinc_small_kernel_limit: expected an integer, got {self.sinc_small_kernel_limit!r}", key="degradation.sinc_small_kernel_limit")
        for key in ("sinc_cutoff_small", "sinc_cutoff_large", "final_sinc_cutoff"):
            low, high = _pair(getattr(self, key), key)
            if low <= 0 or high > math.pi + 1e-9:
                raise ConfigError(f"degradation.{key}: cutoff must be in (0, pi], got {[low, high]}", key=f"degradation.{key}")
            setattr(self, key, (low, high))
        for key in ("final_sinc_prob", "gaussian_noise_prob", "gray_noise_prob", "second_blur_prob",
                    "gaussian_noise_prob2", "gray_noise_prob2", "resize_before_jpeg_prob"):
            setattr(self, key, _prob(getattr(self, key), key))
        for key in ("resize_prob", "resize_prob2"):
            setattr(self, key, _probs(getattr(self, key), key, 3))
        for key in ("resize_range", "resize_range2"):
            low, high = _pair(getattr(self, key), key)
            if low <= 0:
                raise ConfigError(f"degradation.{key}: scales must be > 0, got {[low, high]}", key=f"degradation.{key}")
            if not (low <= 1.0 <= high):
                raise ConfigError(f"degradation.{key}: range must contain 1 (down below, up above), got {[low, high]}", key=f"degradation.{key}")
            setattr(self, key, (low, high))
        for key in ("noise_range", "noise_range2", "poisson_scale_range", "poisson_scale_range2"):
            low, high = _pair(getattr(self, key), key)
            if low < 0:
                raise ConfigError(f"degradation.{key}: must be >= 0, got {[low, high]}", key=f"degradation.{key}")
            setattr(self, key, (low, high))
        for key in ("jpeg_range", "jpeg_range2"):
            low, high = _pair(getattr(self, key), key)
            if low < 1 or high > 100:
                raise ConfigError(f"degradation.{key}: JPEG quality must be in [1, 100], got {[low, high]}", key=f"degradation.{key}")
            setattr(self, key, (low, high))
        for key in ("resize_modes", "resize_modes2", "final_resize_modes"):
            setattr(self, key, _names(getattr(self, key), key, RESIZE_MODES, "resize mode"))
        if self.jpeg_chroma_upsampling not in CHROMA_UPSAMPLING:
            raise ConfigError(
                f"degradation.jpeg_chroma_upsampling: expected one of {', '.join(CHROMA_UPSAMPLING)}, "
                f"got {self.jpeg_chroma_upsampling!r}", key="degradation.jpeg_chroma_upsampling"
            )

    # ------------------------------------------------------------------ presets and (de)serialisation
    @classmethod
    def for_scale(cls, scale: int) -> DegradationConfig:
        """Preset for an SR scale.

        x2 and x4 are the official x2plus / x4plus settings, which are identical: the second stage works relative to
        the LR size, so the same ranges serve every scale. The official has no x8 model; x8 keeps the same chain,
        which leaves stage one in the HR domain (as for x2/x4) and stage two in the LR domain.
        """
        if scale not in SUPPORTED_SCALES:
            raise ConfigError(f"degradation.scale: expected one of {SUPPORTED_SCALES}, got {scale!r}", key="degradation.scale")
        return cls()

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DegradationConfig:
        """Build from a mapping (e.g. a YAML section); unknown keys raise ConfigError naming them."""
        if data is None:
            return cls()
        if not isinstance(data, dict):
            raise ConfigError(f"degradation: expected a mapping, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"degradation.{unknown[0]}: unknown key (known keys: {', '.join(sorted(known))})", key=f"degradation.{unknown[0]}")
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML-friendly mapping (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def replace(self, **changes: Any) -> DegradationConfig:
        return dataclasses.replace(self, **changes)


__all__ = ["KERNEL_TYPES", "RESIZE_MODES", "SUPPORTED_SCALES", "DegradationConfig"]
