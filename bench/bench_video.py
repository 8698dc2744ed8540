"""Video figures (issue 19): the colour bias per matrix, range and bit depth, and the video path's overhead.

    .venv/bin/python bench/bench_video.py [--frames 24] [--x4plus-frames 3] [--device cpu] [--batch 1] [--random]

1. Colour: frames written with the standards' equations (BT.601/709/2020, limited/full, 8/10 bit; flat patches,
   gradients, colour bars) decoded by the video path and by swscale's packed-RGB path (what the video path used
   before), each against the standard's inverse: the mean bias per channel in 8-bit levels. Then the same frame
   upscaled as a video (lossless encode both ways) and as a PNG: mean bias and mean |diff| over flat areas.
2. Overhead: frames per second of `upscale_video` on a synthetic 320x180 H.264+AAC clip, against the network
   alone on the same decoded frames; the pipeline alone (decode, colour, encode, mux with a network that only
   repeats pixels) in percent of the network's time. ``--random``: the models' architectures with random
   weights (same cost; no download).
"""

from __future__ import annotations

import argparse
import os
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
    up = Upscaler(_random_model(model) if RANDOM else model, device=device, tile=0)
    arrays = decoded_frames(clip)
    _upscale_batch(up, arrays[:1])  # warm-up (allocations, oneDNN kernels)
    # CPU seconds of this process (all its threads) beside wall seconds: on a machine shared with other work the
    # wall clock measures the others' load as much as this code; the CPU time is the work this code did.
    network, network_cpu = _timed(
        lambda: [_upscale_batch(up, arrays[i : i + batch]) for i in range(0, len(arrays), batch)]
    )
    out = folder / f"out_{model}.mp4"
    box: list = []
    whole, whole_cpu = _timed(lambda: box.append(upscale_video(up, clip, out, VideoOptions(batch=batch))))
    result = box[0]
    # What the video path adds to the network, measured directly: the whole path with a network that only
    # repeats pixels, less that network's own time through the same Upscaler calls (its tensor work at the
    # output size is in the network-alone figure too). Left: decode, colour conversions, frame cache, encode, mux.
    repeat = Upscaler(_Repeat(up.scale), device=device, tile=0)
    _upscale_batch(repeat, arrays[:1])
    rep, rep_cpu = _timed(lambda: [_upscale_batch(repeat, arrays[i : i + batch]) for i in range(0, len(arrays), batch)])
    pipe, pipe_cpu = _timed(
        lambda: upscale_video(repeat, clip, folder / f"pipe_{model}.mp4", VideoOptions(batch=batch))
    )
    extra, extra_cpu = pipe - rep, pipe_cpu - rep_cpu
    print(
        f"{model}: {result.frames} frames 320x180 -> {result.size[0]}x{result.size[1]} on {device} "
        f"(torch threads {torch.get_num_threads()}, batch {batch}): video path {whole:.1f} s wall / {whole_cpu:.1f} s "
        f"CPU, network alone {network:.1f} s wall / {network_cpu:.1f} s CPU ({len(arrays) / network:.2f} frames/s); "
        f"decode + colour + cache + encode + mux {extra:.1f} s wall = {100 * extra / network:.1f} %, "
        f"{extra_cpu:.1f} s CPU = {100 * extra_cpu / network_cpu:.1f} % of the network's",
        flush=True,
    )


def _timed(work) -> tuple[float, float]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    work()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


RANDOM: dict = {}


def _random_model(name: str) -> torch.nn.Module:
    """The architecture of ``name`` with random weights: the same work per frame as the released model."""
    from realesr.archs import RRDBNet, SRVGGNetCompact

    torch.manual_seed(0)
    if name == "RealESRGAN_x4plus":
        return RRDBNet(3, 3, num_feat=64, num_block=23, num_grow_ch=32, scale=4)
    return SRVGGNetCompact(3, 3, num_feat=64, num_conv=16, upscale=4, act_type="prelu")


class _Repeat(torch.nn.Module):
    size_multiple = 1

    def __init__(self, scale: int) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.repeat_interleave(self.scale, dim=2).repeat_interleave(self.scale, dim=3)


STANDARDS = {"BT.601": (6, 0.299, 0.114), "BT.709": (1, 0.2126, 0.0722), "BT.2020": (9, 0.2627, 0.0593)}


def ref_encode(rgb01: np.ndarray, kr: float, kb: float, bits: int, full: bool) -> list[np.ndarray]:
    """The standard's R'G'B' -> Y'CbCr code values (4:4:4)."""
    r, g, b = rgb01[..., 0], rgb01[..., 1], rgb01[..., 2]
    y = kr * r + (1 - kr - kb) * g + kb * b
    cb, cr = (b - y) / (2 * (1 - kb)), (r - y) / (2 * (1 - kr))
    top, s = 2**bits - 1, 2 ** (bits - 8)
    planes = (
        [top * y, top * cb + 2 ** (bits - 1), top * cr + 2 ** (bits - 1)]
        if full
        else [(219 * y + 16) * s, (224 * cb + 128) * s, (224 * cr + 128) * s]
    )
    return [np.clip(np.round(p), 0, top).astype(np.uint16 if bits > 8 else np.uint8) for p in planes]


def ref_decode(planes: list[np.ndarray], kr: float, kb: float, bits: int, full: bool) -> np.ndarray:
    """The standard's inverse, in [0, 1], clipped, not rounded."""
    y, cb, cr = (p.astype(np.float64) for p in planes)
    top, s = 2**bits - 1, 2 ** (bits - 8)
    if full:
        y, cb, cr = y / top, (cb - 2 ** (bits - 1)) / top, (cr - 2 ** (bits - 1)) / top
    else:
        y, cb, cr = (y / s - 16) / 219, (cb / s - 128) / 224, (cr / s - 128) / 224
    r, b = y + 2 * (1 - kr) * cr, y + 2 * (1 - kb) * cb
    return np.clip(np.stack([r, (y - kr * r - kb * b) / (1 - kr - kb), b], -1), 0, 1)


def picture(h: int = 96, w: int = 192) -> tuple[np.ndarray, np.ndarray]:
    """Flat patches, a ramp and colour bars in [0, 1], and the mask of the flat areas (3 pixels inside)."""
    rng = np.random.default_rng(19)
    img, flat = np.zeros((h, w, 3)), np.zeros((h, w), bool)
    cols = 12
    for i in range(cols):
        img[: h // 3, i * w // cols : (i + 1) * w // cols] = rng.uniform(0.05, 0.95, 3)
        flat[3 : h // 3 - 3, i * w // cols + 3 : (i + 1) * w // cols - 3] = True
    img[h // 3 : 2 * h // 3] = np.linspace(0, 1, w)[None, :, None]
    bars = [(0.75, 0.75, 0.75), (0.75, 0.75, 0), (0, 0.75, 0.75), (0, 0.75, 0), (0.75, 0, 0.75), (0.75, 0, 0)]
    for i, colour in enumerate(bars):
        img[2 * h // 3 :, i * w // 6 : (i + 1) * w // 6] = colour
        flat[2 * h // 3 + 3 : h - 3, i * w // 6 + 3 : (i + 1) * w // 6 - 3] = True
    return img, flat


def _frame(av, planes: list[np.ndarray], bits: int, space: int, full: bool):
    fmt = "yuv444p10le" if bits > 8 else "yuv444p"
    frame = av.VideoFrame(planes[0].shape[1], planes[0].shape[0], fmt)
    dtype = np.uint16 if bits > 8 else np.uint8
    for plane, values in zip(frame.planes, planes):
        np.frombuffer(plane, dtype).reshape(plane.height, -1)[:, : plane.width] = values
    frame.colorspace, frame.color_range = space, 2 if full else 1
    return frame


def colour_bias() -> None:
    import av

    from realesr.infer.video.colour import ColourTags, frame_to_rgb

    img, flat = picture()
    print("decode bias (mean of result - standard's inverse, 8-bit levels, R G B), whole picture:")
    for name, (space, kr, kb) in STANDARDS.items():
        for full in (False, True):
            for bits in (8, 10):
                planes = ref_encode(img, kr, kb, bits, full)
                frame = _frame(av, planes, bits, space, full)
                want = ref_decode(planes, kr, kb, bits, full) * 255
                ours = frame_to_rgb(frame, ColourTags(space, 2 if full else 1, 2, 2), bits > 8) / (
                    257 if bits > 8 else 1
                )
                sws = frame.reformat(
                    format="rgb48le" if bits > 8 else "rgb24",
                    src_colorspace=space,
                    src_color_range=2 if full else 1,
                    dst_color_range=2,
                ).to_ndarray() / (257 if bits > 8 else 1)
                b1, b2 = (ours - want).mean(axis=(0, 1)), (sws - want).mean(axis=(0, 1))
                print(
                    f"  {name:7s} {'full   ' if full else 'limited'} {bits:2d} bit: video path "
                    f"{b1[0]:+.3f} {b1[1]:+.3f} {b1[2]:+.3f}   swscale rgb24 (before) "
                    f"{b2[0]:+.3f} {b2[1]:+.3f} {b2[2]:+.3f}",
                    flush=True,
                )
    print("4:2:0 decode bias over flat areas (8 bit; chroma taken on the patches' own samples), R G B:")
    for name, (space, kr, kb) in STANDARDS.items():
        for full in (False, True):
            planes = ref_encode(img, kr, kb, 8, full)
            sub = [planes[0], planes[1][::2, ::2].copy(), planes[2][::2, ::2].copy()]
            frame = av.VideoFrame(img.shape[1], img.shape[0], "yuv420p")
            for plane, values in zip(frame.planes, sub):
                np.frombuffer(plane, np.uint8).reshape(plane.height, -1)[:, : plane.width] = values
            frame.colorspace, frame.color_range = space, 2 if full else 1
            want = (ref_decode(planes, kr, kb, 8, full) * 255)[flat]
            ours = frame_to_rgb(frame, ColourTags(space, 2 if full else 1, 2, 2), False)[flat]
            sws = frame.reformat(
                format="rgb24",
                src_colorspace=space,
                src_color_range=2 if full else 1,
                dst_color_range=2,
                interpolation=av.video.reformatter.Interpolation.BICUBIC,
            ).to_ndarray()[flat]
            b1, b2 = (ours - want).mean(axis=0), (sws - want).mean(axis=0)
            print(
                f"  {name:7s} {'full   ' if full else 'limited'}: video path {b1[0]:+.3f} {b1[1]:+.3f} {b1[2]:+.3f}"
                f"   swscale rgb24 bicubic (before) {b2[0]:+.3f} {b2[1]:+.3f} {b2[2]:+.3f}",
                flush=True,
            )
    print("video vs PNG (same frame, lossless encode, a tiny random x2 network; flat areas; 8-bit levels):")
    with tempfile.TemporaryDirectory() as tmp:
        for name, (space, kr, kb) in STANDARDS.items():
            for full in (False, True):
                bias, mad = _video_vs_png(av, Path(tmp), img, flat, space, kr, kb, full)
                print(
                    f"  {name:7s} {'full   ' if full else 'limited'}: mean bias {bias[0]:+.3f} {bias[1]:+.3f} "
                    f"{bias[2]:+.3f}   mean |diff| {mad[0]:.3f} {mad[1]:.3f} {mad[2]:.3f}",
                    flush=True,
                )


def _video_vs_png(av, folder: Path, img, flat, space, kr, kb, full):
    from realesr.infer.upscaler import Upscaler
    from realesr.infer.video import VideoOptions, upscale_video

    planes = ref_encode(img, kr, kb, 8, full)
    clip, out = folder / f"c{space}{full}.mkv", folder / f"o{space}{full}.mkv"
    with av.open(str(clip), "w") as oc:
        v = oc.add_stream("libx264", rate=24, options={"qp": "0", "threads": "1"})
        v.width, v.height, v.pix_fmt = img.shape[1], img.shape[0], "yuv444p"
        v.codec_context.colorspace, v.codec_context.color_range = space, 2 if full else 1
        for i in range(2):
            frame = _frame(av, planes, 8, space, full)
            frame.pts = i
            for p in v.encode(frame):
                oc.mux(p)
        for p in v.encode():
            oc.mux(p)
    from realesr.archs import SRVGGNetCompact

    torch.manual_seed(0)
    up = Upscaler(SRVGGNetCompact(3, 3, num_feat=4, num_conv=2, upscale=2), device="cpu", tile=0)
    upscale_video(up, clip, out, VideoOptions(crf=0, pix_fmt="yuv444p"))
    with av.open(str(out)) as c:
        frame = next(c.decode(video=0))
    got = [np.frombuffer(p, np.uint8).reshape(p.height, -1)[:, : p.width] for p in frame.planes]
    video = np.round(ref_decode(got, kr, kb, 8, full) * 255)
    png = np.round(ref_decode(planes, kr, kb, 8, full) * 255).astype(np.uint8)
    still = up.upscale_array(png).astype(float)
    mask = flat.repeat(2, 0).repeat(2, 1)
    diff = video[mask] - still[mask]
    return diff.mean(axis=0), np.abs(diff).mean(axis=0)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown CPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24, help="frames for realesr-animevideov3")
    parser.add_argument("--x4plus-frames", type=int, default=3, help="frames for RealESRGAN_x4plus")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--random", action="store_true", help="random weights of the models' architectures")
    parser.add_argument("--no-colour", action="store_true")
    args = parser.parse_args()
    print(f"{cpu_model()}, {os.cpu_count()} logical CPUs, torch {torch.__version__}", flush=True)
    if not args.no_colour:
        colour_bias()
    if args.random:
        RANDOM.update(args=True)
    with tempfile.TemporaryDirectory() as tmp:
        if args.frames:
            bench("realesr-animevideov3", args.frames, args.device, args.batch, Path(tmp))
        if args.x4plus_frames:
            bench("RealESRGAN_x4plus", args.x4plus_frames, args.device, args.batch, Path(tmp))


if __name__ == "__main__":
    main()
