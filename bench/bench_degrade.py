"""Time the Real-ESRGAN training-pair synthesis: ms per sample for a batch of GT crops (default 12 x 256^2).

Parameter (kernel) sampling, as DataLoader workers do it, is timed apart from the batched image operations
(USM, the degradation chain, the paired crop and the pool), which run on the training device.

    PYTHONPATH=src python bench/bench_degrade.py [--device cpu|cuda] [--batch 12] [--size 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from realesr.degrade import (
    DegradationConfig,
    TrainingPairPool,
    degrade,
    paired_random_crop,
    sample_degradation_batch,
    usm_sharpen,
)

PHOTOS = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "train" / "photos"


def load_crops(n: int, size: int, seed: int) -> torch.Tensor:
    """n crops of size^2 from the shared training photos (random noise when they are not there)."""
    rng = np.random.default_rng(seed)
    photos = sorted(PHOTOS.glob("*.png"))
    if not photos:
        print(f"(no photos under {PHOTOS}: using random images)")
        return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed))
    out = []
    for i in range(n):
        a = np.asarray(Image.open(photos[(i * 5 + seed) % len(photos)]).convert("RGB"))
        top, left = int(rng.integers(0, a.shape[0] - size + 1)), int(rng.integers(0, a.shape[1] - size + 1))
        out.append(torch.from_numpy(a[top : top + size, left : left + size].copy()).permute(2, 0, 1))
    return torch.stack(out).float() / 255.0


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, repeats):
    times, result = [], None
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), result


def jpeg_vs_pillow(n_photos: int, size: int) -> None:
    """PSNR of the differentiable JPEG against Pillow's encode + decode, per quality, over real photo crops."""
    import io
    import math

    from realesr.degrade import jpeg_compress

    crops = load_crops(n_photos, size, seed=1)
    print(
        f"JPEG vs Pillow {Image.__version__ if hasattr(Image, '__version__') else ''} on {n_photos} crops of "
        f"{size}^2 (PSNR of our decoded 8-bit output against Pillow's, dB):"
    )
    for chroma, quality in [(c, q) for c in ("nearest", "fancy") for q in (30, 50, 60, 75, 90, 95)]:
        ours = (jpeg_compress(crops, torch.full((n_photos,), float(quality)), chroma) * 255).round()
        values = []
        for i in range(n_photos):
            arr = (crops[i].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            buf = io.BytesIO()
            Image.fromarray(arr).save(buf, "JPEG", quality=quality)
            ref = np.asarray(Image.open(buf).convert("RGB")).astype(np.float64)
            mse = np.mean((ours[i].permute(1, 2, 0).numpy() - ref) ** 2)
            values.append(10 * math.log10(255.0**2 / mse))
        print(f"  {chroma:<7s} q{quality:<3d} mean {np.mean(values):6.2f}  min {np.min(values):6.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, default=12)
    ap.add_argument("--size", type=int, default=256, help="GT crop side (the official degrades 400^2 crops)")
    ap.add_argument("--scale", type=int, default=4, choices=(2, 4, 8))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    ap.add_argument(
        "--jpeg-check",
        type=int,
        default=0,
        metavar="N",
        help="instead: PSNR of the JPEG emulation against Pillow on N photo crops",
    )
    args = ap.parse_args()
    if args.jpeg_check:
        jpeg_vs_pillow(args.jpeg_check, args.size)
        return
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cfg = DegradationConfig.for_scale(args.scale)
    gt = load_crops(args.batch, args.size, seed=0).to(device)
    b = args.batch
    print(
        f"realesr degrade bench: batch {b} x {args.size}^2, x{args.scale}, device {device}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads, "
        f"{platform.processor() or platform.machine()}"
    )

    rng = np.random.default_rng(0)
    t_params, params = timed(lambda: sample_degradation_batch(cfg, rng, b), device, args.repeats)
    gen = torch.Generator(device=device).manual_seed(0)  # on the device: noise is drawn where it is used
    degrade(usm_sharpen(gt), params, cfg, args.scale, generator=gen)  # warm-up
    t_usm, gt_usm = timed(lambda: usm_sharpen(gt), device, args.repeats)
    rows = [("kernel + parameter sampling (numpy, per worker)", t_params)]
    rows.append(("USM sharpening", t_usm))
    for on_canvas in (False, True):
        t, lq = timed(
            lambda canvas=on_canvas: degrade(gt_usm, params, cfg, args.scale, generator=gen, on_canvas=canvas),
            device,
            args.repeats,
        )
        rows.append((f"degradation chain ({'one canvas' if on_canvas else 'per-sample sizes'})", t))
    crop = args.size // 2 - (args.size // 2) % args.scale
    t_crop, _ = timed(
        lambda: paired_random_crop([gt, gt_usm], lq, crop, args.scale, generator=gen), device, args.repeats
    )
    rows.append((f"paired random crop to {crop}^2", t_crop))
    pool = TrainingPairPool(b * 15, b, seed=0)
    t_pool, _ = timed(lambda: pool(lq, gt), device, max(args.repeats, 16))
    rows.append(("training pair pool", t_pool))
    for name, t in rows:
        print(f"  {name:<48s} {1000 * t / b:8.1f} ms/sample   ({1000 * t:8.1f} ms/batch)")
    default_chain = rows[2] if device.type == "cpu" else rows[3]
    total = t_usm + default_chain[1] + t_crop + t_pool
    print(f"  {'image operations, total (default path)':<48s} {1000 * total / b:8.1f} ms/sample")


if __name__ == "__main__":
    main()
