"""The video side of `realesr upscale`: its option group, and one video's job with a progress bar in frames.

PyAV is imported only when a video is actually processed, so `realesr upscale --help` stays fast.
"""

from __future__ import annotations

import argparse
import sys
import time

from realesr.cli._options import option
from realesr.schema import Float, Int

VIDEO_FLAGS = {
    "codec": "--codec",
    "crf": "--crf",
    "pix_fmt": "--pix-fmt",
    "batch": "--batch",
    "start": "--start",
    "end": "--end",
    "preset": "--preset",
}


def _time(text: str) -> float:
    """Seconds, or [[hh:]mm:]ss(.fff)."""
    try:
        parts = [float(p) for p in text.split(":")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (seconds or hh:mm:ss)") from None
    if len(parts) > 3 or any(not p >= 0 for p in parts):
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (seconds or hh:mm:ss)")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + part
    return option(_TIME)(repr(seconds))  # finite and bounded: not "inf", not 1e308


# Ten years of video: beyond any file, small enough for every time base's integer timestamps.
_TIME = Float(low=0, high=10 * 365 * 86400.0)


_crf = option(Int(0, 63))


def add_video_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "video",
        "videos (mp4, mkv, webm, mov, avi, ...) and animated GIF/WebP/PNG, recognised by content; "
        "audio and subtitles are copied, colours keep the input's matrix and range; an interrupted run "
        "resumes when the same command is run again (needs the video extra: pip install 'realesr[video]')",
    )
    group.add_argument(
        "--codec",
        choices=("h264", "hevc", "vp9", "vp8", "av1"),
        default=None,
        help="video codec (default: the input's where an encoder exists, else h264)",
    )
    group.add_argument(
        "--crf",
        type=_crf,
        default=None,
        metavar="N",
        help="constant rate factor, lower is better (default: h264 18, hevc 20, vp9/av1 30)",
    )
    group.add_argument(
        "--preset",
        default=None,
        metavar="P",
        help="encoder speed preset (x264/x265: ultrafast..veryslow, default medium; av1/vp9: a number)",
    )
    group.add_argument(
        "--pix-fmt",
        default=None,
        metavar="FMT",
        help="output pixel format, e.g. yuv420p10le (default: the input's where the encoder takes it)",
    )
    group.add_argument("--start", type=_time, default=None, metavar="T", help="start time (seconds or hh:mm:ss)")
    group.add_argument("--end", type=_time, default=None, metavar="T", help="end time (seconds or hh:mm:ss)")
    group.add_argument("--no-audio", action="store_true", help="leave out audio, subtitle and data streams")


def check_video_routing(args: argparse.Namespace, plan) -> bool:
    """Whether a run that scale-out would take (--batch, several devices, --ray) can go there: a plan with videos
    stays in this process (--batch then sets the frames per forward pass), on one device."""
    if not any(item.video is not None for item in plan.items):
        return True
    from realesr.cli import scaleout
    from realesr.errors import UsageError

    if getattr(args, "ray", None) is not None or scaleout.devices_of(args) is not None:
        raise UsageError(
            "videos are upscaled in this process on one device: give one --device and no --ray "
            "(upscale the images separately to spread them)",
            params=("device",),
        )
    return False


def video_options(args: argparse.Namespace):
    from realesr.infer.video import VideoOptions

    return VideoOptions(
        codec=args.codec,
        crf=args.crf,
        preset=args.preset,
        pix_fmt=args.pix_fmt,
        batch=args.batch,
        start=args.start,
        end=args.end,
        audio=not args.no_audio,
        suffix=args.suffix,
    )


def run_video_item(upscaler, item, options, show_progress: bool):
    """Upscale one planned video with a progress bar in frames (fps, ETA); returns the VideoResult."""
    from tqdm import tqdm

    from realesr.infer.video import upscale_video

    bar = None
    started = time.perf_counter()

    def on_progress(done: int, total: int | None) -> None:
        nonlocal bar
        if not show_progress:
            return
        if bar is None:
            bar = tqdm(
                total=total,
                initial=done,
                unit="frame",
                desc=item.source.name,
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.1,
            )
        bar.update(done - bar.n)

    try:
        result = upscale_video(upscaler, item.source, item.output, options, on_progress=on_progress, info=item.video)
    finally:
        if bar is not None:
            bar.close()
    elapsed = time.perf_counter() - started
    fps = (result.frames - result.resumed_frames) / elapsed if elapsed > 0 else 0.0
    print(
        f"{item.source} -> {result.output}: {result.frames} frames, {result.size[0]} x {result.size[1]}, "
        f"{elapsed:.1f} s, {fps:.2f} fps",
        file=sys.stderr,
    )
    return result
