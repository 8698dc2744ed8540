"""The training loop of both stages, readable top to bottom: :func:`train`.

One iteration = ``accum_steps`` micro-batches of ``batch_size`` patches per rank:

1. synthesise (LQ, GT, sharpened GT) on the device for each micro-batch (degradations + pair pool);
2. generator step: the discriminator frozen; L1 (+ perceptual + GAN for esrgan); accumulated gradients;
   a non-finite loss or gradient norm skips the step;
3. discriminator step (esrgan): BCE on the plain GT versus the detached output;
4. EMA of the generator; learning-rate schedule; logging, validation and checkpoints on their intervals.

Exact resume: every random draw is a function of the seed, the rank and the iteration (data: of the sample's
(epoch, position); device-side degradations: of a generator re-seeded each iteration), and the rest (pair pool,
optimisers, schedulers, scaler, global RNG states) is in the checkpoint.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import random
import signal
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader

from realesr.archs import UNetDiscriminatorSN, arch_named
from realesr.data import ResumableSampler, TrainPatchDataset, list_images, samples_per_epoch, scan_images
from realesr.errors import RealesrError
from realesr.train import checkpoint as ckpt
from realesr.train.config import TrainConfig, save_config
from realesr.train.distributed import DistInfo, all_reduce_sum, barrier, init_distributed, pick_device
from realesr.train.ema import ema_update
from realesr.train.logs import MetricsLog, close_logging, plot_curves, setup_logging
from realesr.train.losses import build_perceptual_loss, gan_loss_discriminator, gan_loss_generator
from realesr.train.synth import PairSynthesizer, degradation_config, params_sampler
from realesr.train.validate import build_validation_set, validate
from realesr.weights import load_model, load_state_dict, load_strict, save_model

__all__ = ["train", "TrainResult", "NonFiniteLossError", "build_generator", "generator_losses",
           "discriminator_frozen", "init_generator_from"]

log = logging.getLogger("realesr.train")

G_LOSSES = ("l_g_pix", "l_g_percep", "l_g_gan")
D_LOSSES = ("l_d_real", "l_d_fake", "out_d_real", "out_d_fake")


class NonFiniteLossError(RealesrError):
    """Training stopped after too many non-finite losses in a row (a checkpoint of the last good state is saved)."""


@dataclass
class TrainResult:
    run_dir: Path
    iteration: int
    status: str  # "completed" | "interrupted"
    last_validation: dict = field(default_factory=dict)
    model: nn.Module | None = None  # the EMA generator (the generator itself when ema_decay is 0)


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
        missing = [k for k in own if k not in source_sd]
        unexpected = [k for k in source_sd if k not in own]
        mismatched = [f"{k} {tuple(source_sd[k].shape)} vs {tuple(own[k].shape)}" for k in own
                      if k in source_sd and source_sd[k].shape != own[k].shape]
        if missing or unexpected or mismatched:
            details = "; ".join(
                part for part in (
                    f"missing {missing[:4]}" if missing else "",
                    f"unexpected {unexpected[:4]}" if unexpected else "",
                    f"shape differs {mismatched[:4]}" if mismatched else "",
                ) if part)
            raise RealesrError(f"{what} does not match the network strictly ({details}); "
                               f"set init_strict: false to re-initialise the layers that differ")
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


def generator_losses(cfg: TrainConfig, output: torch.Tensor, gt: torch.Tensor, gt_usm: torch.Tensor,
                     net_d: nn.Module | None, perceptual: nn.Module | None) -> dict[str, torch.Tensor]:
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
                fake_pred, real_pred, lc.gan.type, lc.gan.real_label, lc.gan.fake_label)
    return losses


class LRSchedule:
    """Linear warm-up, then MultiStepLR: factor = min(1, (step + 1) / warmup) * gamma ** (milestones passed)."""

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
        self._previous: dict[int, object] = {}

    def _handler(self, signum, frame) -> None:
        self.requested = True
        self.signal_name = signal.Signals(signum).name
        for sig, prev in self._previous.items():
            signal.signal(sig, prev)

    def __enter__(self) -> "_StopFlag":
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


# ------------------------------------------------------------------------------------------------------- train


def train(cfg: TrainConfig, resume: str | None = None, on_iteration: Callable[[int, dict], None] | None = None,
          allow_download: bool = True, show_progress: bool = True) -> TrainResult:
    """Train one stage as ``cfg`` says; ``resume`` is None, ``"auto"`` (newest checkpoint of the run, if any) or a
    checkpoint folder. ``on_iteration(iteration, losses)`` is called after every iteration (rank 0 too)."""
    # torchrun's LOCAL_RANK picks this process's GPU before the process group is joined (NCCL needs it set)
    device = pick_device(cfg.runtime.device, int(os.environ.get("LOCAL_RANK", "0")))
    dist_info = init_distributed(cfg.runtime.dist_backend, device)
    is_main = dist_info.is_main
    run_dir = cfg.run_dir
    ckpt_root = run_dir / "checkpoints"
    setup_logging(run_dir if is_main else None, is_main)
    try:
        return _train(cfg, resume, on_iteration, allow_download, show_progress, device, dist_info, run_dir,
                      ckpt_root)
    finally:
        close_logging()


def _train(cfg, resume, on_iteration, allow_download, show_progress, device, dist_info: DistInfo, run_dir: Path,
           ckpt_root: Path) -> TrainResult:
    is_main, rank, world = dist_info.is_main, dist_info.rank, dist_info.world_size
    batch, accum = cfg.batch_size, cfg.optim.accum_steps
    if cfg.runtime.num_threads:
        torch.set_num_threads(cfg.runtime.num_threads)
    if cfg.runtime.deterministic and device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    elif device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True

    # checked before anything is written
    deg_cfg = degradation_config(cfg.scale, cfg.data.degradation)
    records, notes = scan_images(list_images(cfg.data.train), cfg.data.load_size, cfg.data.small_images)

    # ---- where to start
    resume_from: Path | None = None
    if resume == "auto":
        resume_from = ckpt.latest_checkpoint(ckpt_root)
    elif resume:
        resume_from = Path(resume)
        if not (resume_from / "state.pt").is_file():
            raise ckpt.CheckpointError(f"--resume {resume}: not a checkpoint folder (no state.pt)")
    if is_main:
        save_config(cfg, run_dir / "config.yaml")
        log.info("run folder %s; device %s; %d process(es); effective batch %d = %d per micro-batch x %d "
                 "accumulation x %d process(es)", run_dir, device, world, batch * accum * world, batch, accum, world)
    _seed_everything(cfg.seed)  # the same initial networks on every rank (and EMA copies made before DDP's broadcast)

    # ---- data: workers cut patches and draw degradation parameters; the device applies the chain
    if is_main:
        for note in notes:
            log.warning("training data: %s", note)
        log.info("training data: %d usable image(s) from %s", len(records), cfg.data.train)
    dataset = TrainPatchDataset(records, cfg.data.load_size, cfg.seed, cfg.data.use_hflip, cfg.data.use_rot,
                                params_fn=params_sampler(deg_cfg))
    global_batch = batch * world
    per_epoch = samples_per_epoch(len(records), global_batch)
    synth = PairSynthesizer(deg_cfg, cfg.scale, cfg.data.gt_size, cfg.data.pool_size, batch,
                            seed=_iteration_seed(cfg.seed, rank, 0))

    # ---- networks
    net_g = build_generator(cfg)
    if cfg.init_from and resume_from is None:
        source_sd = _load_source_state_dict(cfg.init_from, allow_download)
        fresh = init_generator_from(net_g, source_sd, cfg.init_strict, cfg.init_from)
        if is_main:
            log.info("generator initialised from %s%s", cfg.init_from, " (strict)" if cfg.init_strict else "")
            for name in fresh:
                log.warning("generator layer re-initialised (not in %s with this shape): %s", cfg.init_from, name)
    net_g.to(device)
    net_g_ema = copy.deepcopy(net_g).requires_grad_(False).eval() if cfg.optim.ema_decay > 0 else None
    net_d = perceptual = None
    if cfg.stage == "esrgan":
        net_d = UNetDiscriminatorSN(3, cfg.discriminator.num_feat, cfg.discriminator.skip_connection)
        if cfg.init_d_from and resume_from is None:
            source_sd = _load_source_state_dict(cfg.init_d_from, allow_download)
            fresh = init_generator_from(net_d, source_sd, cfg.init_strict, cfg.init_d_from)
            if is_main:
                log.info("discriminator initialised from %s", cfg.init_d_from)
                for name in fresh:
                    log.warning("discriminator layer re-initialised: %s", name)
        net_d.to(device)
        pc = cfg.loss.perceptual
        if pc.weight > 0:
            perceptual = build_perceptual_loss(pc.layer_weights, pc.weight, pc.weights, pc.use_input_norm,
                                               pc.criterion, allow_download=allow_download).to(device)
    _seed_everything(cfg.seed + rank)  # from here on, a stream per rank
    memory_format = torch.channels_last if cfg.runtime.channels_last else torch.contiguous_format
    for net in (net_g, net_g_ema, net_d, perceptual):
        if net is not None:
            net.to(memory_format=memory_format)

    # ---- optimisers, schedules, scaler
    oc = cfg.optim
    schedule = LRSchedule(oc.milestones, oc.gamma, oc.warmup_iters)
    fused = device.type == "cuda"  # one kernel per step for all tensors (works with the fp16 grad scaler too)
    opt_g = torch.optim.Adam(net_g.parameters(), lr=oc.lr_g, betas=tuple(oc.betas), weight_decay=oc.weight_decay,
                             fused=fused)
    sched_g = torch.optim.lr_scheduler.LambdaLR(opt_g, schedule)
    opt_d = sched_d = None
    if net_d is not None:
        opt_d = torch.optim.Adam(net_d.parameters(), lr=oc.lr_d, betas=tuple(oc.betas), weight_decay=oc.weight_decay,
                                 fused=fused)
        sched_d = torch.optim.lr_scheduler.LambdaLR(opt_d, schedule)
    precision = cfg.runtime.precision
    autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    # ---- resume
    iteration, best_psnr, skipped_total = 0, -math.inf, 0
    if resume_from is not None:
        weights, state = ckpt.load_checkpoint(resume_from)
        load_strict(net_g, weights["net_g"], f"checkpoint {resume_from}")
        if net_g_ema is not None:
            net_g_ema.load_state_dict(weights.get("net_g_ema", weights["net_g"]))
        if net_d is not None:
            if "net_d" not in weights:
                raise ckpt.CheckpointError(f"{resume_from} has no discriminator (an esrnet checkpoint?); "
                                           "start the esrgan stage with init_from instead of --resume")
            net_d.load_state_dict(weights["net_d"])
            opt_d.load_state_dict(state["opt_d"])
            sched_d.load_state_dict(state["sched_d"])
        opt_g.load_state_dict(state["opt_g"])
        sched_g.load_state_dict(state["sched_g"])
        # The learning rates and schedule follow the config, even one changed for the resumed run.
        for sched, lr in ((sched_g, oc.lr_g), (sched_d, oc.lr_d)):
            if sched is not None:
                sched.lr_lambdas = [schedule]
                sched.base_lrs = [lr]
                for group in sched.optimizer.param_groups:
                    group["lr"] = lr * schedule(sched.last_epoch)
        scaler.load_state_dict(state["scaler"])
        synth.load_state_dict(state["synth"][rank] if rank < len(state["synth"]) else {}, device=device)
        iteration = int(state["iteration"])
        best_psnr = float(state.get("best_psnr", -math.inf))
        skipped_total = int(state.get("skipped_total", 0))
        rng_states = state["rng"]
        ckpt.restore_rng_states(rng_states[rank] if rank < len(rng_states) else rng_states[0])
        if int(state.get("world_size", 1)) != world and is_main:
            log.warning("resuming with %d process(es) from a run with %d: the data order differs from an "
                        "uninterrupted run", world, state.get("world_size"))
        if is_main:
            log.info("resumed from %s at iteration %d", resume_from, iteration)
    elif resume == "auto" and is_main:
        log.info("--resume auto: no checkpoint in %s, starting from scratch", ckpt_root)

    # ---- data loader, positioned after the samples already consumed
    consumed = iteration * accum * global_batch
    sampler = ResumableSampler(len(records), global_batch, cfg.seed, rank, world,
                               start_epoch=consumed // per_epoch, start_position=consumed % per_epoch)
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=cfg.data.num_workers,
                        pin_memory=device.type == "cuda", worker_init_fn=_worker_init if cfg.data.num_workers else None,
                        prefetch_factor=4 if cfg.data.num_workers else None,
                        # its own generator: creating the iterator must not consume the global RNG (exact resume)
                        generator=torch.Generator().manual_seed(cfg.seed + rank))
    batches = iter(loader)

    # ---- what runs the forward passes: DDP and/or compiled wrappers around the same parameters
    g_run = DDP(net_g, device_ids=[device.index] if device.type == "cuda" else None) if dist_info.enabled else net_g
    d_run = d_plain = net_d
    if net_d is not None and dist_info.enabled:
        d_run = DDP(net_d, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.runtime.compile:
        g_run = torch.compile(g_run)
        if net_d is not None:
            d_plain = torch.compile(net_d)
            d_run = torch.compile(d_run) if dist_info.enabled else d_plain

    # ---- validation inputs, records
    val_set = []
    if is_main and cfg.val.folder:
        size_multiple = getattr(net_g, "size_multiple", 1)
        val_set = build_validation_set(cfg.val.folder, cfg.scale, size_multiple, cfg.val.max_images,
                                       cfg.val.max_size, cfg.val.seed, cfg.val.degraded, cfg.val.bicubic, deg_cfg)
        log.info("validation: %d image(s) from %s", len(val_set), cfg.val.folder)
    tb = train_log = val_log = None
    if is_main:
        from torch.utils.tensorboard import SummaryWriter

        tb = SummaryWriter(str(run_dir / "tb"), purge_step=iteration + 1 if iteration else None)
        g_cols = ["l_g_pix"] if cfg.loss.pixel_weight > 0 else []
        g_cols += ["l_g_percep"] if perceptual is not None else []
        g_cols += ["l_g_gan"] if net_d is not None and cfg.loss.gan.weight > 0 else []
        d_cols = list(D_LOSSES) if net_d is not None else []
        columns = ["lr_g", *g_cols, *d_cols, "grad_norm_g", *(["grad_norm_d"] if net_d is not None else []),
                   "it_per_s", "skipped"]
        train_log = MetricsLog(run_dir / "train_log.csv", columns, iteration, tb, "train/")
        val_log = MetricsLog(run_dir / "val_log.csv", ["kind", "psnr", "ssim"], iteration, None)

    def training_state() -> dict:
        """Everything but the weights that an exact resume needs; gathered from every rank."""
        per_rank = {"rng": ckpt.capture_rng_states(), "synth": synth.state_dict()}
        gathered = [per_rank]
        if dist_info.enabled:
            gathered = [None] * world
            torch.distributed.all_gather_object(gathered, per_rank)
        state = {"iteration": iteration, "world_size": world, "best_psnr": best_psnr,
                 "skipped_total": skipped_total, "opt_g": opt_g.state_dict(), "sched_g": sched_g.state_dict(),
                 "scaler": scaler.state_dict(), "rng": [g["rng"] for g in gathered],
                 "synth": [g["synth"] for g in gathered],
                 "data": {"samples_consumed": iteration * accum * global_batch, "samples_per_epoch": per_epoch}}
        if opt_d is not None:
            state["opt_d"] = opt_d.state_dict()
            state["sched_d"] = sched_d.state_dict()
        return state

    def save(folder_name: str) -> Path | None:
        """Collective: every rank must call it (the state gathers from all); rank 0 writes."""
        state = training_state()
        if not is_main:
            return None
        weights = {"net_g": net_g.state_dict()}
        if net_g_ema is not None:
            weights["net_g_ema"] = net_g_ema.state_dict()
        if net_d is not None:
            weights["net_d"] = net_d.state_dict()
        folder = ckpt.save_checkpoint(ckpt_root / folder_name, weights, state)
        _write_model(net_g_ema if net_g_ema is not None else net_g, run_dir / "model.safetensors", cfg, iteration)
        if folder_name.startswith("iter_"):
            ckpt.prune_checkpoints(ckpt_root, cfg.keep_last)
        log.info("checkpoint saved: %s", folder)
        return folder

    def run_validation() -> dict:
        nonlocal best_psnr
        results = {}
        if is_main and val_set:
            net = net_g_ema if net_g_ema is not None else net_g
            results = validate(net, val_set, device, cfg.val.crop_border,
                               run_dir / "samples" / f"iter_{iteration:08d}", cfg.val.num_samples, autocast_dtype)
            for kind, m in results.items():
                val_log.write(iteration, {"kind": kind, "psnr": m["psnr"], "ssim": m["ssim"]})
                tb.add_scalar(f"val/{kind}/psnr", m["psnr"], iteration)
                tb.add_scalar(f"val/{kind}/ssim", m["ssim"], iteration)
                log.info("validation @%d (%s LR): PSNR %.3f dB, SSIM %.4f", iteration, kind, m["psnr"], m["ssim"])
        key_metric = next(iter(results.values()))["psnr"] if results else None
        is_best = torch.tensor([1.0 if key_metric is not None and key_metric > best_psnr else 0.0], device=device)
        all_reduce_sum(is_best, dist_info)  # rank 0 decides; the others must join the collective save
        if is_best.item() > 0:
            if key_metric is not None:
                best_psnr = key_metric
            save("best")
        return results

    # ---- the loop
    net_g.train()
    if net_d is not None:
        net_d.train()
    g_params = list(net_g.parameters())
    d_params = list(net_d.parameters()) if net_d is not None else []
    iter_gen = torch.Generator(device=device)
    nonfinite_in_a_row = 0
    last_validation: dict = {}
    status = "completed"
    bar = None
    if is_main and show_progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.total_iters, initial=iteration, desc=cfg.name, unit="it", dynamic_ncols=True)
    t_last, it_last = time.perf_counter(), iteration

    def autocast():
        return torch.autocast(device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None)

    with _StopFlag() as stop:
        while iteration < cfg.total_iters:
            iteration += 1
            iter_gen.manual_seed(_iteration_seed(cfg.seed, rank, iteration))

            # 1. training pairs for each micro-batch
            micro = []
            for _ in range(accum):
                data = next(batches)
                gt = data["gt"].to(device, non_blocking=True)
                params = {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                          for k, v in data.get("params", {}).items()}
                lq, gt, gt_usm = synth(gt, params, iter_gen)
                micro.append((lq.contiguous(memory_format=memory_format), gt, gt_usm))

            # 2. generator step (the discriminator frozen)
            loss_sums = dict.fromkeys(G_LOSSES + D_LOSSES, 0.0)
            g_losses_present: set[str] = set()
            do_g = net_d is None or (iteration % cfg.loss.net_d_iters == 0
                                     and iteration > cfg.loss.net_d_init_iters)
            outputs = []
            opt_g.zero_grad(set_to_none=True)
            for k, (lq, gt, gt_usm) in enumerate(micro):
                sync = k == accum - 1 or not dist_info.enabled
                with contextlib.ExitStack() as stack:
                    if not sync:
                        stack.enter_context(g_run.no_sync())
                    if net_d is not None:
                        stack.enter_context(discriminator_frozen(net_d))
                    if do_g:
                        with autocast():
                            output = g_run(lq)
                            losses = generator_losses(cfg, output, gt, gt_usm, d_plain, perceptual)
                        total = sum(losses.values())
                        scaler.scale(total / accum).backward()
                        for name, v in losses.items():
                            loss_sums[name] = loss_sums[name] + v.detach().float() / accum
                            g_losses_present.add(name)
                    else:
                        with torch.no_grad(), autocast():
                            output = g_run(lq)
                outputs.append(output.detach())
            grad_norm_g = torch.zeros((), device=device)
            if do_g:
                scaler.unscale_(opt_g)
                grad_norm_g = _grad_norm(g_params, oc.grad_clip).to(device)

            # 3. discriminator step: the plain GT against the detached output
            grad_norm_d = torch.zeros((), device=device)
            if net_d is not None:
                opt_d.zero_grad(set_to_none=True)
                gc = cfg.loss.gan
                for k, ((lq, gt, gt_usm), output) in enumerate(zip(micro, outputs)):
                    gan_gt = gt_usm if cfg.loss.gan_gt_usm else gt
                    # DDP averages the gradients once, in the last backward of the iteration.
                    last_sync = contextlib.nullcontext() if k == accum - 1 or not dist_info.enabled \
                        else d_run.no_sync()
                    if gc.type == "vanilla":  # the official order: real backward, then fake backward
                        with d_run.no_sync() if dist_info.enabled else contextlib.nullcontext():
                            with autocast():
                                real_pred = d_run(gan_gt)
                            l_real, _ = gan_loss_discriminator(real_pred, real_pred, "vanilla",
                                                               gc.real_label, gc.fake_label)
                            scaler.scale(l_real / accum).backward()
                        with last_sync:
                            with autocast():
                                fake_pred = d_run(output.clone())
                            _, l_fake = gan_loss_discriminator(fake_pred, fake_pred, "vanilla",
                                                               gc.real_label, gc.fake_label)
                            scaler.scale(l_fake / accum).backward()
                    else:
                        with last_sync:
                            with autocast():
                                real_pred = d_run(gan_gt)
                                fake_pred = d_run(output.clone())
                            l_real, l_fake = gan_loss_discriminator(real_pred, fake_pred, "ragan",
                                                                    gc.real_label, gc.fake_label)
                            scaler.scale((l_real + l_fake) / accum).backward()
                    loss_sums["l_d_real"] = loss_sums["l_d_real"] + l_real.detach().float() / accum
                    loss_sums["l_d_fake"] = loss_sums["l_d_fake"] + l_fake.detach().float() / accum
                    loss_sums["out_d_real"] = loss_sums["out_d_real"] + real_pred.detach().float().mean() / accum
                    loss_sums["out_d_fake"] = loss_sums["out_d_fake"] + fake_pred.detach().float().mean() / accum
                scaler.unscale_(opt_d)
                grad_norm_d = _grad_norm(d_params, oc.grad_clip).to(device)

            # 4. one collective for the decisions and the logged values: losses, finiteness, stop request
            names = [n for n in G_LOSSES if n in g_losses_present] + (list(D_LOSSES) if net_d is not None else [])
            local = torch.stack([torch.as_tensor(loss_sums[n], dtype=torch.float32, device=device).reshape(())
                                 for n in names]) if names else torch.zeros(0, device=device)
            local_values = local.tolist()
            bad_local = [n for n, v in zip(names, local_values) if not math.isfinite(v)]
            flags = torch.tensor([float(bool(bad_local)), float(stop.requested)], device=device)
            packed = all_reduce_sum(torch.cat([torch.nan_to_num(local, nan=0.0, posinf=0.0, neginf=0.0), flags]),
                                    dist_info).tolist()
            mean_losses = {n: float(packed[i]) / world for i, n in enumerate(names)}
            any_bad = packed[len(names)] > 0
            stop_now = packed[len(names) + 1] > 0 or (stop.requested and not dist_info.enabled)
            fp16 = precision == "fp16"  # there the scaler skips steps with inf/NaN gradients by design
            bad_grads = []
            if not fp16:
                if do_g and not math.isfinite(float(grad_norm_g)):
                    bad_grads.append("grad_norm_g")
                if net_d is not None and not math.isfinite(float(grad_norm_d)):
                    bad_grads.append("grad_norm_d")
            if any_bad or bad_grads:
                nonfinite_in_a_row += 1
                skipped_total += 1
                what = ", ".join(bad_local + bad_grads) or "a loss on another rank"
                log.warning("iteration %d: non-finite %s; step skipped (%d in a row)", iteration, what,
                            nonfinite_in_a_row)
                opt_g.zero_grad(set_to_none=True)
                if opt_d is not None:
                    opt_d.zero_grad(set_to_none=True)
                scaler.update()  # clears the unscale_ records (and lowers the fp16 scale)
                if nonfinite_in_a_row >= cfg.runtime.max_nonfinite:
                    # The weights are those of the last good step: nothing of the skipped iterations was applied.
                    folder = save(f"iter_{iteration:08d}")
                    if bar is not None:
                        bar.close()
                    raise NonFiniteLossError(
                        f"{nonfinite_in_a_row} non-finite steps in a row (last: {what}) at iteration {iteration}; "
                        f"the last good state is saved in {folder or ckpt_root}; lower the learning rate, use fp32 "
                        f"or bf16, or check the data")
            else:
                nonfinite_in_a_row = 0
                if do_g:
                    scaler.step(opt_g)
                if opt_d is not None:
                    scaler.step(opt_d)
                scaler.update()
                if net_g_ema is not None:
                    ema_update(net_g_ema, net_g, oc.ema_decay)
            with warnings.catch_warnings():
                # the schedule follows the iteration, also when a step was skipped (as BasicSR's)
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
                sched_g.step()
                if sched_d is not None:
                    sched_d.step()

            # 5. seeing it
            if bar is not None:
                lr_display = opt_g.param_groups[0]["lr"]
                postfix = {k.replace("l_", ""): f"{v:.4g}" for k, v in mean_losses.items() if k.startswith("l_")}
                postfix["lr"] = f"{lr_display:.2e}"
                if device.type == "cuda":
                    postfix["mem"] = f"{torch.cuda.max_memory_allocated(device) / 2**30:.1f}G"
                bar.set_postfix(postfix, refresh=False)
                bar.update(1)
            if is_main and (iteration % cfg.log_every == 0 or iteration == cfg.total_iters):
                now = time.perf_counter()
                speed = (iteration - it_last) / max(now - t_last, 1e-9)
                t_last, it_last = now, iteration
                row = {"lr_g": opt_g.param_groups[0]["lr"], **mean_losses, "grad_norm_g": float(grad_norm_g),
                       "it_per_s": speed, "skipped": skipped_total}
                if net_d is not None:
                    row["grad_norm_d"] = float(grad_norm_d)
                train_log.write(iteration, row)
            if on_iteration is not None:
                on_iteration(iteration, mean_losses)
                # a signal raised during the callback still stops this iteration (one process: no vote needed)
                stop_now = stop_now or (stop.requested and not dist_info.enabled)

            if cfg.val_every and iteration % cfg.val_every == 0:
                last_validation = run_validation() or last_validation
            if stop_now:
                save(f"iter_{iteration:08d}")
                status = "interrupted"
                if is_main:
                    log.warning("stopped by %s at iteration %d; resume with --resume auto",
                                stop.signal_name or "a signal on another rank", iteration)
                break
            if iteration % cfg.save_every == 0 or iteration == cfg.total_iters:
                save(f"iter_{iteration:08d}")

    if bar is not None:
        bar.close()
    if status == "completed":
        if cfg.val.folder and (not cfg.val_every or iteration % cfg.val_every != 0):
            last_validation = run_validation() or last_validation
        if is_main:
            for path in plot_curves_safe(run_dir):
                log.info("plot written: %s", path)
            log.info("done: %d iterations; EMA generator in %s", iteration, run_dir / "model.safetensors")
    if is_main:
        train_log.close()
        val_log.close()
        tb.close()
    barrier(dist_info)
    del batches
    return TrainResult(run_dir, iteration, status, last_validation,
                       model=net_g_ema if net_g_ema is not None else net_g)


def plot_curves_safe(run_dir: Path) -> list[Path]:
    try:
        return plot_curves(run_dir)
    except Exception as err:  # noqa: BLE001 - a plotting failure must not fail a finished training
        log.warning("plots not written: %s", err)
        return []


def _write_model(net: nn.Module, path: Path, cfg: TrainConfig, iteration: int) -> None:
    """The EMA generator as ``model.safetensors`` (realesr.weights.save_model writes atomically)."""
    save_model(net, path, {"realesr_train_name": cfg.name, "realesr_train_stage": cfg.stage,
                           "realesr_train_iteration": str(iteration)})
