"""`realesr models`: the official model names, where each is found on this machine, and what it is."""

from __future__ import annotations

import argparse
import sys

from realesr.cli._bars import download_bar
from realesr.errors import RealesrError, UsageError


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "models",
        help="list the official models and where their weights are",
        description="List the official Real-ESRGAN models: where each one's weights are found on this machine "
        "(cache folder, data package) or the URL it would be downloaded from, its architecture, "
        "scale and parameter count.",
    )
    parser.add_argument("--urls", action="store_true", help="also print each model's download URL")
    parser.add_argument(
        "--download",
        nargs="+",
        metavar="NAME",
        help="download these models' official .pth files into the cache folder ('all' for every "
        "model), even those the data package holds (it stores fp16-rounded weights)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from realesr.weights.zoo import ZOO, cache_dir, check_model  # torch: not at import, so --help is fast

    if args.download:
        return _download(args.download)
    rows = [("name", "scale", "architecture", "params", "found")]
    urls = []
    corrupt = []
    for name, entry in ZOO.items():
        found, problems = check_model(name)
        if found.where == "cache" and found.path is not None:
            where = f"cache: {found.path.name}"
        elif found.where == "package" and found.path is not None:
            where = f"data package: {found.path.stem}"
        else:
            where = (
                "not found (downloads on first use)" if (entry.url or ZOO.get(entry.weights_of or "")) else "not found"
            )
        if problems:
            where += f" ({len(problems)} corrupt file{'s' if len(problems) > 1 else ''} skipped)"
            corrupt += [f"{name}: {p}" for p in problems]
        spec = entry.spec
        arch = f"{spec.arch} {spec.shape.split(',')[0]}"
        if spec.output_resize:
            arch += f" + bicubic x{spec.output_resize:g}"
        rows.append((name, f"x{spec.scale}", arch, f"{spec.num_params:,}", where))
        base = ZOO[entry.weights_of] if entry.weights_of else entry
        urls.append((name, base.url))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        print(
            "  ".join(
                cell.ljust(w) if j != 3 else cell.rjust(w) for j, (cell, w) in enumerate(zip(row, widths))
            ).rstrip()
        )
        if i == 0:
            print("  ".join("-" * w for w in widths))
    print(f"\ncache folder: {cache_dir()} (set REALESR_CACHE_DIR to change it)")
    if corrupt:
        print("\ncorrupt files (delete them, or `realesr models --download NAME` fetches the release file):")
        for line in dict.fromkeys(corrupt):
            print(f"  {line}")
    if args.urls:
        print()
        for name, url in urls:
            print(f"{name}: {url}")
    return 0


def _download(names: list[str]) -> int:
    from realesr.weights.zoo import ZOO, fetch_model

    if "all" in names:
        names = [n for n, e in ZOO.items() if not e.weights_of]
    unknown = [n for n in names if n not in ZOO]
    if unknown:
        raise UsageError(f"unknown model name(s) {', '.join(unknown)}; known: {', '.join(ZOO)}")
    failed = 0
    for name in dict.fromkeys(names):
        try:
            path, how = fetch_model(name, progress=download_bar(name), force=True)
        except RealesrError as err:
            print(f"realesr: error: {name}: {err}", file=sys.stderr)
            failed += 1
            continue
        print(f"{name}: {'downloaded to' if how == 'downloaded' else 'already in'} {path}")
    return 1 if failed else 0
