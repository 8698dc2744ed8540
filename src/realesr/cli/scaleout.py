"""`realesr upscale` beyond one process: ``--device cuda:0,cuda:1`` / ``all`` / ``cpu,cpu``, ``--batch``,
``--ray [ADDRESS]`` and ``--resume``. Not a sub-command: the options and the run that `cli.upscale` hands over to
when the work leaves the process (docs/scaleout.md). One progress bar, one summary, the exit-code rule of the
single-process command.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from realesr.cli._options import number
from realesr.cli._summary import print_summary
from realesr.errors import RealesrError, UsageError

FLAGS = {"ray": "--ray", "batch": "--batch", "workers": "--ray-workers"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("several devices and clusters (docs/scaleout.md)")
    group.add_argument(
        "--batch",
        type=number(int, low=1),
        default=1,
        metavar="N",
        help="images of one size go through the network N at a time (for GPUs; default 1)",
    )
    group.add_argument(
        "--resume",
        action="store_true",
        help="skip inputs whose outputs are already complete (written by realesr, planned size)",
    )
    group.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="run on Ray: no ADDRESS starts a local Ray, 'auto' joins the running cluster, "
        "or ray://HOST:10001 / HOST:6379 (needs realesr[ray]; outputs on a shared filesystem)",
    )
    group.add_argument(
        "--ray-workers",
        type=number(int, low=1),
        default=None,
        metavar="N",
        help="Ray actors, each loading the model once (default: the cluster's GPUs, else its CPUs)",
    )
    group.add_argument(
        "--ray-gpus",
        type=number(float, low=0),
        default=None,
        metavar="G",
        help="GPUs per Ray actor (default: 1 when the cluster has GPUs, else 0)",
    )


def devices_of(args: argparse.Namespace) -> list[str] | None:
    from realesr.infer.pool import parse_devices

    return parse_devices(args.device)


def routed(args: argparse.Namespace) -> bool:
    """Whether this run leaves the process (several devices, a batch, or Ray). ``--device all`` with fewer than
    two GPUs becomes ``auto`` (the one GPU, else the CPU) for the single process."""
    devices = devices_of(args)
    if devices is None and str(args.device).strip().lower() == "all":
        args.device = "auto"
    return args.ray is not None or args.batch > 1 or devices is not None


def kept_items(args: argparse.Namespace, plan) -> list:
    """The plan's items still to do: with ``--resume``, without those whose outputs are complete (noted)."""
    if not getattr(args, "resume", False):
        return list(plan.items)
    from realesr.infer.pool import split_complete

    todo, done = split_complete(plan.items)
    if done:
        print(f"note: {len(done)} input(s) already have complete outputs: skipped (--resume)", file=sys.stderr)
    return todo


def run(args: argparse.Namespace, plan, flags: dict[str, str]) -> int:
    from tqdm import tqdm

    from realesr.cli import describe
    from realesr.cli._bars import download_bar
    from realesr.infer.pool import UpscalerSpec
    from realesr.infer.upscaler import Upscaler

    flags = {**flags, **FLAGS}
    devices = devices_of(args)
    if args.ray is not None and devices is not None:
        raise UsageError(
            "--ray places the work itself: give no device list with it (--ray-gpus sets GPUs per actor)",
            params=("ray", "device"),
        )
    if args.ray is None and devices is None:
        devices = [args.device]  # --batch on one device: one worker process
    if args.ray is not None:
        from realesr.infer.ray_data import require_ray

        require_ray()  # without the extra: said before the model is loaded or the output folder made
    spec = UpscalerSpec(
        args.model,
        precision=args.precision,
        tile=args.tile,
        tile_pad=args.tile_pad,
        outscale=args.outscale,
        alpha=args.alpha,
        denoise_strength=args.denoise_strength,
    )
    # The model once here, on the CPU: it fails early with the usual message (and downloads, with its bar, once)
    # and gives the output sizes the plan is checked against.
    sizer = Upscaler(
        args.model,
        device="cpu",
        precision="fp32",
        outscale=args.outscale,
        denoise_strength=args.denoise_strength,
        progress=False if args.no_progress else download_bar(args.model),
    )
    plan.check_sizes(sizer)
    model_name = sizer.model_name
    del sizer
    failures: list[tuple[Path, str]] = []
    items = []
    todo = kept_items(args, plan)
    for item in todo:
        if item.error:
            failures.append((item.source, describe(RealesrError(item.error, params=item.error_params), flags)))
            print(f"failed: {failures[-1][1]}", file=sys.stderr)
        else:
            items.append(item)
    if items:
        plan.prepare()
    show_progress = not args.no_progress and sys.stderr.isatty()
    bar = tqdm(
        total=len(items), unit="image", desc="upscale", disable=not show_progress or len(items) < 2, file=sys.stderr
    )
    written: list[Path] = []
    notes: list[str] = []
    lost: list[str] = []
    started = time.perf_counter()
    try:
        if args.ray is not None:
            from realesr.infer.ray_data import run_ray

            def on_row(row: dict) -> None:
                if row["status"] == "done":
                    written.append(Path(row["output"]))
                else:
                    failures.append((Path(row["source"]), row["error"]))
                    tqdm.write(f"failed: {row['error']}", file=sys.stderr)
                bar.update(1)

            where = f"Ray ({'local' if args.ray == 'local' else args.ray})"
            run_ray(
                items,
                spec,
                plan.options,
                address=None if args.ray == "local" else args.ray,
                concurrency=args.ray_workers,
                num_gpus=args.ray_gpus,
                batch=args.batch,
                on_row=on_row,
            )
            notes.extend(
                f"{item.source}: {note}" for item in items for note in item.notes if Path(item.output) in set(written)
            )
        else:
            from realesr.infer.pool import PoolEvent, run_pool

            def on_event(event: PoolEvent) -> None:
                if event.kind == "done" and event.result is not None:
                    written.append(event.result.output)
                    notes.extend(f"{event.result.source}: {note}" for note in event.result.notes)
                    bar.update(1)
                elif event.kind == "failed" and event.item is not None:
                    failures.append((event.item.source, event.message))
                    tqdm.write(f"failed: {event.message}", file=sys.stderr)
                    bar.update(1)
                elif event.kind == "lost":
                    lost.append(event.message)
                    tqdm.write(f"warning: {event.message}", file=sys.stderr)

            assert devices is not None
            where = f"{len(devices)} worker process(es): {', '.join(devices)}"
            report = run_pool(items, spec, plan.options, devices, batch=args.batch, on_event=on_event)
            for device in report.fell_back:
                notes.append(f"{device}: {args.precision} overflowed; fp32 was used")
    finally:
        bar.close()
    elapsed = time.perf_counter() - started
    target = plan.target if plan.target_is_file else f"{plan.target}{os.sep}"
    extras = (where,) + ((f"{len(lost)} worker process(es) stopped",) if lost else ())
    print_summary(len(written), len(todo), model_name, str(target), elapsed, notes, len(failures), plan.skipped, extras)
    return 1 if failures else 0
