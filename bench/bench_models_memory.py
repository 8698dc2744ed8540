"""realesr's memory estimate for spandrel models (`realesr models inspect`) against the measured peak.

Each architecture is built at the size its released models have (random weights: memory does not depend on the
values), saved, loaded through realesr (`load_model`, the `models` extra) and run once whole-image in fp32 on a
square crop, in its own process. Measured: the peak resident memory (ru_maxrss) after the pass minus the resident
memory before it, per input pixel ("<=" where loading had peaked higher: an upper bound). Estimated: the model's
`traits.bytes_per_pixel`. The Upscaler's automatic tile size divides free memory by the estimate, so an estimate
below the measurement risks running out of memory, one far above it tiles more than needed.

    PYTHONPATH=src .venv-models/bin/python bench/bench_models_memory.py [--side 160]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

# name -> constructor call of spandrel's class at a released model's size
CONFIGS = {
    "SwinIR-M x2": "archs.SwinIR.SwinIR(img_size=64, embed_dim=180, depths=[6]*6, num_heads=[6]*6, window_size=8,"
    " upscale=2, upsampler='pixelshuffle')",
    "HAT-S x2": "archs.HAT.HAT(img_size=64, embed_dim=144, depths=(6,)*6, num_heads=(6,)*6, window_size=16,"
    " compress_ratio=24, squeeze_factor=24, upscale=2)",
    "SPAN x4": "archs.SPAN.SPAN(num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=4)",
    "RealPLKSR x4": "archs.PLKSR.RealPLKSR(dim=64, n_blocks=28, upscaling_factor=4)",
    "OmniSR x2": "archs.OmniSR.OmniSR(num_feat=64, window_size=8, up_scale=2)",
    "SAFMN x4": "archs.SAFMN.SAFMN(dim=36, n_blocks=8, upscaling_factor=4)",
}

CHILD = """
import json, resource, sys, torch
torch.set_num_threads(1)
from realesr.infer.upscaler import Upscaler
side = int(sys.argv[2])
up = Upscaler(sys.argv[1], device="cpu", tile=0)
x = torch.rand(1, 3, side, side)
page = __import__("os").sysconf("SC_PAGE_SIZE")
current = int(open("/proc/self/statm").read().split()[1]) * page
peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
up.upscale_tensor(x)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
# Loading may have peaked higher than the pass: then the pass needed at most that much ("<=").
bound = peak <= peak_before
print(json.dumps({"measured": (peak - current) / side**2, "bound": bound, "estimate": up.traits.bytes_per_pixel}))
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--side", type=int, default=96)
    args = parser.parse_args()
    import torch
    from safetensors.torch import save_file
    from spandrel import architectures as archs  # noqa: F401 - used by the eval'd constructors

    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    print(f"{cpu}; {platform.python_version()}; torch {torch.__version__}; {args.side}x{args.side} input, fp32")
    print(f"{'model':<14} {'estimate B/px':>14} {'measured B/px':>14} {'ratio':>6}")
    with tempfile.TemporaryDirectory() as folder:
        for name, call in CONFIGS.items():
            torch.manual_seed(0)
            net = eval(call)  # noqa: S307 - the constructor calls above, nothing from outside
            path = Path(folder) / f"{name.split()[0]}.safetensors"
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
            del net
            out = subprocess.run(
                [sys.executable, "-c", CHILD, str(path), str(args.side)], capture_output=True, text=True, check=True
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            ratio = row["estimate"] / max(row["measured"], 1.0)
            measured = ("<=" if row["bound"] else "") + f"{row['measured']:,.0f}"
            print(f"{name:<14} {row['estimate']:>14,.0f} {measured:>14} {ratio:>6.2f}")
    print(f"(peak RSS growth of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB)")


if __name__ == "__main__":
    main()
