"""Image files, for every part of realesr: reading, writing, listing, and the plan of every output a command writes.

Reading and writing keep bit depth, alpha, ICC profile and EXIF.

Pillow decodes 16-bit RGB/RGBA/LA PNGs (and 16-bit RGB TIFFs) to 8 bits, dropping the low byte. For those the
file is decoded twice by Pillow's own C decoder with the tile's raw mode switched so that once the high and
once the low byte of each sample lands in the 8-bit image (or, for LA, with a raw mode of the same pixel
stride that keeps all four bytes); the two are combined into exact uint16 samples. Writing 16-bit colour PNGs
and TIFFs, which Pillow cannot do, is done by small encoders here (PNG: zlib + per-row filters; TIFF: baseline,
Deflate-compressed).
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import io
import os
import re
import stat
import struct
import sys
import warnings
import zlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from realesr.atomic import atomic_write_bytes
from realesr.errors import ImageReadError, ImageWriteError, UsageError

__all__ = [
    "READ_EXTENSIONS",
    "SOFTWARE",
    "VIDEO_EXTENSIONS",
    "WRITE_FORMATS",
    "ImageHeader",
    "InputFile",
    "LoadedImage",
    "OutputCollision",
    "PlannedOutput",
    "check_outputs",
    "expand_inputs",
    "format_for_path",
    "is_image_name",
    "list_folder",
    "made_by_realesr",
    "path_key",
    "read_header",
    "read_image",
    "read_path_list",
    "read_rgb",
    "to_uint8",
    "write_image",
]

# Extensions of the files realesr reads when it lists a folder, a glob or a .txt list (a file named on the command
# line is tried whatever its name).
READ_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".jfif", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".ppm", ".pgm", ".pnm", ".tga"}
)
# Video containers `realesr upscale` also picks up when it lists a folder or a glob (realesr.infer.video reads them).
VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4",
        ".m4v",
        ".mkv",
        ".webm",
        ".mov",
        ".avi",
        ".ts",
        ".mts",
        ".flv",
        ".wmv",
        ".mpg",
        ".mpeg",
        ".ogv",
        ".3gp",
        ".apng",
    }
)
# The EXIF "Software" value (and TIFF tag) realesr writes into its outputs: it is how a later run tells an earlier
# result of its own (which it may replace, and must not upscale again) from a user's file (which it must not touch).
SOFTWARE = "realesr"

# Largest side each format can hold.
MAX_SIDE = {"JPEG": 65_500, "WEBP": 16_383, "BMP": 2**31 - 1, "PNG": 2**31 - 1, "TIFF": 2**31 - 1}
# Formats that hold no alpha channel (images with alpha are written as PNG instead where realesr picks the format).
NO_ALPHA_FORMATS = frozenset({"JPEG", "BMP"})
# Extension -> Pillow format name of the files write_image can produce.
WRITE_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".webp": "WEBP",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".bmp": "BMP",
}

Image.MAX_IMAGE_PIXELS = 300_000_000  # large photos are the point of an upscaler; still stop decompression bombs


@dataclass
class LoadedImage:
    """A decoded image: ``array`` is HxW (grey) or HxWxC (C = 2 grey+alpha, 3 RGB, 4 RGBA), uint8 or uint16.

    ``icc_profile`` and ``exif`` are the raw bytes to carry to an output (EXIF with its orientation already
    applied to the pixels and reset to 1); ``format`` is the source file's format (e.g. "PNG", "JPEG").
    """

    array: np.ndarray
    icc_profile: bytes | None = None
    exif: bytes | None = None
    format: str | None = None
    info: dict = field(default_factory=dict)

    def with_array(self, array: np.ndarray) -> LoadedImage:
        """The same file's metadata (ICC profile, EXIF, format) with other pixels (an upscaled version)."""
        return LoadedImage(
            array=array, icc_profile=self.icc_profile, exif=self.exif, format=self.format, info=dict(self.info)
        )

    @property
    def bit_depth(self) -> int:
        return 16 if self.array.dtype == np.uint16 else 8

    @property
    def channels(self) -> int:
        return 1 if self.array.ndim == 2 else self.array.shape[2]

    @property
    def has_alpha(self) -> bool:
        return self.channels in (2, 4)

    @property
    def mode(self) -> str:
        """ "L", "LA", "RGB" or "RGBA" (the bit depth is separate)."""
        return {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[self.channels]

    @property
    def height(self) -> int:
        return self.array.shape[0]

    @property
    def width(self) -> int:
        return self.array.shape[1]


# --------------------------------------------------------------------------------------------------- reading


def _one_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


@contextmanager
def _quiet() -> Iterator[None]:
    """Pillow's warnings (DecompressionBombWarning, "Corrupt EXIF data", palette notes) are not the user's business:
    what matters about a file is raised as ImageReadError or reported by the caller."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


@dataclass(frozen=True)
class ImageHeader:
    """What a file's header says, read without decoding its pixels."""

    width: int
    height: int
    mode: str
    format: str | None
    frames: int
    has_alpha: bool


def read_header(path: str | os.PathLike) -> ImageHeader:
    """Size, mode, frame count and alpha of ``path`` from its header (cheap even for a 20000x20000 file);
    raises :class:`ImageReadError`. The orientation is applied: width and height are as the image is seen."""
    path = Path(path)
    _check_readable(path)
    try:
        with _quiet(), Image.open(path) as im:
            width, height = im.size
            orientation = 1
            if im.format in ("JPEG", "TIFF", "WEBP", "MPO"):  # (PNG keeps eXIf after the pixels at times: not read)
                orientation = int(im.getexif().get(0x0112, 1) or 1)
            if orientation in (5, 6, 7, 8):
                width, height = height, width
            mode = im.mode
            alpha = mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
                mode == "P" and ("transparency" in im.info or (im.palette is not None and im.palette.mode == "RGBA"))
            )
            return ImageHeader(width, height, mode, im.format, int(getattr(im, "n_frames", 1) or 1), alpha)
    except ImageReadError:
        raise
    except Exception as err:  # noqa: BLE001 - see _decode_error
        raise _decode_error(path, err) from None


NOT_AN_IMAGE = "not an image file Pillow can decode"


def _decode_error(path: Path, err: Exception) -> ImageReadError:
    """What went wrong decoding ``path``, as one line. Pillow's readers, given a malformed file, raise whatever the
    parser trips on (IndexError from a truncated GIF frame, KeyError, TypeError, struct.error...): any exception
    while decoding an input is that input's fault, so every one becomes an ImageReadError naming it and the batch
    goes on (issue 18)."""
    if isinstance(err, UnidentifiedImageError):
        return ImageReadError(f"{path}: {NOT_AN_IMAGE}")
    if isinstance(err, PermissionError):
        return ImageReadError(f"{path}: permission denied")
    if isinstance(err, Image.DecompressionBombError):
        limit = 2 * (Image.MAX_IMAGE_PIXELS or 0)
        return ImageReadError(f"{path}: more than {limit:,} pixels, refused as a decompression bomb")
    if isinstance(err, MemoryError):
        return ImageReadError(f"{path}: too large to decode in the memory here")
    known = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error)
    detail = _one_line(err) if isinstance(err, known) else f"{type(err).__name__}: {_one_line(err)}"
    return ImageReadError(f"{path}: broken or truncated image ({detail})")


_BMFF_BOXES = (b"ftyp", b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")  # MP4, MOV, M4V, 3GP


def is_video_content(path: str | os.PathLike) -> bool:
    """Whether the first bytes of ``path`` are those of a video container (ISO BMFF, Matroska/WebM, AVI, MPEG-TS/PS,
    FLV, Ogg, ASF, Y4M), decided without PyAV: what a file is comes from its content before any extra is needed
    (a plain install names a text file as neither image nor video, and a video as needing the video extra).
    False for anything unreadable or not a regular file."""
    try:
        with open_regular(path) as f:
            head = f.read(512)
    except OSError:
        return False
    ts = len(head) > 376 and head[0] == head[188] == head[376] == 0x47
    m2ts = len(head) > 388 and head[4] == head[196] == head[388] == 0x47
    return (
        head[4:8] in _BMFF_BOXES
        or head.startswith(
            (b"\x1a\x45\xdf\xa3", b"FLV", b"OggS", b"YUV4MPEG2", b"\x00\x00\x01\xba", b"\x00\x00\x01\xb3")
        )
        or (head.startswith(b"RIFF") and head[8:12] == b"AVI ")
        or head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11")
        or ts
        or m2ts
    )


def made_by_realesr(path: str | os.PathLike) -> bool:
    """True when ``path`` is an image whose EXIF Software tag (TIFF: tag 305) is realesr's (see :data:`SOFTWARE`),
    or a video whose container "comment" tag is (realesr.infer.video writes it)."""
    if os.path.splitext(os.fspath(path))[1].lower() in VIDEO_EXTENSIONS:
        try:
            import av

            with av.open(os.fspath(path), metadata_errors="ignore") as container:
                return container.metadata.get("comment", "").split(" ", 1)[0] == SOFTWARE
        except Exception:  # noqa: BLE001 - no PyAV, or unreadable: not ours
            return False
    try:
        with _quiet(), Image.open(path) as im:
            software = im.getexif().get(0x0131)
    except Exception:  # noqa: BLE001 - anything unreadable is not ours
        return False
    return isinstance(software, str) and software.split(" ", 1)[0] == SOFTWARE


def _check_readable(path: Path) -> None:
    if not path.exists():
        raise ImageReadError(f"{path}: {'broken symbolic link' if path.is_symlink() else 'no such file'}")
    if path.is_dir():
        raise ImageReadError(f"{path}: is a folder, not an image")
    if not path.is_file():
        raise ImageReadError(f"{path}: not a regular file (a pipe, a socket or a device)")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise ImageReadError(f"{path}: cannot read ({_one_line(err)})") from None
    if size == 0:
        raise ImageReadError(f"{path}: empty file")


def to_uint8(values: np.ndarray, peak: float = 1.0) -> np.ndarray:
    """Float samples in [0, ``peak``] -> uint8 (x * 255 / peak rounded half to even, clipped); same layout."""
    values = np.asarray(values)
    scaled = values * (255.0 / peak) if peak != 255.0 else values
    return np.clip(np.round(scaled), 0, 255).astype(np.uint8)


def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """HxWx3 float32 RGB in [0, 1], as training, degradation and evaluation see an image: every format
    :func:`read_image` reads (16-bit kept at full precision, EXIF orientation applied), grey replicated to three
    channels, alpha dropped. Raises :class:`ImageReadError`."""
    array = read_image(path).array
    if array.ndim == 2:
        array = array[..., None]
    colour = array[..., :3] if array.shape[2] >= 3 else np.repeat(array[..., :1], 3, axis=2)
    peak = 65535.0 if array.dtype == np.uint16 else 255.0
    return np.ascontiguousarray(colour, dtype=np.float32) / np.float32(peak)


def read_image(path: str | os.PathLike) -> LoadedImage:
    """Decode ``path`` into a :class:`LoadedImage`; raises :class:`ImageReadError` with a one-line reason."""
    path = Path(path)
    _check_readable(path)
    try:
        with _quiet(), Image.open(path) as im:
            return _decode(im, path)
    except ImageReadError:
        raise
    except Exception as err:  # noqa: BLE001 - see _decode_error
        raise _decode_error(path, err) from None


def _decode(im: ImageFile.ImageFile, path: Path) -> LoadedImage:
    fmt = im.format
    # Before anything loads the image: PNG's getexif() decodes the pixels (eXIf may follow IDAT) and clears tile.
    array = _decode_16bit_colour(im, path)
    im.load()  # raises on a truncated file (LOAD_TRUNCATED_IMAGES stays False)
    if array is None:
        array = _pixels_of(im)
    icc = im.info.get("icc_profile") or None
    exif_obj = im.getexif()
    orientation = int(exif_obj.get(0x0112, 1) or 1)
    if orientation != 1:
        array = _apply_orientation(array, orientation)
    exif = None
    if len(exif_obj):
        if orientation != 1:
            exif_obj[0x0112] = 1
        exif = exif_obj.tobytes()
    if icc is not None and fmt in ("JPEG", "WEBP", "PNG", "TIFF") and im.mode == "CMYK":
        icc = None  # a CMYK profile does not describe the RGB pixels we made from it
    return LoadedImage(array=array, icc_profile=icc, exif=exif, format=fmt, info={"source_mode": im.mode})


def _pixels_of(im: Image.Image) -> np.ndarray:
    """Pillow image of any mode -> HxW / HxWxC uint8/uint16 array (L, LA, RGB, RGBA)."""
    mode = im.mode
    if mode in ("L", "RGB", "RGBA", "LA"):
        return np.asarray(im).copy()
    if mode == "1":
        return np.asarray(im.convert("L")).copy()
    if mode == "P" or mode == "PA":
        has_alpha = "transparency" in im.info or mode == "PA" or (im.palette is not None and im.palette.mode == "RGBA")
        palette_mode = im.palette.mode if im.palette is not None else "RGB"
        if has_alpha:
            return np.asarray(im.convert("RGBA")).copy()
        return np.asarray(im.convert("L" if palette_mode == "L" else "RGB")).copy()
    if mode in ("I;16", "I;16B", "I;16L", "I;16N"):
        return np.asarray(im).astype(np.uint16)
    if mode == "I":
        values = np.asarray(im)
        if values.min() >= 0 and values.max() <= 65535:
            return values.astype(np.uint16)
        raise ImageReadError("32-bit integer image with values outside 0..65535 is not supported")
    if mode == "F":
        values = np.asarray(im)
        if not np.isfinite(values).all():
            raise ImageReadError("floating-point image with non-finite values")
        top = 1.0 if values.max() <= 1.0 else 65535.0
        return np.round(np.clip(values / top, 0, 1) * 65535).astype(np.uint16)
    if mode == "CMYK":
        return np.asarray(_cmyk_to_rgb(im)).copy()
    # YCbCr, LAB, HSV, RGBX, RGBa, La ...: Pillow knows how to get to RGB(A)
    target = "RGBA" if "A" in mode or "a" in mode else "RGB"
    return np.asarray(im.convert(target)).copy()


def _cmyk_to_rgb(im: Image.Image) -> Image.Image:
    """CMYK through its embedded ICC profile when there is one (ImageCms), else Pillow's naive conversion.

    Adobe-written JPEGs store CMYK inverted; Pillow's JPEG decoder already undoes that (raw mode CMYK;I).
    """
    icc = im.info.get("icc_profile")
    if icc:
        try:
            from PIL import ImageCms

            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            dst = ImageCms.createProfile("sRGB")
            converted = ImageCms.profileToProfile(im, src, dst, outputMode="RGB")
            if converted is not None:  # None only with inPlace=True
                return converted
        except Exception:  # noqa: BLE001, S110 - a broken profile: fall back to the plain conversion
            pass
    return im.convert("RGB")


def _raw_variant(tile: ImageFile._Tile, rawmode: str) -> ImageFile._Tile:
    args = tile.args
    if isinstance(args, tuple):
        args = (rawmode,) + tuple(args[1:])
    else:
        args = rawmode
    return tile._replace(args=args)


def _reload_with_rawmode(path: Path, rawmode: str) -> np.ndarray:
    with Image.open(path) as im:
        im.tile = [_raw_variant(t, rawmode) for t in im.tile]
        im.load()
        return np.asarray(im).copy()


def _decode_16bit_colour(im: ImageFile.ImageFile, path: Path) -> np.ndarray | None:
    """Exact uint16 samples of a 16-bit RGB/RGBA/LA PNG or 16-bit RGB(A) TIFF; None for every other file."""
    if not im.tile:
        return None
    rawmode = im.tile[0].args[0] if isinstance(im.tile[0].args, tuple) else im.tile[0].args
    if not isinstance(rawmode, str):
        return None
    if rawmode == "LA;16B" and im.format == "PNG":
        # Same 4-byte pixel stride as 8-bit RGBA, so Pillow's unfiltering is right and every byte is kept.
        raw = _reload_with_rawmode(path, "RGBA")
        grey = raw[..., 0].astype(np.uint16) << 8 | raw[..., 1]
        alpha = raw[..., 2].astype(np.uint16) << 8 | raw[..., 3]
        return np.stack([grey, alpha], axis=-1)
    if rawmode not in ("RGB;16B", "RGB;16L", "RGB;16N", "RGBA;16B", "RGBA;16L", "RGBA;16N"):
        return None
    if rawmode.endswith("16N"):  # libtiff hands over native-endian samples
        rawmode = rawmode[:-1] + ("L" if sys.byteorder == "little" else "B")
    base, channels = rawmode[:-4], (4 if rawmode.startswith("RGBA") else 3)
    # Pillow's ";16B" unpacker keeps the first byte of each sample, ";16L" the second.
    first = _reload_with_rawmode(path, base + ";16B")
    second = _reload_with_rawmode(path, base + ";16L")
    high, low = (first, second) if rawmode.endswith("16B") else (second, first)
    values = high.astype(np.uint16) << 8 | low.astype(np.uint16)
    return values[..., :channels]


def _apply_orientation(array: np.ndarray, orientation: int) -> np.ndarray:
    """EXIF orientation 2..8 -> pixels as they are meant to be seen (same transforms as ImageOps.exif_transpose)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1, :],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1, :],
    }
    if orientation not in ops:
        return array
    return np.ascontiguousarray(ops[orientation](array))


# ------------------------------------------------------------------------------------- arrays and PIL images


@dataclass(frozen=True)
class ArrayLayout:
    """How an image array maps onto network planes: ``planes`` is HxW or HxWxC (C = 2 grey+alpha, 3, 4) without a
    trailing 1-channel axis; ``peak`` the value of full intensity (None: float in [0, 1])."""

    planes: np.ndarray
    peak: float | None
    squeeze: bool  # the input was HxWx1: give the result that shape back
    channels: int
    colour_channels: int  # 1 (grey, grey+alpha) or 3
    has_alpha: bool


def array_layout(array: np.ndarray) -> ArrayLayout:
    """Check an image array (HxW, HxWx1..4; uint8, uint16 or float in [0, 1]) and describe its planes;
    raises :class:`UsageError` for anything else."""
    array = np.asarray(array)
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 2, 3, 4)):
        raise UsageError(f"expected an HxW or HxWxC image (C = 1..4), got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise UsageError(f"empty image of shape {array.shape}")
    peaks = {
        np.dtype(np.uint8): 255.0,
        np.dtype(np.uint16): 65535.0,
        np.dtype(np.float32): None,
        np.dtype(np.float64): None,
    }
    if array.dtype not in peaks:
        raise UsageError(f"pixels must be uint8, uint16 or float in [0,1], not {array.dtype}")
    squeeze = array.ndim == 3 and array.shape[2] == 1
    planes = np.ascontiguousarray(array[..., 0] if squeeze else array)
    channels = 1 if planes.ndim == 2 else planes.shape[2]
    return ArrayLayout(
        planes, peaks[array.dtype], squeeze, channels, 1 if channels in (1, 2) else 3, channels in (2, 4)
    )


def pil_to_array(image: Image.Image) -> np.ndarray:
    """A PIL image of any mode -> HxW / HxWxC uint8 or uint16 array (L, LA, RGB, RGBA), as files are decoded."""
    with _quiet():
        return _pixels_of(image)


def array_to_pil(array: np.ndarray, like: Image.Image | None = None) -> Image.Image:
    """uint8 HxW/HxWxC or uint16 grey -> a PIL image, with ``like``'s ICC profile, EXIF and dpi in its info.
    PIL has no 16-bit colour mode: that is a :class:`UsageError` (use numpy arrays or read_image/write_image)."""
    if array.dtype == np.uint16 and array.ndim == 3:
        raise UsageError(
            "PIL has no 16-bit colour mode; pass a numpy array or use realesr.imagefiles.read_image for 16-bit colour"
        )
    result = Image.fromarray(array)
    if like is not None:
        result.info.update({k: v for k, v in like.info.items() if k in ("icc_profile", "exif", "dpi")})
    return result


# --------------------------------------------------------------------------------------------------- writing


def format_for_path(path: str | os.PathLike) -> str:
    """Pillow format name for ``path``'s extension; :class:`ImageWriteError` for one we do not write."""
    ext = Path(path).suffix.lower()
    if ext not in WRITE_FORMATS:
        known = ", ".join(sorted({e.lstrip(".") for e in WRITE_FORMATS}))
        raise ImageWriteError(f"{path}: cannot write '{ext or '(no extension)'}' files (use one of {known})")
    return WRITE_FORMATS[ext]


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.resolve() == b.resolve() or (a.exists() and b.exists() and os.path.samefile(a, b))
    except OSError:
        return False


def write_image(
    path: str | os.PathLike,
    image: LoadedImage | np.ndarray,
    *,
    quality: int = 95,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    source: str | os.PathLike | None = None,
    mark: bool = False,
) -> Path:
    """Write ``image`` to ``path`` atomically (temporary file in the same folder, then ``os.replace``).

    The format comes from the extension. 16-bit arrays stay 16-bit in PNG and TIFF; JPEG, WebP and BMP hold
    8 bits, so 16-bit data is rounded to 8 there. ICC profile and EXIF (from the LoadedImage, or the keyword
    arguments, which win) are embedded where the format allows. ``source``: the input file this output is made
    from; writing over it is refused. ``mark``: record realesr as the EXIF/TIFF Software (JPEG, PNG, WebP, TIFF),
    so that a later run recognises the file as its own result (:func:`made_by_realesr`).
    """
    path = Path(path)
    if isinstance(image, LoadedImage):
        array = image.array
        icc_profile = icc_profile if icc_profile is not None else image.icc_profile
        exif = exif if exif is not None else image.exif
    else:
        array = np.asarray(image)
    if array.dtype not in (np.uint8, np.uint16):
        raise ImageWriteError(f"{path}: can only write uint8 or uint16 pixels, not {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (2, 3, 4)):
        raise ImageWriteError(f"{path}: cannot write an array of shape {array.shape}")
    if not 1 <= quality <= 100:
        raise ImageWriteError(f"quality must be in 1..100, not {quality}")
    fmt = format_for_path(path)
    if source is not None and _same_file(path, Path(source)):
        raise ImageWriteError(f"{path}: refusing to overwrite the input image")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ImageWriteError(f"{path}: output folder {folder} does not exist")

    software = None
    if mark:
        from realesr import __version__

        software = f"{SOFTWARE} {__version__}"
        if fmt != "TIFF":
            exif = _with_software(exif, software)
    data = _encode(array, fmt, quality, icc_profile, exif, software)
    try:
        atomic_write_bytes(path, data)
    except OSError as err:
        raise ImageWriteError(f"{path}: cannot write to {folder} ({_one_line(err)})") from None
    return path


def _to_8bit(array: np.ndarray) -> np.ndarray:
    if array.dtype == np.uint8:
        return array
    # x * 255 / 65535 == x / 257; rounding to nearest keeps the 8-bit value of an 8->16 expanded sample exact.
    return ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)


def _with_software(exif: bytes | None, software: str) -> bytes:
    block = Image.Exif()
    if exif:
        with _quiet():
            block.load(exif)
    block[0x0131] = software
    return block.tobytes()


def _encode(
    array: np.ndarray, fmt: str, quality: int, icc: bytes | None, exif: bytes | None, software: str | None = None
) -> bytes:
    channels = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype == np.uint16 and fmt == "PNG":
        return encode_png16(array, icc=icc, exif=exif)
    if array.dtype == np.uint16 and fmt == "TIFF":
        return encode_tiff16(array, icc=icc, exif=exif, software=software)
    array8 = _to_8bit(array)
    if fmt in NO_ALPHA_FORMATS and channels in (2, 4):
        # (Pillow's BMP writer drops alpha, and most BMP readers ignore it anyway.)
        raise ImageWriteError(f"{fmt} has no alpha channel: write PNG, WebP or TIFF for images with transparency")
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[array8.shape[2] if array8.ndim == 3 else 1]
    im = Image.fromarray(array8, mode=mode) if mode != "LA" else Image.fromarray(array8)
    kwargs: dict = {}
    if icc:
        kwargs["icc_profile"] = icc
    if exif and fmt in ("JPEG", "PNG", "WEBP"):  # Pillow's TIFF writer cannot embed an EXIF block
        kwargs["exif"] = exif
    if fmt == "JPEG":
        kwargs.update(quality=quality, subsampling=0 if quality >= 90 else 2, optimize=True)
    elif fmt == "WEBP":
        kwargs.update(quality=quality, method=4)
    elif fmt == "PNG":
        kwargs.update(compress_level=6)
    elif fmt == "TIFF":
        kwargs.update(compression="tiff_deflate")
        if software:
            kwargs["software"] = software
    elif fmt == "BMP":
        kwargs.pop("icc_profile", None)
    buffer = io.BytesIO()
    try:
        im.save(buffer, format=fmt, **kwargs)
    except (OSError, ValueError, RuntimeError) as err:
        raise ImageWriteError(f"cannot encode {fmt}: {_one_line(err)}") from None
    return buffer.getvalue()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _png_filtered_rows(raw: np.ndarray, bpp: int) -> bytes:
    """Rows filtered with the Paeth predictor (type 4), computed for all rows at once."""
    h, n = raw.shape
    a = np.zeros_like(raw, dtype=np.int16)
    a[:, bpp:] = raw[:, :-bpp]
    b = np.zeros_like(raw, dtype=np.int16)
    b[1:] = raw[:-1]
    c = np.zeros_like(raw, dtype=np.int16)
    c[1:, bpp:] = raw[:-1, :-bpp]
    p = a + b - c
    pa, pb, pc = np.abs(p - a), np.abs(p - b), np.abs(p - c)
    predictor = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
    filtered = ((raw.astype(np.int16) - predictor) & 0xFF).astype(np.uint8)
    rows = np.empty((h, n + 1), dtype=np.uint8)
    rows[:, 0] = 4
    rows[:, 1:] = filtered
    return rows.tobytes()


def encode_png16(array: np.ndarray, icc: bytes | None = None, exif: bytes | None = None) -> bytes:
    """A 16-bit PNG (grey, grey+alpha, RGB or RGBA) of a uint16 array."""
    channels = 1 if array.ndim == 2 else array.shape[2]
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    h, w = array.shape[:2]
    raw = np.ascontiguousarray(array.astype(">u2")).view(np.uint8).reshape(h, w * channels * 2)
    parts = [b"\x89PNG\r\n\x1a\n", _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0))]
    if icc:
        parts.append(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
    if exif:
        parts.append(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    parts.append(_png_chunk(b"IDAT", zlib.compress(_png_filtered_rows(raw, channels * 2), 6)))
    parts.append(_png_chunk(b"IEND", b""))
    return b"".join(parts)


def encode_tiff16(
    array: np.ndarray, icc: bytes | None = None, exif: bytes | None = None, software: str | None = None
) -> bytes:
    """A baseline little-endian 16-bit TIFF, one Deflate-compressed strip (grey, grey+alpha, RGB, RGBA).

    EXIF is not written into TIFF (it would need a separate EXIF IFD); the ICC profile is (tag 34675).
    """
    del exif
    if array.ndim == 3 and array.shape[2] == 2:
        # Grey+alpha 16-bit TIFFs are legal but few readers (Pillow included) open them: store as RGBA.
        array = np.concatenate([np.repeat(array[..., :1], 3, axis=2), array[..., 1:]], axis=2)
    channels = 1 if array.ndim == 2 else array.shape[2]
    h, w = array.shape[:2]
    strip = zlib.compress(np.ascontiguousarray(array.astype("<u2")).tobytes(), 6)
    photometric = 1 if channels <= 2 else 2
    entries: list[tuple[int, int, int, bytes]] = []  # tag, type, count, value bytes

    def add(tag: int, kind: int, values: list[int] | bytes) -> None:
        if kind in (2, 7):  # ASCII, UNDEFINED: bytes as they are
            entries.append((tag, kind, len(values), bytes(values)))
            return
        fmt = {3: "<H", 4: "<I"}[kind]
        entries.append((tag, kind, len(values), b"".join(struct.pack(fmt, v) for v in values)))

    header_size = 8
    add(256, 4, [w])
    add(257, 4, [h])
    add(258, 3, [16] * channels)
    add(259, 3, [8])  # Adobe Deflate
    add(262, 3, [photometric])
    add(273, 4, [0])  # strip offset, patched below
    add(277, 3, [channels])
    add(278, 4, [h])
    add(279, 4, [len(strip)])
    add(284, 3, [1])
    if software:
        add(305, 2, software.encode("ascii", "replace") + b"\x00")
    if channels in (2, 4):
        add(338, 3, [2])  # unassociated alpha
    if icc:
        add(34675, 7, icc)
    entries.sort(key=lambda e: e[0])
    ifd_size = 2 + 12 * len(entries) + 4
    extra_offset = header_size + ifd_size
    extra = bytearray()
    value_offsets: dict[int, int] = {}
    for tag, _kind, _count, value in entries:
        if len(value) > 4:
            value_offsets[tag] = extra_offset + len(extra)
            extra += value
            if len(extra) % 2:
                extra += b"\x00"
    strip_offset = extra_offset + len(extra)
    ifd = bytearray(struct.pack("<H", len(entries)))
    for tag, kind, count, value in entries:
        if tag == 273:
            value = struct.pack("<I", strip_offset)
        ifd += struct.pack("<HHI", tag, kind, count)
        ifd += struct.pack("<I", value_offsets[tag]) if tag in value_offsets else value.ljust(4, b"\x00")
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", header_size) + bytes(ifd) + bytes(extra) + strip


def write_figure(path: str | os.PathLike, figure, dpi: float = 100) -> Path:
    """A matplotlib figure (Agg canvas), rendered at ``dpi`` and written by :func:`write_image` (atomic)."""
    figure.set_dpi(dpi)
    figure.canvas.draw()
    rgba = np.asarray(figure.canvas.buffer_rgba())
    return write_image(path, np.ascontiguousarray(rgba[..., :3]))


# --------------------------------------------------------------------------------------------------- listing


def is_image_name(path: str | os.PathLike, videos: bool = False) -> bool:
    """An image extension (or, with ``videos``, a video one), and not a hidden file (our own temporaries are
    ``.NAME.xxxx.tmp``)."""
    name = os.path.basename(path)
    ext = os.path.splitext(name)[1].lower()
    return not name.startswith(".") and (ext in READ_EXTENSIONS or (videos and ext in VIDEO_EXTENSIONS))


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except (OSError, ValueError):  # a symlink loop, a name too long, a NUL byte
        return False


def _special_kind(path: Path) -> str:
    """'a named pipe' / 'a device' / 'a socket' for an existing non-regular, non-folder file (links followed)."""
    try:
        mode = path.stat().st_mode
    except (OSError, ValueError):
        return ""
    if stat.S_ISFIFO(mode):
        return "a named pipe"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "a socket" if stat.S_ISSOCK(mode) else ""


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a symlink loop, a name too long
        return False


def list_folder(folder: str | os.PathLike, recursive: bool = False, videos: bool = False) -> list[Path]:
    """The image files of ``folder`` (sorted; with ``recursive`` its sub-folders too, not following symlinked
    folders, so a link loop cannot trap it). Hidden files and other extensions are skipped."""
    folder = Path(folder)
    found: list[Path] = []
    if recursive:
        for root, dirs, files in os.walk(folder):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            found.extend(Path(root) / f for f in files if is_image_name(f, videos) and _is_file(Path(root) / f))
    else:
        try:
            entries = list(folder.iterdir())
        except OSError:
            return []
        found = [p for p in entries if is_image_name(p, videos) and _is_file(p)]
    return sorted(found)


_META_INFO_LINE = re.compile(r"^(.*\S)\s+\(\d+,\s*\d+,\s*\d+\)$")  # BasicSR's "path (h,w,c)"


# A list of image paths larger than this is no list a person made (a .txt that is a log, a link to /dev/zero).
MAX_LIST_BYTES = 64 * 2**20


def read_path_list(listing: str | os.PathLike, root: str | os.PathLike | None = None) -> list[Path]:
    """A .txt list: one image path per line, relative to ``root`` (default: the list's folder); blank lines and
    lines starting with '#' are skipped; an official meta_info line ``path (h,w,c)`` gives its path. Raises
    :class:`ImageReadError` when the list cannot be read: not a regular file (a FIFO would block, a device never
    end), larger than :data:`MAX_LIST_BYTES`, not UTF-8."""
    listing = Path(listing)
    base = Path(root) if root else listing.parent
    paths = []
    for _number, entry in read_list_lines(listing):
        meta = _META_INFO_LINE.match(entry)
        path = Path(os.path.expanduser(meta.group(1) if meta else entry))
        paths.append(path if path.is_absolute() else base / path)
    return paths


def read_list_lines(listing: str | os.PathLike, what: str = "image list") -> list[tuple[int, str]]:
    """The entries of a .txt list, ``(line number, stripped text)``, blank lines and '#' comments left out. Raises
    :class:`ImageReadError` naming the ``what`` when it cannot be read: not a regular file (a FIFO would block, a
    device never end), larger than :data:`MAX_LIST_BYTES`, not UTF-8."""
    try:
        with open_regular(listing) as f:
            data = f.read(MAX_LIST_BYTES + 1)
        if len(data) > MAX_LIST_BYTES:
            raise ImageReadError(f"{listing}: the {what} is larger than {MAX_LIST_BYTES // 2**20} MiB")
        lines = data.decode("utf-8").splitlines()
    except OSError as err:
        raise ImageReadError(f"{listing}: cannot read the {what} ({err.strerror or _one_line(err)})") from None
    except UnicodeDecodeError as err:
        raise ImageReadError(f"{listing}: cannot read the {what} (not UTF-8 text: {err.reason})") from None
    entries = [(number, line.strip()) for number, line in enumerate(lines, 1)]
    for number, entry in entries:
        if "\0" in entry:  # no file name holds one (and os.stat would raise ValueError on it)
            raise ImageReadError(f"{listing}: line {number} holds a NUL byte, which no path can")
    return [(number, entry) for number, entry in entries if entry and not entry.startswith("#")]


def open_regular(path: str | os.PathLike):
    """``open(path, "rb")`` for a regular file only: opened without blocking (a FIFO with no writer would hang the
    open itself), then checked; anything else raises OSError "not a regular file (a pipe, socket or device)"."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file (a pipe, socket or device)")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def walk_once(top: str | os.PathLike[str]) -> Iterator[tuple[str, list[str], list[str]]]:
    """``os.walk(top, followlinks=True)`` that enters every folder once (by device and inode): a symlink loop, or
    two links to one folder, cannot make a walk endless or list a file twice. Hidden folders are not entered."""
    seen: set[tuple[int, int]] = set()
    for root, dirs, files in os.walk(os.fspath(top), followlinks=True):
        try:
            st = os.stat(root)
        except OSError:
            dirs[:] = []
            continue
        if (st.st_dev, st.st_ino) in seen:
            dirs[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        yield root, dirs, files


def glob_files(pattern: str) -> list[Path]:
    """The files matching a glob pattern (``*``, ``?``, ``[..]``, ``**`` for any depth), sorted. Unlike
    :func:`glob.glob`, ``**`` walks with :func:`walk_once`: a symlink loop under it ends (glob.glob would follow
    it without end). Wildcards do not match a leading dot, as in the shell."""
    if "**" not in pattern:
        return sorted(Path(p) for p in glob.glob(pattern))
    parts = Path(pattern).parts
    fixed = 0
    while fixed < len(parts) - 1 and not glob.has_magic(parts[fixed]):
        fixed += 1
    top = Path(*parts[:fixed]) if fixed else Path(".")
    wanted = parts[fixed:]
    found = []
    for root, _dirs, files in walk_once(top):
        rel = Path(root).relative_to(top).parts if Path(root) != top else ()
        for name in files:
            if _glob_match((*rel, name), wanted):
                found.append(Path(root) / name)
    return sorted(found)


def _glob_match(parts: Sequence[str], pattern: Sequence[str]) -> bool:
    """Path components against pattern components; "**" matches any number of (non-hidden) components."""
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_glob_match(parts[i:], rest) for i in range(len(parts) + 1))
    if not parts or (parts[0].startswith(".") and not head.startswith(".")):
        return False
    return fnmatch.fnmatchcase(parts[0], head) and _glob_match(parts[1:], rest)


@dataclass(frozen=True)
class InputFile:
    """One file an input argument names or expands to. ``named``: given itself (not found in a folder, glob or
    list). ``error``: why the argument yields nothing (a missing file, an empty folder), reported as a failure."""

    path: Path
    spec: str
    named: bool
    error: str | None = None
    aliases: tuple[Path, ...] = ()  # other names of the same file among the inputs (links), dropped as duplicates


def expand_inputs(specs: Iterable[str | os.PathLike], recursive: bool = False, videos: bool = False) -> list[InputFile]:
    """Files, folders (their image files), globs and .txt lists -> files in order, each file once (a file reached
    twice, also through a symlink or a hard link, counts once). An argument that names nothing becomes an
    :class:`InputFile` with ``error`` so that it is reported while the rest goes on."""
    out: list[InputFile] = []
    seen: dict[object, int] = {}

    def add(path: Path, spec: str, named: bool) -> None:
        key = _identity(path)
        if key not in seen:
            seen[key] = len(out)
            out.append(InputFile(path, spec, named))
            return
        # The same file again: one entry, which keeps the other names (an entry with aliases is never skipped as an
        # earlier result, see earlier_results) and is the real file rather than a symlink to it when both are found.
        index = seen[key]
        first = out[index]
        if first.path.is_symlink() and not path.is_symlink():
            out[index] = replace(first, path=path, spec=spec, named=named, aliases=first.aliases + (first.path,))
        else:
            out[index] = replace(first, aliases=first.aliases + (path,))

    for raw in specs:
        spec = os.fspath(raw)
        path = Path(os.path.expanduser(spec))
        if not spec or "\0" in spec:  # "" would be the current folder, silently
            why = "a NUL byte in the name" if spec else "an empty name ('': give . for this folder)"
            out.append(InputFile(path, spec, True, why))
            continue
        try:
            is_dir = path.is_dir()
            exists = path.exists()
        except OSError as err:
            out.append(InputFile(path, spec, True, _one_line(err)))
            continue
        if is_dir:
            files = list_folder(path, recursive=recursive, videos=videos)
            if not files:
                out.append(InputFile(path, spec, True, "folder holds no image files"))
            for file in files:
                add(file, spec, False)
        elif exists and path.suffix.lower() == ".txt":
            try:
                files = read_path_list(path)
            except ImageReadError as err:  # the plan names the path: keep the reason only
                out.append(InputFile(path, spec, True, str(err).removeprefix(f"{path}: ")))
                continue
            if not files:
                out.append(InputFile(path, spec, True, "the list names no image"))
            for file in files:
                if _exists(file) or file.is_symlink():
                    add(file, spec, True)  # named one by one by the user, so never skipped as an earlier result
                else:  # "hello: no such file" alone would not say where "hello" came from
                    out.append(InputFile(file, spec, True, f"no such file (listed in {path})"))
        elif exists:
            add(path, spec, True)
        elif path.is_symlink():
            out.append(InputFile(path, spec, True, "broken symbolic link"))
        elif glob.has_magic(spec):
            matches = glob_files(os.path.expanduser(spec))
            files = [p for p in matches if is_image_name(p, videos) and _is_file(p)]
            if not files:
                out.append(InputFile(path, spec, True, "no image file matches this pattern"))
            for file in files:
                add(file, spec, False)
        else:
            out.append(InputFile(path, spec, True, "no such file or folder"))
    return out


# --------------------------------------------------------------------------------------------------- output plan


def path_key(path: str | os.PathLike) -> str:
    """A path compared as a file system would: the real folder, the name casefolded. Case-only differences count
    as the same file everywhere, so that a batch planned on Linux behaves the same on macOS or Windows."""
    path = Path(path)
    folder = os.path.realpath(path.parent if str(path.parent) else ".")
    return os.path.join(folder, path.name).casefold()


def _identity(path: Path) -> object:
    """(device, inode) of an existing file (the same for symlinks and hard links to it), else its path key."""
    try:
        st = os.stat(path)
        return (st.st_dev, st.st_ino)
    except (OSError, ValueError):  # (ValueError: a NUL byte in the name)
        return path_key(path)


@dataclass(frozen=True)
class PlannedOutput:
    """A file a command will write. ``what``: how to name it to the user ("the result of a.png", "the table");
    ``params``: the parameters (library names, e.g. "suffix", "output") whose change avoids a clash."""

    path: Path
    what: str
    params: tuple[str, ...] = ()


class OutputCollision(UsageError):
    """Two planned outputs at one place, or an output that would overwrite an input (exit code 2).
    ``params`` names the parameters that avoid it; the CLI shows them as its options."""


def earlier_results(
    entries: Sequence[InputFile], outputs_of: Sequence[Sequence[Path]], folder: str | os.PathLike
) -> set[int]:
    """Indices of the entries that are results of an earlier run, not inputs of this one: found (through a folder
    or a glob, not named one by one) in the output ``folder``, planned as the output of another entry
    (``outputs_of[i]``: the planned outputs of entry i), and carrying realesr's mark. Any other input at a planned
    output place is left to :func:`check_outputs`, which refuses it."""
    owner: dict[str, int] = {}
    for index, paths in enumerate(outputs_of):
        for path in paths:
            owner.setdefault(path_key(path), index)
    folder_key = os.path.realpath(folder).casefold()
    found = set()
    for index, entry in enumerate(entries):
        other = owner.get(path_key(entry.path))
        if (
            entry.error is None
            and not entry.named
            and not entry.aliases  # also an input under another name: skipping it would skip that one silently
            and other is not None
            and other != index
            and os.path.realpath(entry.path.parent).casefold() == folder_key
            and made_by_realesr(entry.path)
        ):
            found.add(index)
    return found


def check_outputs(outputs: Sequence[PlannedOutput], inputs: Iterable[str | os.PathLike]) -> None:
    """Raise :class:`OutputCollision` for the first planned output that lands on another planned output or on an
    input (same path, case aside; or the same file through a symlink or a hard link)."""
    limits: dict[str, int] = {}
    for output in outputs:
        folder = str(existing_ancestor(output.path.parent if str(output.path.parent) else "."))
        if folder not in limits:
            try:
                limits[folder] = int(os.pathconf(folder, "PC_NAME_MAX"))
            except (OSError, ValueError, AttributeError):
                limits[folder] = 255
        # The temporary file beside it is ".NAME.<12 hex>.tmp": 18 bytes longer.
        if len(os.fsencode(output.path.name)) + 18 > limits[folder]:
            raise UsageError(
                f"the name of {output.what} ({len(output.path.name)} characters) is too long for "
                f"the file system (at most {limits[folder] - 18})",
                params=output.params,
            )
    input_keys: dict[object, Path] = {}
    for raw in inputs:
        path = Path(raw)
        input_keys.setdefault(path_key(path), path)
        input_keys.setdefault(_identity(path), path)
    planned: dict[str, PlannedOutput] = {}
    for output in outputs:
        if _is_dir(output.path):  # found only when writing, after the work, otherwise
            raise OutputCollision(
                f"{output.what} would be written to {output.path}, which is a folder", params=output.params
            )
        special = _special_kind(output.path)
        if special:  # os.replace would swap a named pipe or a device for a plain file
            raise OutputCollision(
                f"{output.what} would be written to {output.path}, which is {special}", params=output.params
            )
        key = path_key(output.path)
        other = planned.get(key)
        if other is not None:
            same = "" if str(other.path) == str(output.path) else f" and {output.path}"
            raise OutputCollision(
                f"{other.what} and {output.what} would both be written to {other.path}{same}",
                params=tuple(dict.fromkeys(other.params + output.params)),
            )
        planned[key] = output
        source = input_keys.get(key) or input_keys.get(_identity(output.path))
        if source is not None:
            via = "" if path_key(source) == key else f" (the same file as {output.path})"
            raise OutputCollision(f"{output.what} would overwrite the input {source}{via}", params=output.params)


def existing_ancestor(path: str | os.PathLike) -> Path:
    """``path`` itself if it exists, else its nearest existing parent."""
    found = Path(os.path.abspath(path))
    while not _exists(found) and found.parent != found:
        found = found.parent
    return found


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except (OSError, ValueError):  # a name too long, a symlink loop, a NUL byte: nothing is there
        return False


def _name_max(folder: Path) -> int:
    try:
        return int(os.pathconf(folder, "PC_NAME_MAX"))
    except (OSError, ValueError, AttributeError):
        return 255


def check_folder_writable(folder: str | os.PathLike, params: tuple[str, ...] = ("output",)) -> None:
    """The folder exists and is writable, or can be created: a check before the work, that creates nothing."""
    folder = Path(folder)
    ancestor = existing_ancestor(folder)
    limit = _name_max(ancestor)
    for part in Path(os.path.abspath(folder)).relative_to(ancestor).parts:  # the folders still to create
        if len(os.fsencode(part)) > limit:
            raise UsageError(
                f"cannot create the folder {folder}: the name {part[:40]}... ({len(part)} characters) is too long "
                f"for the file system (at most {limit})",
                params=params,
            )
    if not ancestor.is_dir():
        raise UsageError(f"cannot create the folder {folder}: {ancestor} is a file", params=params)
    if not os.access(ancestor, os.W_OK | os.X_OK):
        is_it = ancestor == Path(os.path.abspath(folder))
        what = f"folder {folder}" if is_it else f"folder {ancestor} (to create {folder})"
        raise UsageError(f"the {what} is not writable", params=params)


# --------------------------------------------------------------------------------------------------- animations

# Pillow formats whose files with more than one frame are animations, and the extension each is written with.
ANIMATION_FORMATS = {"GIF": ".gif", "WEBP": ".webp", "PNG": ".png"}


@dataclass(frozen=True)
class AnimationHeader:
    """An animated GIF/WebP/APNG: its format, size, frame count, each frame's duration (ms), loop count (0 =
    for ever) and whether any frame can be transparent."""

    format: str
    width: int
    height: int
    frames: int
    durations: tuple[int, ...]
    loop: int
    has_alpha: bool

    @property
    def seconds(self) -> float:
        return sum(self.durations) / 1000


def _frame_duration(im: Image.Image, default: int = 100) -> int:
    value = im.info.get("duration", default)
    try:
        return max(0, int(value or 0))
    except (TypeError, ValueError):
        return default


def read_animation_header(path: str | os.PathLike) -> AnimationHeader | None:
    """The header of an animation (more than one frame in GIF, WebP or PNG), None for anything else (a still
    image, a video, not an image). Every frame is looked at once: WebP says a frame's duration only when it is
    loaded, and a truncated frame makes the file fail here rather than half-way through the work."""
    path = Path(path)
    try:
        with _quiet(), Image.open(path) as im:
            frames = int(getattr(im, "n_frames", 1) or 1)
            if im.format not in ANIMATION_FORMATS or frames < 2:
                return None
            fmt, size, loop = im.format, im.size, int(im.info.get("loop", 0) or 0)
            durations, alpha = [], False
            for index in range(frames):
                im.seek(index)
                im.load()
                durations.append(_frame_duration(im))
                alpha = alpha or im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info
            return AnimationHeader(fmt, size[0], size[1], frames, tuple(durations), loop, alpha)
    except (OSError, ValueError, EOFError, SyntaxError, IndexError, Image.DecompressionBombError):
        return None


def iter_animation(path: str | os.PathLike) -> Iterator[tuple[np.ndarray, int]]:
    """Each frame of an animation as it is shown (Pillow composes GIF/APNG disposal and blending), HxWx4 uint8
    RGBA, with its duration in ms. Raises :class:`ImageReadError` for a broken frame (naming the frame)."""
    path = Path(path)
    index = 0
    try:
        with _quiet(), Image.open(path) as im:
            frames = int(getattr(im, "n_frames", 1) or 1)
            for index in range(frames):
                im.seek(index)
                rgba = im.convert("RGBA")  # loads the frame first: WebP's duration is known only then
                yield np.asarray(rgba), _frame_duration(im)
    except (OSError, ValueError, EOFError, SyntaxError, IndexError) as err:
        raise ImageReadError(f"{path}: broken animation at frame {index + 1} ({_one_line(err)})") from None


def write_animation(
    path: str | os.PathLike, frames: Sequence[np.ndarray], durations: Sequence[int], loop: int, fmt: str
) -> None:
    """Write HxWx3/HxWx4 uint8 ``frames`` as an animation of Pillow format ``fmt`` (GIF, WEBP or PNG)
    atomically, with each frame's duration (ms) and the loop count. GIF transparency is on or off per pixel
    (alpha >= 128 is opaque); WebP is written at quality 95, APNG losslessly."""
    if fmt not in ANIMATION_FORMATS:
        raise ImageWriteError(f"{path}: cannot write {fmt} animations")
    images = []
    for array in frames:
        if fmt == "GIF" and array.ndim == 3 and array.shape[2] == 4:
            array = array.copy()
            array[..., 3] = np.where(array[..., 3] >= 128, 255, 0).astype(array.dtype)
        images.append(Image.fromarray(np.ascontiguousarray(array)))
    save: dict = {"save_all": True, "append_images": images[1:], "duration": list(durations), "loop": loop}
    if fmt == "GIF":
        save["disposal"] = 2  # each frame replaces the last: frames are whole pictures here
    elif fmt == "WEBP":
        # Every frame a key frame: libwebp's sub-frame optimisation (Pillow 13) dropped the alpha plane of frames
        # whose transparent pixels are black, so a transparent animation came back opaque.
        save.update(lossless=False, quality=95, kmax=1)
    buffer = io.BytesIO()
    try:
        images[0].save(buffer, format=fmt, **save)
    except (OSError, ValueError) as err:
        raise ImageWriteError(f"{path}: cannot write the animation ({_one_line(err)})") from None
    atomic_write_bytes(Path(path), buffer.getvalue())
