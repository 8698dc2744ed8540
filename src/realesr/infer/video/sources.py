"""Decoding: the frames of a video (PyAV) or of an animation (Pillow, through realesr.imagefiles), in order, each
with its own timestamp, and the facts about the stream that the encoder plan needs.

A source yields :class:`Frame` items whose pixels are converted only when asked (``rgb()``), so a resumed run
passes over the frames it already has without converting them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from functools import partial
from pathlib import Path

import numpy as np

from realesr.errors import ImageReadError
from realesr.imagefiles import iter_animation, read_animation_header
from realesr.infer.video.colour import ColourTags, colour_of, frame_to_rgb
from realesr.infer.video.options import VideoError, VideoOptions, load_av, one_line


@dataclass
class StreamFacts:
    """What the first frame and the stream say: size, pixel format, colour, timing, aspect and rotation."""

    width: int
    height: int
    pix_fmt: str
    tags: ColourTags
    time_base: Fraction
    rate: Fraction
    sar: Fraction | None
    rotation: int
    deep: bool  # more than 8 bits per sample


@dataclass
class Frame:
    index: int
    pts: int
    duration: int
    rgb: Callable[[], np.ndarray]


def is_high_depth(pix_fmt: str) -> bool:
    return any(tag in pix_fmt for tag in ("10", "12", "14", "16"))


def _in_range(t: float | None, options: VideoOptions) -> bool:
    if t is None:
        return True
    if options.start is not None and t < options.start - 1e-9:
        return False
    return not (options.end is not None and t >= options.end - 1e-9)


def _past_end(t: float | None, options: VideoOptions) -> bool:
    return options.end is not None and t is not None and t >= options.end - 1e-9


class VideoSource:
    """A container's first video stream, decoded by PyAV; corrupt packets are counted and decoding goes on.

    ``corrupt`` counts the packets the decoder refused (a fact of the file), ``concealed`` the frames it
    flagged as patched over: that flag is FFmpeg's guess, and on a damaged stream it varied between runs of the
    same file (about 1 in 10 under load, with one decoder thread too), so it is reported apart."""

    def __init__(self, path: Path, options: VideoOptions) -> None:
        self.av = load_av()
        self.path, self.options = path, options
        self.corrupt = self.concealed = 0
        self.facts: StreamFacts | None = None
        try:
            self.container = self.av.open(str(path), metadata_errors="ignore")
        except (self.av.FFmpegError, OSError) as err:
            raise VideoError(f"{path}: cannot open the video ({one_line(err)})") from None
        if not self.container.streams.video:
            self.container.close()
            raise VideoError(f"{path}: no video stream")
        self.stream = self.container.streams.video[0]
        # Slice threads only: frame threads make what a corrupt packet costs depend on timing, and a resumed run
        # must decode exactly the frames the first run did.
        self.stream.thread_type = "SLICE"

    def close(self) -> None:
        self.container.close()

    def _decoded(self) -> Iterator:
        av = self.av
        try:
            for packet in self.container.demux(self.stream):
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    self.corrupt += 1
                    continue
                yield from frames
        except av.FFmpegError as err:
            raise VideoError(f"{self.path}: cannot read the video ({one_line(err)})") from None

    def first_facts(self) -> StreamFacts:
        """The facts of the stream, from its first frame in the chosen range (decoding it on a fresh open)."""
        first = next((f for f in self._decoded() if _in_range(f.time, self.options)), None)
        if first is None:
            raise VideoError(f"{self.path}: no frame could be decoded (empty, truncated, or none in the range)")
        stream = self.stream
        pix_fmt = first.format.name
        self.facts = StreamFacts(
            first.width,
            first.height,
            pix_fmt,
            colour_of(first, stream, first.height),
            stream.time_base,
            stream.average_rate or stream.guessed_rate or Fraction(24),
            stream.codec_context.sample_aspect_ratio,
            round(first.rotation or 0),
            is_high_depth(pix_fmt),
        )
        return self.facts

    def frames(self, facts: StreamFacts, deep: bool) -> Iterator[Frame]:
        """Every frame of the range in order (a frame without a timestamp follows the previous one)."""
        tags = facts.tags
        index, last_pts = 0, None
        for frame in self._decoded():
            if frame.is_corrupt:
                self.concealed += 1
            if not _in_range(frame.time, self.options):
                if _past_end(frame.time, self.options):
                    return
                continue
            duration = int(frame.duration or 0)
            pts = frame.pts if frame.pts is not None else (last_pts or 0) + (duration or 1)
            yield Frame(index, pts, duration, partial(frame_to_rgb, frame, tags, deep))
            last_pts = pts
            index += 1


class AnimationSource:
    """An animated GIF/WebP/APNG as a video stream: RGB frames (alpha dropped, with a note), timestamps in ms."""

    def __init__(self, path: Path, options: VideoOptions) -> None:
        self.path, self.options = path, options
        self.corrupt = self.concealed = 0
        self.notes: list[str] = []
        header = read_animation_header(path)
        if header is None:
            raise VideoError(f"{path}: not an animation realesr can read")
        self.header = header
        self.facts: StreamFacts | None = None

    def close(self) -> None:
        pass

    def first_facts(self) -> StreamFacts:
        h = self.header
        total = max(1, sum(h.durations))
        tags = ColourTags(1 if h.height >= 720 else 6, 1, 2, 2)
        if h.has_alpha:
            self.notes.append("transparency left out: the video codecs written here have no alpha")
        rate = Fraction(h.frames * 1000, total).limit_denominator(1001)
        self.facts = StreamFacts(h.width, h.height, "rgb24", tags, Fraction(1, 1000), rate, None, 0, False)
        return self.facts

    def frames(self, facts: StreamFacts, deep: bool) -> Iterator[Frame]:
        pts, index = 0, 0
        try:
            for rgba, duration in iter_animation(self.path):
                t = pts / 1000
                if _past_end(t, self.options):
                    return
                if _in_range(t, self.options):
                    rgb = np.ascontiguousarray(rgba[..., :3])
                    yield Frame(index, pts, duration, partial(np.asarray, rgb))
                    index += 1
                pts += max(duration, 1)
        except ImageReadError as err:
            raise VideoError(str(err)) from None
