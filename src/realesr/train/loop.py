"""The training loop of both stages, read top to bottom: :func:`train`.

``train`` = :func:`build` (networks, optimisers, data; nothing written yet) -> :func:`restore` (a checkpoint, if
resuming) -> :func:`open_run` (data position, validation inputs, the run folder's records) -> the loop, whose body
reads like the paper. One iteration = ``accum_steps`` micro-batches of ``batch_size`` patches per rank:

1. synthesise (LQ, GT, sharpened GT) on the device for each micro-batch (degradations + pair pool);
2. :func:`generator_step`: the discriminator frozen; L1 (+ perceptual + GAN for esrgan); accumulated gradients;
3. :func:`discriminator_step` (esrgan): BCE on the plain GT versus the detached output;
4. :func:`reduce_and_check`: one collective for the losses and the decisions; a non-finite loss or gradient norm
   skips the step; else the optimisers step and the EMA follows;
5. :func:`log_and_validate`: CSV/TensorBoard rows, validation, plots, checkpoints on their intervals.

Exact resume: every random draw is a function of the seed, the rank and the iteration (data: of the sample's
(epoch, position); device-side degradations: of a generator re-seeded each iteration), and the rest (pair pool,
optimisers, scaler, global RNG states) is in the checkpoint. The learning rate is a pure function of the iteration
(:class:`LRSchedule`), so a resumed run follows the schedule of its config, changed or not.
"""

from __future__ import annotations

import contextlib
import copy
import functools
import json
import logging
import math
import operator
import os
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from realesr.archs import UNetDiscriminatorSN, arch_named
from realesr.atomic import atomic_write_text
from realesr.data import (
    ResumableSampler,
    TrainPatchDataset,
    check_pairs,
    collate_mixed,
    draw_probabilities,
    list_images,
    read_pair_list,
    samples_per_epoch,
    scan_images,
    scan_pairs,
)
from realesr.errors import (
    ConfigError,
    DataError,
    RealesrError,
    UsageError,
    WeightsFormatError,
)
from realesr.train import checkpoint as ckpt
from realesr.train.config import TrainConfig, config_to_dict, default_best, save_config, train_sources
from realesr.train.distributed import (
    DistInfo,
    all_reduce_sum,
    barrier,
    env_int,
    init_distributed,
    pick_device,
)
from realesr.train.ema import ema_update
from realesr.train.logs import (
    MetricsLog,
    attach_log_file,
    close_logging,
    plot_curves,
    setup_logging,
)
from realesr.train.losses import (
    build_perceptual_loss,
    gan_loss_discriminator,
    gan_loss_generator,
)
from realesr.train.runs import check_run_files, read_run_config
from realesr.train.synth import PairSynthesizer, degradation_config, params_sampler
from realesr.train.validate import build_validation_sets, validate_sets
from realesr.weights import load_model, load_state_dict, load_strict, save_model, state_dict_mismatch

__all__ = [
    "LRSchedule",
    "NonFiniteLossError",
    "RunFolderError",
    "TrainResult",
    "build",
    "build_generator",
    "discriminator_frozen",
    "generator_losses",
    "init_generator_from",
    "open_run",
    "restore",
    "train",
]

log = logging.getLogger("realesr.train")
_T = TypeVar("_T")

G_LOSSES = ("l_g_pix", "l_g_percep", "l_g_gan")
D_LOSSES = ("l_d_real", "l_d_fake", "out_d_real", "out_d_fake")


def _shape_keys(cfg: TrainConfig) -> tuple[str, ...]:
    """Config keys a checkpoint's tensors depend on (resuming with another value cannot work): the scale, the
    architecture and the network keys its record reads, the discriminator's."""
    network = tuple(f"network.{key}" for key in arch_named(cfg.network.arch).config_keys)
    return ("scale", "network.arch", *network, "discriminator.num_feat", "discriminator.skip_connection")


# config keys of the learning-rate schedule: a resumed run follows the new values (and the log lists them)
_SCHEDULE_KEYS = ("total_iters", "optim.lr_g", "optim.lr_d", "optim.milestones", "optim.gamma", "optim.warmup_iters")
# files that mark a folder as holding a run
_RUN_MARKERS = ("config.yaml", "checkpoints", "train_log.csv", "model.safetensors")


class RunFolderError(UsageError):
    """The run folder holds another run and neither resume nor overwrite was asked for (exit code 2)."""


class NonFiniteLossError(RealesrError):
    """Training stopped after too many non-finite losses in a row (a checkpoint of the last good state is saved)."""


@dataclass
class TrainResult:
    run_dir: Path
    iteration: int
    status: str  # "completed" | "interrupted"
    last_validation: dict = field(default_factory=dict)
    model: nn.Module | None = None  # the EMA generator (the generator itself when ema_decay is 0)
    stopped_by: str = ""  # "SIGINT" / "SIGTERM" when interrupted here, "" when another rank's signal stopped it


# ------------------------------------------------------------------------------------------------ building blocks


def build_generator(cfg: TrainConfig) -> nn.Module:
    arch = arch_named(cfg.network.arch)
    if arch.from_config is None:
        raise RealesrError(f"network.arch {arch.name} cannot be trained here (its record has no from_config)")
    return arch.build(arch.from_config(cfg.network, cfg.scale))


def _load_source_state_dict(source: str, allow_download: bool = True) -> dict[str, torch.Tensor]:
    """A model name or a weights path, through realesr.weights (official .pth, ours, safetensors ...)."""
    if Path(source).is_file():
        return load_state_dict(source)
    return load_model(source, allow_download=allow_download).net.state_dict()


def init_generator_from(net: nn.Module, source_sd: dict[str, torch.Tensor], strict: bool, what: str) -> list[str]:
    """Copy matching tensors into ``net``; returns the names left at their fresh initialisation.

    Strict: every key and shape must match. Partial: tensors whose name or shape differs keep the network's
    own initialisation (e.g. conv_first of an x2 RRDBNet initialised from x4, or conv_up3 of an x8 one).
    """
    own = net.state_dict()
    if strict:
        details = "; ".join(state_dict_mismatch(own, source_sd, shown=4))
        if details:
            raise RealesrError(
                f"{what} does not match the network strictly ({details}); "
                f"set init_strict: false to re-initialise the layers that differ"
            )
        net.load_state_dict(source_sd)
        return []
    fresh = []
    merged = {}
    for k, v in own.items():
        if k in source_sd and source_sd[k].shape == v.shape:
            merged[k] = source_sd[k]
        else:
            merged[k] = v
            got = tuple(source_sd[k].shape) if k in source_sd else "absent"
            fresh.append(f"{k} (checkpoint {got}, network {tuple(v.shape)})")
    if len(fresh) == len(own):
        raise RealesrError(f"{what} shares no tensor (by name and shape) with the network: another architecture?")
    net.load_state_dict(merged)
    return fresh


@contextlib.contextmanager
def discriminator_frozen(net_d: nn.Module):
    """The discriminator's parameters do not require gradients inside (the generator's step)."""
    flags = [p.requires_grad for p in net_d.parameters()]
    for p in net_d.parameters():
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(net_d.parameters(), flags):
            p.requires_grad_(flag)


def generator_losses(
    cfg: TrainConfig,
    output: torch.Tensor,
    gt: torch.Tensor,
    gt_usm: torch.Tensor,
    net_d: nn.Module | None,
    perceptual: nn.Module | None,
) -> dict[str, torch.Tensor]:
    """The weighted generator losses of the stage (call under :func:`discriminator_frozen`)."""
    lc = cfg.loss
    l1_gt = gt_usm if lc.l1_gt_usm else gt
    losses = {}
    if lc.pixel_weight > 0:
        losses["l_g_pix"] = lc.pixel_weight * F.l1_loss(output.float(), l1_gt.float())
    if cfg.stage == "esrgan":
        if perceptual is not None:
            losses["l_g_percep"] = perceptual(output, gt_usm if lc.percep_gt_usm else gt)
        if net_d is not None and lc.gan.weight > 0:
            gan_gt = gt_usm if lc.gan_gt_usm else gt
            fake_pred = net_d(output)
            real_pred = net_d(gan_gt).detach() if lc.gan.type == "ragan" else None
            losses["l_g_gan"] = lc.gan.weight * gan_loss_generator(
                fake_pred, real_pred, lc.gan.type, lc.gan.real_label, lc.gan.fake_label
            )
    return losses


class LRSchedule:
    """Linear warm-up, then MultiStepLR: factor = min(1, (step + 1) / warmup) * gamma ** (milestones passed).

    ``step`` is the number of optimiser steps before this one (iteration - 1), as torch's LambdaLR counts.
    """

    def __init__(self, milestones: list[int], gamma: float, warmup_iters: int) -> None:
        self.milestones = list(milestones)
        self.gamma = gamma
        self.warmup_iters = warmup_iters

    def __call__(self, step: int) -> float:
        warm = min(1.0, (step + 1) / self.warmup_iters) if self.warmup_iters > 0 else 1.0
        return warm * self.gamma ** sum(step >= m for m in self.milestones)


class _StopFlag:
    """SIGINT/SIGTERM set the flag; the loop saves a checkpoint at the end of the iteration and returns.
    A second signal restores the default behaviour (Ctrl-C twice kills at once)."""

    def __init__(self) -> None:
        self.requested = False
        self.signal_name = ""
        self._previous: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)

    def __enter__(self) -> _StopFlag:
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._previous[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)


def _worker_init(_worker_id: int) -> None:
    # Ctrl-C reaches the whole process group; workers must survive it so the main process can save.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def resolved(value: _T | None, key: str) -> _T:
    """A config value that :func:`realesr.train.config.resolve` fills in from the stage's defaults."""
    if value is None:
        raise ConfigError(f"config key '{key}' has no value: load configs through realesr.train.config", key=key)
    return value


def _iteration_seed(seed: int, rank: int, iteration: int) -> int:
    return int(np.random.SeedSequence([seed, rank, iteration, 0xD16]).generate_state(1, np.uint64)[0] >> 1)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _grad_norm(params: list[torch.Tensor], clip: float) -> torch.Tensor:
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return torch.zeros(())
    return torch.nn.utils.clip_grad_norm_(grads, clip if clip > 0 else float("inf"))


# ------------------------------------------------------------------------------------------------- the run object


@dataclass
class TrainState:
    """What a checkpoint saves and a resume restores (with the global RNG states, captured at save): the
    networks, the generator's optimiser and the grad scaler, the pair synthesiser (its pool and generator), the
    iteration and the bookkeeping of the best validation and the skipped steps."""

    net_g: nn.Module
    net_g_ema: nn.Module | None  # None when ema_decay is 0
    opt_g: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    synth: PairSynthesizer
    iteration: int = 0
    best_value: float = -math.inf  # of best_metric; not finite: none yet
    best_iteration: int = 0
    skipped_total: int = 0

    @property
    def model(self) -> nn.Module:
        """The generator a user gets: the EMA copy (the generator itself when ema_decay is 0)."""
        return self.net_g_ema if self.net_g_ema is not None else self.net_g


@dataclass
class GanStage:
    """The parts of the esrgan stage only (``Run.gan`` is None in the esrnet stage): the discriminator and its
    optimiser (saved), the perceptual loss (None when its weight is 0), and what runs the discriminator's forward
    passes: ``d_run`` (DDP and/or compiled) and ``d_plain`` (compiled, never DDP; set by open_run)."""

    net_d: nn.Module
    opt_d: torch.optim.Optimizer
    perceptual: nn.Module | None
    d_run: nn.Module
    d_plain: nn.Module


@dataclass
class Setup:
    """What the config builds and a resume does not change: the data (records, their source, draw
    probabilities, the patch dataset), the batch arithmetic, the learning-rate schedule, and the numeric
    formats (memory layout, autocast)."""

    records: list
    source_index: list[int]  # the data.train source of each record
    draw_p: np.ndarray | None  # the probability of each record at a draw; None: an epoch is a permutation
    dataset: TrainPatchDataset
    global_batch: int
    per_epoch: int
    schedule: LRSchedule
    memory_format: torch.memory_format
    autocast_dtype: torch.dtype | None


@dataclass
class RunLog:
    """What only records (rank 0, from open_run on): validation inputs, the CSV logs, TensorBoard, the bar, and
    the clock of the iterations-per-second column."""

    train_log: MetricsLog
    val_log: MetricsLog
    val_set: list = field(default_factory=list)
    tb: Any = None
    bar: Any = None
    t_last: float = 0.0
    it_last: int = 0


@dataclass
class Run:
    """One training process: the saved ``state``, the config-built ``setup``, the ``gan`` stage's parts (None in
    the esrnet stage), the records (``log``, rank 0 after open_run); built by :func:`build`, filled by
    :func:`restore` and :func:`open_run`, advanced by the loop."""

    cfg: TrainConfig
    device: torch.device
    dist: DistInfo
    setup: Setup
    state: TrainState
    gan: GanStage | None
    g_run: nn.Module  # the generator's forward passes: DDP and/or compiled around net_g (open_run)
    log: RunLog | None = None
    loader: DataLoader | None = None
    batches: Iterator | None = None
    nonfinite_in_a_row: int = 0
    last_validation: dict = field(default_factory=dict)
    last_validation_iteration: int | None = None

    @property
    def run_dir(self) -> Path:
        return self.cfg.run_dir

    @property
    def ckpt_root(self) -> Path:
        return self.cfg.run_dir / "checkpoints"

    @property
    def is_main(self) -> bool:
        return self.dist.is_main

    def autocast(self):
        dtype = self.setup.autocast_dtype
        return torch.autocast(self.device.type, dtype=dtype, enabled=dtype is not None)

    def close(self) -> None:
        """Idempotent; called on every exit path (normal end, exception, interrupt)."""
        if self.log is not None:
            if self.log.bar is not None:
                self.log.bar.close()
                self.log.bar = None
            for records in (self.log.train_log, self.log.val_log, self.log.tb):
                if records is not None:
                    with contextlib.suppress(Exception):
                        records.close()
            self.log = None
        # the DataLoader's worker processes end with their iterator
        self.batches = None
        self.loader = None


# ------------------------------------------------------------------------------------------------------- build


def _holds_a_run(run_dir: Path) -> bool:
    return run_dir.is_dir() and any((run_dir / name).exists() for name in _RUN_MARKERS)


def _configure_torch(cfg: TrainConfig, device: torch.device) -> None:
    if cfg.runtime.num_threads:
        torch.set_num_threads(cfg.runtime.num_threads)
    if cfg.runtime.deterministic and device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def build(
    cfg: TrainConfig, device: torch.device, dist_info: DistInfo, resuming: bool, allow_download: bool = True
) -> Run:
    """Check what can be checked, then build networks, optimisers and data. Writes nothing."""
    _configure_torch(cfg, device)
    _check_validation_folders(cfg)
    deg_cfg = degradation_config(cfg.scale, cfg.data.degradation)
    records, source_index, notes = _training_images(cfg)
    _seed_everything(cfg.seed)  # the same initial networks on every rank (and EMA copies made before DDP's broadcast)
    if dist_info.is_main:
        _log_training_data(cfg, source_index, notes)
    # data: workers cut patches and draw degradation parameters; the device applies the chain
    setup = _setup(cfg, dist_info, deg_cfg, records, source_index)
    synth = PairSynthesizer(
        deg_cfg,
        cfg.scale,
        cfg.data.gt_size,
        cfg.data.pool_size,
        cfg.batch_size,
        seed=_iteration_seed(cfg.seed, dist_info.rank, 0),
    )
    net_g, net_g_ema, net_d, perceptual = _networks(cfg, device, dist_info, resuming, allow_download)
    _seed_everything(cfg.seed + dist_info.rank)  # from here on, a stream per rank
    for net in (net_g, net_g_ema, net_d, perceptual):
        if net is not None:
            net.to(memory_format=setup.memory_format)  # type: ignore[call-overload]

    # optimisers and scaler; the learning rate is set from the schedule at every iteration
    oc = cfg.optim
    fused = device.type == "cuda"  # one kernel per step for all tensors (works with the fp16 grad scaler too)
    adam: dict[str, Any] = {"betas": tuple(oc.betas), "weight_decay": oc.weight_decay, "fused": fused}
    state = TrainState(
        net_g=net_g,
        net_g_ema=net_g_ema,
        opt_g=torch.optim.Adam(net_g.parameters(), lr=resolved(oc.lr_g, "optim.lr_g"), **adam),
        scaler=torch.amp.GradScaler(device.type, enabled=cfg.runtime.precision == "fp16"),
        synth=synth,
    )
    gan = None
    if net_d is not None:
        opt_d = torch.optim.Adam(net_d.parameters(), lr=oc.lr_d, **adam)
        gan = GanStage(net_d, opt_d, perceptual, d_run=net_d, d_plain=net_d)
    return Run(cfg, device, dist_info, setup, state, gan, g_run=net_g)


def _networks(
    cfg: TrainConfig, device: torch.device, dist_info: DistInfo, resuming: bool, allow_download: bool
) -> tuple[nn.Module, nn.Module | None, nn.Module | None, nn.Module | None]:
    """(generator, its EMA copy, discriminator, perceptual loss) on ``device``, in the order their random
    initialisations are drawn; the init sources are ignored on resume (the checkpoint replaces them)."""
    net_g = _initialised(build_generator(cfg), cfg.init_from, "generator", cfg, resuming, allow_download, dist_info)
    net_g.to(device)
    net_g_ema = copy.deepcopy(net_g).requires_grad_(False).eval() if cfg.optim.ema_decay > 0 else None
    net_d: nn.Module | None = None
    perceptual: nn.Module | None = None
    if cfg.stage == "esrgan":
        net_d = UNetDiscriminatorSN(3, cfg.discriminator.num_feat, cfg.discriminator.skip_connection)
        net_d = _initialised(net_d, cfg.init_d_from, "discriminator", cfg, resuming, allow_download, dist_info)
        net_d.to(device)
        pc = cfg.loss.perceptual
        if pc.weight > 0:
            perceptual = build_perceptual_loss(
                pc.layer_weights, pc.weight, pc.weights, pc.use_input_norm, pc.criterion, allow_download=allow_download
            ).to(device)
    return net_g, net_g_ema, net_d, perceptual


def _check_validation_folders(cfg: TrainConfig) -> None:
    if cfg.val.folder and not Path(cfg.val.folder).is_dir():
        raise ConfigError(f"config key 'val.folder': validation folder not found: {cfg.val.folder}", key="val.folder")
    for i, vs in enumerate(cfg.val.sets):
        for sub in ("path", "lr") if vs.kind == "paired" else ("path",):
            if not Path(getattr(vs, sub)).is_dir():
                raise ConfigError(
                    f"config key 'val.sets[{i}].{sub}': validation folder not found: {getattr(vs, sub)}",
                    key=f"val.sets[{i}].{sub}",
                )


def _log_training_data(cfg: TrainConfig, source_index: list[int], notes: list[str]) -> None:
    for note in notes:
        log.warning("training data: %s", note)
    for i, source in enumerate(train_sources(cfg.data)):
        share = f", weight {source.weight:g}" if source.weight is not None else ""
        count = source_index.count(i)
        if source.pairs:
            what = f"{count} real LR/HR pair(s) listed in {source.pairs} (no synthetic degradation)"
        elif source.lr:
            what = f"{count} real LR/HR pair(s) from {source.path} and {source.lr} (no synthetic degradation)"
        else:
            what = f"{count} usable image(s) from {source.path}"
        log.info("training data: %s%s", what, share)
    if cfg.data.sample_by_area:
        log.info("training data: images drawn in proportion to their area")


def _setup(cfg: TrainConfig, dist_info: DistInfo, deg_cfg, records: list, source_index: list[int]) -> Setup:
    """The data and the arithmetic the config fixes (no random draw here: the order of draws is build's)."""
    dataset = TrainPatchDataset(
        records,
        cfg.data.load_size,
        cfg.seed,
        cfg.data.use_hflip,
        cfg.data.use_rot,
        params_fn=params_sampler(deg_cfg),
        scale=cfg.scale,
        gt_size=cfg.data.gt_size,
    )
    global_batch = cfg.batch_size * dist_info.world_size
    weights = [s.weight for s in train_sources(cfg.data)]
    oc = cfg.optim
    return Setup(
        records=records,
        source_index=source_index,
        draw_p=draw_probabilities(records, source_index, weights, cfg.data.sample_by_area),
        dataset=dataset,
        global_batch=global_batch,
        per_epoch=samples_per_epoch(len(records), global_batch),
        schedule=LRSchedule(resolved(oc.milestones, "optim.milestones"), oc.gamma, oc.warmup_iters),
        memory_format=torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format,
        autocast_dtype={"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.runtime.precision],
    )


def _initialised(
    net: nn.Module, source: str, what: str, cfg: TrainConfig, resuming: bool, allow_download: bool, dist_info: DistInfo
) -> nn.Module:
    """``net`` with the tensors of ``source`` (init_from / init_d_from) copied in, unless resuming."""
    if not source or resuming:
        return net
    fresh = init_generator_from(net, _load_source_state_dict(source, allow_download), cfg.init_strict, source)
    if dist_info.is_main:
        if what == "generator":
            log.info("generator initialised from %s%s", source, " (strict)" if cfg.init_strict else "")
            for name in fresh:
                log.warning("generator layer re-initialised (not in %s with this shape): %s", source, name)
        else:
            log.info("discriminator initialised from %s", source)
            for name in fresh:
                log.warning("discriminator layer re-initialised: %s", name)
    return net


def _training_images(cfg: TrainConfig) -> tuple[list, list[int], list[str]]:
    """The usable images of every ``data.train`` source, the source of each, and the notes on skipped files."""
    records, source_index, notes = [], [], []
    for i, source in enumerate(train_sources(cfg.data)):
        if source.pairs:
            found, skipped = check_pairs(
                read_pair_list(source.pairs, cfg.data.root or None), cfg.scale, cfg.data.gt_size // cfg.scale
            )
        elif source.lr:
            found, skipped = scan_pairs(
                list_images(source.path, cfg.data.root or None),
                list_images(source.lr, cfg.data.root or None),
                cfg.scale,
                cfg.data.gt_size // cfg.scale,
            )
        else:
            found, skipped = scan_images(
                list_images(source.path, cfg.data.root or None), cfg.data.load_size, cfg.data.small_images
            )
        if not found:
            key = "data.train" if isinstance(cfg.data.train, str) else f"data.train[{i}]"
            raise DataError(
                f"config key '{key}': no usable training images in {source.path}"
                + (f" ({skipped[0]})" if skipped else "")
            )
        records += found
        source_index += [i] * len(found)
        notes += skipped
    return records, source_index, notes


def set_learning_rates(run: Run, iteration: int) -> float:
    """The lr of ``iteration`` (1-based) from the schedule, into both optimisers; returns the generator's."""
    factor = run.setup.schedule(iteration - 1)
    lr_g = resolved(run.cfg.optim.lr_g, "optim.lr_g")
    optimisers = [(run.state.opt_g, lr_g)]
    if run.gan is not None:
        optimisers.append((run.gan.opt_d, run.cfg.optim.lr_d))
    for opt, base in optimisers:
        for group in opt.param_groups:
            group["lr"] = base * factor
    return lr_g * factor


# ------------------------------------------------------------------------------------------------------ restore


def _flat(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and k != "degradation":
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _checkpoint_config(folder: Path, state: dict) -> dict[str, Any] | None:
    """The flattened config the checkpoint was written under: in its state (newer checkpoints), else the
    config.yaml of its run folder."""
    if isinstance(state.get("config"), dict):
        return _flat(state["config"])
    raw = read_run_config(folder.parent.parent)  # a damaged one: StateFileError, the resume is refused
    return _flat(raw) if raw is not None else None


def restore(run: Run, folder: Path) -> None:
    """Load a checkpoint into ``run``. Raises CheckpointError naming the config key to change when the
    checkpoint cannot continue under this config; nothing on disk is touched."""
    weights, saved = ckpt.load_checkpoint(folder)
    then, now = _checkpoint_config(folder, saved), _flat(config_to_dict(run.cfg))
    if then is not None:
        _check_shape_keys(run, folder, weights, then, now)
    _load_networks(run, folder, weights)
    state, rank = run.state, run.dist.rank
    state.opt_g.load_state_dict(saved["opt_g"])
    if run.gan is not None:
        run.gan.opt_d.load_state_dict(saved["opt_d"])
    state.scaler.load_state_dict(saved["scaler"])
    synth_state = saved["synth"][rank] if rank < len(saved["synth"]) else {}
    _check_pool(run, folder, (synth_state or {}).get("pool"))
    state.synth.load_state_dict(synth_state, device=run.device)
    state.iteration = int(saved["iteration"])
    state.best_value = float(saved.get("best_value", saved.get("best_psnr", -math.inf)))
    state.best_iteration = int(saved.get("best_iteration", 0))
    state.skipped_total = int(saved.get("skipped_total", 0))
    rng_states = saved["rng"]
    ckpt.restore_rng_states(rng_states[rank] if rank < len(rng_states) else rng_states[0])
    if run.is_main:
        _log_resume(run, folder, saved, then, now)


def _check_shape_keys(run: Run, folder: Path, weights: dict, then: dict[str, Any], now: dict[str, Any]) -> None:
    """A config key the tensors depend on changed since the checkpoint: refused, naming the key."""
    for key in _shape_keys(run.cfg):
        if key in then and then[key] != now[key]:
            try:  # which tensors differ, for the message
                load_strict(run.state.net_g, weights["net_g"], "the generator")
                detail = ""
            except WeightsFormatError as err:
                detail = f" ({err})"
            raise ckpt.CheckpointError(
                f"cannot resume {folder}: config key '{key}' is {now[key]!r} here but {then[key]!r} in the "
                f"checkpoint's run; set {key}: {then[key]!r}, or start a new run (another name){detail}",
                key=key,
            )


def _load_networks(run: Run, folder: Path, weights: dict) -> None:
    try:
        load_strict(run.state.net_g, weights["net_g"], f"checkpoint {folder}")
        if run.state.net_g_ema is not None:
            run.state.net_g_ema.load_state_dict(weights.get("net_g_ema", weights["net_g"]))
        if run.gan is not None:
            if "net_d" not in weights:
                raise ckpt.CheckpointError(
                    f"{folder} has no discriminator (an esrnet checkpoint?); "
                    "start the esrgan stage with init_from instead of resuming",
                    key="stage",
                )
            run.gan.net_d.load_state_dict(weights["net_d"])
    except (RuntimeError, WeightsFormatError) as err:  # shapes differ, and no saved config said which key
        first = str(err).strip().splitlines()[-1].strip()
        raise ckpt.CheckpointError(
            f"cannot resume {folder}: its networks have other shapes than this config's "
            f"network / discriminator keys ({first})",
            key="network",
        ) from None


def _check_pool(run: Run, folder: Path, pool: dict | None) -> None:
    """The pair pool of the checkpoint must have this config's size and batch (its contents are restored)."""
    own = run.state.synth.pool
    if pool is None or own is None or (pool["pool_size"], pool["batch_size"]) == (own.pool_size, own.batch_size):
        return
    key = "batch_size" if pool["batch_size"] != run.cfg.batch_size else "data.pool_size"
    raise ckpt.CheckpointError(
        f"cannot resume {folder}: its training pair pool holds {pool['pool_size']} pairs in batches of "
        f"{pool['batch_size']}; set batch_size: {pool['batch_size']} and data.pool_size: {pool['pool_size']} "
        f"to continue it, or start a new run (another name)",
        key=key,
    )


def _log_resume(run: Run, folder: Path, saved: dict, then: dict[str, Any] | None, now: dict[str, Any]) -> None:
    if int(saved.get("world_size", 1)) != run.dist.world_size:
        log.warning(
            "resuming with %d process(es) from a run with %d: the data order differs from an uninterrupted run",
            run.dist.world_size,
            saved.get("world_size"),
        )
    log.info("resumed from %s at iteration %d", folder, run.state.iteration)
    changed = [
        f"{k} {then[k]!r} -> {now[k]!r}" for k in _SCHEDULE_KEYS if then is not None and k in then and then[k] != now[k]
    ]
    if changed:
        log.info(
            "schedule changed on resume, followed from iteration %d on: %s", run.state.iteration + 1, "; ".join(changed)
        )


# ------------------------------------------------------------------------------------------------------ open_run


def _move_aside(run_dir: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = run_dir.with_name(f"{run_dir.name}.old-{stamp}")
    n = 1
    while target.exists():
        n += 1
        target = run_dir.with_name(f"{run_dir.name}.old-{stamp}-{n}")
    os.replace(run_dir, target)
    return target


def _open_tensorboard(run: Run):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        log.warning(
            "TensorBoard scalars are off: the tensorboard package is not installed "
            "(pip install 'realesr[train]'); the CSV files and plots are written as usual"
        )
        return None
    return SummaryWriter(str(run.run_dir / "tb"), purge_step=run.state.iteration + 1 if run.state.iteration else None)


def open_run(run: Run, overwrite: bool = False, show_progress: bool = True) -> None:
    """Position the data after the samples consumed, wrap the networks for DDP/compile, read the validation
    inputs, and (rank 0) open the run folder's records. The first write into the run folder happens here."""
    _open_data(run)
    _wrap_networks(run)
    val_set = _validation_inputs(run) if run.is_main and has_validation(run.cfg) else []
    barrier(run.dist)  # every rank has checked the run folder before rank 0 changes it
    if not run.is_main:
        return
    run_dir, cfg, world, accum = run.run_dir, run.cfg, run.dist.world_size, run.cfg.optim.accum_steps
    if overwrite and run.state.iteration == 0 and _holds_a_run(run_dir):
        log.warning("overwrite: the run in %s moved aside to %s", run_dir, _move_aside(run_dir))
    attach_log_file(run_dir)
    save_config(cfg, run_dir / "config.yaml")
    log.info(
        "run folder %s; device %s; %d process(es); effective batch %d = %d per micro-batch x %d "
        "accumulation x %d process(es)",
        run_dir,
        run.device,
        world,
        cfg.batch_size * accum * world,
        cfg.batch_size,
        accum,
        world,
    )
    tb = _open_tensorboard(run)
    it = run.state.iteration
    run.log = RunLog(
        train_log=MetricsLog(run_dir / "train_log.csv", _train_columns(run), it, tb, "train/"),
        val_log=MetricsLog(run_dir / "val_log.csv", ["set", "metric", "value"], it, None),
        val_set=val_set,
        tb=tb,
        t_last=time.perf_counter(),
        it_last=it,
    )
    if show_progress:
        from tqdm import tqdm

        run.log.bar = tqdm(total=cfg.total_iters, initial=it, desc=cfg.name, unit="it", dynamic_ncols=True)
    write_status(run, "running")


def _open_data(run: Run) -> None:
    """The DataLoader over a sampler positioned after the samples already consumed."""
    cfg, dist_info, setup = run.cfg, run.dist, run.setup
    consumed = run.state.iteration * cfg.optim.accum_steps * setup.global_batch
    sampler = ResumableSampler(
        len(setup.records),
        setup.global_batch,
        cfg.seed,
        dist_info.rank,
        dist_info.world_size,
        start_epoch=consumed // setup.per_epoch,
        start_position=consumed % setup.per_epoch,
        probabilities=setup.draw_p,
    )
    workers = cfg.data.num_workers
    paired = any(source.lr or source.pairs for source in train_sources(cfg.data))
    run.loader = DataLoader(
        setup.dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=workers,
        collate_fn=collate_mixed if paired else None,
        pin_memory=run.device.type == "cuda",
        worker_init_fn=_worker_init if workers else None,
        prefetch_factor=4 if workers else None,
        # its own generator: creating the iterator must not consume the global RNG (exact resume)
        generator=torch.Generator().manual_seed(cfg.seed + dist_info.rank),
    )
    run.batches = iter(run.loader)


def _wrap_networks(run: Run) -> None:
    """DDP (several processes) and torch.compile (runtime.compile) around the same parameters."""
    enabled, device = run.dist.enabled, run.device
    ids = [device.index] if device.type == "cuda" else None
    run.g_run = DDP(run.state.net_g, device_ids=ids) if enabled else run.state.net_g
    gan = run.gan
    if gan is not None and enabled:
        gan.d_run = DDP(gan.net_d, device_ids=ids)
    if run.cfg.runtime.compile:
        run.g_run = torch.compile(run.g_run)  # type: ignore[assignment]
        if gan is not None:
            gan.d_plain = torch.compile(gan.net_d)  # type: ignore[assignment]
            gan.d_run = torch.compile(gan.d_run) if enabled else gan.d_plain  # type: ignore[assignment]


def _validation_inputs(run: Run) -> list:
    cfg = run.cfg
    arch = arch_named(cfg.network.arch)
    size_multiple = arch.size_multiple(arch.from_config(cfg.network, cfg.scale)) if arch.from_config else 1
    val_set = build_validation_sets(cfg, size_multiple, run.state.synth.cfg)
    for vset in val_set:
        log.info(
            "validation set %s (%s, %s): %d image(s)", vset.name, vset.kind, "/".join(vset.metrics), len(vset.items)
        )
    return val_set


def _train_columns(run: Run) -> list[str]:
    """The columns of train_log.csv: the losses this stage computes, gradient norms, speed, skipped steps."""
    cfg, gan = run.cfg, run.gan
    g_cols = ["l_g_pix"] if cfg.loss.pixel_weight > 0 else []
    g_cols += ["l_g_percep"] if gan is not None and gan.perceptual is not None else []
    g_cols += ["l_g_gan"] if gan is not None and cfg.loss.gan.weight > 0 else []
    d_cols = list(D_LOSSES) if gan is not None else []
    grad_d = ["grad_norm_d"] if gan is not None else []
    return ["lr_g", *g_cols, *d_cols, "grad_norm_g", *grad_d, "it_per_s", "skipped"]


# ---------------------------------------------------------------------------------------------- one iteration


def training_pairs(run: Run, generator: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """(LQ, GT, sharpened GT) for each micro-batch of the iteration, synthesised on the device."""
    micro = []
    for _ in range(run.cfg.optim.accum_steps):
        assert run.batches is not None, "open_run first"
        data = next(run.batches)
        gt = data["gt"].to(run.device, non_blocking=True) if "gt" in data else None
        params = {
            k: v.to(run.device, non_blocking=True) if torch.is_tensor(v) else v
            for k, v in data.get("params", {}).items()
        }
        paired = None
        if "paired_gt" in data:  # real pairs: the synthetic chain is off for them
            paired = (
                data["paired_lq"].to(run.device, non_blocking=True),
                data["paired_gt"].to(run.device, non_blocking=True),
            )
        lq, gt, gt_usm = run.state.synth(gt, params, generator, paired=paired)
        micro.append((lq.contiguous(memory_format=run.setup.memory_format), gt, gt_usm))
    return micro


def _add(sums: dict[str, torch.Tensor | float], name: str, value: torch.Tensor, accum: int) -> None:
    sums[name] = sums.get(name, 0.0) + value.detach().float() / accum


def generator_step(run: Run, micro: list, do_g: bool, sums: dict) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Backward of the generator losses over the micro-batches (gradients accumulated, not yet applied); returns the
    detached outputs (the discriminator's fakes) and the generator's gradient norm (before clipping)."""
    cfg, accum, gan = run.cfg, run.cfg.optim.accum_steps, run.gan
    outputs = []
    run.state.opt_g.zero_grad(set_to_none=True)
    for k, (lq, gt, gt_usm) in enumerate(micro):
        sync = k == accum - 1 or not run.dist.enabled  # DDP averages once, in the last backward
        with contextlib.ExitStack() as stack:
            if not sync:
                stack.enter_context(_no_sync(run.g_run))
            if gan is not None:
                stack.enter_context(discriminator_frozen(gan.net_d))
            if do_g:
                with run.autocast():
                    output = run.g_run(lq)
                    # The unwrapped discriminator (d_plain): under DDP, a forward of the DDP wrapper here would
                    # register a gradient reduction for D's (frozen) parameters and expect a backward that never
                    # comes, and would sync D's buffers (spectral-norm vectors) out of step with the D step.
                    d_plain, perceptual = (gan.d_plain, gan.perceptual) if gan is not None else (None, None)
                    losses = generator_losses(cfg, output, gt, gt_usm, d_plain, perceptual)
                run.state.scaler.scale(functools.reduce(operator.add, losses.values()) / accum).backward()
                for name, v in losses.items():
                    _add(sums, name, v, accum)
            else:
                with torch.no_grad(), run.autocast():
                    output = run.g_run(lq)
        outputs.append(output.detach())
    if not do_g:
        return outputs, torch.zeros((), device=run.device)
    run.state.scaler.unscale_(run.state.opt_g)
    return outputs, _grad_norm(list(run.state.net_g.parameters()), cfg.optim.grad_clip).to(run.device)


def discriminator_step(run: Run, gan: GanStage, micro: list, outputs: list[torch.Tensor], sums: dict) -> torch.Tensor:
    """Backward of the discriminator losses: the plain GT against the detached outputs; returns its gradient norm."""
    cfg, accum = run.cfg, run.cfg.optim.accum_steps
    gc = cfg.loss.gan
    d_run, scaler = gan.d_run, run.state.scaler
    gan.opt_d.zero_grad(set_to_none=True)
    for k, ((_lq, gt, gt_usm), output) in enumerate(zip(micro, outputs)):
        gan_gt = gt_usm if cfg.loss.gan_gt_usm else gt
        # DDP averages the gradients once, in the last backward of the iteration.
        last_sync = contextlib.nullcontext() if k == accum - 1 or not run.dist.enabled else _no_sync(d_run)
        if gc.type == "vanilla":  # the official order: real backward, then fake backward
            with _no_sync(d_run) if run.dist.enabled else contextlib.nullcontext():
                with run.autocast():
                    real_pred = d_run(gan_gt)
                l_real, _ = gan_loss_discriminator(real_pred, real_pred, "vanilla", gc.real_label, gc.fake_label)
                scaler.scale(l_real / accum).backward()
            with last_sync:
                with run.autocast():
                    fake_pred = d_run(output.clone())
                _, l_fake = gan_loss_discriminator(fake_pred, fake_pred, "vanilla", gc.real_label, gc.fake_label)
                scaler.scale(l_fake / accum).backward()
        else:
            with last_sync:
                with run.autocast():
                    real_pred = d_run(gan_gt)
                    fake_pred = d_run(output.clone())
                l_real, l_fake = gan_loss_discriminator(real_pred, fake_pred, "ragan", gc.real_label, gc.fake_label)
                scaler.scale((l_real + l_fake) / accum).backward()
        _add(sums, "l_d_real", l_real, accum)
        _add(sums, "l_d_fake", l_fake, accum)
        _add(sums, "out_d_real", real_pred.detach().float().mean(), accum)
        _add(sums, "out_d_fake", fake_pred.detach().float().mean(), accum)
    scaler.unscale_(gan.opt_d)
    return _grad_norm(list(gan.net_d.parameters()), cfg.optim.grad_clip).to(run.device)


def _no_sync(module: nn.Module) -> contextlib.AbstractContextManager:
    """DDP's no_sync of a wrapped module (compiled or not): gradients accumulate without a reduction."""
    return module.no_sync()  # type: ignore[operator]


@dataclass
class StepCheck:
    mean_losses: dict[str, float]  # averaged over the ranks
    bad: str  # "" when the step is good, else what was not finite
    stop: bool  # a stop was requested (on any rank)


def reduce_and_check(
    run: Run, sums: dict, do_g: bool, grad_norm_g: torch.Tensor, grad_norm_d: torch.Tensor, stop_requested: bool
) -> StepCheck:
    """One collective for the decisions and the logged values: losses, finiteness, stop request."""
    dist_info, world = run.dist, run.dist.world_size
    names = [n for n in G_LOSSES if n in sums] + (list(D_LOSSES) if run.gan is not None else [])
    local = (
        torch.stack([torch.as_tensor(sums[n], dtype=torch.float32, device=run.device).reshape(()) for n in names])
        if names
        else torch.zeros(0, device=run.device)
    )
    bad_local = [n for n, v in zip(names, local.tolist()) if not math.isfinite(v)]
    flags = torch.tensor([float(bool(bad_local)), float(stop_requested)], device=run.device)
    packed = all_reduce_sum(
        torch.cat([torch.nan_to_num(local, nan=0.0, posinf=0.0, neginf=0.0), flags]), dist_info
    ).tolist()
    mean_losses = {n: float(packed[i]) / world for i, n in enumerate(names)}
    any_bad = packed[len(names)] > 0
    stop = packed[len(names) + 1] > 0 or (stop_requested and not dist_info.enabled)
    bad_grads = []
    if run.cfg.runtime.precision != "fp16":  # there the scaler skips steps with inf/NaN gradients by design
        if do_g and not math.isfinite(float(grad_norm_g)):
            bad_grads.append("grad_norm_g")
        if run.gan is not None and not math.isfinite(float(grad_norm_d)):
            bad_grads.append("grad_norm_d")
    bad = ", ".join(bad_local + bad_grads) or ("a loss on another rank" if any_bad else "")
    return StepCheck(mean_losses, bad, stop)


def apply_step(run: Run, do_g: bool) -> None:
    """The optimisers step (through the scaler), then the EMA follows the generator."""
    run.nonfinite_in_a_row = 0
    if do_g:
        run.state.scaler.step(run.state.opt_g)
    if run.gan is not None:
        run.state.scaler.step(run.gan.opt_d)
    run.state.scaler.update()
    if run.state.net_g_ema is not None:
        ema_update(run.state.net_g_ema, run.state.net_g, run.cfg.optim.ema_decay)


def skip_step(run: Run, what: str) -> None:
    """Drop the gradients of a non-finite step; too many in a row abort with the last good state saved."""
    run.nonfinite_in_a_row += 1
    run.state.skipped_total += 1
    log.warning(
        "iteration %d: non-finite %s; step skipped (%d in a row)", run.state.iteration, what, run.nonfinite_in_a_row
    )
    run.state.opt_g.zero_grad(set_to_none=True)
    if run.gan is not None:
        run.gan.opt_d.zero_grad(set_to_none=True)
    run.state.scaler.update()  # clears the unscale_ records (and lowers the fp16 scale)
    if run.nonfinite_in_a_row >= run.cfg.runtime.max_nonfinite:
        # The weights are those of the last good step: nothing of the skipped iterations was applied.
        folder = save(run, f"iter_{run.state.iteration:08d}")
        raise NonFiniteLossError(
            f"{run.nonfinite_in_a_row} non-finite steps in a row (last: {what}) at iteration {run.state.iteration}; "
            f"the last good state is saved in {folder or run.ckpt_root}; lower the learning rate, use fp32 "
            f"or bf16, or check the data"
        )


# --------------------------------------------------------------------------------------------- records, saving


def training_state(run: Run) -> dict:
    """Everything but the weights that an exact resume needs; gathered from every rank."""
    per_rank = {"rng": ckpt.capture_rng_states(), "synth": run.state.synth.state_dict()}
    gathered: list[Any] = [per_rank]
    if run.dist.enabled:
        gathered = [None] * run.dist.world_size
        torch.distributed.all_gather_object(gathered, per_rank)
    cfg = run.cfg
    state = {
        "iteration": run.state.iteration,
        "world_size": run.dist.world_size,
        "best_value": run.state.best_value,
        "best_iteration": run.state.best_iteration,
        "skipped_total": run.state.skipped_total,
        "opt_g": run.state.opt_g.state_dict(),
        "scaler": run.state.scaler.state_dict(),
        "rng": [g["rng"] for g in gathered],
        "synth": [g["synth"] for g in gathered],
        "config": config_to_dict(cfg),
        "data": {
            "samples_consumed": run.state.iteration * cfg.optim.accum_steps * run.setup.global_batch,
            "samples_per_epoch": run.setup.per_epoch,
        },
    }
    if run.gan is not None:
        state["opt_d"] = run.gan.opt_d.state_dict()
    return state


def save(run: Run, folder_name: str) -> Path | None:
    """Collective: every rank must call it (the state gathers from all); rank 0 writes."""
    state = training_state(run)
    if not run.is_main:
        return None
    weights = {"net_g": run.state.net_g.state_dict()}
    if run.state.net_g_ema is not None:
        weights["net_g_ema"] = run.state.net_g_ema.state_dict()
    if run.gan is not None:
        weights["net_d"] = run.gan.net_d.state_dict()
    folder = ckpt.save_checkpoint(run.ckpt_root / folder_name, weights, state)
    _write_model(
        run.state.model,
        run.run_dir / "model.safetensors",
        run.cfg,
        run.state.iteration,
    )
    if folder_name.startswith("iter_"):
        ckpt.prune_checkpoints(run.ckpt_root, run.cfg.keep_last)
    log.info("checkpoint saved: %s", folder)
    write_status(run, "running")
    return folder


def write_status(run: Run, state: str) -> None:
    """``<run>/status.json``: what `realesr runs` shows (rank 0; state running, finished, interrupted or failed)."""
    if not run.is_main or run.log is None:  # before open_run nothing is written into the run folder
        return
    best = None
    if math.isfinite(run.state.best_value):
        best = {"metric": best_metric(run), "value": run.state.best_value, "iteration": run.state.best_iteration}
    status = {
        "state": state,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "name": run.cfg.name,
        "stage": run.cfg.stage,
        "iteration": run.state.iteration,
        "total_iters": run.cfg.total_iters,
        "best": best,
        "last_validation": {"iteration": run.last_validation_iteration, "metrics": run.last_validation},
        "updated": time.time(),
    }
    with contextlib.suppress(OSError):  # a status that cannot be written must not stop a training
        atomic_write_text(run.run_dir / "status.json", json.dumps(status, indent=1))


def has_validation(cfg: TrainConfig) -> bool:
    return bool(cfg.val.folder or cfg.val.sets)


def best_metric(run: Run) -> str:
    """SET/METRIC that marks checkpoints/best: val.best, else :func:`realesr.train.config.default_best`."""
    return run.cfg.val.best or default_best(run.cfg)


def lower_is_better(metric: str) -> bool:
    return metric.rpartition("/")[2] == "niqe"


def run_validation(run: Run) -> dict:
    """Validate the EMA generator (rank 0), redraw the plots; the best ``best_metric`` saves ``checkpoints/best``."""
    results = _validate(run, run.log) if run.log is not None and run.log.val_set else {}
    chosen = best_metric(run)
    name, _, metric = chosen.rpartition("/")
    key_metric = results.get(name, {}).get(metric)
    state = run.state
    better = (
        key_metric is not None
        and math.isfinite(key_metric)
        and (
            not math.isfinite(state.best_value)
            or (key_metric < state.best_value if lower_is_better(chosen) else key_metric > state.best_value)
        )
    )
    is_best = torch.tensor([1.0 if better else 0.0], device=run.device)
    all_reduce_sum(is_best, run.dist)  # rank 0 decides; the others must join the collective save
    if is_best.item() > 0:
        if key_metric is not None:
            state.best_value, state.best_iteration = key_metric, state.iteration
        save(run, "best")
    return results


def _validate(run: Run, records: RunLog) -> dict:
    """The validation sets' metrics (logged, samples written) at this iteration; rank 0."""
    it, tb = run.state.iteration, records.tb

    def on_sample(tag: str, strip) -> None:
        if tb is not None:
            tb.add_image(f"samples/{tag}", strip, it, dataformats="HWC")

    results = validate_sets(
        run.state.model,
        records.val_set,
        run.device,
        run.cfg.val.crop_border,
        run.run_dir / "samples" / f"iter_{it:08d}",
        run.cfg.val.num_samples,
        run.setup.autocast_dtype,
        on_sample=on_sample,
    )
    run.last_validation_iteration = it
    for name, m in results.items():
        for metric, value in m.items():
            records.val_log.write(it, {"set": name, "metric": metric, "value": value})
            if tb is not None:
                tb.add_scalar(f"val/{name}/{metric}", value, it)
        words = {"psnr": "PSNR %.3f dB", "ssim": "SSIM %.4f", "niqe": "NIQE %.4f"}
        log.info("validation @%d (%s): %s", it, name, ", ".join(words[k] % v for k, v in m.items()))
    plot_curves_safe(run.run_dir)  # every validation: an interrupted run has its plots too
    return results


def log_and_validate(
    run: Run, check: StepCheck, lr: float, grad_norm_g: torch.Tensor, grad_norm_d: torch.Tensor
) -> None:
    """Progress bar, the CSV/TensorBoard row (``lr``: the one used in this iteration), validation on its interval."""
    cfg, it, records = run.cfg, run.state.iteration, run.log
    if records is not None and records.bar is not None:
        postfix = {k.replace("l_", ""): f"{v:.4g}" for k, v in check.mean_losses.items() if k.startswith("l_")}
        postfix["lr"] = f"{lr:.2e}"
        if run.device.type == "cuda":
            postfix["mem"] = f"{torch.cuda.max_memory_allocated(run.device) / 2**30:.1f}G"
        records.bar.set_postfix(postfix, refresh=False)
        records.bar.update(1)
    if records is not None and (it % cfg.log_every == 0 or it == cfg.total_iters):
        now = time.perf_counter()
        speed = (it - records.it_last) / max(now - records.t_last, 1e-9)
        records.t_last, records.it_last = now, it
        row = {
            "lr_g": lr,
            **check.mean_losses,
            "grad_norm_g": float(grad_norm_g),
            "it_per_s": speed,
            "skipped": run.state.skipped_total,
        }
        if run.gan is not None:
            row["grad_norm_d"] = float(grad_norm_d)
        records.train_log.write(it, row)
    if cfg.val_every and it % cfg.val_every == 0:
        run.last_validation = run_validation(run) or run.last_validation
        write_status(run, "running")


# ------------------------------------------------------------------------------------------------------- train


def train(
    cfg: TrainConfig,
    resume: str | None = None,
    on_iteration: Callable[[int, dict], None] | None = None,
    allow_download: bool = True,
    show_progress: bool = True,
    overwrite: bool = False,
) -> TrainResult:
    """Train one stage as ``cfg`` says; ``resume`` is None, ``"auto"`` (newest checkpoint of the run, if any) or a
    checkpoint folder; ``overwrite`` moves a run already in the run folder aside (``NAME.old-TIMESTAMP``).
    ``on_iteration(iteration, losses)`` is called after every iteration (rank 0 too)."""
    # torchrun's LOCAL_RANK picks this process's GPU before the process group is joined (NCCL needs it set)
    device = pick_device(cfg.runtime.device, env_int("LOCAL_RANK", 0))
    dist_info = init_distributed(cfg.runtime.dist_backend, device)
    setup_logging(dist_info.is_main)  # train.log is opened once the run folder is really used (open_run)
    run = None
    opened = False
    try:
        resume_from = _resume_checked(cfg, resume, overwrite)
        run = build(cfg, device, dist_info, resume_from is not None, allow_download)
        if resume_from is not None:
            restore(run, resume_from)
        elif resume == "auto" and dist_info.is_main:
            log.info("--resume auto: no checkpoint in %s, starting from scratch", run.ckpt_root)
        open_run(run, overwrite=overwrite, show_progress=show_progress and dist_info.is_main)
        opened = True
        if has_validation(cfg) and dist_info.is_main:
            _log_best_rule(run)
        if run.state.iteration == 0 and has_validation(cfg) and cfg.val.at_start:
            run.last_validation = run_validation(run)  # the baseline (of a fine-tune: its starting model)
        status, stopped_by = _loop(run, on_iteration)
        if status == "completed":
            _finish(run)
        write_status(run, "finished" if status == "completed" else "interrupted")
        barrier(dist_info)
        return TrainResult(
            cfg.run_dir,
            run.state.iteration,
            status,
            run.last_validation,
            model=run.state.model,
            stopped_by=stopped_by,
        )
    except BaseException:
        if opened and run is not None:
            write_status(run, "failed")
        raise
    finally:
        if run is not None:
            run.close()
        close_logging()


def _resume_checked(cfg: TrainConfig, resume: str | None, overwrite: bool) -> Path | None:
    """The checkpoint to resume from (None: a fresh start), after checking every file the resume reads back or
    appends to, or that a fresh start would not overwrite a run unasked; before anything is written."""
    resume_from = _resume_folder(cfg, resume)
    if resume_from is not None:
        check_run_files(cfg.run_dir)
    if resume_from is None and not overwrite and _holds_a_run(cfg.run_dir) and resume != "auto":
        raise RunFolderError(
            f"run folder {cfg.run_dir} already holds a run; continue it with --resume auto, give this run "
            f"another name (--set name=NEW), or pass --overwrite to move the old run aside",
            key="name",
        )
    return resume_from


def _log_best_rule(run: Run) -> None:
    chosen = best_metric(run)
    log.info(
        "checkpoints/best: the %s %s%s",
        "lowest" if lower_is_better(chosen) else "highest",
        chosen,
        "" if run.cfg.val.best else " (val.best empty: the default for this stage)",
    )


def _resume_folder(cfg: TrainConfig, resume: str | None) -> Path | None:
    if resume == "auto":
        return ckpt.latest_checkpoint(cfg.run_dir / "checkpoints")
    if resume:
        folder = Path(resume)
        if not (folder / "state.pt").is_file():
            raise ckpt.CheckpointError(f"--resume {resume}: not a checkpoint folder (no state.pt)")
        return folder
    return None


def _loop(run: Run, on_iteration: Callable[[int, dict], None] | None) -> tuple[str, str]:
    """The iterations; returns "completed" or "interrupted"."""
    cfg, rank = run.cfg, run.dist.rank
    run.state.net_g.train()
    if run.gan is not None:
        run.gan.net_d.train()
    iter_gen = torch.Generator(device=run.device)
    with _StopFlag() as stop:
        while run.state.iteration < resolved(cfg.total_iters, "total_iters"):
            run.state.iteration += 1
            it = run.state.iteration
            lr = set_learning_rates(run, it)  # a function of the iteration, also when a step is skipped
            iter_gen.manual_seed(_iteration_seed(cfg.seed, rank, it))

            # 1. training pairs: (LQ, GT, sharpened GT) per micro-batch
            micro = training_pairs(run, iter_gen)

            # 2. generator step (the discriminator frozen), 3. discriminator step on the detached outputs
            sums: dict = {}
            do_g = run.gan is None or (it % cfg.loss.net_d_iters == 0 and it > cfg.loss.net_d_init_iters)
            outputs, grad_norm_g = generator_step(run, micro, do_g, sums)
            grad_norm_d = torch.zeros((), device=run.device)
            if run.gan is not None:
                grad_norm_d = discriminator_step(run, run.gan, micro, outputs, sums)

            # 4. apply the step unless something was not finite
            check = reduce_and_check(run, sums, do_g, grad_norm_g, grad_norm_d, stop.requested)
            if check.bad:
                skip_step(run, check.bad)
            else:
                apply_step(run, do_g)

            # 5. seeing it
            log_and_validate(run, check, lr, grad_norm_g, grad_norm_d)
            stop_now = check.stop
            if on_iteration is not None:
                on_iteration(it, check.mean_losses)
                # a signal raised during the callback still stops this iteration (one process: no vote needed)
                stop_now = stop_now or (stop.requested and not run.dist.enabled)
            if stop_now:
                save(run, f"iter_{it:08d}")
                if run.is_main:
                    by = stop.signal_name or "a signal on another rank"
                    log.warning("stopped by %s at iteration %d; resume with --resume auto", by, it)
                return "interrupted", stop.signal_name
            if it % cfg.save_every == 0 or it == cfg.total_iters:
                save(run, f"iter_{it:08d}")
    return "completed", ""


def _finish(run: Run) -> None:
    cfg = run.cfg
    if run.log is not None and run.log.bar is not None:
        run.log.bar.close()
        run.log.bar = None
    if has_validation(cfg) and (not cfg.val_every or run.state.iteration % cfg.val_every != 0):
        run.last_validation = run_validation(run) or run.last_validation
    if run.is_main:
        for path in plot_curves_safe(run.run_dir):
            log.info("plot written: %s", path)
        log.info("done: %d iterations; EMA generator in %s", run.state.iteration, run.run_dir / "model.safetensors")


_plot_warned = False


def plot_curves_safe(run_dir: Path) -> list[Path]:
    global _plot_warned
    try:
        return plot_curves(run_dir)
    except ImportError:
        if not _plot_warned:
            log.warning("plots are off: matplotlib is not installed (pip install 'realesr[train]')")
            _plot_warned = True
        return []
    except Exception as err:  # noqa: BLE001 - a plotting failure must not fail a training
        log.warning("plots not written: %s", err)
        return []


def _write_model(net: nn.Module, path: Path, cfg: TrainConfig, iteration: int) -> None:
    """The EMA generator as ``model.safetensors`` (realesr.weights.save_model writes atomically)."""
    save_model(
        net,
        path,
        {"realesr_train_name": cfg.name, "realesr_train_stage": cfg.stage, "realesr_train_iteration": str(iteration)},
    )
