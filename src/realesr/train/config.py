"""Typed training configuration: dataclasses loaded from YAML, ``--set key.sub=value`` overrides, validation.

Every error names the dotted key it is about. Values left at ``None`` that depend on the stage
(learning rates, total iterations, milestones) are filled in by :func:`resolve` with the official
x4plus recipe, so the resolved config saved in the run folder shows every value actually used.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from realesr.atomic import atomic_write_text
from realesr.errors import ConfigError

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


@dataclass
class NetworkConfig:
    """The generator. ``arch`` RRDBNet (the x4plus model) or SRVGGNetCompact (the compact general-x4v3 model)."""

    arch: str = "RRDBNet"
    num_feat: int = 64
    num_block: int = 23  # RRDBNet: residual-in-residual dense blocks
    num_grow_ch: int = 32  # RRDBNet: growth channels of the dense blocks
    num_conv: int = 32  # SRVGGNetCompact: body convolutions
    act_type: Literal["prelu", "relu", "leakyrelu"] = "prelu"  # SRVGGNetCompact


@dataclass
class DiscriminatorConfig:
    num_feat: int = 64
    skip_connection: bool = True


@dataclass
class TrainSource:
    path: str = ""  # a folder (searched recursively) or a .txt list of image paths
    weight: float | None = None  # this source's share of the draws (weight / sum of weights); None: see below
    lr: str = ""  # a paired source: the folder (or .txt list) of real LR images matched to path's HR by name
    pairs: str = ""  # a paired source as a .txt list of 'hr_path lr_path' lines (instead of path and lr)


@dataclass
class DataConfig:
    # A folder (searched recursively) or a .txt list of image paths, one per line; or a list of them, each a
    # path or {path, weight}. Without any weight the sources are one concatenated set (every image equally
    # likely); once a weight is given, each source gets weight / sum(weights) of the draws (a missing one is 1).
    train: str | list[str | TrainSource] = ""
    root: str = ""  # the folder the lines of a .txt list are relative to; empty: the list's folder
    load_size: int = 400  # the patch each worker cuts from an image before degradation (official crop_pad_size)
    gt_size: int = 256  # the GT crop after degradation; LQ is gt_size // scale
    use_hflip: bool = True
    use_rot: bool = False  # also random 90-degree rotations and vertical flips
    small_images: Literal["pad", "skip"] = "pad"  # images smaller than load_size: pad (reflect) or skip
    # draw an image in proportion to its area (a 4000 px photo gives ~64x the patches of a 500 px one) instead of
    # every image equally often; within each source, its share unchanged
    sample_by_area: bool = False
    num_workers: int = 4  # DataLoader worker processes per rank; 0 loads in the training process
    pool_size: int = 180  # training pair pool (official queue_size); 0 disables it
    degradation: dict[str, Any] = field(default_factory=dict)  # overrides of realesr.degrade.DegradationConfig


@dataclass
class OptimConfig:
    lr_g: float | None = None  # None: 2e-4 for esrnet, 1e-4 for esrgan
    lr_d: float = 1e-4
    betas: list[float] = field(default_factory=lambda: [0.9, 0.99])
    weight_decay: float = 0.0
    milestones: list[int] | None = None  # MultiStepLR milestones in iterations; None: [total_iters]
    gamma: float = 0.5
    warmup_iters: int = 0  # linear warm-up of the learning rate; 0: none (official)
    accum_steps: int = 1  # micro-batches accumulated per optimiser step
    grad_clip: float = 0.0  # clip the gradient norm to this; 0: no clipping (official)
    ema_decay: float = 0.999  # 0 disables the EMA generator


@dataclass
class PerceptualConfig:
    weight: float = 1.0  # 0 disables the perceptual loss
    layer_weights: dict[str, float] = field(
        default_factory=lambda: {"conv1_2": 0.1, "conv2_2": 0.1, "conv3_4": 1.0, "conv4_4": 1.0, "conv5_4": 1.0}
    )
    weights: str = "imagenet"  # imagenet (vgg19-dcbb9e9d.pth: cache or download) | a .pth path | random (tests only)
    use_input_norm: bool = True  # ImageNet mean/std normalisation of inputs in [0, 1]
    criterion: Literal["l1", "l2"] = "l1"


@dataclass
class GanConfig:
    type: Literal["vanilla", "ragan"] = "vanilla"  # BCE with logits (official) or relativistic average
    weight: float = 0.1
    real_label: float = 1.0
    fake_label: float = 0.0


@dataclass
class LossConfig:
    pixel_weight: float = 1.0
    l1_gt_usm: bool = True  # L1 against the unsharp-masked GT
    percep_gt_usm: bool = True
    gan_gt_usm: bool = False
    perceptual: PerceptualConfig = field(default_factory=PerceptualConfig)
    gan: GanConfig = field(default_factory=GanConfig)
    net_d_iters: int = 1  # update the generator every net_d_iters iterations (esrgan)
    net_d_init_iters: int = 0  # train only the discriminator for this many first iterations


@dataclass
class ValSetConfig:
    """One validation set: ``synthetic`` (GT images, seeded degraded LR; PSNR/SSIM), ``paired`` (real LR in ``lr``
    and HR in ``path``, matched by file stem; PSNR/SSIM) or ``real`` (LR images only; NIQE)."""

    kind: Literal["synthetic", "paired", "real"] = "synthetic"
    path: str = ""  # GT images (synthetic), HR images (paired), LR images (real)
    lr: str = ""  # paired: the LR images
    name: str = ""  # the set's name in the CSV, plots, TensorBoard and val.best; empty: the folder's name


@dataclass
class ValConfig:
    sets: list[ValSetConfig] = field(default_factory=list)  # several validation sets, each of a kind
    folder: str = ""  # HR validation images; empty: no validation
    max_images: int = 0  # 0: all
    max_size: int = 0  # centre-crop HR images to at most this side before degrading; 0: whole image
    seed: int = 0  # the fixed seed of the degraded validation LR
    degraded: bool = True  # LR by the training degradation (fixed per image)
    bicubic: bool = True  # LR by MATLAB bicubic downscaling
    num_samples: int = 3  # LR | SR | GT strips saved per validation and LR kind (the first images, every time)
    at_start: bool = True  # validate at iteration 0 (a fresh run's baseline; not on resume)
    # SET/METRIC marking checkpoints/best: degraded/psnr, bicubic/ssim, NAME/niqe ...; empty: default_best()
    best: str = ""
    crop_border: int = 4


@dataclass
class RuntimeConfig:
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"  # fp16 uses a gradient scaler
    channels_last: bool = False
    compile: bool = False  # torch.compile the generator and discriminator
    deterministic: bool = False  # cuDNN deterministic algorithms (slower)
    max_nonfinite: int = 10  # abort after this many non-finite steps in a row
    dist_backend: Literal["auto", "nccl", "gloo"] = "auto"  # auto: nccl on CUDA, gloo otherwise
    num_threads: int = 0  # CPU threads of torch in the training process; 0: torch's default


@dataclass
class TrainConfig:
    name: str = "realesr"
    output_dir: str = "runs"  # relative paths are relative to the current directory
    seed: int = 0
    stage: Literal["esrnet", "esrgan"] = "esrnet"  # L1 only, or L1 + perceptual + GAN
    scale: Literal[2, 4, 8] = 4
    total_iters: int | None = None  # None: 1_000_000 (esrnet) or 400_000 (esrgan)
    batch_size: int = 12  # per rank and micro-batch; effective = batch_size * accum_steps * world size
    save_every: int = 5000
    val_every: int = 5000  # 0: no validation during training
    log_every: int = 100  # CSV / TensorBoard rows
    keep_last: int = 3  # checkpoints kept besides the best
    init_from: str = ""  # generator init: a model name or weights path (official or ours); empty: random init
    init_strict: bool = True  # False: layers whose shape differs are re-initialised (and listed in the log)
    init_d_from: str = ""  # discriminator init (e.g. RealESRGAN_x4plus_netD.pth)
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


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check (and gently coerce) a YAML value against a type annotation; errors name ``key``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        for alternative in inner[:-1]:  # the first alternative that takes the value; the last one's error
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
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping of sub-keys, got {value!r}", key=key)
        return _build(tp, value, key + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{key}' must be true or false, got {value!r}", key=key)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}", key=key)
        try:
            number = float(value)
        except ValueError:
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}", key=key) from None
        if not number.is_integer():
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}", key=key)
        return int(number)
    if tp is float:
        # PyYAML reads 1e-4 (no dot) as a string; accept it as the number it obviously is.
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}", key=key)
        try:
            return float(value)
        except ValueError:
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}", key=key) from None
    if tp is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{key}' must be a string, got {value!r}", key=key)
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


def _build(cls: type, raw: dict, prefix: str = "") -> Any:
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in raw.items():
        if key not in names:
            close = difflib.get_close_matches(str(key), names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f"; known keys: {', '.join(names)}"
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}", key=f"{prefix}{key}")
        kwargs[key] = _convert(value, hints[key], prefix + key)
    return cls(**kwargs)


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
            raise ConfigError(f"--set {dotted}: cannot parse value {text!r}: {err}", key=dotted) from None
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
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"cannot read config {path}: {err.strerror or err}") from None
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
    _check(
        bool(cfg.name) and "/" not in cfg.name and cfg.name not in (".", ".."),
        "name",
        "must be a non-empty folder name without '/'",
    )
    defaults = STAGE_DEFAULTS[cfg.stage]
    if cfg.total_iters is None:
        cfg.total_iters = defaults["total_iters"]
    if cfg.optim.lr_g is None:
        cfg.optim.lr_g = defaults["lr_g"]
    if cfg.optim.milestones is None:
        cfg.optim.milestones = [cfg.total_iters]
    _check(cfg.total_iters >= 1, "total_iters", f"must be at least 1; got {cfg.total_iters}")
    _check(cfg.batch_size >= 1, "batch_size", f"must be at least 1; got {cfg.batch_size}")
    _check(cfg.save_every >= 1, "save_every", f"must be at least 1; got {cfg.save_every}")
    _check(cfg.val_every >= 0, "val_every", f"must be 0 (off) or positive; got {cfg.val_every}")
    _check(cfg.log_every >= 1, "log_every", f"must be at least 1; got {cfg.log_every}")
    _check(cfg.keep_last >= 1, "keep_last", f"must be at least 1; got {cfg.keep_last}")

    from realesr.archs import (  # torch only once a config is checked
        arch_named,
        arch_names,
    )

    net = cfg.network
    _one_of(net.arch, "network.arch", arch_names())
    # The architecture's record names the network keys it reads; its widths and depths count from 1.
    for key in arch_named(net.arch).config_keys:
        value = getattr(net, key)
        if isinstance(value, int) and not isinstance(value, bool):
            _check(value >= 1, f"network.{key}", f"must be at least 1; got {value}")
    _check(cfg.discriminator.num_feat >= 1, "discriminator.num_feat", "must be at least 1")

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
            source.weight is None or (math.isfinite(source.weight) and source.weight > 0),
            f"data.train[{i}].weight",
            f"must be a positive number; got {source.weight}",
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
    _check(data.num_workers >= 0, "data.num_workers", "must be 0 or positive")
    _check(data.pool_size >= 0, "data.pool_size", "must be 0 (off) or positive")
    _check(
        data.pool_size % cfg.batch_size == 0,
        "data.pool_size",
        f"must be a multiple of batch_size ({cfg.batch_size}); got {data.pool_size}",
    )
    from realesr.train.synth import (
        degradation_config,  # the degradation model's own checks, keys named
    )

    degradation_config(cfg.scale, data.degradation)

    opt = cfg.optim
    _check(opt.lr_g > 0, "optim.lr_g", f"must be positive; got {opt.lr_g}")
    _check(opt.lr_d > 0, "optim.lr_d", f"must be positive; got {opt.lr_d}")
    _check(
        len(opt.betas) == 2 and all(0 <= b < 1 for b in opt.betas),
        "optim.betas",
        f"must be two numbers in [0, 1); got {opt.betas}",
    )
    _check(opt.weight_decay >= 0, "optim.weight_decay", "must be 0 or positive")
    _check(
        all(m >= 1 for m in opt.milestones) and opt.milestones == sorted(opt.milestones),
        "optim.milestones",
        f"must be increasing positive iterations; got {opt.milestones}",
    )
    _check(0 < opt.gamma <= 1, "optim.gamma", f"must be in (0, 1]; got {opt.gamma}")
    _check(opt.warmup_iters >= 0, "optim.warmup_iters", "must be 0 or positive")
    _check(opt.accum_steps >= 1, "optim.accum_steps", f"must be at least 1; got {opt.accum_steps}")
    _check(opt.grad_clip >= 0, "optim.grad_clip", "must be 0 (off) or positive")
    _check(0 <= opt.ema_decay < 1, "optim.ema_decay", f"must be in [0, 1); got {opt.ema_decay}")

    loss = cfg.loss
    _check(loss.pixel_weight >= 0, "loss.pixel_weight", "must be 0 or positive")
    pl = loss.perceptual
    _check(pl.weight >= 0, "loss.perceptual.weight", "must be 0 or positive")
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
    _check(loss.gan.weight >= 0, "loss.gan.weight", "must be 0 or positive")
    _check(loss.net_d_iters >= 1, "loss.net_d_iters", "must be at least 1")
    _check(loss.net_d_init_iters >= 0, "loss.net_d_init_iters", "must be 0 or positive")
    if cfg.stage == "esrnet":
        _check(loss.pixel_weight > 0, "loss.pixel_weight", "must be positive for the esrnet stage (its only loss)")

    val = cfg.val
    for key in ("max_images", "max_size", "num_samples", "crop_border"):
        _check(getattr(val, key) >= 0, f"val.{key}", "must be 0 or positive")
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
        rt.device == "auto" or rt.device.split(":")[0] in ("cpu", "cuda", "mps"),
        "runtime.device",
        f"must be auto, cpu, cuda, cuda:N or mps; got {rt.device!r}",
    )
    _check(rt.num_threads >= 0, "runtime.num_threads", "must be 0 (torch's default) or positive")
    _check(rt.max_nonfinite >= 1, "runtime.max_nonfinite", "must be at least 1")
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
