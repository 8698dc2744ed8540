"""Throughput of `realesr upscale` beyond one process on this machine: one process, `--device cpu,cpu`, and the
Ray path (a local Ray), on the same images; checks that every run wrote the same bytes.

    python bench/bench_scaleout.py                       # 40 crops 96x96 of ../shared/data, realesr-animevideov3
    python bench/bench_scaleout.py --count 40 --size 128 --model RealESRGAN_x4plus_anime_6B
    python bench/bench_scaleout.py --devices cuda:0,cuda:1 cuda:0   # on a GPU machine: the scaling of devices

Each configuration is a fresh `python -m realesr upscale` (wall time includes starting Python, loading the model,
spawning workers or starting Ray); the summary line's seconds are the upscaling phase after the plan. Runs are
sequential; on a shared machine, run it when it is quiet and read the load average it prints.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def make_inputs(folder: Path, count: int, size: int) -> None:
    from PIL import Image

    photos = sorted((DATA / "train" / "photos").glob("*.png"))
    folder.mkdir(parents=True)
    for i in range(count):
        with Image.open(photos[i % len(photos)]) as im:
            x = (i // len(photos)) * size % max(1, im.width - size)
            im.convert("RGB").crop((x, 0, x + size, size)).save(folder / f"img{i:03d}.png")


def run(label: str, args: list[str], out: Path) -> dict:
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "realesr", "upscale", *args, "-o", str(out), "--no-progress"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{label} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    match = re.search(r"\((\d+\.\d+) s", done.stdout)
    return {
        "label": label,
        "wall": wall,
        "phase": float(match.group(1)) if match else float("nan"),
        "files": {p.name: p.read_bytes() for p in out.iterdir()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--model", default="realesr-animevideov3")
    parser.add_argument(
        "--devices", nargs="*", default=["cpu", "cpu,cpu"], help="--device values to time (default: cpu and cpu,cpu)"
    )
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    opts = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="bench_scaleout_"))
    try:
        make_inputs(work / "in", opts.count, opts.size)
        common = [str(work / "in"), "-m", opts.model]
        print(
            f"{opts.count} images {opts.size}x{opts.size}, {opts.model}, {os.cpu_count()} CPU core(s), "
            f"load average before: {os.getloadavg()[0]:.1f}"
        )
        results = []
        for i, device in enumerate(opts.devices):
            results.append(run(f"--device {device}", [*common, "--device", device], work / f"out{i}"))
        if not opts.no_ray:
            results.append(run("--ray (local Ray)", [*common, "--ray"], work / "ray"))
        base = results[0]
        print(f"{'run':<24} {'wall s':>8} {'images/s':>9} {'upscale s':>10} {'images/s':>9}  same bytes")
        for r in results:
            same = "yes" if r["files"] == base["files"] else "NO"
            print(
                f"{r['label']:<24} {r['wall']:8.1f} {opts.count / r['wall']:9.2f} {r['phase']:10.1f} "
                f"{opts.count / r['phase']:9.2f}  {same}"
            )
        print(f"load average after: {os.getloadavg()[0]:.1f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
