"""`realesr convert IN OUT`: any loadable weights to safetensors (architecture in the metadata) or ncnn."""

from __future__ import annotations

import argparse
import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from realesr.cli._options import DENOISE_HELP, option
from realesr.errors import ImageWriteError, UsageError
from realesr.schema import Float


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "convert",
        help="convert weights to safetensors, ncnn or ONNX",
        description="Convert a weights file (.pth/.pt, .safetensors, ncnn .param/.bin) or an official model name "
        "to OUT.safetensors, with the architecture recorded in its metadata; for OUT.param, to "
        "an ncnn model (.param + .bin); for OUT.onnx, to an ONNX graph (dynamic height and width, "
        "architecture, scale and size multiple in its metadata; needs the [onnx] extra). Tensors "
        "are copied exactly (same values and dtype) to safetensors.",
    )
    parser.add_argument("input", metavar="IN", help="weights file or official model name")
    parser.add_argument("output", metavar="OUT", help="OUT.safetensors, OUT.param for ncnn, OUT.onnx for ONNX")
    parser.add_argument(
        "--fp32", action="store_true", help="ncnn only: store fp32 weights (default fp16, as the official ncnn models)"
    )
    parser.add_argument(
        "--fp16",
        action="store_true",
        help="ONNX only: half-precision weights and graph (for GPUs; on the CPU fp32 is faster and exact)",
    )
    parser.add_argument(
        "--denoise-strength",
        type=option(Float(0, 1)),
        default=None,
        metavar="S",
        help=DENOISE_HELP,
    )
    parser.add_argument("--no-download", action="store_true", help="fail instead of downloading an official model")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # torch comes with these: imported here, not at module level, so that `realesr convert --help` is fast.
    from realesr.weights.io import save_model, save_state_dict
    from realesr.weights.ncnn import export_ncnn, ncnn_paths
    from realesr.weights.zoo import ZOO, load_model, read_model

    out = Path(args.output)
    if out.suffix not in (".safetensors", ".param", ".onnx"):
        raise UsageError(f"OUT must end in .safetensors, .param (ncnn) or .onnx, not {out.name!r}")
    if args.fp16 and out.suffix != ".onnx":
        raise UsageError("--fp16 applies to ONNX output (OUT.onnx); ncnn stores fp16 by default (--fp32 for fp32)")
    if args.fp32 and out.suffix != ".param":
        raise UsageError("--fp32 applies to ncnn output (OUT.param)")
    if Path(args.input).suffix.lower() == ".onnx":
        raise UsageError(
            "IN is an ONNX graph: realesr converts from weights (.pth, .safetensors, ncnn) or a model "
            "name, not from ONNX"
        )
    _check_writable_folder(out)
    source = Path(args.input)
    is_file = args.input not in ZOO
    if is_file and not any(p.exists() for p in (source, *ncnn_paths(source)[:1])):
        load_model(args.input)  # raises ModelNotFoundError naming the known models
    if is_file:
        inputs = {p.resolve() for p in (ncnn_paths(source) if source.suffix in (".param", ".bin") else (source,))}
        outputs = {p.resolve() for p in (ncnn_paths(out) if out.suffix == ".param" else (out,))}
        if inputs & outputs:
            raise UsageError(f"OUT {out} would overwrite the input")
    if is_file and out.suffix == ".safetensors" and args.denoise_strength is None:
        # Straight from the file's tensors: bit-exact, dtype kept (no fp32 round trip of fp16 weights).
        sd, spec = read_model(source)
        with _writing(out):
            save_state_dict(sd, spec, out)
        print(f"{args.input} -> {out}: {spec.description}")
        return 0
    loaded = load_model(args.input, denoise_strength=args.denoise_strength, allow_download=not args.no_download)
    if loaded.spec is None:
        raise UsageError(
            f"{args.input} holds {loaded.description}: realesr convert writes realesr's own architectures only; "
            f"run it as it is (realesr upscale -m {args.input})"
        )
    if out.suffix == ".onnx":
        from realesr.weights.onnx import export_onnx

        with _writing(out):
            export_onnx(loaded.net, out, fp16=args.fp16, source=loaded.name)
        precision = "fp16" if args.fp16 else "fp32"
        print(f"{loaded.name} -> {out} (ONNX opset 17, {precision}): {loaded.spec.description}")
    elif out.suffix == ".param":
        with _writing(out):
            param, binary = export_ncnn(loaded.net, out, fp16=not args.fp32)
        print(f"{loaded.name} -> {param} + {binary.name}: {loaded.spec.description}")
    else:
        with _writing(out):
            save_model(loaded.net, out, metadata={"source": loaded.name})
        print(f"{loaded.name} -> {out}: {loaded.spec.description}")
    return 0


def _check_writable_folder(out: Path) -> None:
    """Refuse before any work an OUT whose folder cannot exist (a file on its path) or is read-only."""
    folder = out.parent if str(out.parent) else Path(".")
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise UsageError(f"cannot write {out}: {probe} is not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"cannot write {out}: the folder {probe} is not writable; choose another OUT")


@contextlib.contextmanager
def _writing(out: Path) -> Iterator[None]:
    # The writes are atomic (temporary file + rename), so a failure leaves no partial OUT behind.
    try:
        yield
    except OSError as err:
        reason = err.strerror or str(err)
        raise ImageWriteError(f"cannot write {out}: {reason}; nothing was written") from None
