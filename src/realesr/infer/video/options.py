"""The video path's vocabulary: options, what a probe finds, what a run returns, the codec tables."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from realesr.errors import MissingExtraError, RealesrError, UsageError

# codec family -> encoder
ENCODERS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "vp8": "libvpx", "av1": "libsvtav1"}
CODEC_ALIASES = {
    "h264": "h264",
    "x264": "h264",
    "avc": "h264",
    "libx264": "h264",
    "hevc": "hevc",
    "h265": "hevc",
    "x265": "hevc",
    "libx265": "hevc",
    "vp9": "vp9",
    "libvpx-vp9": "vp9",
    "vp8": "vp8",
    "libvpx": "vp8",
    "av1": "av1",
    "libsvtav1": "av1",
    "svtav1": "av1",
}
DEFAULT_CRF = {"h264": 18, "hevc": 20, "vp9": 30, "vp8": 10, "av1": 30}
# Containers written (others become .mkv, which holds every codec). (.avi is not written: it needs Annex B
# H.264, the segments hold avcC; an .avi input gives an .mkv.)
WRITE_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}


class VideoError(RealesrError):
    """A video that cannot be read or written (one line, names the file)."""


@dataclass(frozen=True)
class VideoOptions:
    """How a video is encoded. ``codec``: None = the input's family where an encoder exists, else H.264 (an
    animation stays an animation unless a codec or a video output name is given); ``crf``: None = the codec's
    default (H.264 18); ``preset``: the encoder's speed preset (x264/x265 names, a number for SVT-AV1 and VP9's
    cpu-used); ``pix_fmt``: None = the input's where the encoder takes it, else yuv420p; ``batch``: frames per
    forward pass; ``start``/``end``: seconds of the input to keep; ``audio``: copy the non-video streams;
    ``segment_frames``: frames per resumable segment (each a closed GOP); ``threads``: encoder threads (fixed,
    so that a resumed run encodes exactly like an uninterrupted one); ``compare``: also write a split-screen
    clip, bicubic on the left, the result on the right."""

    codec: str | None = None
    crf: int | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    batch: int = 1
    start: float | None = None
    end: float | None = None
    audio: bool = True
    segment_frames: int = 240
    threads: int = 2
    suffix: str = "out"
    compare: bool = False

    def __post_init__(self) -> None:
        if self.codec is not None and self.codec.lower() not in CODEC_ALIASES:
            raise UsageError(f"unknown codec {self.codec!r}: use one of {', '.join(ENCODERS)}", params=("codec",))
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise UsageError(f"the crf must be in 0..63, not {self.crf}", params=("crf",))
        if self.batch < 1:
            raise UsageError(f"the batch must be at least 1, not {self.batch}", params=("batch",))
        if self.segment_frames < 1:
            raise UsageError("segment_frames must be at least 1")
        if self.pix_fmt is not None and not self.pix_fmt.replace("_", "").isalnum():
            raise UsageError(f"not a pixel format: {self.pix_fmt!r}", params=("pix_fmt",))
        for name in ("start", "end"):
            value = getattr(self, name)
            if value is not None and not (value >= 0 and np.isfinite(value)):
                raise UsageError(f"{name} must be a time >= 0 in seconds, not {value}", params=(name,))
        if self.start is not None and self.end is not None and self.end <= self.start:
            raise UsageError(f"end ({self.end} s) must be after start ({self.start} s)", params=("end",))

    def encoding_key(self) -> dict:
        """What must match for a resumed run to continue a work folder (everything that changes the bytes)."""
        key = asdict(self)
        key.pop("batch")  # the batch size does not change the frames (same network, per-frame results)
        key.pop("compare")  # the comparison clip is written after the result, from it
        return key


@dataclass
class VideoInfo:
    """What a probe finds: a container with a video stream (``kind="video"``) or an animated image
    (``kind="animation"``, ``codec`` then the Pillow format)."""

    path: Path
    kind: str
    width: int
    height: int
    codec: str
    frames: int | None  # None when the container does not say
    duration: float | None
    container: str


@dataclass
class VideoResult:
    source: Path
    output: Path
    frames: int
    seconds: float
    size: tuple[int, int]
    resumed_frames: int = 0
    notes: list[str] = field(default_factory=list)
    compare: Path | None = None

    @property
    def fps(self) -> float:
        done = self.frames - self.resumed_frames
        return done / self.seconds if self.seconds > 0 else 0.0


def load_av():
    """PyAV, quiet. FFmpeg's log goes nowhere (PyAV's no-op C callback), not through Python: a Python log
    callback needs the GIL, and an FFmpeg thread logging while the main thread closes a codec (holding the GIL)
    deadlocked runs that had failed, deaf to SIGTERM (issue 18)."""
    try:
        import av
    except ImportError:
        raise MissingExtraError("video", "video", "PyAV") from None
    av.logging.set_level(None)
    os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration to stderr otherwise
    return av


def one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


@lru_cache(maxsize=1)
def available_codecs() -> tuple[str, ...]:
    """The codec families whose encoder this PyAV build really has (a name FFmpeg lists may not open)."""
    av = load_av()
    found = []
    for family, encoder in ENCODERS.items():
        try:
            av.Codec(encoder, "w")
        except Exception:  # noqa: BLE001, S112 - listed but not built in
            continue
        found.append(family)
    return tuple(found)


def codec_family(info: VideoInfo, options: VideoOptions) -> str:
    """The family to encode: the chosen one, else the input's where an encoder exists, else H.264."""
    if options.codec is not None:
        return CODEC_ALIASES[options.codec.lower()]
    codec = "av1" if info.codec in ("libdav1d", "libaom-av1", "av1") else info.codec
    return codec if codec in ENCODERS and codec in available_codecs() else "h264"


def work_folder_for(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.realesr-work")
