"""`realesr models`: the official model names and the user's own models, where each is found, and what it is;
`realesr models inspect FILE` and `realesr models add FILE [--name N]`."""

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
    parser.set_defaults(func=run, action=None)
    actions = parser.add_subparsers(dest="action", metavar="{inspect,add}")
    inspect = actions.add_parser(
        "inspect",
        help="what a model file (or name) is: architecture, scale, channels, size rules, precisions, memory",
        description="Load a model (never downloading) and print its architecture, scale, parameters, channels, "
        "input size requirements, tiling, supported precisions and an estimate of its memory per megapixel. "
        "Files of other architectures (SwinIR, HAT, DAT, SPAN, ...) need pip install 'realesr[models]'.",
    )
    inspect.add_argument("model", metavar="FILE", help="a weights file, or a model name")
    add = actions.add_parser(
        "add",
        help="copy a weights file into your models folder so that -m NAME finds it",
        description="Check that a weights file loads, then copy it into your models folder "
        "($REALESR_MODELS_DIR, else the platform's user data folder) so that `-m NAME` and the page find it.",
    )
    add.add_argument("model", metavar="FILE", help="the weights file (.pth, .safetensors, ncnn .param, .onnx)")
    add.add_argument("--name", help="the name to use with -m (default: the file's stem)")
    add.add_argument("--replace", action="store_true", help="replace a model of that name already there")
    add.set_defaults(flags={"name": "--name", "model": "FILE"})


def run(args: argparse.Namespace) -> int:
    from realesr.weights.zoo import ZOO, cache_dir, check_model  # torch: not at import, so --help is fast

    if args.action == "inspect":
        return _inspect(args.model)
    if args.action == "add":
        return _add(args.model, args.name, args.replace)
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
    _print_user_models()
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


def _table(rows: list[tuple[str, ...]], right: tuple[int, ...] = ()) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for i, row in enumerate(rows):
        cells = [cell.rjust(w) if j in right else cell.ljust(w) for j, (cell, w) in enumerate(zip(row, widths))]
        print("  ".join(cells).rstrip())
        if i == 0:
            print("  ".join("-" * w for w in widths))


def _print_user_models() -> None:
    from realesr.weights.library import inspect_model, models_dir, user_models

    models = user_models()
    print(f"\nyour models: {models_dir()} (realesr models add FILE; set REALESR_MODELS_DIR to change it)")
    if not models:
        print("  none yet")
        return
    rows: list[tuple[str, ...]] = [("name", "scale", "architecture", "params", "file")]
    for name, path in models:
        try:
            card = inspect_model(path)
        except RealesrError as err:
            why = "needs pip install 'realesr[models]'" if "need spandrel" in str(err) else str(err)
            rows.append((name, "", f"unusable: {why.removeprefix(f'{path}: ')}"[:80], "", path.name))
            continue
        rows.append(
            (name, f"x{card.traits.scale}", f"{card.traits.arch} ({card.origin})", f"{card.params:,}", path.name)
        )
    _table(rows, right=(3,))


def _inspect(model: str) -> int:
    from realesr.weights.library import inspect_model

    card = inspect_model(model)
    t = card.traits
    channels = {1: "grey", 3: "RGB", 4: "RGBA"}
    tiling = {
        "local": "local (tiles match the whole image with enough padding)",
        "discouraged": "discouraged (window attention: tiles line up with its windows)",
        "global": "global attention (whole image when memory allows; tiles differ)",
    }[t.tiling]
    rows = [
        ("model", card.name),
        ("architecture", f"{t.arch} ({card.origin})"),
        ("description", card.description),
        ("scale", f"x{t.scale}" + (" (restoration: use -s for another output size)" if t.scale == 1 else "")),
        ("parameters", f"{card.params:,}"),
        ("channels", f"{channels.get(t.in_channels, t.in_channels)} -> {channels.get(t.out_channels, t.out_channels)}"),
        ("input size", t.size.describe()),
        ("tiling", tiling),
        ("precisions", ", ".join(t.precisions)),
        ("memory", f"about {card.memory_per_megapixel() / 2**30:.1f} GiB per megapixel in fp32 (estimate)"),
        ("weights", card.where),
    ]
    if t.licence:
        rows.append(("licence", t.licence))
    width = max(len(key) for key, _ in rows)
    for key, value in rows:
        print(f"{key.ljust(width)}  {value}")
    return 0


def _add(model: str, name: str | None, replace: bool) -> int:
    from realesr.weights.library import add_model

    dest, card = add_model(model, name, replace=replace)
    print(f"{card.name}: {card.description} -> {dest}")
    print(f"use it with: realesr upscale IMAGE -m {card.name}")
    if card.traits.licence:
        print(f"licence: {card.traits.licence}")
    return 0
