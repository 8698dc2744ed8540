"""The video side of `realesr upscale`: its option group, the VideoOptions it gives, and how a video's progress
and count are shown (the frame rate over a moving window; "1 video, 240 frames").

PyAV is imported only when a video is actually processed, so `realesr upscale --help` stays fast.
"""

from __future__ import annotations

import argparse
import time
from collections import deque
from dataclasses import dataclass

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
        help="video codec (default: the input's where an encoder exists, else h264; a codec this install's PyAV "
        "lacks is refused before any work, naming the ones it has); an animation given a codec becomes a video",
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
        compare=bool(getattr(args, "compare", False)),
    )


@dataclass
class VideoCounts:
    """Videos and their frames, for the summary line in their own words ("1 video, 240 frames")."""

    videos: int = 0
    frames: int = 0

    def add(self, result) -> None:
        self.videos += 1
        self.frames += result.frames

    def phrase(self, images_done: int, images_total: int, videos_total: int) -> str | None:
        if not videos_total:
            return None
        videos = f"{self.videos} video{'' if self.videos == 1 else 's'}"
        if self.videos != videos_total:
            videos = f"{self.videos} of {videos_total} videos"
        videos += f", {self.frames} frame{'' if self.frames == 1 else 's'}"
        return f"{images_done} of {images_total} image(s) and {videos}" if images_total else videos


class FrameRate:
    """Frames per second over the last ``window`` frames (a moving average): an ETA that neither jumps with one
    slow frame nor remembers a slow start for ever."""

    def __init__(self, window: int = 30) -> None:
        self.marks: deque[tuple[float, int]] = deque(maxlen=window + 1)

    def mark(self, done: int, now: float | None = None) -> None:
        self.marks.append((time.perf_counter() if now is None else now, done))

    def rate(self) -> float | None:
        if len(self.marks) < 2:
            return None
        (t0, n0), (t1, n1) = self.marks[0], self.marks[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 and n1 > n0 else None

    def eta(self, done: int, total: int | None) -> str:
        rate = self.rate()
        if rate is None or total is None:
            return "?"
        seconds = int(max(0, total - done) / rate)
        return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
