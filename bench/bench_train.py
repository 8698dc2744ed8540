"""Training-step throughput (images/s) of both stages, data loading excluded.

One step is what an iteration of ``realesr.train.loop`` does with patches already in memory: the device-side
synthesis (USM, the degradation chain, paired crop, pair pool; ``--no-degrade`` leaves it out), the generator
step (esrnet: L1; esrgan: L1 + VGG19 perceptual + GAN with the discriminator frozen), the discriminator step
(esrgan) and the EMA update.

    python bench/bench_train.py --stage esrnet --batch 12 --gt-size 256 --precision bf16 --channels-last --compile
    python bench/bench_train.py --stage both --device cpu --batch 2 --gt-size 64 --steps 5

The official BasicSR recipe measures 71.5 img/s (esrnet) and 50 img/s (esrgan) on an H200 at batch 12, gt 256,
fp32 (issue 4); compare on the same card.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch.utils.data import default_collate

from realesr.archs import RRDBNet, SRVGGNetCompact, UNetDiscriminatorSN
from realesr.degrade import DegradationConfig, sample_degradation_params
from realesr.train.config import config_from_dict
from realesr.train.ema import ema_update
from realesr.train.loop import discriminator_frozen, generator_losses
from realesr.train.losses import build_perceptual_loss, gan_loss_discriminator
from realesr.train.synth import PairSynthesizer


def bench_stage(stage: str, args) -> dict:
    device = torch.device(args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    cfg = config_from_dict(
        {
            "stage": stage,
            "scale": args.scale,
            "batch_size": args.batch,
            "data": {"train": "-", "gt_size": args.gt_size, "load_size": args.gt_size, "pool_size": args.batch * 2},
        }
    )
    torch.manual_seed(0)
    if args.arch == "RRDBNet":
        net_g = RRDBNet(3, 3, 64, args.num_block, 32, scale=args.scale)
    else:
        net_g = SRVGGNetCompact(3, 3, 64, 32, upscale=args.scale)
    net_g.to(device)
    ema = (
        RRDBNet(3, 3, 64, args.num_block, 32, scale=args.scale)
        if args.arch == "RRDBNet"
        else SRVGGNetCompact(3, 3, 64, 32, upscale=args.scale)
    )
    ema.load_state_dict(net_g.state_dict())
    ema.to(device).requires_grad_(False)
    net_d = perceptual = opt_d = None
    if stage == "esrgan":
        net_d = UNetDiscriminatorSN(3, 64, True).to(device)
        pc = cfg.loss.perceptual
        # the speed of VGG19 does not depend on its weights; random ones need no download
        perceptual = build_perceptual_loss(pc.layer_weights, pc.weight, "random", True, "l1").to(device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    for m in (net_g, ema, net_d, perceptual):
        if m is not None:
            m.to(memory_format=fmt)
    opt_g = torch.optim.Adam(net_g.parameters(), lr=1e-4, betas=(0.9, 0.99), fused=device.type == "cuda")
    if net_d is not None:
        opt_d = torch.optim.Adam(net_d.parameters(), lr=1e-4, betas=(0.9, 0.99), fused=device.type == "cuda")
    g_run, d_run = net_g, net_d
    if args.compile:
        g_run = torch.compile(net_g)
        d_run = torch.compile(net_d) if net_d is not None else None
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[args.precision]
    scaler = torch.amp.GradScaler(device.type, enabled=args.precision == "fp16")

    deg_cfg = DegradationConfig.for_scale(args.scale)
    synth = PairSynthesizer(deg_cfg, args.scale, args.gt_size, args.batch * 2, args.batch, seed=0)
    rng = np.random.default_rng(0)
    # patches in memory: the data loading is not timed (the official figure excludes it too)
    pool_of_patches = [torch.rand(args.batch, 3, args.gt_size, args.gt_size, device=device) for _ in range(4)]
    params = [
        {
            k: v.to(device)
            for k, v in default_collate([sample_degradation_params(deg_cfg, rng) for _ in range(args.batch)]).items()
        }
        for _ in range(4)
    ]
    gen = torch.Generator(device=device).manual_seed(0)

    def step(i: int) -> None:
        gt = pool_of_patches[i % 4]
        if args.no_degrade:
            lq = torch.nn.functional.interpolate(gt, scale_factor=1 / args.scale, mode="area")
            gt_usm = gt
        else:
            lq, gt, gt_usm = synth(gt, params[i % 4], gen)
        lq = lq.contiguous(memory_format=fmt)
        opt_g.zero_grad(set_to_none=True)
        with discriminator_frozen(net_d) if net_d is not None else torch.enable_grad():
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                out = g_run(lq)
                losses = generator_losses(cfg, out, gt, gt_usm, d_run, perceptual)
            scaler.scale(sum(losses.values())).backward()
        scaler.step(opt_g)
        if net_d is not None:
            opt_d.zero_grad(set_to_none=True)
            with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
                real = d_run(gt)
                fake = d_run(out.detach().clone())
            l_real, l_fake = gan_loss_discriminator(real, fake, "vanilla")
            scaler.scale(l_real + l_fake).backward()
            scaler.step(opt_d)
        scaler.update()
        ema_update(ema, net_g, 0.999)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.cuda.reset_peak_memory_stats(device)
    for i in range(args.warmup):
        step(i)
    sync()
    t0 = time.perf_counter()
    for i in range(args.steps):
        step(args.warmup + i)
    sync()
    dt = time.perf_counter() - t0
    mem = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {
        "stage": stage,
        "img_s": args.steps * args.batch / dt,
        "s_per_step": dt / args.steps,
        "mem_gib": mem,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--stage", choices=("esrnet", "esrgan", "both"), default="both")
    p.add_argument("--device", default="auto")
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--gt-size", type=int, default=256)
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--arch", choices=("RRDBNet", "SRVGGNetCompact"), default="RRDBNet")
    p.add_argument("--num-block", type=int, default=23)
    p.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true")
    p.add_argument("--no-degrade", action="store_true", help="leave the device-side synthesis out of the step")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    stages = ("esrnet", "esrgan") if args.stage == "both" else (args.stage,)
    print(
        f"# {args.arch} x{args.scale} batch {args.batch} gt {args.gt_size} {args.precision}"
        f"{' channels-last' if args.channels_last else ''}{' compile' if args.compile else ''}"
        f"{' no-degrade' if args.no_degrade else ''}; {args.steps} timed steps after {args.warmup}"
    )
    for stage in stages:
        r = bench_stage(stage, args)
        print(
            f"{r['stage']:7s} {r['img_s']:8.2f} img/s  {r['s_per_step']:.3f} s/step  peak {r['mem_gib']:.1f} GiB"
            f"  ({r['device']})"
        )


if __name__ == "__main__":
    main()
