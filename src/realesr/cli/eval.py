"""``realesr eval``: benchmark models with the SR literature's protocol, blind degradations or NIQE on real photos."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from realesr.cli._options import option
from realesr.errors import ConfigError, DataError, RealesrError, UsageError
from realesr.schema import CROP_BORDER, SEED, Int, Str

EPILOG = """\
examples:
  realesr eval -m bicubic -m RealESRGAN_x4plus --data ../shared/data/test/Set5 ../shared/data/test/Set14
  realesr eval -m RealESRGAN_x4plus --data my_hr_images/ --degrade --seed 0 --format json
  realesr eval -m bicubic -m RealESRGAN_x4plus --data ../shared/data/real_lr/RealSRSet --no-ref --figure cmp.png
"""


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="score models (PSNR/SSIM/NIQE) on benchmark folders or real photos",
        description=(
            "Evaluate models on HR benchmark sets with the standard protocol (HR cropped to a multiple of the scale, "
            "LR by MATLAB bicubic, PSNR/SSIM on the BT.601 Y channel with the border cropped), with the Real-ESRGAN "
            "degradations (--degrade), or by NIQE on real low-resolution photos (--no-ref)."
        ),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "-m",
        "--model",
        dest="models",
        action="append",
        required=True,
        metavar="MODEL",
        help="'bicubic', an official model name or a weights file; repeat to compare several",
    )
    parser.add_argument(
        "--data",
        nargs="+",
        action="extend",
        type=option(Str(empty=False)),  # "" would mean the current folder
        required=True,
        metavar="DIR_OR_TXT",
        help="folders of images, single images or .txt lists of image paths (one dataset each)",
    )
    parser.add_argument("-s", "--scale", type=int, default=4, choices=(2, 3, 4, 8), help="upscaling factor (default 4)")
    parser.add_argument(
        "--metrics", default=None, help="comma-separated psnr,ssim,niqe (default psnr,ssim; niqe with --no-ref)"
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--degrade",
        action="store_true",
        help="make the LR with the Real-ESRGAN degradation chain from --seed instead of bicubic",
    )
    mode.add_argument(
        "--no-ref",
        action="store_true",
        help="the images are real LR inputs without ground truth: NIQE of the outputs only",
    )
    parser.add_argument(
        "--format", dest="fmt", default="md", choices=("md", "json", "csv"), help="table format on stdout (default md)"
    )
    _add_output_arguments(parser)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps (default auto)")
    parser.add_argument(
        "--precision",
        default="fp32",
        choices=("fp32", "auto", "fp16", "bf16"),
        help="network precision (default fp32, so scores do not depend on the device)",
    )
    parser.add_argument(
        "--tile",
        type=option(Int(0, 2**16)),
        default=None,
        metavar="N",
        help="tile size for networks (0: whole image; default automatic)",
    )
    parser.add_argument("--seed", type=option(SEED), default=0, help="seed of the --degrade chain (default 0)")
    parser.add_argument(
        "--limit", type=option(Int(0)), default=None, metavar="N", help="only the first N images of each dataset"
    )
    parser.add_argument("--no-download", action="store_true", help="never download weights; skip models not present")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(func=run, flags=FLAGS)


def _parse_metrics(text: str | None, no_ref: bool) -> tuple[str, ...]:
    if text is None:
        return ("niqe",) if no_ref else ("psnr", "ssim")
    metrics = tuple(dict.fromkeys(m.strip().lower() for m in text.split(",") if m.strip()))
    if not metrics:
        raise ConfigError("--metrics: give at least one of psnr, ssim, niqe")
    return metrics


FLAGS = {
    "data": "--data",
    "scale": "--scale",
    "output": "-o",
    "per_image": "--per-image",
    "figure": "--figure",
    "save_images": "--save-images",
    "fmt": "--format",
    "device": "--device",
    "tile": "--tile",
}


def _check_plan(args: argparse.Namespace, models, datasets) -> None:
    """Every file eval will write, checked against every input (images, lists, weights) and each other."""
    from realesr.evaluate.protocol import planned_outputs
    from realesr.imagefiles import PlannedOutput, check_folder_writable, check_outputs

    outputs = []
    for value, param, what in (
        (args.output, "output", "the table (-o)"),
        (args.per_image, "per_image", "the per-image CSV (--per-image)"),
        (args.figure, "figure", "the figure (--figure)"),
    ):
        if value is not None:
            check_folder_writable(value.parent if str(value.parent) else Path("."), (param,))
            outputs.append(PlannedOutput(value, what, (param,)))
    if args.save_images is not None:
        check_folder_writable(args.save_images, ("save_images",))
        outputs.extend(planned_outputs(models, datasets, args.save_images, args.scale))
    inputs = [path for dataset in datasets for path in dataset.paths]
    inputs += [Path(spec) for spec in list(args.data) + list(args.models) if Path(spec).is_file()]
    check_outputs(outputs, inputs)


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """Where the table, per-image scores, outputs and figure go."""
    parser.add_argument("-o", "--output", type=Path, default=None, help="also write the table to this file")
    parser.add_argument("--per-image", type=Path, default=None, metavar="CSV", help="write per-image scores to CSV")
    parser.add_argument(
        "--save-images", type=Path, default=None, metavar="DIR", help="save each output as DIR/DATASET/MODEL/NAME.png"
    )
    parser.add_argument(
        "--figure",
        type=Path,
        default=None,
        metavar="PATH",
        help="comparison figure (PNG/JPEG): same crops of the reference, bicubic and each model",
    )
    parser.add_argument(
        "--figure-count", type=option(Int(0, 100)), default=4, metavar="N", help="images in the figure (default 4)"
    )
    parser.add_argument(
        "--figure-crop",
        type=option(Int(8, 4096)),
        default=None,
        metavar="PX",
        help="crop side in output pixels (default 160, or 40 input pixels x scale with --no-ref)",
    )
    parser.add_argument(
        "--crop-border",
        type=option(CROP_BORDER),
        default=None,
        metavar="PX",
        help="border cropped before PSNR/SSIM (default: the scale)",
    )


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from realesr.evaluate import EvalConfig, evaluate, find_datasets

    def warn(message: str) -> None:
        tqdm.write(f"realesr eval: {message}", file=sys.stderr)

    metrics = _parse_metrics(args.metrics, args.no_ref)
    # Asking for NIQE alone means there is no reference to compare with: the images are the LR inputs.
    no_ref = args.no_ref or (metrics == ("niqe",) and not args.degrade)
    protocol = "no-ref" if no_ref else ("degrade" if args.degrade else "bicubic")
    config = EvalConfig(
        scale=args.scale, metrics=metrics, protocol=protocol, seed=args.seed, crop_border=args.crop_border
    )
    if args.figure is not None and args.figure_count == 0:
        raise UsageError("--figure with --figure-count 0 would draw nothing: give --figure-count N >= 1")
    if args.figure is not None:
        from realesr.imagefiles import format_for_path

        try:
            format_for_path(args.figure)  # an image format we write, checked before any work
        except RealesrError as err:
            raise UsageError(str(err), params=("figure",)) from None
    try:
        datasets = find_datasets(args.data, limit=args.limit or None)
    except DataError as err:
        raise UsageError(str(err), params=err.params) from err

    models, skipped = _load_models(args, warn)

    _check_plan(args, models, datasets)

    crop = args.figure_crop or (40 * args.scale if no_ref else 160)
    result = evaluate(
        models,
        datasets,
        config,
        save_dir=args.save_images,
        figure_count=args.figure_count if args.figure else 0,
        figure_crop=crop,
        progress=None if args.quiet else _dataset_bars(),
        on_problem=warn,
    )

    _write_results(args, result, metrics, protocol, warn)
    return 1 if (skipped or result.problems) else 0


def _load_models(args: argparse.Namespace, warn) -> tuple[list, list[str]]:
    """The models that load (each a warning when it does not); UsageError when none does."""
    from realesr.evaluate import load_eval_model

    models, skipped = [], []
    for spec in dict.fromkeys(args.models):
        try:
            models.append(
                load_eval_model(
                    spec,
                    scale=args.scale,
                    device=args.device,
                    tile=args.tile,
                    allow_download=not args.no_download,
                    precision=args.precision,
                )
            )
        except RealesrError as err:
            skipped.append(spec)
            warn(f"model {spec} skipped: {err}")
    if not models:
        raise UsageError(f"no usable model among {', '.join(args.models)}")
    return models, skipped


def _write_results(args: argparse.Namespace, result, metrics, protocol: str, warn) -> None:
    """The table on stdout (and --output), the per-image CSV, the figure."""
    from realesr.atomic import atomic_write_bytes
    from realesr.evaluate import format_table, save_figure, write_per_image_csv

    table = format_table(result.rows, args.fmt, metrics)
    sys.stdout.write(table)
    sys.stdout.flush()
    if args.output is not None:
        try:
            atomic_write_bytes(args.output, table.encode("utf-8"))
        except OSError as err:
            raise UsageError(f"--output {args.output}: cannot write ({err})") from err
    if args.per_image is not None:
        write_per_image_csv(args.per_image, result.per_image)
    if args.figure is not None:
        if result.figure_samples:
            description = {
                "bicubic": "LR = MATLAB bicubic of the HR",
                "degrade": f"LR = degradation chain, seed {args.seed}",
                "no-ref": "real low-resolution inputs",
            }[protocol]
            save_figure(
                args.figure, result.figure_samples, footer=f"x{args.scale}; {description}; crops at output resolution"
            )
        else:
            warn(f"--figure {args.figure}: no image was evaluated, no figure written")


def _dataset_bars():
    """A tqdm bar per data set on stderr, driven by evaluate's ``progress(dataset, done, total, what)``."""
    from tqdm import tqdm

    bars: dict[str, tqdm] = {}

    def report(dataset: str, done: int, total: int, what: str) -> None:
        bar = bars.get(dataset)
        if bar is None:
            # disable=None: no bar when stderr is not a terminal (a log or a pipe gets the report only)
            bar = bars[dataset] = tqdm(total=total, desc=dataset, unit="img", leave=False, disable=None)
        bar.update(done - bar.n)
        if what:
            bar.set_postfix_str(what, refresh=True)
        if done >= total:
            bar.close()

    return report
