"""`realesr prepare HR_DIR OUT_DIR`: official-style sub-images (480 px, step 240) and their meta_info list."""

from __future__ import annotations

import argparse
import sys

from realesr.cli._options import option
from realesr.schema import Int

HELP = "cut HR images into overlapping sub-images for training (as the official extract_subimages.py)"

EPILOG = """examples:
  realesr prepare datasets/DF2K/HR datasets/DF2K/HR_sub
  realesr train configs/esrnet_x4.yaml --set data.train=datasets/DF2K/HR_sub/meta_info.txt

Windows start every STEP pixels along each side; when more than THRESH pixels are left after the last one, one
more window ends at the border. Sub-images are PNG (NAME_s001.png ...); OUT_DIR/meta_info.txt lists them as
'path (h,w,c)' lines, which data.train accepts."""

FLAGS = {"output": "OUT_DIR", "hr_dir": "HR_DIR"}


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare", help=HELP, description=HELP, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("hr_dir", metavar="HR_DIR", help="folder of HR images (searched recursively)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="where the sub-images and meta_info.txt go")
    p.add_argument("--crop", type=option(Int(1, 2**16)), default=480, help="sub-image size (default 480)")
    p.add_argument("--step", type=option(Int(1, 2**16)), default=240, help="window step (default 240)")
    p.add_argument(
        "--thresh",
        type=option(Int(0, 2**16)),
        default=0,
        help="a last window flush with the border when more than this many pixels are left (default 0)",
    )
    p.set_defaults(func=run, flags=FLAGS)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tqdm import tqdm

    from realesr.cli._text import escape
    from realesr.data.prepare import cut_subimages, plan_subimages

    plan, notes = plan_subimages(Path(args.hr_dir), Path(args.out_dir), args.crop, args.step, args.thresh)
    sources = len({s.source for s in plan})
    planned_notes = len(notes)
    try:
        with tqdm(total=sources, desc="prepare", unit="image", disable=None) as bar:
            meta = cut_subimages(plan, Path(args.out_dir), on_image=lambda _src, _n: bar.update(1), notes=notes)
    finally:
        for note in notes:  # every image skipped, one line each (after the bar, which would break the lines)
            print(f"realesr prepare: {escape(note)}", file=sys.stderr)
    cut = len(meta.read_text(encoding="utf-8").splitlines())
    print(escape(f"wrote {cut} sub-images of {sources - (len(notes) - planned_notes)} images and {meta}"))
    return 1 if notes else 0
