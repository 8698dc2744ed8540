"""Upscaling videos and animated images (the `video` extra: PyAV): decode -> network -> encode, resumable.

    result = upscale_video(upscaler, "clip.mp4", "out/clip_out.mp4", VideoOptions(crf=18))
    for frame in upscale_frames(upscaler, frames):   # HxWx3 uint8/uint16 arrays in, upscaled arrays out
        ...

The parts (docs/video.md): ``probe`` (what a file is), ``sources`` (decoding, PyAV or Pillow), ``colour`` (exact
Y'CbCr <-> R'G'B' from the standards' equations), ``plan`` (the encoder plan, tried before any work),
``resume`` (the work folder: manifest, segments, the cache of finished frames), ``encode`` (segments and the
mux), ``job`` (the three threads of one run), ``compare`` (the split-screen clip).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

from realesr.imagefiles import ANIMATION_FORMATS, VIDEO_EXTENSIONS, iter_animation, read_animation_header
from realesr.imagefiles import write_animation as _write_animation
from realesr.infer.video.options import (
    VideoError,
    VideoInfo,
    VideoOptions,
    VideoResult,
    available_codecs,
    work_folder_for,
)
from realesr.infer.video.probe import as_video, output_extension, probe_video

__all__ = [
    "ANIMATION_FORMATS",
    "VIDEO_EXTENSIONS",
    "VideoError",
    "VideoInfo",
    "VideoOptions",
    "VideoResult",
    "available_codecs",
    "output_extension",
    "probe_video",
    "upscale_frames",
    "upscale_video",
    "work_folder_for",
]


def upscale_video(
    upscaler,
    source: str | os.PathLike,
    dest: str | os.PathLike,
    options: VideoOptions | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
    info: VideoInfo | None = None,
    compare: str | os.PathLike | None = None,
) -> VideoResult:
    """Upscale the video (or animation) ``source`` into ``dest`` (written atomically; a video's container from
    its extension; an animation stays one unless ``dest`` is a video name or a codec is chosen). Resumes from
    ``.DEST.realesr-work`` after an interrupted run of the same input and options. ``compare``: also write a
    split-screen clip there. ``on_progress(frames_done, frames_total_or_None)``. Raises VideoError."""
    options = options or VideoOptions()
    source, dest = Path(source), Path(dest)
    if info is None:
        info = probe_video(source)
        if info is None:
            raise VideoError(f"{source}: not a video file realesr can decode")
    if _same_file(source, dest):
        raise VideoError(f"{source}: the output would overwrite the input", params=("output",))
    if not as_video(info, options, dest):
        return _upscale_animation(upscaler, source, dest, info, on_progress, compare)
    from realesr.infer.video.job import VideoJob

    job = VideoJob(upscaler, source, dest, info, options, on_progress)
    result = job.run()
    if compare is not None:
        _compare_video(job, Path(compare))
        result.compare = Path(compare)
    return result


def _compare_video(job, compare: Path) -> None:
    from realesr.infer.video.compare import compare_source, write_compare_video

    facts, plan = job.facts, job.plan
    src = compare_source(job.info.kind, job.source, job.options)
    try:
        write_compare_video(job.av, plan, job.options, src, job.dest, compare, facts)
    finally:
        src.close()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def _upscale_animation(upscaler, source: Path, dest: Path, info: VideoInfo, on_progress, compare) -> VideoResult:
    """Animated GIF/WebP/PNG -> the same format, every frame upscaled (alpha through the model), durations and
    loop count kept."""
    started = time.perf_counter()
    header = read_animation_header(source)
    if header is None:
        raise VideoError(f"{source}: not an animation realesr can read")
    frames, durations, sheets = [], [], []
    for index, (rgba, duration) in enumerate(iter_animation(source)):
        array = rgba if header.has_alpha else np.ascontiguousarray(rgba[..., :3])
        up = upscaler.upscale_array(array)
        frames.append(up)
        durations.append(duration)
        if compare is not None:
            from realesr.infer.video.compare import split_screen

            sheets.append(split_screen(array, up))
        if on_progress:
            on_progress(index + 1, header.frames)
    _write_animation(dest, frames, durations, header.loop, header.format)
    if compare is not None:
        _write_animation(Path(compare), sheets, durations, header.loop, header.format)
    size = (frames[0].shape[1], frames[0].shape[0])
    return VideoResult(
        source, dest, len(frames), time.perf_counter() - started, size, compare=Path(compare) if compare else None
    )


def upscale_frames(upscaler, frames: Iterable[np.ndarray], batch: int = 1) -> Iterator[np.ndarray]:
    """Upscale a stream of frames (HxWx3 RGB uint8 or uint16 arrays, or HxWx4 with alpha) in order, ``batch``
    frames of one size per forward pass; yields the upscaled arrays as they are done (nothing is held beyond
    one batch)."""
    pending: list[np.ndarray] = []
    for frame in frames:
        array = np.asarray(frame)
        if pending and (pending[0].shape != array.shape or pending[0].dtype != array.dtype):
            yield from upscaler.upscale_arrays(pending)
            pending = []
        pending.append(array)
        if len(pending) >= batch:
            yield from upscaler.upscale_arrays(pending)
            pending = []
    if pending:
        yield from upscaler.upscale_arrays(pending)
