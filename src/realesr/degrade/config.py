"""Typed configuration of the high-order degradation model, with the official x4plus defaults.

Key names follow the official option files (``options/train_realesrgan_x4plus.yml``) so that the degradation
section of an official YAML loads as it is (a suffix ``2`` marks the second stage); the chain reads typed
sections. A few keys the official hard-codes in its data set or model (kernel sizes, the sinc cutoff ranges, the
resize modes, the final-stage order) are exposed here with the official values as defaults.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from realesr.errors import ConfigError
from realesr.schema import Choice, Float, Int, Invalid, Shape, join

KERNEL_TYPES = ("iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso")
RESIZE_MODES = ("area", "bilinear", "bicubic")
CHROMA_UPSAMPLING = ("fancy", "nearest")
SUPPORTED_SCALES = (2, 4, 8)
# Kernels are drawn as dense size x size arrays per sample (official: 21); far beyond that is a typo, not a blur.
_MAX_KERNEL = 255
# Resize factors: the official draws up to 1.5x; a factor of thousands would allocate the enlarged batch.
_MAX_RESIZE = 16.0


def _bad(key: str, why: str) -> Invalid:
    """A bad value of the official flat ``key``; the entry points say whose key it is (``degradation.KEY`` for
    this module's own API, ``config key 'data.degradation.KEY'`` for a training config)."""
    return Invalid(key, why)


def _config_error(err: Invalid, prefix: str = "degradation") -> ConfigError:
    where = join(prefix, err.where)
    return ConfigError(f"{where}: {err.why}", key=where)


# The value shapes (realesr.schema) every key is built from: finite numbers, probabilities, kernel sizes.
_NUMBER = Float()
_PROB = Float(0, 1)
_KERNEL_SIZE = Int(1, _MAX_KERNEL)


def _plain(value: Any) -> Any:
    """A NumPy or other real scalar as a Python float (the shapes take Python numbers; a bool stays a bool)."""
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, (bool, int, float)) else value


def _floats(value: Any, key: str, n: int, what: str, shape: Float = _NUMBER) -> tuple[float, ...]:
    """``n`` numbers of ``shape`` from a list, tuple or array; errors name ``key`` itself."""
    if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__len__") or len(value) != n:
        raise _bad(key, f"expected {what}, got {value!r}")
    return tuple(float(shape.check(_plain(v), key)) for v in value)


def _pair(value: Any, key: str) -> tuple[float, float]:
    low, high = _floats(value, key, 2, "a [low, high] pair of numbers")
    if low > high:
        raise _bad(key, f"low {low} is above high {high}")
    return low, high


def _probs(value: Any, key: str, n: int) -> tuple[float, ...]:
    probs = _floats(value, key, n, f"{n} probabilities", _PROB)
    if abs(sum(probs) - 1.0) > 1e-6:
        raise _bad(key, f"probabilities must sum to 1, got {value!r} (sum {sum(probs):.6g})")
    return probs


def _names(value: Any, key: str, allowed: tuple[str, ...], what: str) -> tuple[str, ...]:
    if isinstance(value, str) or not hasattr(value, "__len__") or len(value) == 0:
        raise _bad(key, f"expected a non-empty list of {what}s, got {value!r}")
    return tuple(Choice(allowed).check(v, key) for v in value)


def _prob(value: Any, key: str) -> float:
    return float(_PROB.check(_plain(value), key))


@dataclass(frozen=True)
class BlurSettings:
    """One blur of the chain (kernel1 or kernel2): which kernel families, how often a sinc, their ranges."""

    kernel_list: tuple[str, ...] = KERNEL_TYPES
    kernel_prob: tuple[float, ...] = (0.45, 0.25, 0.12, 0.03, 0.12, 0.03)
    sinc_prob: float = 0.1
    sigma: tuple[float, float] = (0.2, 3.0)  # HR pixels
    betag_range: tuple[float, float] = (0.5, 4.0)
    betap_range: tuple[float, float] = (1.0, 2.0)
    kernel_size: int = 21  # the drawn kernel is zero-padded to this size


@dataclass(frozen=True)
class StageSettings:
    """One degradation stage: resize, noise, then JPEG (stage two's JPEG is the final one, see FinalSettings)."""

    resize_prob: tuple[float, float, float] = (0.2, 0.7, 0.1)  # up, down, keep
    resize_range: tuple[float, float] = (0.15, 1.5)
    resize_modes: tuple[str, ...] = RESIZE_MODES
    gaussian_noise_prob: float = 0.5
    noise_range: tuple[float, float] = (1.0, 30.0)  # 8-bit levels
    poisson_scale_range: tuple[float, float] = (0.05, 3.0)
    gray_noise_prob: float = 0.4
    jpeg_range: tuple[float, float] = (30.0, 95.0)


@dataclass(frozen=True)
class FinalSettings:
    """The final resize to the LR size with a sinc filter, in either order with stage two's JPEG."""

    sinc_prob: float = 0.8
    sinc_cutoff: tuple[float, float] = (math.pi / 3, math.pi)
    resize_modes: tuple[str, ...] = RESIZE_MODES
    resize_before_jpeg_prob: float = 0.5  # [resize + sinc, JPEG] rather than [JPEG, resize + sinc]


_BLUR2 = BlurSettings(sigma=(0.2, 1.5))
_STAGE2 = StageSettings(
    resize_prob=(0.3, 0.4, 0.3), resize_range=(0.3, 1.2), noise_range=(1.0, 25.0), poisson_scale_range=(0.05, 2.5)
)

# The official flat key of every setting: (section, field). This table is the only place that knows the YAML
# names; the chain reads the typed sections, and errors name the key as the user wrote it.
FLAT_KEYS: dict[str, tuple[str, str]] = {
    "kernel_list": ("blur1", "kernel_list"),
    "kernel_prob": ("blur1", "kernel_prob"),
    "sinc_prob": ("blur1", "sinc_prob"),
    "blur_sigma": ("blur1", "sigma"),
    "betag_range": ("blur1", "betag_range"),
    "betap_range": ("blur1", "betap_range"),
    "blur_kernel_size": ("blur1", "kernel_size"),
    "kernel_list2": ("blur2", "kernel_list"),
    "kernel_prob2": ("blur2", "kernel_prob"),
    "sinc_prob2": ("blur2", "sinc_prob"),
    "blur_sigma2": ("blur2", "sigma"),
    "betag_range2": ("blur2", "betag_range"),
    "betap_range2": ("blur2", "betap_range"),
    "blur_kernel_size2": ("blur2", "kernel_size"),
    "kernel_size_range": ("", "kernel_size_range"),
    "sinc_small_kernel_limit": ("", "sinc_small_kernel_limit"),
    "sinc_cutoff_small": ("", "sinc_cutoff_small"),
    "sinc_cutoff_large": ("", "sinc_cutoff_large"),
    "final_sinc_prob": ("final", "sinc_prob"),
    "final_sinc_cutoff": ("final", "sinc_cutoff"),
    "resize_prob": ("stage1", "resize_prob"),
    "resize_range": ("stage1", "resize_range"),
    "resize_modes": ("stage1", "resize_modes"),
    "gaussian_noise_prob": ("stage1", "gaussian_noise_prob"),
    "noise_range": ("stage1", "noise_range"),
    "poisson_scale_range": ("stage1", "poisson_scale_range"),
    "gray_noise_prob": ("stage1", "gray_noise_prob"),
    "jpeg_range": ("stage1", "jpeg_range"),
    "second_blur_prob": ("", "second_blur_prob"),
    "resize_prob2": ("stage2", "resize_prob"),
    "resize_range2": ("stage2", "resize_range"),
    "resize_modes2": ("stage2", "resize_modes"),
    "gaussian_noise_prob2": ("stage2", "gaussian_noise_prob"),
    "noise_range2": ("stage2", "noise_range"),
    "poisson_scale_range2": ("stage2", "poisson_scale_range"),
    "gray_noise_prob2": ("stage2", "gray_noise_prob"),
    "jpeg_range2": ("stage2", "jpeg_range"),
    "final_resize_modes": ("final", "resize_modes"),
    "resize_before_jpeg_prob": ("final", "resize_before_jpeg_prob"),
    "jpeg_chroma_upsampling": ("", "jpeg_chroma_upsampling"),
}
_SECTIONS = ("blur1", "blur2", "stage1", "stage2", "final")
# (section, field) -> official key, to name the key in errors about a section
_KEY_OF = {where: key for key, where in FLAT_KEYS.items()}


@dataclass(frozen=True, init=False)
class DegradationConfig:
    """All probabilities and ranges of the second-order degradation (defaults: official x4plus).

    Typed sections: ``blur1``/``blur2`` (kernel1/kernel2), ``stage1``/``stage2`` (resize, noise, JPEG),
    ``final`` (final resize + sinc). Construct with sections or with the official flat keys
    (``DegradationConfig(resize_prob2=...)``, ``from_dict`` of a YAML section); the flat names also read back
    (``cfg.resize_prob2`` is ``cfg.stage2.resize_prob``).

    Units: sigmas in HR pixels; noise ranges in 8-bit levels (sigma / 255 on [0, 1] images); the Poisson scale
    multiplies the unit-scale Poisson noise; JPEG ranges are qualities; ``stage1.resize_range`` is relative to the
    input, ``stage2.resize_range`` relative to the LR target size; sinc cutoffs are radians per pixel.
    """

    blur1: BlurSettings
    blur2: BlurSettings
    stage1: StageSettings
    stage2: StageSettings
    final: FinalSettings
    # -- shared kernel geometry and sinc filters --
    kernel_size_range: tuple[int, int]  # odd sizes drawn uniformly in this range (every kernel, final sinc too)
    sinc_small_kernel_limit: int  # sinc blur kernels smaller than this use sinc_cutoff_small
    sinc_cutoff_small: tuple[float, float]
    sinc_cutoff_large: tuple[float, float]
    second_blur_prob: float  # blur2 is applied with this probability; blur1 always
    # "nearest" repeats each chroma sample 2x2 as the official DiffJPEG does, so the LR statistics match the official
    # (libjpeg's "fancy" triangular upsampling lowers the JPEG error by 2.5-12 % in MSE: a measurable shift).
    jpeg_chroma_upsampling: str

    def __init__(
        self,
        blur1: BlurSettings | None = None,
        blur2: BlurSettings | None = None,
        stage1: StageSettings | None = None,
        stage2: StageSettings | None = None,
        final: FinalSettings | None = None,
        kernel_size_range: tuple[int, int] = (7, 21),
        sinc_small_kernel_limit: int = 13,
        sinc_cutoff_small: tuple[float, float] = (math.pi / 3, math.pi),
        sinc_cutoff_large: tuple[float, float] = (math.pi / 5, math.pi),
        second_blur_prob: float = 0.8,
        jpeg_chroma_upsampling: str = "nearest",
        **flat: Any,
    ) -> None:
        values: dict[str, Any] = {
            "blur1": blur1 if blur1 is not None else BlurSettings(),
            "blur2": blur2 if blur2 is not None else _BLUR2,
            "stage1": stage1 if stage1 is not None else StageSettings(),
            "stage2": stage2 if stage2 is not None else _STAGE2,
            "final": final if final is not None else FinalSettings(),
            "kernel_size_range": kernel_size_range,
            "sinc_small_kernel_limit": sinc_small_kernel_limit,
            "sinc_cutoff_small": sinc_cutoff_small,
            "sinc_cutoff_large": sinc_cutoff_large,
            "second_blur_prob": second_blur_prob,
            "jpeg_chroma_upsampling": jpeg_chroma_upsampling,
        }
        for key in flat:
            if key not in FLAT_KEYS:
                raise TypeError(f"DegradationConfig() got an unexpected keyword argument {key!r}")
        try:
            checked = _validated(_with_flat(values, flat))
        except Invalid as err:
            raise _config_error(err) from None
        for name, value in checked.items():
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str) -> Any:
        # only reached for names that are not fields: the official flat keys read through to their section
        where = FLAT_KEYS.get(name)
        if where is None or not where[0]:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        return getattr(object.__getattribute__(self, where[0]), where[1])

    # ------------------------------------------------------------------ presets and (de)serialisation
    @classmethod
    def for_scale(cls, scale: int) -> DegradationConfig:
        """Preset for an SR scale.

        x2 and x4 are the official x2plus / x4plus settings, which are identical: the second stage works relative to
        the LR size, so the same ranges serve every scale. The official has no x8 model; x8 keeps the same chain,
        which leaves stage one in the HR domain (as for x2/x4) and stage two in the LR domain.
        """
        if scale not in SUPPORTED_SCALES:
            raise _config_error(_bad("scale", f"expected one of {SUPPORTED_SCALES}, got {scale!r}"))
        return cls()

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> DegradationConfig:
        """Build from a mapping of the official flat keys (e.g. a YAML section); unknown keys raise ConfigError."""
        return cls().replace_flat(data)

    def replace_flat(self, data: dict[str, Any] | None) -> DegradationConfig:
        """A copy with the official flat keys in ``data`` changed; unknown keys raise ConfigError naming them."""
        if data is None:
            return self
        if not isinstance(data, dict):
            raise ConfigError(f"degradation: expected a mapping, got {type(data).__name__}", key="degradation")
        try:
            _known_keys(data, "")
        except Invalid as err:
            raise _config_error(err) from None
        return dataclasses.replace(self, **data)

    def to_dict(self) -> dict[str, Any]:
        """The official flat keys as a plain YAML-friendly mapping (tuples become lists)."""
        out: dict[str, Any] = {}
        for key, (section, name) in FLAT_KEYS.items():
            value = getattr(getattr(self, section) if section else self, name)
            out[key] = list(value) if isinstance(value, tuple) else value
        return out

    def replace(self, **changes: Any) -> DegradationConfig:
        """A copy with sections or official flat keys changed (``cfg.replace(noise_range2=(0, 0))``)."""
        return dataclasses.replace(self, **changes)


def _with_flat(values: dict[str, Any], flat: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` (the sections and top-level fields) with the official flat keys in ``flat`` applied."""
    out = dict(values)
    section_changes: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    for key, value in flat.items():
        section, name = FLAT_KEYS[key]
        if section:
            section_changes[section][name] = value
        else:
            out[name] = value
    for section, changes in section_changes.items():
        if changes:
            out[section] = dataclasses.replace(out[section], **changes)
    return out


def _known_keys(data: Mapping[Any, Any], where: str) -> None:
    for key in data:
        if not isinstance(key, str) or key not in FLAT_KEYS:
            close = difflib.get_close_matches(str(key), list(FLAT_KEYS), n=1)
            hint = f"did you mean '{close[0]}'?" if close else f"known keys: {', '.join(sorted(FLAT_KEYS))}"
            raise Invalid(join(where, str(key)), f"unknown key ({hint})")


class DegradationOverrides(Shape):
    """The shape of a config's ``degradation`` section (a mapping of official flat keys to new values), for the
    training config's schema: checked by the same rules as :class:`DegradationConfig`, errors placed at
    ``where.KEY``; the mapping itself is kept as written (it is what the run's config.yaml records)."""

    def describe(self) -> str:
        return "a mapping of degradation keys"

    def check(self, value: Any, where: str = "") -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise Invalid(where, f"must be a mapping of degradation keys, got {type(value).__name__}")
        _known_keys(value, where)
        defaults = DegradationConfig()
        base = {f.name: getattr(defaults, f.name) for f in dataclasses.fields(DegradationConfig)}
        try:
            _validated(_with_flat(base, value))
        except Invalid as err:
            raise Invalid(join(where, err.where), err.why) from None
        return dict(value)


__all__ = [
    "FLAT_KEYS",
    "KERNEL_TYPES",
    "RESIZE_MODES",
    "SUPPORTED_SCALES",
    "BlurSettings",
    "DegradationConfig",
    "DegradationOverrides",
    "FinalSettings",
    "StageSettings",
]


# ---------------------------------------------------------------------------------------------- validation
def _odd_size(value: Any, key: str) -> int:
    if isinstance(value, float) or _KERNEL_SIZE.check(value, key) % 2 == 0:  # 21.0 is no kernel size
        raise _bad(key, f"expected an odd integer in 1..{_MAX_KERNEL}, got {value!r}")
    return value


def _positive_low(pair: tuple[float, float], key: str, what: str) -> tuple[float, float]:
    if pair[0] <= 0:
        raise _bad(key, f"{what} must be > 0, got {pair[0]}")
    return pair


def _blur(b: BlurSettings, section: str) -> BlurSettings:
    def key(name: str) -> str:
        return _KEY_OF[(section, name)]

    names = _names(b.kernel_list, key("kernel_list"), KERNEL_TYPES, "kernel type")
    return BlurSettings(
        kernel_list=names,
        kernel_prob=_probs(b.kernel_prob, key("kernel_prob"), len(names)),
        sinc_prob=_prob(b.sinc_prob, key("sinc_prob")),
        sigma=_positive_low(_pair(b.sigma, key("sigma")), key("sigma"), "sigma"),
        betag_range=_positive_low(_pair(b.betag_range, key("betag_range")), key("betag_range"), "beta"),
        betap_range=_positive_low(_pair(b.betap_range, key("betap_range")), key("betap_range"), "beta"),
        kernel_size=_odd_size(b.kernel_size, key("kernel_size")),
    )


def _stage(s: StageSettings, section: str) -> StageSettings:
    def key(name: str) -> str:
        return _KEY_OF[(section, name)]

    resize_range = _pair(s.resize_range, key("resize_range"))
    if resize_range[0] <= 0:
        raise _bad(key("resize_range"), f"scales must be > 0, got {list(resize_range)}")
    if not (resize_range[0] <= 1.0 <= resize_range[1]):
        raise _bad(key("resize_range"), f"range must contain 1 (down below, up above), got {list(resize_range)}")
    if resize_range[1] > _MAX_RESIZE:
        raise _bad(key("resize_range"), f"scales must be at most {_MAX_RESIZE:g}, got {list(resize_range)}")
    ranges = {}
    for name in ("noise_range", "poisson_scale_range"):
        ranges[name] = _pair(getattr(s, name), key(name))
        if ranges[name][0] < 0:
            raise _bad(key(name), f"must be >= 0, got {list(ranges[name])}")
    jpeg = _pair(s.jpeg_range, key("jpeg_range"))
    if jpeg[0] < 1 or jpeg[1] > 100:
        raise _bad(key("jpeg_range"), f"JPEG quality must be in [1, 100], got {list(jpeg)}")
    resize_prob = _probs(s.resize_prob, key("resize_prob"), 3)
    return StageSettings(
        resize_prob=(resize_prob[0], resize_prob[1], resize_prob[2]),
        resize_range=resize_range,
        resize_modes=_names(s.resize_modes, key("resize_modes"), RESIZE_MODES, "resize mode"),
        gaussian_noise_prob=_prob(s.gaussian_noise_prob, key("gaussian_noise_prob")),
        noise_range=ranges["noise_range"],
        poisson_scale_range=ranges["poisson_scale_range"],
        gray_noise_prob=_prob(s.gray_noise_prob, key("gray_noise_prob")),
        jpeg_range=jpeg,
    )


def _cutoff(value: Any, key: str) -> tuple[float, float]:
    low, high = _pair(value, key)
    if low <= 0 or high > math.pi + 1e-9:
        raise _bad(key, f"cutoff must be in (0, pi], got {[low, high]}")
    return low, high


def _validated(v: dict[str, Any]) -> dict[str, Any]:
    """The fields normalised to their types (YAML lists become tuples); ConfigError names the first bad key."""
    types = {
        "blur1": BlurSettings,
        "blur2": BlurSettings,
        "stage1": StageSettings,
        "stage2": StageSettings,
        "final": FinalSettings,
    }
    for section, tp in types.items():
        if not isinstance(v[section], tp):
            raise _bad(section, f"expected a {tp.__name__}, got {type(v[section]).__name__}")
    out = dict(v)
    out["blur1"], out["blur2"] = _blur(v["blur1"], "blur1"), _blur(v["blur2"], "blur2")
    ks = v["kernel_size_range"]
    if (
        isinstance(ks, str)
        or not hasattr(ks, "__len__")
        or len(ks) != 2
        or not all(isinstance(x, int) and not isinstance(x, bool) and x > 0 and x % 2 == 1 for x in ks)
        or ks[0] > ks[1]
    ):
        raise _bad("kernel_size_range", f"expected [low, high] odd positive integers, got {ks!r}")
    out["kernel_size_range"] = (int(ks[0]), int(ks[1]))
    for blur in ("blur1", "blur2"):
        size = out[blur].kernel_size
        if ks[1] > size:
            raise _bad("kernel_size_range", f"largest size {ks[1]} exceeds {_KEY_OF[(blur, 'kernel_size')]} {size}")
    limit = v["sinc_small_kernel_limit"]
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= _MAX_KERNEL:
        raise _bad("sinc_small_kernel_limit", f"expected an integer in 1..{_MAX_KERNEL}, got {limit!r}")
    out["sinc_cutoff_small"] = _cutoff(v["sinc_cutoff_small"], "sinc_cutoff_small")
    out["sinc_cutoff_large"] = _cutoff(v["sinc_cutoff_large"], "sinc_cutoff_large")
    final: FinalSettings = v["final"]
    out["final"] = FinalSettings(
        sinc_prob=_prob(final.sinc_prob, "final_sinc_prob"),
        sinc_cutoff=_cutoff(final.sinc_cutoff, "final_sinc_cutoff"),
        resize_modes=_names(final.resize_modes, "final_resize_modes", RESIZE_MODES, "resize mode"),
        resize_before_jpeg_prob=_prob(final.resize_before_jpeg_prob, "resize_before_jpeg_prob"),
    )
    out["second_blur_prob"] = _prob(v["second_blur_prob"], "second_blur_prob")
    out["stage1"], out["stage2"] = _stage(v["stage1"], "stage1"), _stage(v["stage2"], "stage2")
    if v["jpeg_chroma_upsampling"] not in CHROMA_UPSAMPLING:
        raise _bad(
            "jpeg_chroma_upsampling",
            f"expected one of {', '.join(CHROMA_UPSAMPLING)}, got {v['jpeg_chroma_upsampling']!r}",
        )
    return out
