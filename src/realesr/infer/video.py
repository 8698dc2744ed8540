"""Upscaling videos and animated images with PyAV (the `video` extra): decode -> network -> encode, resumable.

    result = upscale_video(upscaler, "clip.mp4", "out/clip_out.mp4", VideoOptions(crf=18))
    for frame in upscale_frames(upscaler, frames):   # HxWx3 uint8/uint16 arrays in, upscaled arrays out
        ...

How it works (docs/video.md):
- Every decoded frame goes through the network once, in order, and is encoded with its own timestamp (the input
  stream's time base and pts are kept, so variable frame rate stays variable).
- The YUV<->RGB conversions use the matrix and range the input declares (BT.601/709/2020, limited/full); an
  undeclared matrix is guessed (BT.709 from 720 lines up, else BT.601) and a note says so. The output carries
  the same tags. 8-bit stays 8-bit RGB between the two conversions (one rounding each way), >8-bit goes
  through 16-bit RGB.
- The video is encoded in segments of whole GOPs (each segment is a fresh encoder, so it starts on a key frame,
  and B-frames are off, so decode order is presentation order and segments join with exact timestamps) in a
  work folder beside the output, ``.NAME.realesr-work``, with a manifest. Rerunning the same command on the same
  input with the same options resumes after the last closed segment. At the end the segments and the other
  streams of the input (audio, subtitles: copied packet for packet) are muxed into one file written atomically,
  and the work folder is removed.
- Decoding, the network and encoding run in three threads joined by bounded queues: memory does not grow with
  the length of the input.
- Animated GIF/WebP/PNG go through Pillow (their alpha and frame durations are kept) and come out animated in
  the same format.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import stat
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np

from realesr.errors import RealesrError, UsageError
from realesr.schema import Int, Name, Record, Seq
from realesr.statefiles import StateFileError, read_json

__all__ = [
    "ANIMATION_FORMATS",
    "VIDEO_EXTENSIONS",
    "VideoError",
    "VideoInfo",
    "VideoOptions",
    "VideoResult",
    "output_extension",
    "probe_video",
    "upscale_frames",
    "upscale_video",
    "work_folder_for",
]

# Extensions of the video files a folder listing picks up (a file named on the command line is probed whatever
# its name).
from realesr.imagefiles import SOFTWARE, VIDEO_EXTENSIONS

# Containers written (others become .mkv, which holds every codec).
# (.avi is not written: it needs Annex B H.264, the segments hold avcC; an .avi input gives an .mkv.)
WRITE_CONTAINERS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm"}
ANIMATION_FORMATS = frozenset({"GIF", "WEBP", "PNG"})  # Pillow formats whose multi-frame files are animations

# codec family -> (encoder, family name shown to the user)
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
_SEGMENT_FORMAT = "matroska"
MANIFEST_VERSION = 1
# The work folder's manifest.json and each segment's timestamps as _close_segment writes them: read back on a
# resume, so checked (file names plain, counts numbers) before any is used.
_SEGMENT = Record(
    {"file": Name(), "pts_file": Name(), "first": Int(0), "frames": Int(0)},
    required=frozenset({"file", "pts_file", "first", "frames"}),
)
_MANIFEST = Record({"key": Record({}), "segments": Seq(_SEGMENT)}, required=frozenset({"key", "segments"}))
_PTS = Record(
    {"pts": Seq(Int(), max_len=10**7), "durations": Seq(Int(0), max_len=10**7)},
    required=frozenset({"pts", "durations"}),
)


class VideoError(RealesrError):
    """A video that cannot be read or written (one line, names the file)."""


@dataclass(frozen=True)
class VideoOptions:
    """How a video is encoded. ``codec``: None = the input's family where an encoder exists, else H.264;
    ``crf``: None = the codec's default (H.264 18); ``preset``: the encoder's speed preset (x264/x265 names,
    a number for SVT-AV1 and VP9's cpu-used); ``pix_fmt``: None = the input's where the encoder takes it, else
    yuv420p; ``batch``: frames per forward pass; ``start``/``end``: seconds of the input to keep;
    ``audio``: copy the non-video streams; ``segment_frames``: frames per resumable segment;
    ``threads``: encoder threads (fixed, so that a resumed run encodes exactly like an uninterrupted one)."""

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

    def __post_init__(self) -> None:
        if self.codec is not None and self.codec.lower() not in CODEC_ALIASES:
            raise UsageError(f"unknown codec {self.codec!r}: use one of h264, hevc, vp9, vp8, av1", params=("codec",))
        if self.crf is not None and not 0 <= self.crf <= 63:
            raise UsageError(f"the crf must be in 0..63, not {self.crf}", params=("crf",))
        if self.batch < 1:
            raise UsageError(f"the batch must be at least 1, not {self.batch}", params=("batch",))
        if self.segment_frames < 1:
            raise UsageError("segment_frames must be at least 1")
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
        return key


@dataclass
class VideoInfo:
    """What a probe finds: a container with a video stream (``kind="video"``) or an animated image
    (``kind="animation"``)."""

    path: Path
    kind: str
    width: int
    height: int
    codec: str  # decoder name, or the Pillow format for animations
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

    @property
    def fps(self) -> float:
        done = self.frames - self.resumed_frames
        return done / self.seconds if self.seconds > 0 else 0.0


def _av():
    try:
        import av
    except ImportError:
        raise VideoError("video needs PyAV: pip install 'realesr[video]'") from None
    av.logging.set_level(av.logging.PANIC)  # FFmpeg's own chatter would break the one-line rule
    return av


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# --------------------------------------------------------------------------------------------------- probing


def probe_video(path: str | os.PathLike) -> VideoInfo | None:
    """A video (a container with a video stream that is not a single still image) or an animated image
    (GIF/WebP/APNG with more than one frame) -> VideoInfo; anything else -> None. By content, not by name.
    Raises VideoError for a file that is a container but has no video stream."""
    path = Path(path)
    try:
        if not stat.S_ISREG(path.stat().st_mode):  # a FIFO or a device would block the first read
            return None
    except OSError:
        return None
    animation = _probe_animation(path)
    if animation is not None:
        return animation
    try:
        if path.stat().st_size == 0:
            return None
    except OSError:
        return None
    av = _av()
    try:
        container = av.open(str(path), metadata_errors="ignore")
    except (av.FFmpegError, OSError, UnicodeDecodeError, ValueError):
        return None
    with container:
        name = container.format.name
        if name in (
            "image2",
            "png_pipe",
            "jpeg_pipe",
            "webp_pipe",
            "gif",
            "apng",
            "bmp_pipe",
            "tiff_pipe",
            "tty",
            "bin",
            "mjpeg",
        ) or name.endswith("_pipe"):
            return None  # still images (and text files FFmpeg reads as "tty") are the image path's
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


def _probe_animation(path: Path) -> VideoInfo | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            frames = int(getattr(im, "n_frames", 1) or 1)
            fmt = im.format
            if fmt not in ANIMATION_FORMATS or frames < 2:
                return None
            total = 0.0
            for index in range(frames):
                im.seek(index)
                im.load()  # Pillow's WebP reader sets a frame's duration when the frame is loaded
                total += float(im.info.get("duration", 0) or 0) / 1000
            return VideoInfo(path, "animation", im.width, im.height, fmt, frames, total or None, fmt.lower())
    except Exception:  # noqa: BLE001 - not an image Pillow can read: maybe a video
        return None


def output_extension(source: Path, info: VideoInfo, options: VideoOptions) -> str:
    """The container of the output: the input's where realesr writes it, else .mkv (it holds every codec);
    animations keep their format."""
    if info.kind == "animation":
        return {"GIF": ".gif", "WEBP": ".webp", "PNG": ".png"}[info.codec]
    ext = source.suffix.lower()
    if ext in WRITE_CONTAINERS:
        family = _codec_family(info, options)
        if ext == ".webm" and family not in ("vp8", "vp9", "av1"):
            return ".mkv"
        return ext
    return ".mkv"


def _codec_family(info: VideoInfo | str, options: VideoOptions) -> str:
    if options.codec is not None:
        return CODEC_ALIASES[options.codec.lower()]
    codec = info.codec if isinstance(info, VideoInfo) else info
    if codec in ("libdav1d", "libaom-av1"):
        codec = "av1"
    if codec == "av1":
        return "h264"  # no AV1 decoder here to join segments (see _can_decode_av1)
    return codec if codec in ENCODERS else "h264"


def work_folder_for(dest: Path) -> Path:
    return dest.with_name(f".{dest.name}.realesr-work")


# --------------------------------------------------------------------------------------------------- colour

# FFmpeg AVColorSpace values -> the coefficient set swscale uses (AVCOL_SPC_*)
_MATRIX_NAMES = {1: "BT.709", 5: "BT.601", 6: "BT.601", 9: "BT.2020", 10: "BT.2020", 4: "FCC", 7: "SMPTE 240M"}


@dataclass
class ColourTags:
    colorspace: int  # AVColorSpace
    color_range: int  # 1 limited (MPEG), 2 full (JPEG)
    primaries: int
    trc: int
    guessed: bool = False

    def describe(self) -> str:
        return f"{_MATRIX_NAMES.get(self.colorspace, self.colorspace)} {'full' if self.color_range == 2 else 'limited'}"


def _colour_of(frame, stream, height: int) -> ColourTags:
    """The matrix and range the input declares (the frame's own tags first, then the stream's); undeclared:
    BT.709 from 720 lines up, else BT.601, and limited range (the video default)."""
    ctx = stream.codec_context
    space = int(frame.colorspace) or int(ctx.colorspace or 0)
    rng = int(frame.color_range) or int(ctx.color_range or 0)
    primaries = int(frame.color_primaries) or int(ctx.color_primaries or 0)
    trc = int(frame.color_trc) or int(ctx.color_trc or 0)
    guessed = space in (0, 2)  # RGB(0) is not a YUV matrix; 2 is "unspecified"
    if frame.format.name.startswith(("yuvj",)):
        rng = 2
    if guessed:
        space = 1 if height >= 720 else 6
    if rng not in (1, 2):
        rng = 1
    return ColourTags(space, rng, primaries if primaries not in (0, 2) else 2, trc if trc not in (0, 2) else 2, guessed)


def _is_high_depth(pix_fmt: str) -> bool:
    return any(tag in pix_fmt for tag in ("10", "12", "14", "16"))


def frame_to_rgb(frame, tags: ColourTags, deep: bool) -> np.ndarray:
    """A decoded frame -> HxWx3 uint8 (or uint16 when ``deep``) full-range RGB, with the declared matrix."""
    from av.video.reformatter import Interpolation

    rgb = frame.reformat(
        format="rgb48le" if deep else "rgb24",
        src_colorspace=tags.colorspace,
        src_color_range=tags.color_range,
        dst_color_range=2,
        interpolation=Interpolation.BICUBIC | Interpolation.ACCURATE_RND,
    )
    return rgb.to_ndarray()


def rgb_to_frame(rgb: np.ndarray, pix_fmt: str, tags: ColourTags):
    """HxWx3 uint8/uint16 full-range RGB -> a frame in ``pix_fmt`` with the matrix and range of ``tags``."""
    av = _av()
    from av.video.reformatter import Interpolation

    source = av.VideoFrame.from_ndarray(rgb, format="rgb48le" if rgb.dtype == np.uint16 else "rgb24")
    frame = source.reformat(
        format=pix_fmt,
        dst_colorspace=tags.colorspace,
        src_color_range=2,
        dst_color_range=tags.color_range,
        interpolation=Interpolation.BICUBIC | Interpolation.ACCURATE_RND,
    )
    frame.colorspace = tags.colorspace
    frame.color_range = tags.color_range
    frame.color_primaries = tags.primaries
    frame.color_trc = tags.trc
    return frame


# --------------------------------------------------------------------------------------------------- frames API


def _upscale_batch(upscaler, arrays: list[np.ndarray], out_size: tuple[int, int] | None = None) -> list[np.ndarray]:
    """HxWx3 uint8/uint16 arrays of one size -> upscaled arrays of the same dtype (one forward pass)."""
    import torch

    dtype = arrays[0].dtype
    top = 65535.0 if dtype == np.uint16 else 255.0
    stacked = np.stack(arrays)
    if dtype == np.uint16:
        stacked = stacked.astype(np.int32)
    with torch.inference_mode():
        x = torch.from_numpy(stacked).permute(0, 3, 1, 2).float().div_(top)
        y = upscaler.upscale_tensor(x)
        return _to_arrays(upscaler, y, arrays[0].shape[:2], dtype, top, out_size)


def _to_arrays(upscaler, y, shape, dtype, top: float, out_size) -> list[np.ndarray]:
    import torch

    from realesr.infer.upscaler import _resize

    height, width = shape
    target = upscaler.output_size(height, width)
    if tuple(y.shape[-2:]) != target:
        y = _resize(y, *target)
    if out_size is not None and (out_size[1], out_size[0]) != tuple(y.shape[-2:]):
        y = y[:, :, : out_size[1], : out_size[0]]  # an even size for a subsampled pixel format
    y = y.clamp_(0, 1).mul_(top).round_()
    y = y.to(torch.int32 if dtype == np.uint16 else torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    return [np.ascontiguousarray(a.astype(dtype, copy=False)) for a in y]


def upscale_frames(upscaler, frames: Iterable[np.ndarray], batch: int = 1) -> Iterator[np.ndarray]:
    """Upscale a stream of frames (HxWx3 RGB uint8 or uint16 arrays, or HxWx4 with alpha) in order, ``batch``
    frames of one size per forward pass; yields the upscaled arrays as they are done (nothing is held beyond
    one batch). Frames with alpha go through :meth:`Upscaler.upscale_array` one at a time."""
    pending: list[np.ndarray] = []
    for frame in frames:
        array = np.asarray(frame)
        if array.ndim != 3 or array.shape[2] != 3 or array.dtype not in (np.uint8, np.uint16):
            yield from _flush(upscaler, pending)
            pending = []
            yield upscaler.upscale_array(array)
            continue
        if pending and (pending[0].shape != array.shape or pending[0].dtype != array.dtype):
            yield from _flush(upscaler, pending)
            pending = []
        pending.append(array)
        if len(pending) >= batch:
            yield from _flush(upscaler, pending)
            pending = []
    yield from _flush(upscaler, pending)


def _flush(upscaler, pending: list[np.ndarray]) -> Iterator[np.ndarray]:
    if pending:
        yield from _upscale_batch(upscaler, pending)


# --------------------------------------------------------------------------------------------------- identity


def input_identity(path: Path) -> dict:
    """Size, mtime and a hash of the first MiB: a changed input does not resume an old work folder."""
    stat = path.stat()
    with open(path, "rb") as handle:
        digest = hashlib.sha256(handle.read(1 << 20)).hexdigest()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256_first_mib": digest}


# --------------------------------------------------------------------------------------------------- video path


@dataclass
class _Frame:
    index: int
    pts: int | None
    duration: int
    rgb: np.ndarray


_END = object()


class _Stop(Exception):
    pass


def upscale_video(
    upscaler,
    source: str | os.PathLike,
    dest: str | os.PathLike,
    options: VideoOptions | None = None,
    on_progress: Callable[[int, int | None], None] | None = None,
    info: VideoInfo | None = None,
) -> VideoResult:
    """Upscale the video (or animated image) ``source`` into the file ``dest`` (written atomically; its
    container from its extension). Resumes from ``.DEST.realesr-work`` when an earlier run of the same input
    and options was interrupted. ``on_progress(frames_done, frames_total_or_None)``. Raises VideoError."""
    options = options or VideoOptions()
    source, dest = Path(source), Path(dest)
    if info is None:
        info = probe_video(source)
        if info is None:
            raise VideoError(f"{source}: not a video file realesr can decode")
    if _same_file(source, dest):
        raise VideoError(f"{source}: the output would overwrite the input", params=("output",))
    if info.kind == "animation":
        return _upscale_animation(upscaler, source, dest, info, options, on_progress)
    return _VideoJob(upscaler, source, dest, info, options, on_progress).run()


def _same_file(a: Path, b: Path) -> bool:
    try:
        return b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


class _VideoJob:
    def __init__(self, upscaler, source: Path, dest: Path, info: VideoInfo, options: VideoOptions, on_progress):
        self.upscaler, self.source, self.dest, self.info, self.options = upscaler, source, dest, info, options
        self.on_progress = on_progress
        self.notes: list[str] = []
        self.work = work_folder_for(dest)
        self.av = _av()
        self.corrupt = 0
        self.error: BaseException | None = None
        self.stop = threading.Event()

    # ----------------------------------------------------------------------------------------- setup

    def _open_input(self):
        av = self.av
        try:
            return av.open(str(self.source), metadata_errors="ignore")
        except (av.FFmpegError, OSError) as err:
            raise VideoError(f"{self.source}: cannot open the video ({_one_line(err)})") from None

    def _plan_encoder(self, stream, first) -> None:
        """Codec, pixel format, sizes and colour of the output, from the first decoded frame."""
        av = self.av
        family = _codec_family(self.info.codec, self.options)
        self.family = family
        self.encoder = ENCODERS[family]
        if self.encoder not in av.codecs_available:
            raise VideoError(f"{self.source}: this PyAV has no {self.encoder} encoder", params=("codec",))
        if family == "av1" and not _can_decode_av1(av):
            raise VideoError(
                f"{self.source}: this PyAV has no AV1 decoder, which joining the resumable segments "
                "needs: choose another codec",
                params=("codec",),
            )
        if family == "av1":
            os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its configuration to stderr otherwise
        codec = av.Codec(self.encoder, "w")
        supported = [f.name for f in codec.video_formats or []]
        in_fmt = first.format.name
        deep_in = _is_high_depth(in_fmt)
        if self.options.pix_fmt is not None:
            pix_fmt = self.options.pix_fmt
            if supported and pix_fmt not in supported:
                raise VideoError(
                    f"{self.source}: {self.encoder} cannot encode {pix_fmt} (it takes {', '.join(supported)})",
                    params=("pix_fmt",),
                )
        else:
            candidate = in_fmt.replace("yuvj", "yuv")
            pix_fmt = (
                candidate
                if candidate in supported and candidate.startswith("yuv")
                else ("yuv420p10le" if deep_in and "yuv420p10le" in supported else "yuv420p")
            )
        self.pix_fmt = pix_fmt
        self.deep = deep_in or _is_high_depth(pix_fmt)
        self.tags = _colour_of(first, stream, first.height)
        if self.tags.guessed:
            self.notes.append(f"no colour matrix declared: assumed {self.tags.describe()}")
        height, width = self.upscaler.output_size(first.height, first.width)
        # Subsampled chroma needs sides that are multiples of 2 (4:2:0 both, 4:2:2 the width).
        need_even_w = "420" in pix_fmt or "422" in pix_fmt or "411" in pix_fmt
        need_even_h = "420" in pix_fmt
        new_w = width - (width % 2 if need_even_w else 0)
        new_h = height - (height % 2 if need_even_h else 0)
        if (new_w, new_h) != (width, height):
            self.notes.append(f"{width} x {height} is odd for {pix_fmt}: cropped to {new_w} x {new_h}")
        if new_w < 2 or new_h < 2:
            raise VideoError(
                f"{self.source}: the output would be {width} x {height}, too small to encode", params=("outscale",)
            )
        self.out_size = (new_w, new_h)
        self.rotation = round(first.rotation or 0)
        self.time_base = stream.time_base
        self.rate = stream.average_rate or stream.guessed_rate or Fraction(24)
        self.sar = stream.codec_context.sample_aspect_ratio

    def _encoder_options(self) -> dict[str, str]:
        opts = self.options
        crf = opts.crf if opts.crf is not None else DEFAULT_CRF[self.family]
        threads = str(opts.threads)
        if self.family == "h264":
            return {"crf": str(crf), "preset": opts.preset or "medium", "bf": "0", "threads": threads}
        if self.family == "hevc":
            return {
                "crf": str(crf),
                "preset": opts.preset or "medium",
                "x265-params": f"bframes=0:log-level=none:pools={threads}:frame-threads={threads}",
            }
        if self.family in ("vp9", "vp8"):
            return {
                "crf": str(crf),
                "b": "0",
                "cpu-used": opts.preset or "4",
                "threads": threads,
                "deadline": "good",
                "auto-alt-ref": "0",
                "lag-in-frames": "0",
            }
        return {"crf": str(crf), "preset": opts.preset or "8", "svtav1-params": f"lp={threads}:pred-struct=1"}

    def _manifest_key(self) -> dict:
        return {
            "version": MANIFEST_VERSION,
            "input": input_identity(self.source),
            "options": self.options.encoding_key(),
            "model": self.upscaler.model_name,
            "scale": self.upscaler.scale,
            "outscale": self.upscaler.outscale,
            "dest": self.dest.name,
        }

    def _load_manifest(self, key: dict) -> list[dict]:
        manifest = self.work / "manifest.json"
        if self.work.is_dir() and manifest.is_file():
            try:
                data = read_json(manifest, _MANIFEST, what="the video work manifest", remedy="started over")
            except StateFileError as err:  # the work folder is ours: a damaged one is redone, not trusted
                data = None
                self.notes.append(str(err))
            if data and data["key"] == key:
                segments = []
                for seg in data["segments"]:
                    if self._segment_done(seg):
                        segments.append(seg)
                    else:
                        break
                return segments
            if data:
                self.notes.append("an earlier work folder for other input or options was started over")
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        self._write_manifest(key, [])
        return []

    def _segment_times(self, seg: dict) -> tuple[list[int], list[int]]:
        """The (pts, durations) of a finished segment from its timestamp file, checked: one pair per frame."""
        path = self.work / seg["pts_file"]
        try:
            meta = read_json(path, _PTS, what="a segment's timestamps", remedy="delete the work folder to redo it")
        except FileNotFoundError:
            raise VideoError(f"{path}: a segment's timestamps are missing; delete the work folder") from None
        except StateFileError as err:
            raise VideoError(str(err)) from None
        if not len(meta["pts"]) == len(meta["durations"]) == seg["frames"]:
            raise VideoError(f"{path}: {seg['frames']} frames but not as many timestamps; delete the work folder")
        return meta["pts"], meta["durations"]

    def _segment_done(self, seg: dict) -> bool:
        try:
            self._segment_times(seg)
        except VideoError:
            return False
        return (self.work / seg["file"]).is_file()

    def _write_manifest(self, key: dict, segments: list[dict]) -> None:
        from realesr.atomic import atomic_write_text

        atomic_write_text(self.work / "manifest.json", json.dumps({"key": key, "segments": segments}, indent=1))

    # ----------------------------------------------------------------------------------------- threads

    def _in_range(self, frame) -> bool:
        t = frame.time
        if t is None:
            return True
        if self.options.start is not None and t < self.options.start - 1e-9:
            return False
        return not (self.options.end is not None and t >= self.options.end - 1e-9)

    def _decode(self, container, stream, out_q: queue.Queue, skip: int) -> None:
        """Demux and decode every video frame in order; corrupt packets are counted and decoding goes on."""
        av = self.av
        index = 0
        try:
            last_pts = None
            for packet in container.demux(stream):
                if self.stop.is_set():
                    return
                try:
                    frames = packet.decode()
                except av.FFmpegError:
                    self.corrupt += 1
                    continue
                for frame in frames:
                    if frame.is_corrupt:
                        self.corrupt += 1
                    if not self._in_range(frame):
                        if self.options.end is not None and frame.time is not None and frame.time >= self.options.end:
                            raise _Stop
                        continue
                    if index >= skip:
                        duration = int(frame.duration or 0)
                        if frame.pts is None:  # a frame without a timestamp follows the previous one
                            frame.pts = (last_pts or 0) + (duration or 1)
                        item = _Frame(index, frame.pts, duration, frame_to_rgb(frame, self.tags, self.deep))
                        while not self.stop.is_set():
                            try:
                                out_q.put(item, timeout=0.2)
                                break
                            except queue.Full:
                                continue
                    last_pts = frame.pts
                    index += 1
        except _Stop:
            pass
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            self.error = self.error or err
        finally:
            self.decoded = index
            _put_end(out_q, self.stop)

    def _encode(self, in_q: queue.Queue, key: dict, segments: list[dict], first_index: int) -> None:
        av = self.av
        seg = None
        try:
            while True:
                item = in_q.get()
                if item is _END:
                    break
                if seg is None:
                    seg = self._open_segment(len(segments), item.index)
                frame = rgb_to_frame(item.rgb, self.pix_fmt, self.tags)
                frame.pts = item.pts
                frame.time_base = self.time_base
                seg["pts"].append(item.pts)
                seg["durations"].append(item.duration)
                for packet in seg["stream"].encode(frame):
                    seg["container"].mux(packet)
                if len(seg["pts"]) >= self.options.segment_frames:
                    segments.append(self._close_segment(seg))
                    self._write_manifest(key, segments)
                    seg = None
            if seg is not None and not self.stop.is_set() and self.error is None:
                segments.append(self._close_segment(seg))
                self._write_manifest(key, segments)
                seg = None
        except BaseException as err:  # noqa: BLE001
            self.error = self.error or err
            self.stop.set()
        finally:
            if seg is not None:  # an unfinished segment is not kept: the resume redoes it
                try:
                    seg["container"].close()
                except av.FFmpegError:
                    pass
                seg["tmp"].unlink(missing_ok=True)

    def _open_segment(self, number: int, first_index: int) -> dict:
        av = self.av
        name = f"seg_{number:05d}.mkv"
        tmp = self.work / f"{name}.part"
        container = av.open(str(tmp), "w", format=_SEGMENT_FORMAT)
        stream = container.add_stream(self.encoder, rate=self.rate, options=self._encoder_options())
        stream.width, stream.height = self.out_size
        stream.pix_fmt = self.pix_fmt
        stream.time_base = self.time_base
        ctx = stream.codec_context
        ctx.time_base = self.time_base
        ctx.colorspace, ctx.color_range = self.tags.colorspace, self.tags.color_range
        ctx.color_primaries, ctx.color_trc = self.tags.primaries, self.tags.trc
        if self.sar and self.sar.numerator:
            ctx.sample_aspect_ratio = self.sar
        return {
            "container": container,
            "stream": stream,
            "tmp": tmp,
            "file": name,
            "first": first_index,
            "pts": [],
            "durations": [],
        }

    def _close_segment(self, seg: dict) -> dict:
        for packet in seg["stream"].encode():
            seg["container"].mux(packet)
        seg["container"].close()
        pts_file = seg["file"] + ".pts.json"
        from realesr.atomic import atomic_write_text

        atomic_write_text(self.work / pts_file, json.dumps({"pts": seg["pts"], "durations": seg["durations"]}))
        os.replace(seg["tmp"], self.work / seg["file"])
        return {"file": seg["file"], "pts_file": pts_file, "first": seg["first"], "frames": len(seg["pts"])}

    # ----------------------------------------------------------------------------------------- run

    def run(self) -> VideoResult:
        started = time.perf_counter()
        container = self._open_input()
        with container:
            if not container.streams.video:
                raise VideoError(f"{self.source}: no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            first = self._first_frame(container, stream)
            if first is None:
                raise VideoError(f"{self.source}: no frame could be decoded (empty or truncated file)")
            self._plan_encoder(stream, first)
        self._check_container()
        key = self._manifest_key()
        segments = self._load_manifest(key)
        done = sum(seg["frames"] for seg in segments)
        if done:
            self.notes.append(f"resumed after {done} frames done by an earlier run")
        total = self._estimate_total()
        if self.on_progress:
            self.on_progress(done, total)
        container = self._open_input()
        with container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            self._run_pipeline(container, stream, key, segments, done, total)
        if self.error is not None:
            raise self.error
        frames = sum(seg["frames"] for seg in segments)
        if frames == 0:
            raise VideoError(f"{self.source}: no frame in the chosen range", params=("start", "end"))
        if self.corrupt:
            self.notes.append(f"{self.corrupt} corrupt packet(s) or frame(s) in the input: decoding went on past them")
        self._mux(segments)
        shutil.rmtree(self.work, ignore_errors=True)
        return VideoResult(
            self.source,
            self.dest,
            frames,
            time.perf_counter() - started,
            self.out_size,
            resumed_frames=done,
            notes=self.notes,
        )

    def _first_frame(self, container, stream):
        av = self.av
        try:
            for packet in container.demux(stream):
                try:
                    for frame in packet.decode():
                        if self._in_range(frame):
                            return frame
                except av.FFmpegError:
                    continue
        except av.FFmpegError as err:
            raise VideoError(f"{self.source}: cannot read the video ({_one_line(err)})") from None
        return None

    def _estimate_total(self) -> int | None:
        frames, duration = self.info.frames, self.info.duration
        if self.options.start is None and self.options.end is None and frames:
            return frames
        if duration and self.rate:
            end = min(duration, self.options.end) if self.options.end is not None else duration
            return max(0, round((end - (self.options.start or 0)) * float(self.rate)))
        return frames

    def _run_pipeline(self, container, stream, key, segments, skip, total) -> None:
        depth = max(2, 2 * self.options.batch)
        decoded: queue.Queue = queue.Queue(maxsize=depth)
        upscaled: queue.Queue = queue.Queue(maxsize=depth)
        self.decoded = 0
        decoder = threading.Thread(
            target=self._decode, args=(container, stream, decoded, skip), daemon=True, name="realesr-decode"
        )
        encoder = threading.Thread(
            target=self._encode, args=(upscaled, key, segments, skip), daemon=True, name="realesr-encode"
        )
        decoder.start()
        encoder.start()
        done = skip
        try:
            ended = False
            while not ended and not self.stop.is_set():
                batch: list[_Frame] = []
                while len(batch) < self.options.batch:
                    item = decoded.get()
                    if item is _END:
                        ended = True
                        break
                    if batch and item.rgb.shape != batch[0].rgb.shape:
                        raise VideoError(
                            f"{self.source}: the frame size changes mid-stream (frame {item.index}): not supported"
                        )
                    batch.append(item)
                if self.error is not None:
                    break
                if batch:
                    results = _upscale_batch(self.upscaler, [b.rgb for b in batch], self.out_size)
                    for item, rgb in zip(batch, results):
                        item.rgb = rgb
                        _put(upscaled, item, self.stop)
                    done += len(batch)
                    if self.on_progress:
                        self.on_progress(done, total)
        except BaseException:
            self.stop.set()
            raise
        finally:
            if self.stop.is_set():
                _drain(decoded)
            _put_end(upscaled, self.stop, force=True)
            decoder.join()
            encoder.join()

    # ----------------------------------------------------------------------------------------- output

    def _check_container(self) -> None:
        """The output container must take the codec: found out now, not after the work."""
        import io

        av = self.av
        fmt = WRITE_CONTAINERS.get(self.dest.suffix.lower(), "matroska")
        self.out_format = fmt
        buffer = io.BytesIO()
        try:
            with av.open(buffer, "w", format=fmt) as probe:
                s = probe.add_stream(self.encoder, rate=self.rate, options=self._encoder_options())
                s.width, s.height, s.pix_fmt = self.out_size[0], self.out_size[1], self.pix_fmt
                probe.start_encoding()
        except (av.FFmpegError, ValueError) as err:
            raise VideoError(
                f"{self.source}: {self.dest.suffix or fmt} cannot hold {self.family} "
                f"({_one_line(err)}): choose another codec or a .mkv output",
                params=("codec", "output"),
            ) from None

    def _copy_streams(self, container, out) -> dict[int, object]:
        """Output streams for the input's audio/subtitle/data streams that the output container takes; the
        others are left out with a note naming them."""
        import io

        av = self.av
        mapping: dict[int, object] = {}
        if not self.options.audio:
            return mapping
        for stream in container.streams:
            if stream.type == "video" or stream.type == "attachment":
                continue
            label = f"{stream.type} stream {stream.index} ({stream.codec_context.name}"
            label += f", {stream.language})" if stream.language else ")"
            buffer = io.BytesIO()
            try:  # can this container hold it? Try a header with that stream alone.
                with av.open(buffer, "w", format=self.out_format) as probe:
                    probe.add_stream_from_template(stream)
                    probe.start_encoding()
            except (av.FFmpegError, ValueError) as err:
                self.notes.append(f"{label} left out: {self.dest.suffix} cannot hold it ({_one_line(err)})")
                continue
            new = out.add_stream_from_template(stream)
            for tag in ("language", "title", "handler_name"):
                if tag in stream.metadata:
                    new.metadata[tag] = stream.metadata[tag]
            new.disposition = stream.disposition
            mapping[stream.index] = new
        return mapping

    def _mux(self, segments: list[dict]) -> None:
        """Segments (video) + the input's other streams, interleaved by time, into ``dest`` atomically."""
        from realesr.atomic import atomic_path

        av = self.av
        with atomic_path(self.dest, suffix=".tmp") as tmp:
            source = self._open_input()
            first = av.open(str(self.work / segments[0]["file"]))
            with source, first, av.open(str(tmp), "w", format=self.out_format) as out:
                video = out.add_stream_from_template(first.streams.video[0])
                video.time_base = self.time_base
                if self.rotation:
                    video.set_display_rotation(self.rotation)
                in_video = source.streams.video[0]
                for tag in ("language", "title", "handler_name"):
                    if tag in in_video.metadata:
                        video.metadata[tag] = in_video.metadata[tag]
                copies = self._copy_streams(source, out)
                for key, value in source.metadata.items():
                    out.metadata[key] = value
                out.metadata["comment"] = f"{SOFTWARE} {self.upscaler.model_name}"  # marks our own results
                self._copy_chapters(source, out)
                offset = self._start_offset(in_video)
                streams = [source.streams[i] for i in copies]
                others = self._other_packets(source, streams, copies, offset) if streams else iter(())
                for packet in _merge_by_time(self._video_packets(segments, video), others):
                    out.mux(packet)

    def _start_offset(self, stream) -> float:
        return float(self.options.start or 0.0)

    def _copy_chapters(self, source, out) -> None:
        try:
            chapters = source.chapters()
        except (AttributeError, av_errors(self.av)):
            return
        if chapters:
            try:
                out.set_chapters(chapters)
            except Exception:  # noqa: BLE001 - a container without chapters
                self.notes.append("chapters left out: the output container cannot hold them")

    def _video_packets(self, segments: list[dict], stream) -> Iterator:
        av = self.av
        shift = None
        if self.options.start:
            shift = None  # set from the first frame's pts: the output starts at 0 like a cut would
        last_end = None
        for seg in segments:
            pts_list, durations = self._segment_times(seg)
            with av.open(str(self.work / seg["file"])) as segment:
                packets = [p for p in segment.demux(segment.streams.video[0]) if p.size]
            if len(packets) != len(pts_list):
                raise VideoError(
                    f"{self.source}: segment {seg['file']} has {len(packets)} packets for {len(pts_list)} frames"
                )
            for i, packet in enumerate(packets):
                pts = pts_list[i]
                if shift is None:
                    # The same shift as the copied streams' (_other_packets): the start time, not the first
                    # kept frame's time, so that audio and video keep their relative offset.
                    shift = round(self.options.start / self.time_base) if self.options.start else 0
                nxt = pts_list[i + 1] if i + 1 < len(pts_list) else None
                duration = (nxt - pts) if nxt is not None else (durations[i] or (pts - last_end if last_end else 0))
                last_end = pts
                packet.stream = stream
                packet.time_base = self.time_base
                packet.pts = packet.dts = pts - shift
                packet.duration = max(0, duration)
                yield packet

    def _other_packets(self, source, streams, copies, offset: float) -> Iterator:
        start, end = self.options.start, self.options.end
        for packet in source.demux(streams):
            if packet.dts is None and packet.pts is None:
                continue
            t = float((packet.pts if packet.pts is not None else packet.dts) * packet.time_base)
            if start is not None and t < start:
                continue
            if end is not None and t >= end:
                continue
            if offset:
                shift = round(offset / packet.time_base)
                if packet.pts is not None:
                    packet.pts -= shift
                if packet.dts is not None:
                    packet.dts -= shift
            packet.stream = copies[packet.stream.index]
            yield packet


def _can_decode_av1(av) -> bool:
    for name in ("libdav1d", "libaom-av1"):
        try:
            av.Codec(name, "r")
            return True
        except Exception:  # noqa: BLE001, S112 - listed but not built in
            continue
    return False


def av_errors(av):
    return av.FFmpegError


def _merge_by_time(*iterators: Iterator) -> Iterator:
    """Packets of several streams in order of their decode time (each iterator is in order already)."""
    import heapq

    def keyed(it, n):
        for seq, packet in enumerate(it):
            ts = packet.dts if packet.dts is not None else packet.pts
            yield (float(ts * packet.time_base) if ts is not None else 0.0, n, seq, packet)

    for _t, _n, _s, packet in heapq.merge(
        *(keyed(it, n) for n, it in enumerate(iterators)), key=lambda e: (e[0], e[1], e[2])
    ):
        yield packet


def _put(q: queue.Queue, item, stop: threading.Event) -> None:
    while True:
        try:
            q.put(item, timeout=0.2)
            return
        except queue.Full:
            if stop.is_set():
                return


def _put_end(q: queue.Queue, stop: threading.Event, force: bool = False) -> None:
    while True:
        try:
            q.put(_END, timeout=0.2)
            return
        except queue.Full:
            if stop.is_set():
                _drain(q)


def _drain(q: queue.Queue) -> None:
    try:
        while True:
            q.get_nowait()
    except queue.Empty:
        pass


# --------------------------------------------------------------------------------------------------- animations


def _upscale_animation(
    upscaler, source: Path, dest: Path, info: VideoInfo, options: VideoOptions, on_progress
) -> VideoResult:
    """Animated GIF/WebP/PNG -> the same format, every frame upscaled (alpha through the model), durations,
    loop count and disposal kept."""
    from PIL import Image, ImageSequence

    from realesr.atomic import atomic_path

    started = time.perf_counter()
    frames: list[Image.Image] = []
    durations: list[int] = []
    try:
        with Image.open(source) as im:
            loop = im.info.get("loop", 0)
            total = info.frames
            for index, frame in enumerate(ImageSequence.Iterator(im)):
                rgba = frame.convert("RGBA")  # loads the frame first: WebP's duration is known only then
                durations.append(int(frame.info.get("duration", im.info.get("duration", 100)) or 0))
                array = np.asarray(rgba)
                if bool((array[..., 3] == 255).all()):
                    array = array[..., :3]
                up = upscaler.upscale_array(np.ascontiguousarray(array))
                if info.codec == "GIF" and up.ndim == 3 and up.shape[2] == 4:
                    # GIF transparency is on or off: a network's near-zero alpha would otherwise come out opaque.
                    up[..., 3] = np.where(up[..., 3] >= 128, 255, 0).astype(up.dtype)
                frames.append(Image.fromarray(up))
                if on_progress:
                    on_progress(index + 1, total)
    except (OSError, ValueError, EOFError) as err:
        raise VideoError(f"{source}: broken animation ({_one_line(err)})") from None
    fmt = info.codec
    with atomic_path(dest) as tmp:
        save = {"save_all": True, "append_images": frames[1:], "duration": durations, "loop": loop}
        if fmt == "GIF":
            save["disposal"] = 2
        elif fmt == "WEBP":
            save.update(lossless=False, quality=95)
        frames[0].save(tmp, format=fmt, **save)
    return VideoResult(source, dest, len(frames), time.perf_counter() - started, frames[0].size)
