"""Typed training configuration: dataclasses loaded from YAML, ``--set key.sub=value`` overrides, validation.

Every error names the dotted key it is about. Values left at ``None`` that depend on the stage
(learning rates, total iterations, milestones) are filled in by :func:`resolve` with the official
x4plus recipe, so the resolved config saved in the run folder shows every value actually used.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from realesr.atomic import atomic_write_text
from realesr.errors import ConfigError
from realesr.imagefiles import MAX_LIST_BYTES, open_regular
from realesr.schema import CROP_BORDER, SEED, Bool, Float, Int, Invalid, Map, Name, Seq, Shape, Str

__all__ = [
    "DataConfig",
    "DiscriminatorConfig",
    "GanConfig",
    "LossConfig",
    "NetworkConfig",
    "OptimConfig",
    "PerceptualConfig",
    "RuntimeConfig",
    "TrainConfig",
    "TrainSource",
    "ValConfig",
    "ValSetConfig",
    "default_best",
    "val_set_kinds",
    "val_set_names",
    "apply_overrides",
    "config_from_dict",
    "config_to_dict",
    "load_config",
    "resolve",
    "save_config",
    "train_sources",
]

# The official recipe per stage (options/train_realesrnet_x4plus.yml and train_realesrgan_x4plus.yml).
STAGE_DEFAULTS = {
    "esrnet": {"lr_g": 2e-4, "total_iters": 1_000_000},
    "esrgan": {"lr_g": 1e-4, "total_iters": 400_000},
}
VGG19_LAYERS_BEFORE_RELU = ("conv1_2", "conv2_2", "conv3_4", "conv4_4", "conv5_4")

# The schema: each key's type is its annotation, its range a realesr.schema shape in the field's metadata (_key),
# checked at load with the key named; a command-line option that mirrors a key uses the same shape (SEED,
# CROP_BORDER). Only the checks across keys are left to resolve().
_MAX_WIDTH = 4096  # channels of a layer
_MAX_DEPTH = 1000  # blocks or convolutions
_MAX_SIDE = 2**16  # pixels of a validation crop side
_MAX_PATCH = 4096  # pixels of a training patch side (official 400): each worker holds a few of them
_LR = Float(above=0, high=10.0)
_WEIGHT = Float(low=0, high=1e6)  # a loss weight
_PATH = Str()  # a path: never a NUL (no system call takes one), at most 4096 characters
_ASIDE_SUFFIX = len(".old-20240101-000000-99")  # --overwrite renames the run folder NAME + this


class _Degradation(Shape):
    """``data.degradation``: the degradation model's own shape, imported when a config is checked (torch)."""

    def describe(self) -> str:
        return "a mapping of degradation keys"

    def check(self, value: Any, where: str = "") -> Any:
        from realesr.degrade.config import DegradationOverrides

        return DegradationOverrides().check(value, where)


_DEGRADATION = _Degradation()


def _key(default: Any, shape: Shape) -> Any:
    """A field with its shape; a callable default is a factory (lists, dicts)."""
    if callable(default):
        return field(default_factory=default, metadata={"shape": shape})
    return field(default=default, metadata={"shape": shape})


@dataclass
class NetworkConfig:
    """The generator. ``arch`` RRDBNet (the x4plus model) or SRVGGNetCompact (the compact general-x4v3 model)."""

    arch: str = "RRDBNet"
    num_feat: int = _key(64, Int(1, _MAX_WIDTH))
    num_block: int = _key(23, Int(1, _MAX_DEPTH))  # RRDBNet: residual-in-residual dense blocks
    num_grow_ch: int = _key(32, Int(1, _MAX_WIDTH))  # RRDBNet: growth channels of the dense blocks
    num_conv: int = _key(32, Int(1, _MAX_DEPTH))  # SRVGGNetCompact: body convolutions
    act_type: Literal["prelu", "relu", "leakyrelu"] = "prelu"  # SRVGGNetCompact


@dataclass
class DiscriminatorConfig:
    num_feat: int = _key(64, Int(1, _MAX_WIDTH))
    skip_connection: bool = True


@dataclass
class TrainSource:
    path: str = ""  # a folder (searched recursively) or a .txt list of image paths
    # this source's share of the draws (weight / sum of weights); None: see below
    weight: float | None = _key(None, Float(above=0))
    lr: str = ""  # a paired source: the folder (or .txt list) of real LR images matched to path's HR by name
    pairs: str = ""  # a paired source as a .txt list of 'hr_path lr_path' lines (instead of path and lr)


@dataclass
class DataConfig:
    # A folder (searched recursively) or a .txt list of image paths, one per line; or a list of them, each a
    # path or {path, weight}. Without any weight the sources are one concatenated set (every image equally
    # likely); once a weight is given, each source gets weight / sum(weights) of the draws (a missing one is 1).
    train: str | list[str | TrainSource] = ""
    root: str = ""  # the folder the lines of a .txt list are relative to; empty: the list's folder
    # the patch each worker cuts from an image before degradation (official crop_pad_size)
    load_size: int = _key(400, Int(8, _MAX_PATCH))
    gt_size: int = _key(256, Int(8, _MAX_PATCH))  # the GT crop after degradation; LQ is gt_size // scale
    use_hflip: bool = True
    use_rot: bool = False  # also random 90-degree rotations and vertical flips
    small_images: Literal["pad", "skip"] = "pad"  # images smaller than load_size: pad (reflect) or skip
    # draw an image in proportion to its area (a 4000 px photo gives ~64x the patches of a 500 px one) instead of
    # every image equally often; within each source, its share unchanged
    sample_by_area: bool = False
    num_workers: int = _key(4, Int(0, 128))  # DataLoader worker processes per rank; 0 loads in the training process
    pool_size: int = _key(180, Int(0, 4096))  # training pair pool (official queue_size); 0 disables it
    degradation: dict[str, Any] = _key(dict, _DEGRADATION)  # overrides of realesr.degrade.DegradationConfig


@dataclass
class OptimConfig:
    lr_g: float | None = _key(None, _LR)  # None: 2e-4 for esrnet, 1e-4 for esrgan
    lr_d: float = _key(1e-4, _LR)
    betas: list[float] = _key(lambda: [0.9, 0.99], Seq(Float(0, below=1), 2, 2))
    weight_decay: float = _key(0.0, Float(low=0))
    # MultiStepLR milestones in iterations; None: [total_iters]
    milestones: list[int] | None = _key(None, Seq(Int(1), max_len=10_000))
    gamma: float = _key(0.5, Float(above=0, high=1))
    warmup_iters: int = _key(0, Int(0))  # linear warm-up of the learning rate; 0: none (official)
    accum_steps: int = _key(1, Int(1, 2**16))  # micro-batches accumulated per optimiser step
    grad_clip: float = _key(0.0, Float(low=0))  # clip the gradient norm to this; 0: no clipping (official)
    ema_decay: float = _key(0.999, Float(low=0, below=1))  # 0 disables the EMA generator


@dataclass
class PerceptualConfig:
    weight: float = _key(1.0, _WEIGHT)  # 0 disables the perceptual loss
    layer_weights: dict[str, float] = _key(
        lambda: {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}, Map(_WEIGHT)
    )
    weights: str = "imagenet"  # imagenet (vgg19-dcbb9e9d.pth: cache or download) | a .pth path | random (tests only)
    use_input_norm: bool = True  # ImageNet mean/std normalisation of inputs in [0, 1]
    criterion: Literal["l1", "l2"] = "l1"


@dataclass
class GanConfig:
    type: Literal["vanilla", "ragan"] = "vanilla"  # BCE with logits (official) or relativistic average
    weight: float = _key(0.1, _WEIGHT)
    real_label: float = _key(1.0, Float(0, 1))
    fake_label: float = _key(0.0, Float(0, 1))


@dataclass
class LossConfig:
    pixel_weight: float = _key(1.0, _WEIGHT)
    l1_gt_usm: bool = True  # L1 against the unsharp-masked GT
    percep_gt_usm: bool = True
    gan_gt_usm: bool = False
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    net_d_iters: int = _key(1, Int(1, 2**20))  # update the generator every net_d_iters iterations (esrgan)
    net_d_init_iters: int = _key(0, Int(0))  # train only the discriminator for this many first iterations


@dataclass
class ValSetConfig:
    """One validation set: ``synthetic`` (GT images, seeded degraded LR; PSNR/SSIM), ``paired`` (real LR in ``lr``
    and HR in ``path``, matched by file stem; PSNR/SSIM) or ``real`` (LR images only; NIQE)."""

    kind: Literal["synthetic", "paired", "real"] = "synthetic"
    path: str = ""  # GT images (synthetic), HR images (paired), LR images (real)
    lr: str = ""  # paired: the LR images
    # the set's name in the CSV, plots, TensorBoard and val.best; empty: the folder's name
    name: str = _key("", Name(empty=True, max_len=100))


@dataclass
class ValConfig:
    sets: list[ValSetConfig] = field(default_factory=list)  # several validation sets, each of a kind
    folder: str = ""  # HR validation images; empty: no validation
    max_images: int = _key(0, Int(0))  # 0: all
    # centre-crop HR images to at most this side before degrading; 0: whole image
    max_size: int = _key(0, Int(0, _MAX_SIDE))
    seed: int = _key(0, SEED)  # the fixed seed of the degraded validation LR
    degraded: bool = True  # LR by the training degradation (fixed per image)
    bicubic: bool = True  # LR by MATLAB bicubic downscaling
    # LR | SR | GT strips saved per validation and LR kind (the first images, every time)
    num_samples: int = _key(3, Int(0, 1000))
    at_start: bool = True  # validate at iteration 0 (a fresh run's baseline; not on resume)
    # SET/METRIC marking checkpoints/best: degraded/psnr, bicubic/ssim, NAME/niqe ...; empty: default_best()
    best: str = ""
    crop_border: int = _key(4, CROP_BORDER)


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # fp16 uses a gradient scaler
    channels_last: bool = False
    compile: bool = False  # torch.compile the generator and discriminator
    deterministic: bool = False  # cuDNN deterministic algorithms (slower)
    max_nonfinite: int = _key(10, Int(1, 10**6))  # abort after this many non-finite steps in a row
    dist_backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on CUDA, gloo otherwise
    num_threads: int = _key(0, Int(0, 4096))  # CPU threads of torch in the training process; 0: torch's default


@dataclass
class TrainConfig:
    name: str = _key("realesr", Name(reserve=_ASIDE_SUFFIX))
    output_dir: str = _key("runs", _PATH)  # relative paths are relative to the current directory
    seed: int = _key(0, SEED)
    stage: Literal["esrnet", "esrgan"] = "esrnet"  # L1 only, or L1 + perceptual + GAN
    scale: Literal[2, 4, 8] = 4
    total_iters: int | None = _key(None, Int(1))  # None: 1_000_000 (esrnet) or 400_000 (esrgan)
    # per rank and micro-batch; effective = batch_size * accum_steps * world size
    batch_size: int = _key(12, Int(1, 2**16))
    save_every: int = _key(5000, Int(1))
    val_every: int = _key(5000, Int(0))  # 0: no validation during training
    log_every: int = _key(100, Int(1))  # CSV / TensorBoard rows
    keep_last: int = _key(3, Int(1, 10**6))  # checkpoints kept besides the best
    # generator init: a model name or weights path (official or ours); empty: random init
    init_from: str = _key("", _PATH)
    init_strict: bool = True  # False: layers whose shape differs are re-initialised (and listed in the log)
    init_d_from: str = _key("", _PATH)  # discriminator init (e.g. RealESRGAN_x4plus_netD.pth)
    network: NetworkConfig = field(default_factory=NetworkConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    val: ValConfig = field(default_factory=ValConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.output_dir) / self.name


# --------------------------------------------------------------------------------------------- building


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _same_kind(value: Any, tp: Any) -> bool:
    kind = typing.get_origin(tp) or tp
    return isinstance(kind, type) and isinstance(value, kind)


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check (and gently coerce) a YAML value against a type annotation; errors name ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        # the first alternative that takes the value; else the error of the one of the value's own kind (a text
        # with a NUL is told about the NUL, not that it is no list)
        inner.sort(key=lambda alternative: _same_kind(value, alternative))
        for alternative in inner[:-1]:
            try:
                return _convert(value, alternative, key)
            except ConfigError:
                pass
        return _convert(value, inner[-1], key)
    if origin is Literal:
        for choice in args:
            same_number = isinstance(choice, int) and isinstance(value, (int, float)) and not isinstance(value, bool)
            if (type(value) is type(choice) or same_number) and value == choice:
                return choice
        words = ", ".join(str(c) for c in args)
        raise ConfigError(f"config key '{key}' must be one of {words}; got {value!r}", key=key)
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping of sub-keys, got {value!r}", key=key)
        return _build(tp, value, key + ".")
    if tp is bool:
        return _checked(Bool(), value, key)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}", key=key)
        if isinstance(value, str):  # "1e3" from YAML or --set
            try:
                value = float(value) if not value.strip().lstrip("+-").isdigit() else int(value)
            except ValueError:
                raise ConfigError(f"config key '{key}' must be an integer, got {value!r}", key=key) from None
        return _checked(Int(), value, key)
    if tp is float:
        return _checked(Float(text=True), value, key)  # finite; PyYAML reads 1e-4 (no dot) as a string
    if tp is str:
        return _checked(Str(strict=False), value, key)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{key}' must be a list, got {value!r}", key=key)
        return [_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping, got {value!r}", key=key)
        key_tp, val_tp = args
        return {_convert(k, key_tp, key): _convert(v, val_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    raise ConfigError(f"config key '{key}' has an unsupported type {_type_name(tp)}")  # pragma: no cover


def _checked(shape: Shape, value: Any, key: str) -> Any:
    """``shape.check`` with the error as a ConfigError naming the key (or the place inside it)."""
    try:
        return shape.check(value, key)
    except Invalid as err:
        sep = " " if err.why.startswith(("must", "is ", "has ")) else ": "
        raise ConfigError(f"config key '{err.where}'{sep}{err.why}", key=err.where) from None


def _build(cls: type, raw: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in raw.items():
        if key not in fields:
            names = list(fields)
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}", key=f"{prefix}{key}")
        kwargs[key] = _convert(value, hints[key], prefix + key)
    return cls(**kwargs)


def _check_ranges(obj: Any, prefix: str = "") -> None:
    """Every key of ``obj`` (a config dataclass, nested ones and lists of them included) against the shape in its
    field's metadata; the first one out of range is a ConfigError naming it."""
    for f in dataclasses.fields(obj):
        value, key = getattr(obj, f.name), prefix + f.name
        shape = f.metadata.get("shape")
        if shape is not None and value is not None:
            setattr(obj, f.name, _checked(shape, value, key))
        items = value if isinstance(value, list) else [value]
        for i, item in enumerate(items):
            if dataclasses.is_dataclass(item) and not isinstance(item, type):
                _check_ranges(item, f"{key}[{i}]." if isinstance(value, list) else f"{key}.")


def train_sources(data: DataConfig) -> list[TrainSource]:
    """``data.train`` as a list of sources (a plain path is one source without a weight)."""
    items = [data.train] if isinstance(data.train, str) else data.train
    return [TrainSource(item) if isinstance(item, str) else item for item in items]


def config_from_dict(raw: dict | None) -> TrainConfig:
    """Build and validate a TrainConfig from a plain (YAML) mapping; stage defaults resolved."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError("the training config must be a YAML mapping of keys")
    if isinstance(raw.get("val"), list):  # `val:` written as the list of sets itself
        raw = {**raw, "val": {"sets": raw["val"]}}
    return resolve(_build(TrainConfig, raw))


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    """Apply ``key.sub=value`` strings (value parsed as YAML) to a raw config mapping, in place."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value (dotted keys for nested ones), got {item!r}")
        dotted, text = item.split("=", 1)
        dotted = dotted.strip()
        if not dotted:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        try:
            value = yaml.safe_load(text) if text.strip() else ""
        except yaml.YAMLError as err:
            why = " ".join(str(err).split())  # PyYAML's message spans lines: one line here
            raise ConfigError(f"--set {dotted}: cannot parse value {text!r}: {why}", key=dotted) from None
        node = raw
        parts = dotted.split(".")
        for i, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {dotted}: '{'.'.join(parts[: i + 1])}' is not a mapping", key=dotted)
            node = child
        node[parts[-1]] = value
    return raw


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config, apply ``--set`` overrides, validate and resolve it."""
    path = Path(path)
    try:
        with open_regular(path) as f:  # a FIFO or a device would block or never end
            text = f.read(MAX_LIST_BYTES + 1).decode("utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror or err}") from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"config {path} is not UTF-8 text ({err.reason} at byte {err.start})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"config {path} is not valid YAML: {err}") from None
    raw = raw if raw is not None else {}
    if not isinstance(raw, dict):
        raise ConfigError(f"config {path} must be a YAML mapping of keys")
    apply_overrides(raw, overrides or [])
    return config_from_dict(raw)


def save_config(cfg: TrainConfig, path: str | os.PathLike) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(Path(path), yaml.safe_dump(config_to_dict(cfg), sort_keys=False))


# --------------------------------------------------------------------------------------------- validation


def _check(ok: bool, key: str, message: str) -> None:
    if not ok:
        raise ConfigError(f"config key '{key}' {message}", key=key)


def _one_of(value: str, key: str, choices: tuple[str, ...]) -> None:
    _check(value in choices, key, f"must be one of {', '.join(choices)}; got {value!r}")


def resolve(cfg: TrainConfig) -> TrainConfig:
    """Fill stage-dependent defaults and validate every value; returns the same object."""
    _check_ranges(cfg)
    defaults = STAGE_DEFAULTS[cfg.stage]
    if cfg.total_iters is None:
        cfg.total_iters = int(defaults["total_iters"])
    if cfg.optim.lr_g is None:
        cfg.optim.lr_g = defaults["lr_g"]
    if cfg.optim.milestones is None:
        cfg.optim.milestones = [cfg.total_iters]

    from realesr.archs import (  # torch only once a config is checked
        arch_named,
        arch_names,
    )

    net = cfg.network
    _one_of(net.arch, "network.arch", arch_names())

    data = cfg.data
    _check(bool(data.train), "data.train", "must name a folder or a .txt list of training images (or a list of them)")
    for i, source in enumerate(train_sources(data)):
        _check(
            bool(source.path) or bool(source.pairs),
            f"data.train[{i}].path",
            "must name a folder or a .txt list of training images (or give pairs: a .txt list of pairs)",
        )
        _check(
            not (source.pairs and (source.path or source.lr)),
            f"data.train[{i}].pairs",
            "a list of pairs replaces path and lr; give one or the other",
        )
    _check(
        data.gt_size >= 8 and data.gt_size % cfg.scale == 0,
        "data.gt_size",
        f"must be at least 8 and a multiple of scale {cfg.scale}; got {data.gt_size}",
    )
    arch = arch_named(net.arch)
    _check(cfg.scale in arch.scales, "scale", f"{net.arch} takes scales {list(arch.scales)}; got {cfg.scale}")
    multiple = arch.size_multiple(arch.from_config(net, cfg.scale)) if arch.from_config else 1
    _check(
        (data.gt_size // cfg.scale) % multiple == 0,
        "data.gt_size",
        f"must give an LQ size that is a multiple of {multiple} at scale {cfg.scale} ({net.arch} folds the "
        f"input by pixel-unshuffle)",
    )
    if cfg.stage == "esrgan":
        _check(data.gt_size % 8 == 0, "data.gt_size", "must be a multiple of 8 for the U-Net discriminator")
    _check(
        data.load_size >= data.gt_size,
        "data.load_size",
        f"must be at least data.gt_size ({data.gt_size}); got {data.load_size}",
    )
    _check(data.load_size % cfg.scale == 0, "data.load_size", f"must be a multiple of scale {cfg.scale}")
    _check(
        data.pool_size % cfg.batch_size == 0,
        "data.pool_size",
        f"must be a multiple of batch_size ({cfg.batch_size}); got {data.pool_size}",
    )

    opt = cfg.optim
    milestones = opt.milestones or []  # filled in from total_iters above
    _check(
        milestones == sorted(milestones),
        "optim.milestones",
        f"must be increasing positive iterations; got {opt.milestones}",
    )

    loss = cfg.loss
    pl = loss.perceptual
    for layer in pl.layer_weights:
        if layer not in _vgg19_layer_names():
            close = difflib.get_close_matches(layer, _vgg19_layer_names(), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(
                f"config key 'loss.perceptual.layer_weights.{layer}' is not a VGG19 layer{hint}",
                key=f"loss.perceptual.layer_weights.{layer}",
            )
    _check(
        bool(pl.layer_weights) or pl.weight == 0,
        "loss.perceptual.layer_weights",
        "must name at least one layer when the perceptual loss is on",
    )
    _check(bool(pl.weights), "loss.perceptual.weights", "must be imagenet, random or a .pth path")
    if cfg.stage == "esrgan" and pl.weight > 0 and pl.layer_weights:
        # each VGG pooling halves the patch: the deepest layer needs a side of 2**(poolings before it)
        layers = _vgg19_layer_names()
        deepest = max(layers.index(layer) for layer in pl.layer_weights)
        least = 2 ** sum(1 for name in layers[: deepest + 1] if name.startswith("pool"))
        _check(
            data.gt_size >= least,
            "data.gt_size",
            f"must be at least {least} for the perceptual loss at {layers[deepest]} (VGG19 halves it "
            f"{least.bit_length() - 1} times before); got {data.gt_size}",
        )
    if cfg.stage == "esrnet":
        _check(loss.pixel_weight > 0, "loss.pixel_weight", "must be positive for the esrnet stage (its only loss)")

    val = cfg.val
    # the validation HR is cut to a multiple of scale x multiple: the least such side that keeps SSIM's window once
    # crop_border is cut from both sides
    from realesr.metrics.fullref import SSIM_WINDOW

    step = cfg.scale * multiple
    smallest = step * -(-(2 * val.crop_border + SSIM_WINDOW) // step)
    _check(
        val.max_size == 0 or val.max_size >= smallest,
        "val.max_size",
        f"must be 0 (whole images) or at least {smallest} (a multiple of scale {cfg.scale} x the {net.arch} input "
        f"multiple {multiple} keeping SSIM's {SSIM_WINDOW} px inside 2 x val.crop_border {val.crop_border}); "
        f"got {val.max_size}",
    )
    if val.folder:
        _check(val.degraded or val.bicubic, "val.degraded", "or val.bicubic must be true when val.folder is set")
    names = val_set_names(cfg)
    for i, vs in enumerate(val.sets):
        _check(bool(vs.path), f"val.sets[{i}].path", "must name a folder of images")
        if vs.kind == "paired":
            _check(bool(vs.lr), f"val.sets[{i}].lr", "must name the folder of LR images of a paired set")
        name = names[len(names) - len(val.sets) + i]
        _check(names.count(name) == 1, f"val.sets[{i}].name", f"must be unique among the validation sets; got {name!r}")
    if val.best:
        choices = [
            f"{n}/{m}"
            for n, kind in zip(names, val_set_kinds(cfg))
            for m in (("niqe",) if kind == "real" else ("psnr", "ssim"))
        ]
        _check(val.best in choices, "val.best", f"must be one of {', '.join(choices)}; got {val.best!r}")

    rt = cfg.runtime
    _check(
        re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,4})?", rt.device) is not None,
        "runtime.device",
        f"must be auto, cpu, cuda, cuda:N or mps; got {rt.device!r}",
    )
    return cfg


def val_set_names(cfg: TrainConfig) -> list[str]:
    """The name of every validation set, in order: ``degraded`` and ``bicubic`` for ``val.folder`` (as enabled),
    then each of ``val.sets`` (its ``name``, else its folder's name)."""
    val = cfg.val
    names = [k for k, on in (("degraded", val.degraded), ("bicubic", val.bicubic)) if on] if val.folder else []
    return names + [vs.name or Path(vs.path).name or vs.kind for vs in val.sets]


def val_set_kinds(cfg: TrainConfig) -> list[str]:
    """The kind of every set of :func:`val_set_names`."""
    legacy = [k for k, on in (("degraded", cfg.val.degraded), ("bicubic", cfg.val.bicubic)) if on]
    return (["synthetic"] * len(legacy) if cfg.val.folder else []) + [vs.kind for vs in cfg.val.sets]


def default_best(cfg: TrainConfig) -> str:
    """SET/METRIC marking checkpoints/best when ``val.best`` is empty: the PSNR of the first synthetic or paired set
    (esrnet), NIQE of the first real set for the GAN stage when there is one."""
    pairs = list(zip(val_set_names(cfg), val_set_kinds(cfg)))
    if cfg.stage == "esrgan":
        for name, kind in pairs:
            if kind == "real":
                return f"{name}/niqe"
    for name, kind in pairs:
        if kind != "real":
            return f"{name}/psnr"
    return f"{pairs[0][0]}/niqe" if pairs else ""


def _vgg19_layer_names() -> tuple[str, ...]:
    from realesr.archs.vgg import VGG19_LAYER_NAMES

    return VGG19_LAYER_NAMES
