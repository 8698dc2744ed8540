"""onnxruntime against PyTorch (channels-last, the Upscaler's default on the CPU) for RealESRGAN_x4plus, one
forward pass of a photo crop, fp32, on this machine's CPU. Figures for docs/weights.md.

    PYTHONPATH=src python bench/bench_onnx.py [--sizes 96 256] [--repeats 3] [--threads N]

Each figure is the best of ``--repeats`` timed runs after one warm-up run (the best, not the mean: on a shared
machine other processes only ever make a run slower). Both runtimes get the same number of threads.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from realesr.weights import load_model
from realesr.weights.onnx import export_onnx

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT.parent / "shared/data/test/BSD100/img_001.png"  # 480x320: room for a 256x256 crop


def best_of(fn, repeats: int) -> float:
    fn()  # warm-up: first-call allocations, oneDNN primitive creation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 256])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    import onnxruntime as ort

    torch.set_num_threads(args.threads)
    loaded = load_model("RealESRGAN_x4plus", allow_download=False)
    net = loaded.net.to(memory_format=torch.channels_last)
    with tempfile.TemporaryDirectory() as tmp:
        path = export_onnx(loaded.net, Path(tmp) / "x4plus.onnx")
        options = ort.SessionOptions()
        options.intra_op_num_threads = args.threads
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        print(
            f"RealESRGAN_x4plus ({loaded.source.split(':')[0]}), fp32, {args.threads} threads, "
            f"torch {torch.__version__}, onnxruntime {ort.__version__}, best of {args.repeats} after a warm-up; "
            f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores"
        )
        with Image.open(IMAGE) as im:
            photo = np.asarray(im.convert("RGB"))
        if min(photo.shape[:2]) < max(args.sizes):
            raise SystemExit(f"{IMAGE} is {photo.shape[1]}x{photo.shape[0]}: too small for {max(args.sizes)} px crops")
        for size in args.sizes:
            crop = photo[:size, :size]
            x = torch.from_numpy(crop.copy()).permute(2, 0, 1)[None].float().div(255)
            x_cl = x.contiguous(memory_format=torch.channels_last)
            feed = {"input": x.numpy()}

            def run_torch(x_cl: torch.Tensor = x_cl) -> None:
                with torch.inference_mode():
                    net(x_cl)

            def run_ort(feed: dict = feed) -> None:
                session.run(None, feed)

            t_torch = best_of(run_torch, args.repeats)
            t_ort = best_of(run_ort, args.repeats)
            with torch.inference_mode():
                diff = float(np.abs(session.run(None, feed)[0] - net(x_cl).numpy()).max())
            print(
                f"{crop.shape[1]}x{crop.shape[0]} (load {os.getloadavg()[0]:.1f}): "
                f"PyTorch channels-last {t_torch:.2f} s, onnxruntime {t_ort:.2f} s "
                f"(onnxruntime / PyTorch = {t_ort / t_torch:.2f}); max |diff| {diff:.1e}"
            )


if __name__ == "__main__":
    main()
