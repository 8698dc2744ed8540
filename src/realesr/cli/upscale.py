"""`realesr upscale`: super-resolve image files, folders and globs."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from realesr.cli._bars import download_bar
from realesr.cli._options import number
from realesr.cli._summary import print_summary
from realesr.errors import RealesrError

EXT_CHOICES = ("auto", "png", "jpg", "webp", "tif", "bmp")


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "upscale",
        help="upscale images (files, folders, globs)",
        description="Upscale images with a Real-ESRGAN model. Outputs are NAME_SUFFIX.EXT in the output folder; "
        "16-bit PNG/TIFF stay 16-bit, grey stays grey, alpha is kept, ICC profile and EXIF are "
        "carried over. Exit code 1 if any file failed, 2 for a usage error.",
    )
    parser.add_argument(
        "inputs", nargs="+", metavar="INPUT", help="image files, folders, glob patterns or .txt lists of image paths"
    )
    parser.add_argument(
        "-o",
        "--output",
        default="results",
        metavar="OUT",
        help="output folder (created if needed; default: results), or a file name for one input",
    )
    parser.add_argument(
        "-m",
        "--model",
        default="RealESRGAN_x4plus",
        metavar="MODEL",
        help="model name (see `realesr models`) or weights path (default: RealESRGAN_x4plus)",
    )
    parser.add_argument(
        "-s",
        "--outscale",
        type=number(float, above=0),
        default=None,
        metavar="OUTSCALE",
        help="final scale factor, any number > 0 (default: the model's scale)",
    )
    parser.add_argument(
        "--tile",
        type=number(int, low=0),
        default=None,
        metavar="N",
        help="tile size in input pixels; 0 = whole image (default: automatic from free memory)",
    )
    parser.add_argument(
        "--tile-pad",
        type=number(int, low=0),
        default=None,
        metavar="P",
        help="input pixels each tile reads beyond its core (default: 48)",
    )
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "fp16", "bf16"),
        default="auto",
        help="auto: fp32 on the CPU, bf16/fp16 on a GPU (fp32 again if half overflows)",
    )
    parser.add_argument(
        "--device",
        default="auto",
        metavar="{auto,cpu,cuda,mps}",
        help="where the network runs (default: auto; also cuda:N); a list (cuda:0,cuda:1 or "
        "cpu,cpu) or 'all' (every GPU) runs one worker process per entry",
    )
    parser.add_argument("--suffix", default="out", metavar="S", help="output name suffix (default: out)")
    parser.add_argument(
        "--ext",
        choices=EXT_CHOICES,
        default="auto",
        help="output format; auto keeps the input's (PNG for images with alpha)",
    )
    parser.add_argument(
        "--quality", type=number(int, 1, 100), default=95, metavar="Q", help="JPEG/WebP quality (default 95)"
    )
    parser.add_argument(
        "--alpha",
        choices=("model", "bicubic"),
        default="model",
        help="how the alpha channel is upscaled (default: model)",
    )
    parser.add_argument(
        "--compare", action="store_true", help="also write NAME_compare.png: bicubic and the result side by side"
    )
    parser.add_argument(
        "--denoise-strength",
        type=number(float, 0, 1),
        default=None,
        metavar="D",
        help="realesr-general-x4v3 only: 0 keeps noise, 1 removes it (blends with the wdn weights)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    from realesr.cli import scaleout
    from realesr.cli._video import add_video_arguments

    scaleout.add_arguments(parser)
    add_video_arguments(parser)
    parser.set_defaults(func=run, flags=FLAGS)


FLAGS = {
    "output": "-o",
    "suffix": "--suffix",
    "ext": "--ext",
    "outscale": "-s/--outscale",
    "device": "--device",
    "quality": "--quality",
    "tile": "--tile",
    "tile_pad": "--tile-pad",
    "model": "-m",
    "precision": "--precision",
    "alpha": "--alpha",
    "denoise_strength": "--denoise-strength",
}


def run(args: argparse.Namespace) -> int:
    from realesr.cli import describe
    from realesr.infer.files import OutputOptions, plan_upscale, upscale_item

    options = OutputOptions(suffix=args.suffix, ext=args.ext, quality=args.quality, compare=args.compare)
    from realesr.cli._video import (
        VIDEO_FLAGS,
        check_video_routing,
        run_video_item,
        video_options,
    )

    FLAGS.update(VIDEO_FLAGS)
    v_options = video_options(args)
    plan = plan_upscale(args.inputs, args.output, options, video_options=v_options)
    from realesr.cli import scaleout

    if scaleout.routed(args) and check_video_routing(args, plan):  # several devices, --batch, --ray: cli/scaleout.py
        return scaleout.run(args, plan, FLAGS)

    from tqdm import tqdm

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
        progress=False if args.no_progress else download_bar(args.model),
    )
    plan.check_sizes(upscaler)
    if any(item.error is None for item in plan.items):
        plan.prepare()
    failures: list[tuple[Path, str]] = []
    written: list[Path] = []
    notes: list[str] = []
    video_frames = 0
    started = time.perf_counter()
    items = scaleout.kept_items(args, plan)
    bar = tqdm(items, unit="image", desc="upscale", disable=not show_progress or len(items) < 2, file=sys.stderr)
    for item in bar:
        if item.error:
            message = describe(RealesrError(item.error, params=item.error_params), FLAGS)
            failures.append((item.source, message))
            tqdm.write(f"failed: {message}", file=sys.stderr)
            continue
        tiles_bar = None

        def on_tile(done: int, total: int, name: str = item.source.name) -> None:
            nonlocal tiles_bar
            if total < 2 or not show_progress:
                return
            if tiles_bar is None:
                tiles_bar = tqdm(total=total, unit="tile", desc=name, leave=False, file=sys.stderr)
            tiles_bar.n = done
            tiles_bar.refresh()

        try:
            if item.video is not None:  # a video or an animation (realesr.cli._video)
                video_result = run_video_item(upscaler, item, v_options, show_progress)
                written.append(video_result.output)
                notes.extend(f"{item.source}: {note}" for note in video_result.notes)
                video_frames += video_result.frames - video_result.resumed_frames
                continue
            result = upscale_item(upscaler, item, options, on_progress=on_tile)
            written.append(result.output)
            notes.extend(f"{item.source}: {note}" for note in result.notes)
        except RealesrError as err:
            message = _strip_path(describe(err, FLAGS), item.source)
            failures.append((item.source, message))
            tqdm.write(f"failed: {message}", file=sys.stderr)
        except (OSError, ValueError, MemoryError) as err:  # anything else about this one file
            failures.append((item.source, f"{type(err).__name__}: {err}"))
            tqdm.write(f"failed: {item.source}: {type(err).__name__}: {err}", file=sys.stderr)
        finally:
            if tiles_bar is not None:
                tiles_bar.close()
    bar.close()
    elapsed = time.perf_counter() - started
    where = plan.target if plan.target_is_file else f"{plan.target}{os.sep}"
    extras = (f"{video_frames} video frame(s), {video_frames / max(elapsed, 1e-9):.2f} fps",) if video_frames else ()
    print_summary(
        len(written), len(items), upscaler.model_name, str(where), elapsed, notes, len(failures), plan.skipped, extras
    )
    if upscaler.fell_back_to_fp32:
        print(f"note: {upscaler.precision} overflowed; fp32 was used", file=sys.stderr)
    check = upscaler.precision_check
    if check is not None and not check.passed:
        print(f"note: {check.describe()}; fp32 was used", file=sys.stderr)
    if upscaler.traits.licence:
        print(f"note: {upscaler.model_name}: licence: {upscaler.traits.licence}", file=sys.stderr)
    return 1 if failures else 0


def _strip_path(message: str, source: Path) -> str:
    return message if message.startswith(str(source)) else f"{source}: {message}"
