"""CPU time and peak memory of `realesr.Upscaler` against the official RealESRGANer processing path.

The official `realesrgan` package cannot be installed next to current torchvision (basicsr imports a removed
module), so its `RealESRGANer.enhance` path for an RGB image (fp32, tile=0, pre_pad=0 as inference_realesrgan.py
passes by default) is reproduced here step by step from xinntao/Real-ESRGAN realesrgan/utils.py:
uint8 BGR (cv2.imread) -> float32 / 255 -> BGR2RGB -> CHW tensor (from a transposed, non-contiguous array) ->
model under no_grad -> squeeze/float/cpu/clamp_ -> numpy -> channel flip by fancy indexing -> HWC transpose ->
(x * 255.0).round().astype(uint8). Both run the same network (realesr's RRDBNet, which has the official
layout and is the official network's exact computation) with the same RealESRGAN_x4plus weights.

Each variant runs in its own process (so that peak memory is its own), alternately, several rounds; the time is
the best of each process's timed runs (after one warm-up), and the table shows best and median over rounds.
Then both paths run alternately in one process (--interleaved N): on a shared machine the fairest timing.

    PYTHONPATH=src python bench/bench_upscale.py [--image PATH] [--crop 128] [--rounds 3] [--runs 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

DEFAULT_IMAGE = Path(__file__).resolve().parents[1].parent / "shared/data/real_lr/RealESRGAN_inputs/0014.jpg"


def official_enhance(model, img_bgr: np.ndarray) -> np.ndarray:
    """RealESRGANer.enhance for a 3-channel 8-bit image, fp32, no tiles, no pre-pad, outscale = net scale."""
    import torch

    with torch.no_grad():  # enhance() is decorated with @torch.no_grad()
        img = img_bgr.astype(np.float32)
        max_range = 65535 if np.max(img) > 256 else 255
        img = img / max_range
        img = np.ascontiguousarray(img[:, :, ::-1])  # cv2.cvtColor(img, cv2.COLOR_BGR2RGB) returns a new array
        # pre_process
        tensor = torch.from_numpy(np.transpose(img, (2, 0, 1))).float()
        tensor = tensor.unsqueeze(0).to(torch.device("cpu"))
        # process
        output = model(tensor)
        # post_process: nothing to crop without pre_pad and mod_pad (scale 4)
        output_img = output.data.squeeze().float().cpu().clamp_(0, 1).numpy()
        output_img = np.transpose(output_img[[2, 1, 0], :, :], (1, 2, 0))
        return (output_img * 255.0).round().astype(np.uint8)


def load_input(path: Path, crop: int) -> np.ndarray:
    from realesr.imagefiles import read_image

    rgb = read_image(path).array
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    rgb = rgb[..., :3]
    if crop:
        rgb = rgb[:crop, :crop]
    return np.ascontiguousarray(rgb)


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def worker(variant: str, image: Path, crop: int, runs: int, out_npy: str | None) -> None:
    import torch

    from realesr.infer import Upscaler
    from realesr.weights import load_model

    loaded = load_model("RealESRGAN_x4plus", allow_download=False, progress=False)
    rgb = load_input(image, crop)
    if variant == "official":
        model = loaded.net.eval()
        bgr = np.ascontiguousarray(rgb[..., ::-1])  # what cv2.imread gives

        def run():
            return official_enhance(model, bgr)[..., ::-1]
    else:
        upscaler = Upscaler(loaded, device="cpu", precision="fp32", tile=0)

        def run():
            return upscaler(rgb)

    baseline = rss_bytes()
    output = run()  # warm-up (oneDNN primitive creation, allocator growth)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        output = run()
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if out_npy:
        np.save(out_npy, np.ascontiguousarray(output))
    print(
        json.dumps(
            {
                "variant": variant,
                "time": min(times),
                "peak": peak,
                "baseline": baseline,
                "threads": torch.get_num_threads(),
                "shape": list(rgb.shape),
            }
        )
    )


def interleaved(image: Path, crop: int, runs: int) -> dict:
    """Both paths in one process, alternately, ``runs`` times each: on a shared machine the best of many
    alternating runs is the fairest figure (a busy moment slows whichever path happens to run in it)."""
    from realesr.infer import Upscaler
    from realesr.weights import load_model

    loaded = load_model("RealESRGAN_x4plus", allow_download=False, progress=False)
    rgb = load_input(image, crop)
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    official_net = loaded.spec.build_network() if hasattr(loaded.spec, "build_network") else None
    if official_net is None:
        raise SystemExit("realesr.weights.ModelSpec.build_network is needed for an independent network copy")
    official_net.load_state_dict(loaded.net.state_dict())
    official_net.eval()
    upscaler = Upscaler(loaded, device="cpu", precision="fp32", tile=0)
    paths = {"official": lambda: official_enhance(official_net, bgr), "ours": lambda: upscaler(rgb)}
    times: dict[str, list[float]] = {"official": [], "ours": []}
    for run in paths.values():
        run()  # warm-up
    for index in range(runs):
        order = ("official", "ours") if index % 2 == 0 else ("ours", "official")
        for name in order:
            start = time.perf_counter()
            paths[name]()
            times[name].append(time.perf_counter() - start)
        print(f"run {index + 1}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in times.items()), file=sys.stderr)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", type=Path, default=DEFAULT_IMAGE)
    parser.add_argument("--crop", type=int, default=128, help="top-left crop side (0 = whole image)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds of both variants")
    parser.add_argument("--runs", type=int, default=2, help="timed runs per process (after one warm-up)")
    parser.add_argument(
        "--interleaved",
        type=int,
        default=8,
        metavar="N",
        help="alternating timed runs of both paths in one process (0: skip)",
    )
    parser.add_argument("--worker", choices=("official", "ours"), help=argparse.SUPPRESS)
    parser.add_argument("--save", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.image, args.crop, args.runs, args.save)
        return

    import tempfile

    results: dict[str, list[dict]] = {"official": [], "ours": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_index in range(args.rounds):
            for variant in ("official", "ours"):
                command = [
                    sys.executable,
                    __file__,
                    "--worker",
                    variant,
                    "--image",
                    str(args.image),
                    "--crop",
                    str(args.crop),
                    "--runs",
                    str(args.runs),
                ]
                if round_index == 0:
                    command += ["--save", f"{tmp}/{variant}.npy"]
                done = subprocess.run(command, check=True, capture_output=True, text=True)
                results[variant].append(json.loads(done.stdout.strip().splitlines()[-1]))
                print(f"round {round_index + 1} {variant}: {results[variant][-1]['time']:.2f} s", file=sys.stderr)
        official_out = np.load(f"{tmp}/official.npy").astype(int)
        ours_out = np.load(f"{tmp}/ours.npy").astype(int)
    diff = np.abs(official_out - ours_out)
    shape = results["ours"][0]["shape"]
    megapixels = shape[0] * shape[1] / 1e6
    print(
        f"RealESRGAN_x4plus, CPU fp32, no tiles, input {shape[1]}x{shape[0]} ({args.image.name}), "
        f"{results['ours'][0]['threads']} threads, {args.rounds} rounds x {args.runs} runs"
    )
    print(f"{'path':<34}{'best s':>9}{'median s':>10}{'LR MP/s':>9}{'peak RSS':>10}{'peak - model':>14}")
    best = {}
    for variant, label in (("official", "official RealESRGANer.enhance"), ("ours", "realesr Upscaler")):
        times = [r["time"] for r in results[variant]]
        peaks = [r["peak"] for r in results[variant]]
        extra = [r["peak"] - r["baseline"] for r in results[variant]]
        best[variant] = min(times)
        print(
            f"{label:<34}{min(times):>9.2f}{statistics.median(times):>10.2f}{megapixels / min(times):>9.4f}"
            f"{max(peaks) / 2**20:>8.0f} M{max(extra) / 2**20:>12.0f} M"
        )
    print(
        f"separate processes, speed-up (best/best): {best['official'] / best['ours']:.2f}x; "
        f"outputs differ by at most {diff.max()} levels (mean {diff.mean():.4f})"
    )
    if args.interleaved:
        times = interleaved(args.image, args.crop, args.interleaved)
        print(f"interleaved in one process, {args.interleaved} runs each:")
        for variant in ("official", "ours"):
            best, median = min(times[variant]), statistics.median(times[variant])
            print(f"  {variant:<10} best {best:6.2f} s   median {median:6.2f} s")
        print(
            f"  speed-up: best {min(times['official']) / min(times['ours']):.2f}x, "
            f"median {statistics.median(times['official']) / statistics.median(times['ours']):.2f}x"
        )


if __name__ == "__main__":
    main()
