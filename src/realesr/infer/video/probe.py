"""What a file is, by content: a video (a container with a video stream), an animation (GIF/WebP/APNG with more
than one frame, read through realesr.imagefiles), or neither; and the container its result is written in."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from realesr.imagefiles import ANIMATION_FORMATS, read_animation_header
from realesr.infer.video.options import (
    WRITE_CONTAINERS,
    VideoError,
    VideoInfo,
    VideoOptions,
    codec_family,
    load_av,
)

# FFmpeg demuxers of still images (and of text files FFmpeg reads as "tty"): those are the image path's.
_STILL_DEMUXERS = {"image2", "gif", "apng", "tty", "bin", "mjpeg"}


def probe_video(path: str | os.PathLike) -> VideoInfo | None:
    """A video (a container with a video stream that is not a single still image) or an animated image
    (GIF/WebP/APNG with more than one frame) -> VideoInfo; anything else -> None. By content, not by name.
    Raises VideoError for a file that is a container but has no video stream."""
    path = Path(path)
    try:
        info = path.stat()
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode) or info.st_size == 0:  # a FIFO or a device would block the first read
        return None
    animation = read_animation_header(path)
    if animation is not None:
        return VideoInfo(
            path,
            "animation",
            animation.width,
            animation.height,
            animation.format,
            animation.frames,
            animation.seconds or None,
            animation.format.lower(),
        )
    return _probe_container(path)


def _probe_container(path: Path) -> VideoInfo | None:
    av = load_av()
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return None
    with container:
        name = container.format.name
        if name in _STILL_DEMUXERS or name.endswith("_pipe"):
            return None
        if not container.streams.video:
            if container.streams.audio:
                raise VideoError(f"{path}: no video stream (only audio)")
            return None
        stream = container.streams.video[0]
        ctx = stream.codec_context
        duration = None
        if stream.duration is not None and stream.time_base:
            duration = float(stream.duration * stream.time_base)
        elif container.duration:
            duration = container.duration / 1_000_000
        return VideoInfo(path, "video", ctx.width, ctx.height, ctx.name, stream.frames or None, duration, name)


def as_video(info: VideoInfo, options: VideoOptions, dest: Path | None = None) -> bool:
    """Whether the result is a video: always for a video; for an animation when a codec is chosen or the
    output's name is a video container's."""
    if info.kind == "video":
        return True
    if options.codec is not None:
        return True
    return dest is not None and dest.suffix.lower() in WRITE_CONTAINERS


def output_extension(source: Path, info: VideoInfo, options: VideoOptions) -> str:
    """The container of the output: the input's where realesr writes it, else .mkv (it holds every codec);
    an animation keeps its format, or becomes .mp4 (.webm for VP8/VP9) when a codec is chosen."""
    if info.kind == "animation":
        if not as_video(info, options):
            return ANIMATION_FORMATS[info.codec]
        return ".webm" if codec_family(info, options) in ("vp8", "vp9") else ".mp4"
    ext = source.suffix.lower()
    if ext in WRITE_CONTAINERS:
        if ext == ".webm" and codec_family(info, options) not in ("vp8", "vp9", "av1"):
            return ".mkv"
        return ext
    return ".mkv"
