"""Tiled versus whole-image output of RealESRGAN_x4plus on 96x96 crops of real photos, and what tiling costs.

For each crop: the whole-image output, then tiled outputs (official crop-and-paste: tile 48, pad 10, no blend;
realesr: --tile 40 with the default pad and blend, plus any --pads given), each compared in 8-bit levels
(mean absolute difference, share of values more than 2 levels off, largest) with its run time relative to the
whole-image pass.

    PYTHONPATH=src python bench/bench_tiling.py [--pads 32 40 56]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from realesr.imagefiles import read_image
from realesr.infer import DEFAULT_TILE_PAD
from realesr.infer.tiling import tiled_forward
from realesr.weights import load_model

DATA = Path(__file__).resolve().parents[1].parent / "shared/data/real_lr/RealESRGAN_inputs"
CROPS = (("ADE_val_00000114.jpg", 80, 80), ("0014.jpg", 40, 40))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pads", type=int, nargs="*", default=[], help="more pads to try with --tile 40")
    parser.add_argument("--size", type=int, default=96)
    args = parser.parse_args()
    net = load_model("RealESRGAN_x4plus", allow_download=False, progress=False).net.eval()
    net = net.to(memory_format=torch.channels_last)

    def forward(x):
        return net(x.contiguous(memory_format=torch.channels_last))

    configs = [("official crop+paste", 48, 10, 0.0), ("realesr default", 40, DEFAULT_TILE_PAD, None)]
    configs += [(f"realesr pad {p}", 40, p, None) for p in args.pads]
    print(f"{'crop':<26}{'method':<22}{'tile':>5}{'pad':>5}{'mean':>8}{'>2 lv':>8}{'max':>5}{'time':>8}{'cost':>7}")
    with torch.inference_mode():
        for name, top, left in CROPS:
            rgb = read_image(DATA / name).array[top : top + args.size, left : left + args.size, :3]
            x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float() / 255
            start = time.perf_counter()
            whole = (forward(x).clamp(0, 1) * 255).round()
            whole_time = time.perf_counter() - start
            print(
                f"{name + f' ({top},{left})':<26}{'whole image':<22}{'':>5}{'':>5}{'':>8}{'':>8}{'':>5}"
                f"{whole_time:>7.1f}s{1:>6.2f}x"
            )
            for label, tile, pad, blend in configs:
                start = time.perf_counter()
                out = (tiled_forward(forward, x, 4, tile, pad, blend=blend).clamp(0, 1) * 255).round()
                elapsed = time.perf_counter() - start
                diff = (out - whole).abs()
                print(
                    f"{'':<26}{label:<22}{tile:>5}{pad:>5}{diff.mean():>8.3f}{(diff > 2).float().mean() * 100:>7.2f}%"
                    f"{diff.max():>5.0f}{elapsed:>7.1f}s{elapsed / whole_time:>6.2f}x",
                    flush=True,
                )


if __name__ == "__main__":
    main()
