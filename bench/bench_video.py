"""Video throughput: frames per second of `upscale_video` on a synthetic 320x180 H.264+AAC clip, against the
network alone on the same decoded frames (the overhead of decoding, colour conversion, encoding and muxing).

    .venv/bin/python bench/bench_video.py [--frames 24] [--x4plus-frames 3] [--device cpu] [--batch 1]

Prints one line per model: frames, seconds of the whole video path, seconds of the network alone on the same
frames (same batch), fps of each and the overhead in percent of the video path.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch


def make_clip(path: Path, frames: int, width: int = 320, height: int = 180, fps: int = 24) -> None:
    import av

    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (height // 4, width // 4, 3), dtype=np.uint8).repeat(4, 0).repeat(4, 1)
    with av.open(str(path), "w") as oc:
        v = oc.add_stream("libx264", rate=fps, options={"crf": "18"})
        v.width, v.height, v.pix_fmt = width, height, "yuv420p"
        a = oc.add_stream("aac", rate=48000)
        a.layout = "stereo"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(np.roll(base, 2 * i, axis=1), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for p in v.encode(frame):
                oc.mux(p)
        for p in v.encode():
            oc.mux(p)
        for k in range(int(48000 * frames / fps / 1024) + 1):
            af = av.AudioFrame.from_ndarray(
                (rng.standard_normal((2, 1024)) * 0.1).astype(np.float32), format="fltp", layout="stereo"
            )
            af.sample_rate, af.pts = 48000, k * 1024
            for p in a.encode(af):
                oc.mux(p)
        for p in a.encode():
            oc.mux(p)


def decoded_frames(path: Path) -> list[np.ndarray]:
    import av

    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def bench(model: str, frames: int, device: str, batch: int, folder: Path) -> None:
    from realesr.infer.upscaler import Upscaler
    from realesr.infer.video import VideoOptions, upscale_video
    from realesr.infer.video.job import upscale_batch as _upscale_batch

    clip = folder / f"clip_{frames}.mp4"
    if not clip.exists():
        make_clip(clip, frames)
    up = Upscaler(model, device=device, tile=0)
    arrays = decoded_frames(clip)
    _upscale_batch(up, arrays[:1])  # warm-up (allocations, oneDNN kernels)
    started = time.perf_counter()
    for i in range(0, len(arrays), batch):
        _upscale_batch(up, arrays[i : i + batch])
    if up.device.type == "cuda":
        torch.cuda.synchronize()
    network = time.perf_counter() - started
    out = folder / f"out_{model}.mp4"
    started = time.perf_counter()
    result = upscale_video(up, clip, out, VideoOptions(batch=batch))
    whole = time.perf_counter() - started
    # The pipeline alone (decode, colour conversions, encode at the output size, mux) with a network that only
    # repeats pixels: what the video path adds to the network, measured directly (a difference of two runs on a
    # shared CPU is noise).
    started = time.perf_counter()
    upscale_video(
        Upscaler(_Repeat(up.scale), device=device, tile=0),
        clip,
        folder / f"pipe_{model}.mp4",
        VideoOptions(batch=batch),
    )
    pipeline = time.perf_counter() - started
    print(
        f"{model}: {result.frames} frames 320x180 -> {result.size[0]}x{result.size[1]} on {device} "
        f"(torch threads {torch.get_num_threads()}, batch {batch}): video path {whole:.1f} s "
        f"({result.frames / whole:.2f} fps), network alone {network:.1f} s ({len(arrays) / network:.2f} fps), "
        f"decode+encode alone {pipeline:.1f} s = {100 * pipeline / network:.1f} % of the network's time",
        flush=True,
    )


class _Repeat(torch.nn.Module):
    size_multiple = 1

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.scale, dim=2).repeat_interleave(self.scale, dim=3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24, help="frames for realesr-animevideov3")
    parser.add_argument("--x4plus-frames", type=int, default=3, help="frames for RealESRGAN_x4plus")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bench("realesr-animevideov3", args.frames, args.device, args.batch, Path(tmp))
        if args.x4plus_frames:
            bench("RealESRGAN_x4plus", args.x4plus_frames, args.device, args.batch, Path(tmp))


if __name__ == "__main__":
    main()
