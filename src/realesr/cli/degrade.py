"""`realesr degrade`: run the training-time degradation on real images, to look at and to measure."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from realesr.cli._options import option
from realesr.errors import ImageReadError, ImageWriteError, RealesrError, UsageError
from realesr.schema import SEED, Int


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "degrade",
        help="synthesise LR/GT training pairs from images with the Real-ESRGAN degradation model",
        description=(
            "Runs exactly the training-time synthesis (x4plus second-order degradation) on images. For each input "
            "and each k < K writes NAME_k_lr.png (the degraded LR) and NAME_k_gt.png (the plain GT crop it came "
            "from, before sharpening). With --config, the degradation, scale and crop of that training config: "
            "a preview of exactly what training will feed the network."
        ),
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders, globs or .txt lists of images")
    p.add_argument("-o", "--output", required=True, type=Path, help="output folder (created if missing)")
    p.add_argument(
        "--config",
        type=Path,
        metavar="CONFIG.yaml",
        help="a training config: its scale, data.gt_size (the crop), data.load_size and "
        "data.degradation, as `realesr train` would apply them",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a key of --config, as `realesr train --set` (repeatable)",
    )
    p.add_argument(
        "--scale", type=int, default=None, choices=(2, 4, 8), help="SR scale (default 4, or the scale of --config)"
    )
    p.add_argument(
        "--seed", type=option(SEED), default=0, help="random seed; the same seed gives the same LR (default 0)"
    )
    p.add_argument(
        "--per-image", type=option(Int(1, 1000)), default=1, metavar="K", help="LR versions per input (default 1)"
    )
    p.add_argument(
        "--crop",
        type=option(Int(0, 2**16)),
        default=None,
        metavar="SIZE",
        help="GT crop size, a multiple of the scale (default 256, or data.gt_size of --config, as "
        "training); 0 = the whole image",
    )
    p.add_argument("--no-usm", action="store_true", help="degrade the plain GT instead of the sharpened one")
    p.add_argument(
        "--sheet", action="store_true", help="also write NAME_sheet.png: the GT crop beside its K LR versions, labelled"
    )
    p.add_argument("--device", default="cpu", help="torch device for the image operations (default cpu)")
    p.set_defaults(func=run, flags=FLAGS)


FLAGS = {"output": "-o", "device": "--device", "crop": "--crop", "per_image": "--per-image", "config": "--config"}


def _settings(args: argparse.Namespace):
    """(degradation config, scale, crop, region) from the flags, or from --config as training would use them."""
    from realesr.degrade import DegradationConfig

    if args.config is None:
        if args.set:
            raise UsageError("--set needs --config")
        scale = 4 if args.scale is None else args.scale
        return DegradationConfig.for_scale(scale), scale, 256 if args.crop is None else args.crop, 400

    from realesr.train.config import load_config
    from realesr.train.synth import degradation_config

    train = load_config(args.config, args.set)
    if args.scale is not None and args.scale != train.scale:
        raise UsageError(
            f"--scale {args.scale} differs from the scale {train.scale} of {args.config}; "
            "leave --scale out (or change the config's scale with --set scale=N)"
        )
    # --crop may still cut a different (or the whole) image from the same chain: 0 gives the seeded LR of
    # validation and `realesr eval --degrade`
    crop = train.data.gt_size if args.crop is None else args.crop
    return degradation_config(train.scale, train.data.degradation), train.scale, crop, train.data.load_size


def _load_rgb(path: Path):
    """Float32 [3,H,W] tensor in [0,1]: grey replicated, alpha dropped (the official reads colour only)."""
    import torch

    from realesr.imagefiles import read_rgb

    arr = read_rgb(path)
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ImageReadError(f"{path}: empty image")
    return torch.from_numpy(arr).permute(2, 0, 1)


def _check_crop(entry, crop: int):
    """``entry`` failed from its header, before any work, when ``crop`` is larger than the image: the GT would be
    mostly mirror padding (and a huge --crop runs out of memory); that file fails in one line, the rest go on."""
    from dataclasses import replace

    from realesr.imagefiles import read_header

    if entry.error is not None or not crop:
        return entry
    try:
        header = read_header(entry.path)
    except RealesrError as err:
        return replace(entry, error=str(err).removeprefix(f"{entry.path}: "))
    if min(header.width, header.height) < crop:
        return replace(
            entry,
            error=f"the image is {header.width}x{header.height}, smaller than the crop {crop}; "
            "give a smaller --crop, or --crop 0 for the whole image",
        )
    return entry


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from realesr.devices import pick_device

    if args.per_image < 1:
        raise UsageError(f"--per-image must be at least 1, got {args.per_image}")
    cfg, scale, crop, region = _settings(args)
    if crop < 0 or crop % scale:
        raise UsageError(f"--crop must be 0 or a positive multiple of the scale {scale}, got {crop}")
    device = pick_device(args.device)
    out_dir: Path = args.output
    plan, earlier = _plan(args, out_dir, crop)
    failures = written = 0
    for path, error, targets in tqdm(plan, desc="degrade", unit="image", disable=None):
        if error is not None:
            failures += 1
            tqdm.write(f"realesr degrade: error: {error}", file=sys.stderr)
            continue
        try:
            written += _degrade_one(args, path, targets, device, cfg, scale, crop, region)
        except RealesrError as err:
            failures += 1
            tqdm.write(f"realesr degrade: error: {err}", file=sys.stderr)
        except (RuntimeError, MemoryError) as err:  # e.g. out of memory on a huge --crop 0 image
            failures += 1
            tqdm.write(f"realesr degrade: error: {path}: {str(err).splitlines()[0]}", file=sys.stderr)
    summary = f"wrote {written} files to {out_dir} ({len(plan) - failures} of {len(plan)} images)"
    if earlier:
        summary += f"; {earlier} earlier output(s) of realesr in the output folder skipped as inputs"
    print(summary)
    return 1 if failures else 0


def _plan(args: argparse.Namespace, out_dir: Path, crop: int) -> tuple[list[tuple[Path, str | None, list[Path]]], int]:
    """The whole plan first, every output named and checked against every input before any work: (path, why it
    fails or None, its outputs) per input, and how many earlier results of realesr were left out as inputs."""
    from realesr.imagefiles import (
        PlannedOutput,
        check_folder_writable,
        check_outputs,
        earlier_results,
        expand_inputs,
        path_key,
    )

    check_folder_writable(out_dir, params=("output",))
    entries = [_check_crop(entry, crop) for entry in expand_inputs(args.inputs)]
    used_names: dict[str, int] = {}
    outputs_of: list[list[Path]] = []
    for entry in entries:
        if entry.error is not None:
            outputs_of.append([])
            continue
        name = entry.path.stem
        key = name.casefold()
        used_names[key] = used_names.get(key, 0) + 1
        if used_names[key] > 1:
            name = f"{name}-{used_names[key]}"
        targets = [out_dir / f"{name}_{k}_{kind}.png" for k in range(args.per_image) for kind in ("lr", "gt")]
        if args.sheet:
            targets.append(out_dir / f"{name}_sheet.png")
        outputs_of.append(targets)
    # Earlier results of realesr in the output folder are not inputs of this run; anything else is protected.
    earlier = earlier_results(entries, outputs_of, out_dir)
    plan = [
        (e.path, None if e.error is None else f"{e.path}: {e.error}", targets)
        for i, (e, targets) in enumerate(zip(entries, outputs_of, strict=True))
        if i not in earlier
    ]
    planned = [PlannedOutput(t, f"an output of {path}", ("output",)) for path, _err, targets in plan for t in targets]
    skipped = {path_key(entries[i].path) for i in earlier}
    check_outputs(planned, [e.path for e in entries if e.error is None and path_key(e.path) not in skipped])
    try:
        if any(err is None for _path, err, _targets in plan):
            out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ImageWriteError(
            f"{out_dir}: cannot create the output folder ({err.strerror or err})", params=("output",)
        ) from None
    return plan, len(earlier)


def _degrade_one(args: argparse.Namespace, path: Path, targets: list[Path], device, cfg, scale, crop, region) -> int:
    """The LR/GT pairs (and contact sheet) of one image, written; returns the files written."""
    import numpy as np

    from realesr.degrade import contact_sheet, image_generators, label_lines, synthesize_pairs, tensor_to_pil
    from realesr.imagefiles import write_image

    gt = _load_rgb(path).to(device)
    # Seeded per (seed, file name) as realesr.degrade.degraded_lr: with --crop 0 the first LR is the one
    # validation and `realesr eval --degrade` make of this image.
    rng, generator = image_generators(args.seed, path.name)
    gt_crop, lqs, params = synthesize_pairs(
        gt, cfg, scale, args.per_image, rng, generator, crop=crop, region=region, sharpen=not args.no_usm
    )
    images = []
    for k in range(args.per_image):
        images.append(tensor_to_pil(lqs[k]))
        images.append(tensor_to_pil(gt_crop))
    if args.sheet:
        labels = [label_lines(params, k) for k in range(args.per_image)]
        images.append(contact_sheet(gt_crop, lqs, labels, title=f"GT {path.name}"))
    written = 0
    for image, target in zip(images, targets, strict=True):
        write_image(target, np.asarray(image), source=path, mark=True)
        written += 1
    return written
