"""Peak memory of upscaling a 4000x3000 photo with RealESRGAN_x4plus on the CPU (automatic tiling).

A full run takes hours on a 2-core CPU, so the two parts of the peak are measured separately, each in its own
process, on a synthetic 4000x3000 RGB photo-like image:

1. ``tile``: the real network, automatic tile size, stopped after the SECOND tile. The output buffer exists
   from the end of the first tile on, the second tile's activations come on top of it, and every later tile
   has the same sizes (interior tiles read a little more than the corner tile, so this is close to the peak).
2. ``pipeline``: the whole image through the whole pipeline (conversion to float, padding, tiles, blending,
   rounding to uint8, HWC array) with a stand-in network of the same scale that costs nothing (nearest x4), so
   this is the peak of everything around the network.

    PYTHONPATH=src python bench/bench_large_memory.py [--height 3000 --width 4000]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys

import numpy as np


class _StopAfterSecondTile(Exception):
    pass


def worker(part: str, height: int, width: int) -> None:
    import torch
    from torch import nn
    from torch.nn import functional as F

    from realesr.devices import available_memory_bytes
    from realesr.infer import Upscaler

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    if part == "tile":
        from realesr.weights import load_model

        upscaler = Upscaler(load_model("RealESRGAN_x4plus", allow_download=False, progress=False), device="cpu")
        tiles = []

        def stop(done: int, total: int) -> None:
            tiles.append(total)
            if done >= 2:
                raise _StopAfterSecondTile

        try:
            upscaler.upscale_array(image, on_tile=stop)
        except _StopAfterSecondTile:
            pass
        total = tiles[0]
    else:

        class Nearest4(nn.Module):
            scale, size_multiple, num_feat, num_grow_ch = 4, 1, 64, 32

            def __init__(self):
                super().__init__()
                self.p = nn.Parameter(torch.zeros(()))

            def forward(self, x):
                return F.interpolate(x, scale_factor=4, mode="nearest") + self.p

        upscaler = Upscaler(Nearest4(), device="cpu")
        out = upscaler(image)
        assert out.shape == (height * 4, width * 4, 3)
        total = None
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(
        json.dumps(
            {
                "part": part,
                "peak": peak,
                "tile": upscaler.last_tile_used,
                "tiles": total,
                "available": available_memory_bytes(),
            }
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--worker", choices=("tile", "pipeline"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.height, args.width)
        return
    rows = {}
    for part in ("pipeline", "tile"):
        done = subprocess.run(
            [sys.executable, __file__, "--worker", part, "--height", str(args.height), "--width", str(args.width)],
            check=True,
            capture_output=True,
            text=True,
        )
        rows[part] = json.loads(done.stdout.strip().splitlines()[-1])
    gib = 2**30
    print(
        f"{args.width}x{args.height} RGB -> x4, CPU fp32, memory available at start "
        f"{rows['tile']['available'] / gib:.1f} GiB"
    )
    print(f"automatic tile: {rows['tile']['tile']} px ({rows['tile']['tiles']} tiles)")
    print(f"peak RSS, real network, up to the end of the second tile:  {rows['tile']['peak'] / gib:6.2f} GiB")
    print(f"peak RSS, whole pipeline with a free stand-in network:     {rows['pipeline']['peak'] / gib:6.2f} GiB")


if __name__ == "__main__":
    main()
