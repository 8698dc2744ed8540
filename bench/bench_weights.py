"""Figures for docs/weights.md: model loading times, and how much the data package's fp16-rounded
weights can move RealESRGAN_x4plus's output.

    PYTHONPATH=src python bench/bench_weights.py [--image PATH] [--trials 2]
"""

from __future__ import annotations

import argparse
import copy
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from realesr.weights import load_model

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_IMAGE = ROOT.parent / "shared/data/real_lr/RealESRGAN_inputs/0014.jpg"


def load_times() -> None:
    for name in ("RealESRGAN_x4plus", "RealESRGAN_x4plus_anime_6B", "realesr-animevideov3"):
        times = []
        for _ in range(3):
            start = time.perf_counter()
            loaded = load_model(name, allow_download=False)
            times.append(time.perf_counter() - start)
        print(
            f"load_model({name!r}) from {loaded.source.split(':')[0]}: "
            f"first {times[0]:.2f} s, then {min(times[1:]):.2f} s"
        )


@torch.no_grad()
def fp16_rounding_effect(image: Path, trials: int) -> None:
    """Perturb every conv weight by a uniform amount within half an fp16 step (what rounding to fp16
    did to the official fp32 weights) and compare the outputs in 8-bit levels."""
    net = load_model("RealESRGAN_x4plus", allow_download=False).net
    crop = Image.open(image).convert("RGB").crop((100, 100, 164, 164))
    x = torch.from_numpy(np.asarray(crop, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    reference = net(x).clamp(0, 1)
    gen = torch.Generator().manual_seed(0)
    for trial in range(trials):
        perturbed = copy.deepcopy(net)
        for p in perturbed.parameters():
            if p.ndim == 4:
                step = torch.pow(2.0, torch.floor(torch.log2(p.abs().clamp_min(2.0**-24))) - 10)
                p.add_((torch.rand(p.shape, generator=gen) - 0.5) * step)
        diff = (perturbed(x).clamp(0, 1) - reference).abs() * 255
        print(
            f"fp16 rounding, trial {trial + 1}: mean {diff.mean():.4f} levels, max {diff.max():.3f}, "
            f"{(diff > 1).float().mean() * 100:.4f}% of values more than 1 level off"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--trials", type=int, default=2)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    load_times()
    fp16_rounding_effect(args.image, args.trials)


if __name__ == "__main__":
    main()
