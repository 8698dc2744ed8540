"""`realesr upscale`: super-resolve image files, folders and globs."""

from __future__ import annotations

import argparse
import glob
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from realesr.errors import RealesrError, UsageError

INPUT_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif", ".jfif", ".ppm", ".pgm", ".tga"}
OUTPUT_EXTENSIONS = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}
EXT_CHOICES = ("auto", "png", "jpg", "webp", "tif", "bmp")


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"must be a number > 0, not {text}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {text}")
    return value


def _unit_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1], not {text}")
    return value


def _quality(text: str) -> int:
    value = _non_negative_int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be in 1..100, not {text}")
    return value


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "upscale",
        help="upscale images (files, folders, globs)",
        description="Upscale images with a Real-ESRGAN model. Outputs are NAME_SUFFIX.EXT in the output folder; "
                    "16-bit PNG/TIFF stay 16-bit, grey stays grey, alpha is kept, ICC profile and EXIF are "
                    "carried over. Exit code 1 if any file failed, 2 for a usage error.",
    )
    parser.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders or glob patterns")
    parser.add_argument("-o", "--output", default="results", metavar="OUT",
                        help="output folder (created if needed; default: results), or a file name for one input")
    parser.add_argument("-m", "--model", default="RealESRGAN_x4plus", metavar="MODEL",
                        help="model name (see `realesr models`) or weights path (default: RealESRGAN_x4plus)")
    parser.add_argument("-s", "--outscale", type=_positive_float, default=None, metavar="OUTSCALE",
                        help="final scale factor, any number > 0 (default: the model's scale)")
    parser.add_argument("--tile", type=_non_negative_int, default=None, metavar="N",
                        help="tile size in input pixels; 0 = whole image (default: automatic from free memory)")
    parser.add_argument("--tile-pad", type=_non_negative_int, default=None, metavar="P",
                        help="input pixels each tile reads beyond its core (default: 48)")
    parser.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto",
                        help="auto: fp32 on the CPU, bf16/fp16 on a GPU (fp32 again if half overflows)")
    parser.add_argument("--device", default="auto", metavar="{auto,cpu,cuda,mps}",
                        help="where the network runs (default: auto; also cuda:N)")
    parser.add_argument("--suffix", default="out", metavar="S", help="output name suffix (default: out)")
    parser.add_argument("--ext", choices=EXT_CHOICES, default="auto",
                        help="output format; auto keeps the input's (PNG for images with alpha)")
    parser.add_argument("--quality", type=_quality, default=95, metavar="Q", help="JPEG/WebP quality (default 95)")
    parser.add_argument("--alpha", choices=("model", "bicubic"), default="model",
                        help="how the alpha channel is upscaled (default: model)")
    parser.add_argument("--compare", action="store_true",
                        help="also write NAME_compare.png: bicubic and the result side by side")
    parser.add_argument("--denoise-strength", type=_unit_float, default=None, metavar="D",
                        help="realesr-general-x4v3 only: 0 keeps noise, 1 removes it (blends with the wdn weights)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.set_defaults(func=run)


@dataclass
class Job:
    source: Path
    error: str | None = None  # set when the input could not even be found


def collect_inputs(patterns: list[str]) -> list[Job]:
    """Files, folders (their image files, sorted) and globs -> jobs, in order, without duplicates.

    A pattern that names nothing becomes a failed job, so that it is reported while the rest go on.
    """
    jobs: list[Job] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            jobs.append(Job(path))

    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in INPUT_EXTENSIONS)
            if not files:
                jobs.append(Job(path, "folder holds no image files"))
            for file in files:
                add(file)
        elif path.exists():
            add(path)
        elif glob.has_magic(pattern):
            matches = sorted(Path(p) for p in glob.glob(pattern, recursive=True))
            files = [p for p in matches if p.is_file() and (p.suffix.lower() in INPUT_EXTENSIONS)]
            if not files:
                jobs.append(Job(path, "no image file matches this pattern"))
            for file in files:
                add(file)
        else:
            jobs.append(Job(path, "no such file or folder"))
    return jobs


def _output_target(args: argparse.Namespace, jobs: list[Job]) -> tuple[Path, bool]:
    """(path, is_file): OUT is a file name when it has an image extension and there is one input."""
    out = Path(args.output)
    if out.suffix.lower() in OUTPUT_EXTENSIONS and not out.is_dir():
        if len(jobs) != 1:
            raise UsageError(f"-o {out} is a file name, but there are {len(jobs)} inputs: give a folder")
        folder = out.parent if str(out.parent) else Path(".")
        _check_folder(folder)
        return out, True
    _check_folder(out)
    return out, False


def _check_folder(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create output folder {folder}: {err.strerror or err}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"output folder {folder} is not writable")


def _output_extension(args: argparse.Namespace, source: Path, has_alpha: bool) -> tuple[str, str | None]:
    """(extension, note): PNG replaces formats that cannot hold alpha."""
    if args.ext != "auto":
        ext = "." + args.ext
    else:
        ext = source.suffix.lower() if source.suffix.lower() in OUTPUT_EXTENSIONS else ".png"
    if has_alpha and ext in (".jpg", ".jpeg", ".bmp"):
        return ".png", f"{ext[1:].upper()} holds no alpha: wrote PNG"
    return ext, None


def run(args: argparse.Namespace) -> int:
    if args.tile is not None and 0 < args.tile < 16:
        raise UsageError(f"--tile must be 0 or at least 16, not {args.tile}")
    if os.sep in args.suffix or (os.altsep and os.altsep in args.suffix):
        raise UsageError(f"--suffix must not contain a path separator: {args.suffix!r}")
    jobs = collect_inputs(args.inputs)
    target, target_is_file = _output_target(args, jobs)

    from tqdm import tqdm

    from realesr.infer.io import read_image, write_image
    from realesr.infer.upscaler import Upscaler

    show_progress = not args.no_progress and sys.stderr.isatty()
    upscaler = Upscaler(
        args.model,
        device=args.device,
        precision=args.precision,
        tile=args.tile,
        tile_pad=args.tile_pad,
        outscale=args.outscale,
        alpha=args.alpha,
        denoise_strength=args.denoise_strength,
        progress=not args.no_progress,
    )
    failures: list[tuple[Path, str]] = []
    written: list[Path] = []
    notes: list[str] = []
    started = time.perf_counter()
    bar = tqdm(jobs, unit="image", desc="upscale", disable=not show_progress or len(jobs) < 2, file=sys.stderr)
    for job in bar:
        if job.error:
            failures.append((job.source, job.error))
            tqdm.write(f"failed: {job.source}: {job.error}", file=sys.stderr)
            continue
        try:
            image = read_image(job.source)
            tiles_bar = None

            def on_tile(done: int, total: int) -> None:
                nonlocal tiles_bar
                if total < 2 or not show_progress:
                    return
                if tiles_bar is None:
                    tiles_bar = tqdm(total=total, unit="tile", desc=job.source.name, leave=False, file=sys.stderr)
                tiles_bar.n = done
                tiles_bar.refresh()

            result = upscaler.upscale_image(image, on_tile=on_tile)
            if tiles_bar is not None:
                tiles_bar.close()
            ext, note = _output_extension(args, job.source, result.has_alpha)
            if target_is_file:
                out_path = target
                if note and target.suffix.lower() in (".jpg", ".jpeg", ".bmp"):
                    out_path = target.with_suffix(".png")
            else:
                name = f"{job.source.stem}_{args.suffix}" if args.suffix else job.source.stem
                out_path = target / f"{name}{ext}"
            write_image(out_path, result, quality=args.quality, source=job.source)
            written.append(out_path)
            if note:
                notes.append(f"{job.source}: {note}")
            if args.compare:
                compare_path = out_path.with_name(f"{job.source.stem}_compare.png")
                write_image(compare_path, _comparison(image.array, result.array, upscaler.model_name),
                            source=job.source)
        except RealesrError as err:
            failures.append((job.source, str(err)))
            tqdm.write(f"failed: {_strip_path(str(err), job.source)}", file=sys.stderr)
        except (OSError, ValueError, MemoryError) as err:  # anything else about this one file
            failures.append((job.source, f"{type(err).__name__}: {err}"))
            tqdm.write(f"failed: {job.source}: {type(err).__name__}: {err}", file=sys.stderr)
    bar.close()
    elapsed = time.perf_counter() - started
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    where = target if target_is_file else f"{target}{os.sep}"
    summary = f"{len(written)} of {len(jobs)} image(s) upscaled with {upscaler.model_name} -> {where} ({elapsed:.1f} s)"
    if failures:
        summary += f"; {len(failures)} failed"
    print(summary)
    if upscaler.fell_back_to_fp32:
        print(f"note: {upscaler.precision} overflowed; fp32 was used", file=sys.stderr)
    return 1 if failures else 0


def _strip_path(message: str, source: Path) -> str:
    return message if message.startswith(str(source)) else f"{source}: {message}"


def _comparison(low, high, model_name: str):
    """Bicubic (left) and the result (right) at the result's size, over a grey checkerboard if transparent."""
    import numpy as np
    from PIL import Image, ImageDraw, ImageFont

    def to_rgba8(array):
        if array.dtype == np.uint16:
            array = ((array.astype(np.uint32) + 128) // 257).astype(np.uint8)
        if array.ndim == 2:
            return Image.fromarray(array).convert("RGBA")
        mode = {2: "LA", 3: "RGB", 4: "RGBA"}[array.shape[2]]
        return Image.fromarray(array, mode=mode if mode != "LA" else None).convert("RGBA")

    result = to_rgba8(high)
    bicubic = to_rgba8(low).resize(result.size, Image.Resampling.BICUBIC)
    width, height = result.size
    font = ImageFont.load_default(size=max(12, min(48, height // 24)))
    label_height = int(font.size * 1.6)
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
        draw.text((index * width + 8, int(font.size * 0.25)), label, fill=(0, 0, 0, 255), font=font)
    return np.asarray(canvas.convert("RGB"))
