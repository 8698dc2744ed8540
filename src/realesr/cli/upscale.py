"""`realesr upscale`: super-resolve image files, folders and globs."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from realesr import DEFAULT_MODEL
from realesr.cli._bars import download_bar
from realesr.cli._options import DENOISE_HELP, number
from realesr.cli._summary import print_summary
from realesr.cli._video import VIDEO_FLAGS, add_video_arguments
from realesr.cli.scaleout import FLAGS as SCALEOUT_FLAGS
from realesr.cli.scaleout import add_arguments as add_scaleout_arguments

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
        default=DEFAULT_MODEL,
        metavar="MODEL",
        help=f"model name (see `realesr models`) or weights path (default: {DEFAULT_MODEL})",
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
    _add_output_arguments(parser)
    add_scaleout_arguments(parser)
    add_video_arguments(parser)
    parser.set_defaults(func=run, flags=FLAGS)


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """How outputs are named and written."""
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
        help=DENOISE_HELP,
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


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
    **VIDEO_FLAGS,
    **SCALEOUT_FLAGS,
}


def run(args: argparse.Namespace) -> int:
    """Parse the options into one plan and one runner (realesr.infer.runner), run it, print what happens."""
    from realesr.cli._video import video_options
    from realesr.infer.files import OutputOptions, plan_upscale
    from realesr.infer.pool import UpscalerSpec
    from realesr.infer.runner import choose_runner, run_plan

    options = OutputOptions(suffix=args.suffix, ext=args.ext, quality=args.quality, compare=args.compare)
    v_options = video_options(args)
    plan = plan_upscale(args.inputs, args.output, options, video_options=v_options)
    runner = choose_runner(
        args.device, args.batch, args.ray, args.ray_workers, args.ray_gpus, has_videos=plan.has_videos
    )
    spec = UpscalerSpec.from_options(vars(args))
    show = _Show(not args.no_progress and sys.stderr.isatty())
    try:
        report = run_plan(
            plan,
            spec,
            runner,
            on_event=show,
            video_options=v_options,
            resume=args.resume,
            progress=False if args.no_progress else download_bar(args.model),
        )
    finally:
        show.close()
    where = plan.target if plan.target_is_file else f"{plan.target}{os.sep}"
    notes = list(report.notes)
    what = None
    if runner.kind == "process":
        frames = report.video_frames  # upscaled in this run (for the rate)
        extras: tuple[str, ...] = (f"{frames / max(report.seconds, 1e-9):.2f} frames/s",) if frames else ()
        videos = show.videos
        what = videos.phrase(len(report.written) - videos.videos, report.total - report.videos, report.videos)
    else:
        notes += [f"{device}: {report.precision} overflowed; fp32 was used" for device in report.fell_back]
        lost = (f"{len(report.lost)} worker process(es) stopped",) if report.lost else ()
        extras = (runner.where, *lost)
    print_summary(
        len(report.written),
        report.total,
        report.model_name,
        str(where),
        report.seconds,
        notes,
        len(report.failures),
        plan.skipped,
        extras,
        what=what,
    )
    if runner.kind == "process" and report.fell_back:
        print(f"note: {report.precision} overflowed; fp32 was used", file=sys.stderr)
    if report.licence:
        print(f"note: {report.model_name}: licence: {report.licence}", file=sys.stderr)
    return 1 if report.failures else 0


class _Show:
    """The run's events as progress bars (images, and tiles or frames of the file at work) and lines on stderr."""

    def __init__(self, bars: bool) -> None:
        from realesr.cli._video import FrameRate, VideoCounts

        self.bars = bars
        self.videos = VideoCounts()
        self.meter = FrameRate()
        self.files: Any = None  # the bar of files (tqdm)
        self.inner: Any = None  # the bar of the current file's tiles or frames
        self.inner_of: Path | None = None

    def __call__(self, event) -> None:
        from tqdm import tqdm

        if event.kind == "resumed":
            print(f"note: {event.done} input(s) already have complete outputs: skipped (--resume)", file=sys.stderr)
        elif event.kind == "start":
            total = event.total or 0
            self.files = tqdm(
                total=total, unit="image", desc="upscale", disable=not self.bars or total < 2, file=sys.stderr
            )
        elif event.kind == "progress":
            self._inner(event)
        elif event.kind in ("done", "failed"):
            self._close_inner()
            if event.kind == "failed":
                tqdm.write(f"failed: {self._message(event)}", file=sys.stderr)
            elif event.item is not None and event.item.video is not None:
                self.videos.add(event.result)
                self._video_line(event.result)
            if self.files is not None:
                self.files.update(1)
        elif event.kind == "lost":
            tqdm.write(f"warning: {event.message}", file=sys.stderr)

    @staticmethod
    def _message(event) -> str:
        from realesr.cli import describe
        from realesr.cli._text import escape
        from realesr.errors import RealesrError
        from realesr.infer.files import with_source

        err, source = event.error, event.item.source
        if isinstance(err, RealesrError):
            return with_source(describe(err, FLAGS), escape(str(source)))
        if err is not None:  # anything else about this one file
            return escape(with_source(f"{type(err).__name__}: {describe(err)}", source))
        return event.message

    def _inner(self, event) -> None:
        from tqdm import tqdm

        video = event.item.video is not None
        if video:
            if self.inner_of != event.item.source:
                self.meter = type(self.meter)()  # a fresh moving window for each video
            self.meter.mark(event.done)
        if not self.bars:
            self.inner_of = event.item.source
            return
        if self.inner is None or self.inner_of != event.item.source:
            self._close_inner()
            self.inner_of = event.item.source
            if not video and (event.total or 0) < 2:
                return
            if video:  # frames: rate and ETA over a moving window, and a resumed video starts where it was
                self.inner = tqdm(
                    total=event.total,
                    initial=event.done,
                    unit="frame",
                    desc=event.item.source.name,
                    file=sys.stderr,
                    dynamic_ncols=True,
                    bar_format="{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{postfix}]",
                )
            else:
                self.inner = tqdm(
                    total=event.total, unit="tile", desc=event.item.source.name, leave=False, file=sys.stderr
                )
        if self.inner is None:
            return
        if video:
            rate = self.meter.rate()
            self.inner.set_postfix_str(f"{self.meter.eta(event.done, event.total)}, {rate or 0:.2f} frames/s", False)
            self.inner.update(event.done - self.inner.n)
        else:
            self.inner.n = event.done
            self.inner.refresh()

    def _video_line(self, result) -> None:
        print(
            f"{result.source} -> {result.output}: {result.frames} frames, {result.size[0]} x {result.size[1]}, "
            f"{result.seconds:.1f} s, {result.fps:.2f} frames/s",
            file=sys.stderr,
        )

    def _close_inner(self) -> None:
        if self.inner is not None:
            self.inner.close()
        self.inner, self.inner_of = None, None

    def close(self) -> None:
        self._close_inner()
        if self.files is not None:
            self.files.close()
