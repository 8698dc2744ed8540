"""Upscaling image files: the naming, planning and writing rules of `realesr upscale`, for every front end.

The CLI, the web server, multi-device runs and Ray call these, so that the same input and options give the same
bytes everywhere::

    plan = plan_upscale(["photos/", "scan.tif"], "out", OutputOptions(suffix="x4"))   # names, collisions
    plan.check_sizes(upscaler)                                                           # needs the model's scale
    plan.prepare()                                                                       # creates the folder
    for item in plan.items:
        if item.error is None:
            result = run_item(upscaler, item, plan.options)

or, for one file, ``upscale_file(upscaler, "a.png", "out/", options)`` which does all of it.

Rules (docs/upscale.md): outputs are ``NAME_SUFFIX.EXT`` in the output folder (or exactly the file given for one
input), plus ``NAME_compare.png`` with ``compare``. Every output is planned before the first pixel and checked
against every input and against the other outputs (:func:`realesr.imagefiles.check_outputs`). When a folder is
both input and output, a file found there that is the planned output of another input and carries realesr's mark
(an earlier result) is skipped, and replaced; one without the mark is the user's file: the plan is refused.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from realesr.errors import MissingExtraError, RealesrError, UsageError
from realesr.imagefiles import (
    MAX_SIDE,
    NO_ALPHA_FORMATS,
    NOT_AN_IMAGE,
    READ_EXTENSIONS,
    VIDEO_EXTENSIONS,
    WRITE_FORMATS,
    ImageHeader,
    InputFile,
    LoadedImage,
    PlannedOutput,
    check_folder_writable,
    check_outputs,
    earlier_results,
    existing_ancestor,
    expand_inputs,
    is_video_content,
    path_key,
    read_header,
    read_image,
    to_uint8,
    write_image,
)

if TYPE_CHECKING:  # the type only: importing this module must not load the video code (startup time)
    from realesr.infer.video import VideoInfo, VideoResult

__all__ = [
    "EXTENSIONS",
    "FileResult",
    "OutputOptions",
    "PlanItem",
    "UpscalePlan",
    "plan_upscale",
    "run_item",
    "upscale_file",
    "with_source",
    "write_result",
]

EXTENSIONS = tuple(ext.lstrip(".") for ext in WRITE_FORMATS)  # the values of the ext option besides "auto"
# Rough compressed bytes per sample byte, on the low side, for the free-disk check (refuse only when clearly short).
_DISK_RATIO = {"PNG": 0.3, "TIFF": 0.3, "BMP": 1.0, "JPEG": 0.03, "WEBP": 0.02}


@dataclass(frozen=True)
class OutputOptions:
    """How outputs are named and encoded. ``ext``: "auto" keeps the input's format (PNG when the input's format
    cannot be written, or holds no alpha and the image has some); ``suffix``: "" names the output like the input;
    ``quality``: JPEG/WebP; ``compare``: also write NAME_compare.png (bicubic beside the result)."""

    suffix: str = "out"
    ext: str = "auto"
    quality: int = 95
    compare: bool = False

    def __post_init__(self) -> None:
        if os.sep in self.suffix or (os.altsep and os.altsep in self.suffix) or "\0" in self.suffix:
            raise UsageError(f"the suffix must not contain a path separator: {self.suffix!r}", params=("suffix",))
        if not self.suffix.isprintable():  # a newline or an escape sequence in the name of every output
            raise UsageError(f"the suffix must be printable text, not {self.suffix!r}", params=("suffix",))
        if self.ext.lower().lstrip(".") not in EXTENSIONS + ("auto",):
            raise UsageError(
                f"the output format must be auto or one of {', '.join(EXTENSIONS)}, not {self.ext!r}", params=("ext",)
            )
        if not 1 <= int(self.quality) <= 100:
            raise UsageError(f"the quality must be in 1..100, not {self.quality}", params=("quality",))


@dataclass
class PlanItem:
    """One input's work: where its result (and comparison sheet) go, or why it fails before any work."""

    source: Path
    output: Path | None = None
    compare: Path | None = None
    header: ImageHeader | None = None
    out_size: tuple[int, int] | None = None  # (width, height), once check_sizes has run
    error: str | None = None
    error_params: tuple[str, ...] = ()  # the parameters that would avoid the error
    notes: list[str] = field(default_factory=list)
    video: VideoInfo | None = None  # a video or an animation (realesr.infer.video)


@dataclass
class UpscalePlan:
    items: list[PlanItem]
    options: OutputOptions
    target: Path  # the output folder, or the output file when target_is_file
    target_is_file: bool
    skipped: list[Path] = field(default_factory=list)  # earlier results found among the inputs

    @property
    def has_videos(self) -> bool:
        return any(item.video is not None for item in self.items)

    @property
    def folder(self) -> Path:
        return (self.target.parent if str(self.target.parent) else Path(".")) if self.target_is_file else self.target

    def check_sizes(self, upscaler, available_bytes: int | None = None) -> None:
        """Per item: refuse (``item.error``) an output too large for its format or for the memory here, from the
        header size, before anything is decoded; then refuse the whole plan when the disk is clearly too small."""
        if available_bytes is None:
            from realesr.devices import available_memory_bytes

            available_bytes = available_memory_bytes()
        disk_need = 0.0
        for item in self.items:
            if item.error is not None or item.header is None or item.output is None:
                continue
            disk_need += _check_size(item, item.header, item.output, upscaler, available_bytes)
        folder = existing_ancestor(self.folder)
        try:
            free = shutil.disk_usage(folder).free
        except OSError:
            return
        if disk_need > free:
            raise UsageError(
                f"the outputs need about {_bytes(disk_need)} and {folder} has {_bytes(free)} free", params=("output",)
            )

    def prepare(self) -> None:
        """Create the output folder (after the plan has been checked: a refused plan writes nothing)."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UsageError(
                f"cannot create the output folder {self.folder}: {err.strerror or err}", params=("output",)
            ) from None


@dataclass
class FileResult:
    source: Path
    output: Path
    compare: Path | None
    size: tuple[int, int]  # (width, height) of the output
    seconds: float
    notes: list[str] = field(default_factory=list)


def _check_size(item: PlanItem, header: ImageHeader, output: Path, upscaler, available_bytes: float) -> float:
    """Set ``item.out_size``, or ``item.error`` when the output is too large for the memory or its format;
    returns the bytes it will take on disk (roughly, on the low side)."""
    try:
        out_h, out_w = upscaler.output_size(header.height, header.width)
    except (OverflowError, ValueError):
        out_h = out_w = 10**30
    item.out_size = (out_w, out_h)
    outscale = getattr(upscaler, "outscale", None)
    if outscale is not None and min(header.height, header.width) * outscale < 0.5:
        # output_size clamps to 1 pixel; writing a 1x1 "result" and exiting 0 would hide a typo in -s
        item.error = (
            f"{item.source}: an output scale of {outscale:g} would shrink this "
            f"{_size(header.width, header.height)} image to nothing: use a scale of at least "
            f"{1 / min(header.height, header.width):.3g}"
        )
        return 0.0
    fmt = WRITE_FORMATS[output.suffix.lower()]
    channels = (
        (2 if header.mode.startswith(("L", "I", "1")) else 4)
        if header.has_alpha
        else (1 if header.mode in ("L", "1", "I", "I;16", "I;16B", "I;16L", "I;16N", "F") else 3)
    )
    sample = 2 if header.mode.startswith("I") or "16" in header.mode else 1
    pixels = float(out_h) * float(out_w)
    # The float32 result on the device (3 colour + alpha planes) and the integer array written out.
    memory = pixels * (4 * max(channels, 3) + channels * sample)
    if memory > available_bytes:
        item.error = (
            f"{item.source}: the output would be {_size(out_w, out_h)} and need about "
            f"{_bytes(memory)} of memory, {_bytes(available_bytes)} are available: "
            "lower the output scale or crop the image"
        )
        item.error_params = ("outscale",)
        return 0.0
    if max(out_h, out_w) > MAX_SIDE[fmt]:
        item.error = (
            f"{item.source}: the output would be {_size(out_w, out_h)}, more than {fmt} can hold "
            f"({MAX_SIDE[fmt]} px a side): write PNG or TIFF, or lower the output scale"
        )
        item.error_params = ("ext", "outscale")
        return 0.0
    return pixels * channels * sample * _DISK_RATIO[fmt]


def _size(width: int, height: int) -> str:
    if max(width, height) >= 10**7:
        return f"{float(width):.3g} x {float(height):.3g} px"
    return f"{width} x {height} px"


def _bytes(count: float) -> str:
    if count >= 1e15:
        return "more than 1000 TB"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if count >= scale:
            return f"{count / scale:.3g} {unit}"
    return f"{count / 1e3:.3g} kB"


def _extension(options: OutputOptions, source: Path, has_alpha: bool) -> tuple[str, str | None]:
    """(extension, note): PNG replaces formats that cannot hold alpha."""
    if options.ext.lower() != "auto":
        ext = "." + options.ext.lower().lstrip(".")
    else:
        ext = source.suffix.lower() if source.suffix.lower() in WRITE_FORMATS else ".png"
    if has_alpha and WRITE_FORMATS[ext] in NO_ALPHA_FORMATS:
        return ".png", f"{ext[1:].upper()} holds no alpha: wrote PNG"
    return ext, None


def plan_upscale(
    inputs: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    options: OutputOptions | None = None,
    recursive: bool = False,
    video_options=None,
) -> UpscalePlan:
    """Expand ``inputs`` (files, folders, globs, .txt lists), name every output, and check them all.

    ``output`` is a folder, or a file name (with an image extension, not an existing folder) for one input.
    Raises :class:`realesr.imagefiles.OutputCollision` (two outputs at one place, an output on an input) or
    :class:`UsageError` (an output folder that cannot be written); inputs that are missing or whose header is
    unreadable become items with ``error``. Nothing is written.
    """
    options = options or OutputOptions()
    videos = video_options is not None  # videos and animations are planned only for a caller that handles them
    entries = expand_inputs(inputs, recursive=recursive, videos=videos)
    target, target_is_file = _target(output, len(entries), videos)
    plan = UpscalePlan([], options, target, target_is_file)
    check_folder_writable(plan.folder, params=("output",))
    by_entry = [(entry, _plan_item(entry, plan, video_options)) for entry in entries]

    # Earlier results of realesr in the output folder are not inputs of this run (docs/upscale.md).
    outputs_of = [[p for p in (item.output, item.compare) if p is not None] for _e, item in by_entry]
    earlier = earlier_results([e for e, _i in by_entry], outputs_of, plan.folder)
    plan.skipped = [entry.path for i, (entry, _item) in enumerate(by_entry) if i in earlier]
    plan.items = [item for i, (_entry, item) in enumerate(by_entry) if i not in earlier]
    skipped_keys = {path_key(p) for p in plan.skipped}
    inputs_to_protect = [e.path for e in entries if e.error is None and path_key(e.path) not in skipped_keys]
    check_outputs(_planned_outputs(plan), inputs_to_protect)
    return plan


def _target(output: str | os.PathLike, inputs: int, videos: bool) -> tuple[Path, bool]:
    """(the output folder or file, whether it is a file name); UsageError for a name that cannot be one."""
    if not os.fspath(output) or "\0" in os.fspath(output):  # "" would write into the current folder
        raise UsageError(f"the output {os.fspath(output)!r} is no usable name", params=("output",))
    target = Path(os.path.expanduser(output))
    if str(target).startswith("~"):  # "~name/..." of a user unknown here: not a folder literally named "~name"
        user = str(target).split(os.sep, 1)[0]
        raise UsageError(f"the output {output}: there is no user {user[1:]!r} here", params=("output",))
    target_is_file = target.suffix.lower() in WRITE_FORMATS and not _is_dir(target)
    if videos and target.suffix.lower() in VIDEO_EXTENSIONS and not _is_dir(target):
        target_is_file = True
    if target.suffix.lower() in READ_EXTENSIONS and not target_is_file and not _is_dir(target):
        # "-o out.gif" would otherwise become a folder named out.gif
        raise UsageError(
            f"the output {target}: cannot write {target.suffix[1:].upper()} files "
            f"(use one of {', '.join('.' + e for e in EXTENSIONS)}, or a folder name)",
            params=("output",),
        )
    if target_is_file and inputs != 1:
        raise UsageError(
            f"the output {target} is a file name, but there are {inputs} inputs: give a folder",
            params=("output",),
        )
    return target, target_is_file


def _plan_item(entry: InputFile, plan: UpscalePlan, video_options) -> PlanItem:
    """One input's header (or why it has none) and the names of its outputs."""
    options, target, target_is_file = plan.options, plan.target, plan.target_is_file
    item = PlanItem(entry.path)
    if entry.error is not None:
        item.error = f"{entry.path}: {entry.error}"
    else:
        try:
            item.header = read_header(entry.path)
        except RealesrError as err:
            item.error = str(err)
    if video_options is not None and entry.error is None and (item.header is None or item.header.frames > 1):
        _plan_video(item, entry.path, target, target_is_file, options, video_options)
    if item.header is None:
        return item
    ext, note = _extension(options, entry.path, item.header.has_alpha)
    if target_is_file:
        drops_alpha = note and WRITE_FORMATS[target.suffix.lower()] in NO_ALPHA_FORMATS
        item.output = target.with_suffix(".png") if drops_alpha else target
        note = note if item.output != target else None
    else:
        stem = entry.path.stem
        item.output = target / f"{stem}_{options.suffix}{ext}" if options.suffix else target / f"{stem}{ext}"
    if note:
        item.notes.append(note)
    if options.compare:
        item.compare = item.output.with_name(f"{entry.path.stem}_compare.png")
    if item.header.frames > 1:
        item.notes.append(f"{item.header.frames} frames: only the first was upscaled")
    return item


def _planned_outputs(plan: UpscalePlan) -> list[PlannedOutput]:
    """Every output of the plan with what it is and the options that would move it (for a collision's message)."""
    planned: list[PlannedOutput] = []
    for item in plan.items:
        if item.output is not None:
            params: tuple[str, ...] = ("output",) if plan.target_is_file else ("suffix", "output")
            if plan.options.ext.lower() != "auto":
                params += ("ext",)
            planned.append(PlannedOutput(item.output, f"the result of {item.source}", params))
        if item.compare is not None:
            planned.append(PlannedOutput(item.compare, f"the comparison sheet of {item.source}", ("suffix", "output")))
    return planned


def _plan_video(
    item: PlanItem, path: Path, target: Path, target_is_file: bool, options: OutputOptions, video_options
) -> None:
    """A file that is no still image, or has several frames: a video or an animation? (by content, and decided
    before the video extra is needed: without PyAV a text file is still named as neither image nor video)"""
    if item.header is None and not is_video_content(path):
        if item.error is not None and item.error.endswith(NOT_AN_IMAGE):  # not a broken image: something else
            item.error = f"{path}: neither an image nor a video (by its content)"
        return
    if not _has_pyav():
        if item.header is not None:  # an animated image: its first frame, as a still image
            item.notes.append("all frames of an animation need the video extra: pip install 'realesr[video]'")
            return
        raise MissingExtraError(f"{path} is a video: upscaling it", "video", "PyAV")
    from realesr.infer.video import ANIMATION_FORMATS, output_extension, probe_video

    try:
        info = probe_video(path)
    except RealesrError as err:
        item.error = str(err)
        return
    header = item.header
    if info is None and header is not None and header.frames > 1 and header.format in ANIMATION_FORMATS:
        # Its header counts the frames, but they do not all decode (a truncated GIF, APNG or WebP): the file
        # fails, rather than coming out as its first frame without a word about the broken rest.
        item.error = f"{path}: a broken animation: not all of its {header.frames} frames can be decoded"
        item.header = None
        return
    if info is None:
        if item.error is not None and path.suffix.lower() in VIDEO_EXTENSIONS:
            item.error = f"{path}: not a video or image file realesr can decode (empty, truncated or another format)"
        return
    item.video, item.header, item.error = info, None, None
    ext = output_extension(path, info, video_options)
    if target_is_file:
        item.output = target
    else:
        item.output = target / (f"{path.stem}_{options.suffix}{ext}" if options.suffix else f"{path.stem}{ext}")
    if options.compare:  # a split-screen clip (animation) of the same length: realesr.infer.video.compare
        item.compare = item.output.with_name(f"{path.stem}_compare{item.output.suffix}")


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a name too long for the file system: no folder; check_outputs says what is wrong with it
        return False


def _has_pyav() -> bool:
    try:
        import av  # noqa: F401 - imported here only when a file may be a video or an animation
    except ImportError:
        return False
    return True


def run_item(
    upscaler,
    item: PlanItem,
    options: OutputOptions,
    on_progress: Callable[[int, Any], None] | None = None,
    video_options=None,
) -> FileResult | VideoResult:
    """Do one planned item, whatever it is: read, upscale and write (atomically, marked as realesr's) an image,
    or encode a video or an animation (:func:`realesr.infer.video.upscale_video`, with ``video_options``).
    The one way a single file is done, for the CLI, the worker pool, Ray and the web page.
    ``on_progress(done, total)``: tiles of an image, frames of a video. Raises RealesrError."""
    if item.error is not None or item.output is None:
        raise RealesrError(item.error or f"{item.source}: nothing planned", params=item.error_params)
    if item.video is not None:
        from realesr.infer.video import upscale_video

        return upscale_video(
            upscaler,
            item.source,
            item.output,
            video_options,
            on_progress=on_progress,
            info=item.video,
            compare=item.compare,
        )
    started = time.perf_counter()
    image = read_image(item.source)
    result = upscaler.upscale_image(image, on_tile=on_progress)
    return write_result(upscaler, item, image, result, options, started)


def write_result(
    upscaler, item: PlanItem, image: LoadedImage, result: LoadedImage, options: OutputOptions, started: float
) -> FileResult:
    """Write an item's upscaled image (and its comparison sheet) as `realesr upscale` does; ``started``: when the
    item's work began (time.perf_counter), for its seconds."""
    assert item.output is not None  # planned without error
    write_image(item.output, result, quality=options.quality, source=item.source, mark=True)
    if item.compare is not None:
        sheet = comparison_sheet(image.array, result.array, upscaler.model_name)
        write_image(item.compare, sheet, source=item.source, mark=True)
    return FileResult(
        item.source,
        item.output,
        item.compare,
        (result.width, result.height),
        time.perf_counter() - started,
        list(item.notes) + upscaler.run_notes(),
    )


def with_source(message: str, source: Path | str) -> str:
    """``message`` naming ``source`` first (once)."""
    return message if message.startswith(str(source)) else f"{source}: {message}"


def upscale_file(
    upscaler,
    source: str | os.PathLike,
    dest: str | os.PathLike,
    options: OutputOptions | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> FileResult:
    """Upscale one file exactly as `realesr upscale SOURCE -o DEST` would (DEST a folder, or a file name).

    ``on_progress(done, total)`` is called per tile. Raises RealesrError (OutputCollision for a clash with the
    input, ImageReadError, ImageWriteError, ...) with a one-line message.
    """
    plan = plan_upscale([source], dest, options)
    plan.check_sizes(upscaler)
    item = plan.items[0]
    if item.error is not None:
        raise RealesrError(item.error, params=item.error_params)
    plan.prepare()
    result = run_item(upscaler, item, plan.options, on_progress)
    assert isinstance(result, FileResult)  # planned without video options: an image
    return result


def comparison_sheet(low: np.ndarray, high: np.ndarray, model_name: str) -> np.ndarray:
    """Bicubic (left) and the result (right) at the result's size, over a grey checkerboard if transparent."""
    from PIL import Image, ImageDraw, ImageFont

    def to_rgba8(array: np.ndarray) -> Image.Image:
        if array.dtype == np.uint16:
            array = to_uint8(array, peak=65535.0)
        if array.ndim == 2:
            return Image.fromarray(array).convert("RGBA")
        mode = {2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
        return Image.fromarray(array, mode=mode if mode != "LA" else None).convert("RGBA")

    result = to_rgba8(high)
    bicubic = to_rgba8(low).resize(result.size, Image.Resampling.BICUBIC)
    width, height = result.size
    font = ImageFont.load_default(size=max(12, min(48, height // 24)))
    # Without FreeType, Pillow falls back to its fixed bitmap font (about 11 px tall), which has no .size.
    font_size = font.size if isinstance(font, ImageFont.FreeTypeFont) else 11
    label_height = int(font_size * 1.6)
    canvas = Image.new("RGBA", (2 * width, height + label_height), (255, 255, 255, 255))
    checker = Image.new("RGBA", (width, height), (204, 204, 204, 255))
    step = 16
    draw_checker = ImageDraw.Draw(checker)
    for y in range(0, height, step):
        for x in range((y // step) % 2 * step, width, 2 * step):
            draw_checker.rectangle([x, y, x + step - 1, y + step - 1], fill=(255, 255, 255, 255))
    for index, panel in enumerate((bicubic, result)):
        canvas.paste(Image.alpha_composite(checker, panel), (index * width, label_height))
    draw = ImageDraw.Draw(canvas)
    for index, label in enumerate(("bicubic", model_name)):
        draw.text((index * width + 8, int(font_size * 0.25)), label, fill=(0, 0, 0, 255), font=font)
    return np.asarray(canvas.convert("RGB"))
