"""`realesr train CONFIG.yaml [--set key=value ...] [--resume auto|PATH]`."""

from __future__ import annotations

import argparse

HELP = "train or fine-tune a model (Real-ESRNet, then Real-ESRGAN) from a YAML config"

EPILOG = """examples:
  realesr train configs/esrnet_x4.yaml --set data.train=datasets/DF2K
  realesr train configs/esrgan_x4.yaml --set init_from=runs/esrnet_x4/model.safetensors
  realesr train configs/esrnet_x4.yaml --resume auto
  realesr train configs/esrnet_x4.yaml --dry-run        # config, data, sizes, memory; then exit
  realesr train configs/esrnet_x4.yaml --overwrite      # move the run already in runs/NAME aside
  torchrun --nproc_per_node=4 -m realesr train configs/esrgan_x4.yaml

Ctrl-C (or SIGTERM) saves a checkpoint and exits; --resume auto continues exactly. docs/train.md lists every key."""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key; dotted keys for nested ones (optim.lr_g=1e-4); repeatable",
    )
    p.add_argument(
        "--resume",
        metavar="auto|PATH",
        default=None,
        help="auto: continue from the newest checkpoint of the run folder (or start if none); "
        "PATH: a checkpoint folder",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="the run folder holds another run: move it aside (NAME.old-TIMESTAMP) and start afresh",
    )
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="show the resolved config, the data found, the networks' sizes and a memory estimate; "
        "train nothing, write nothing",
    )
    p.add_argument("--no-download", action="store_true", help="never download weights (VGG19, models)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from realesr.train import load_config, train
    from realesr.train.distributed import shutdown_distributed

    cfg = load_config(args.config, args.overrides)
    if args.dry_run:
        from realesr.train.dryrun import dry_run_report

        print(dry_run_report(cfg, allow_download=not args.no_download))
        return 0
    try:
        result = train(
            cfg,
            resume=args.resume,
            allow_download=not args.no_download,
            show_progress=not args.no_progress,
            overwrite=args.overwrite,
        )
    finally:
        shutdown_distributed()
    if result.status != "interrupted":
        return 0
    return 143 if result.stopped_by == "SIGTERM" else 130  # the exit-code rule of every command (cli.main)
