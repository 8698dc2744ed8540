"""`realesr train ... --dry-run`: what a run would use, found and need, without training or writing anything."""

from __future__ import annotations

import statistics

import torch
import yaml
from torch import nn

from realesr.train.config import TrainConfig, config_to_dict, train_sources
from realesr.train.distributed import DistInfo, pick_device

__all__ = ["dry_run_report"]


def _params(net: nn.Module | None) -> int:
    return sum(p.numel() for p in net.parameters()) if net is not None else 0


def _activation_bytes(net: nn.Module, *x: torch.Tensor) -> int:
    """Bytes of every leaf module's output for input ``x``: roughly what autograd keeps for the backward."""
    total = 0

    def hook(_module, _inputs, output) -> None:
        nonlocal total
        if torch.is_tensor(output):
            total += output.numel() * output.element_size()

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    try:
        with torch.no_grad():
            net(*x)
    finally:
        for h in handles:
            h.remove()
    return total


def dry_run_report(cfg: TrainConfig, allow_download: bool = True) -> str:
    """The resolved config, the data found, the networks' sizes and a memory estimate per micro-batch, as text.
    Runs the same start-up checks as training (a problem raises the same error)."""
    from realesr.train.loop import _holds_a_run, build

    device = pick_device(cfg.runtime.device, 0)
    run = build(cfg, device, DistInfo(), resuming=False, allow_download=allow_download)
    lines = ["# resolved config", yaml.safe_dump(config_to_dict(cfg), sort_keys=False).rstrip(), ""]
    lines += _data_lines(cfg, run.setup)
    lines += _network_lines(cfg, run, device)
    run_dir = cfg.run_dir
    lines.append(
        f"run folder {run_dir}: "
        + ("holds a run (continue it with --resume auto, or --overwrite)" if _holds_a_run(run_dir) else "new")
    )
    return "\n".join(lines)


def _data_lines(cfg: TrainConfig, setup) -> list[str]:
    """The training images per source, their share of the draws, the epoch, the validation images."""
    sides = [min(r.width, r.height) for r in setup.records]
    pixels = sum(r.width * r.height for r in setup.records)
    lines = [
        f"training data: {len(setup.records)} image(s); shorter side min "
        f"{min(sides)} / median {int(statistics.median(sides))} / max {max(sides)} px; "
        f"{pixels / 1e6:.1f} Mpx in all"
    ]
    for i, source in enumerate(train_sources(cfg.data)):
        what = f"pair(s) (LR from {source.lr})" if source.lr else "pair(s)" if source.pairs else "image(s)"
        weight = f", weight {source.weight:g}" if source.weight is not None else ""
        lines.append(f"  {setup.source_index.count(i)} {what} from {source.path or source.pairs}{weight}")
    if setup.draw_p is not None:
        share = [
            float(setup.draw_p[[j for j, k in enumerate(setup.source_index) if k == i]].sum())
            for i in range(len(train_sources(cfg.data)))
        ]
        lines.append(
            "  share of the draws: "
            + ", ".join(f"{x:.1%}" for x in share)
            + (" (images by area)" if cfg.data.sample_by_area else "")
        )
    lines.append(
        f"samples per epoch: {setup.per_epoch} "
        f"({cfg.batch_size} per micro-batch x {cfg.optim.accum_steps} accumulation)"
    )
    if cfg.val.folder or cfg.val.sets:
        from realesr.data import list_images
        from realesr.train.config import val_set_names

        if cfg.val.folder:
            lines.append(f"validation: {len(list_images(cfg.val.folder))} image(s) from {cfg.val.folder}")
        for vs, name in zip(cfg.val.sets, val_set_names(cfg)[-len(cfg.val.sets) :] if cfg.val.sets else []):
            lines.append(f"validation set {name} ({vs.kind}): {len(list_images(vs.path))} image(s) from {vs.path}")
    return lines


def _network_lines(cfg: TrainConfig, run, device) -> list[str]:
    """Parameters of each network and the memory estimate of one micro-batch."""
    state, gan = run.state, run.gan
    net_d = gan.net_d if gan is not None else None
    perceptual = gan.perceptual if gan is not None else None
    g, d, vgg = _params(state.net_g), _params(net_d), _params(perceptual)
    lines = [
        f"generator {cfg.network.arch}: {g:,} parameters"
        + (f"; EMA copy: {g:,}" if state.net_g_ema is not None else "")
    ]
    if net_d is not None:
        lines.append(f"discriminator UNetDiscriminatorSN: {d:,} parameters")
    if perceptual is not None:
        lines.append(f"perceptual loss VGG19 (frozen): {vgg:,} parameters")
    # memory: fp32 weights + gradients + two Adam moments of the trained networks, frozen ones once, plus the
    # activations of one micro-batch (measured on one patch, times batch_size; x2 for the backward's buffers)
    bytes_per = 4
    weights = (g + d) * bytes_per * 4 + (g if state.net_g_ema is not None else 0) * bytes_per + vgg * bytes_per
    lq = torch.rand(1, 3, cfg.data.gt_size // cfg.scale, cfg.data.gt_size // cfg.scale, device=device)
    act = _activation_bytes(state.net_g, lq)
    gt = torch.rand(1, 3, cfg.data.gt_size, cfg.data.gt_size, device=device)
    if net_d is not None:
        act += 2 * _activation_bytes(net_d, gt)
    if perceptual is not None:
        act += _activation_bytes(perceptual, gt, gt) // 2  # the GT's features carry no gradient
    act *= 2 * cfg.batch_size
    gib = 2**30
    lines.append(
        f"memory estimate per process: {weights / gib:.2f} GiB weights/gradients/optimiser + "
        f"{act / gib:.2f} GiB activations of a micro-batch of {cfg.batch_size} = {(weights + act) / gib:.2f} "
        f"GiB (fp32; bf16/fp16 roughly halve the activations)"
    )
    return lines
