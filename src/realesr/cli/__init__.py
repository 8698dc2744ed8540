"""The `realesr` command: each sub-command lives in its own module with `register(subparsers)`.

A sub-command module registers its parser and sets ``func(args) -> int`` (and may set ``flags``: library parameter
name -> its option, used to name the option in a message). The library raises :class:`realesr.errors.RealesrError`;
only here are errors printed and exit codes chosen, by one rule:

- 0 all went well; 1 some input failed (or an error with exit_code 1: a file that cannot be read or written);
- 2 a usage error: a bad option (argparse), a missing model, a collision of outputs, a bad config;
- 130 interrupted by Ctrl-C (SIGINT), 143 terminated (SIGTERM): no temporary file is left (atomic writes clean up
  on any exception), finished outputs stay.

Start-up: only the module of the sub-command being run is imported (``realesr --help`` imports none, so it
answers in a few tens of ms whatever the sub-command modules import); the one-line help of each sub-command for
that listing is in ``HELP``. Sub-command modules import torch/numpy inside ``run``, so that
``realesr upscale --help`` is fast too (bench/bench_cli_startup.py measures both).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Mapping

from realesr import __version__, signals
from realesr.cli._text import escape
from realesr.errors import RealesrError
from realesr.signals import Terminated  # noqa: F401 - part of this module's interface (tests)

# Sub-command -> its one-line help in `realesr --help` (add a new command here and as realesr/cli/<name>.py).
HELP = {
    "upscale": "upscale images (files, folders, globs)",
    "models": "list the official models and where their weights are",
    "convert": "convert weights to safetensors (or ncnn)",
    "degrade": "synthesise LR/GT training pairs from images with the Real-ESRGAN degradation model",
    "eval": "score models (PSNR/SSIM/NIQE) on benchmark folders or real photos",
    "train": "train or fine-tune a model (Real-ESRNet, then Real-ESRGAN) from a YAML config",
    "prepare": "cut HR images into sub-images for training (as the official extract_subimages.py)",
    "runs": "a table of the training runs in a folder: stage, progress, best metric, state",
    "serve": "a local web page for upscaling (needs the web extra)",
}
COMMANDS = tuple(HELP)


def describe(err: BaseException, flags: Mapping[str, str] | None = None) -> str:
    """The one-line message of ``err``, with the options (from the error's ``params``) that avoid it. realesr's
    own messages are one line by construction, so a line break in them comes from a name: escaped, like every
    other control character (cli/_text.py); a foreign exception (torch, the OS) gives its first line."""
    text = str(err).strip()
    if not isinstance(err, RealesrError):
        text = (text.splitlines() or [type(err).__name__])[0]
    text = escape(text or type(err).__name__)
    params = getattr(err, "params", ()) or ()
    options = list(dict.fromkeys(flags[p] for p in params if flags and p in flags))
    if options:
        text += f" (option{'s' if len(options) > 1 else ''}: {', '.join(options)})"
    return text


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser; with ``argv``, only the sub-command it names gets its full parser (the others a stub that
    lists it), so that nothing but that one module is imported. Without ``argv``: every sub-command in full."""
    parser = argparse.ArgumentParser(
        prog="realesr",
        description="Real-ESRGAN blind super-resolution: upscale, degrade, train and evaluate.",
    )
    parser.add_argument("--version", action="version", version=f"realesr {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    chosen = next((a for a in argv if not a.startswith("-")), None) if argv is not None else None
    for name in COMMANDS:
        if argv is None or name == chosen:
            importlib.import_module(f"realesr.cli.{name}").register(subparsers)
        else:
            subparsers.add_parser(name, help=HELP.get(name))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # Started with stdout or stderr closed (`realesr ... 2>&-`): Python sets them to None, which every print and
    # progress bar would trip on. The command runs as usual and what it would say is dropped.
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - kept open until exit
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115 - kept open until exit
    for stream in (sys.stdout, sys.stderr):
        # A name that is not UTF-8 must not stop a command after its work is done (the summary): the escapes of
        # cli/_text.py cover the messages, this any other line.
        try:
            stream.reconfigure(errors="backslashreplace")  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):  # not a text file (an embedding program's object)
            pass
    # The signal rule (realesr.signals) from the first instruction: a Ctrl-C while the parser or torch loads is an
    # interrupt like any other (130, one line), not a traceback.
    with signals.installed():
        try:
            return _main(argv)
        except KeyboardInterrupt as err:  # Terminated (SIGTERM) is one too
            code = signals.exit_code_of(err)
            print(f"realesr: {'terminated' if code == signals.TERMINATED else 'interrupted'}", file=sys.stderr)
            return code


def _main(argv: list[str]) -> int:
    parser = build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # argparse: 2 for a usage error (message printed), 0 for --help/--version
        return exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 2)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    flags = getattr(args, "flags", None)
    try:
        return int(args.func(args) or 0)
    except RealesrError as err:
        print(f"realesr: error: {describe(err, flags)}", file=sys.stderr)
        return err.exit_code
    except BrokenPipeError:
        # `realesr models | head`: the reader left; silence the flush at exit as well.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - kept open until exit
        return 0
    except (OSError, MemoryError) as err:  # the system refused something the command did not foresee
        print(f"realesr: error: {describe(err)}", file=sys.stderr)
        return 1
    except Exception as err:  # noqa: BLE001 - the last resort: see internal_error
        code = signals.pending()
        if code:  # a library turned the signal's exception into another (logging's lock at SIGTERM): still the signal
            raise (signals.Terminated() if code == signals.TERMINATED else KeyboardInterrupt()) from err
        return internal_error(err)


# The exit code of an unexpected exception: EX_SOFTWARE of sysexits.h ("internal software error"), distinct from
# the codes of the rule (0, 1, 2, 130, 143) so that scripts can tell a bug from a failed input.
INTERNAL_ERROR = 70


def internal_error(err: BaseException) -> int:
    """The safety net, not the fix: an exception no code path foresaw becomes one line that says so and where the
    traceback was written (a file in the temporary folder), exit code :data:`INTERNAL_ERROR`."""
    import tempfile
    import traceback

    text = "".join(traceback.format_exception(type(err), err, err.__traceback__))
    where = "(the traceback could not be written)"
    try:
        fd, path = tempfile.mkstemp(prefix="realesr-crash-", suffix=".log")
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(f"realesr {__version__}, {sys.executable} {sys.version.split()[0]}\n{' '.join(sys.argv)}\n\n")
            f.write(text)
        where = f"(traceback in {path})"
    except OSError:
        pass
    line = (str(err).strip().splitlines() or [""])[0][:200]
    print(
        f"realesr: internal error, please report: {type(err).__name__}: {escape(line)} {where}",
        file=sys.stderr,
    )
    return INTERNAL_ERROR


def entry() -> None:
    """The console script: ``main``, then the exit. After an interrupt, threads that the unwinding did not stop
    (a worker blocked in a library call) get 2 s to end, then the process exits with the code at once."""
    signals.until_exit()  # what main's handlers give back when it returns: no moment without the rule
    try:
        code = main()
    except KeyboardInterrupt as err:  # a signal in the instant main hands the handlers back
        code = signals.exit_code_of(err)
    if code in (signals.INTERRUPTED, signals.TERMINATED):
        import threading
        import time

        deadline = time.monotonic() + 2.0
        for thread in threading.enumerate():
            if thread is not threading.current_thread() and not thread.daemon:
                thread.join(max(0.0, deadline - time.monotonic()))
        # Then out, without the interpreter's finalisation: it restores the default SIGINT action before it ends,
        # so a second Ctrl-C in that moment would kill the process by the signal instead of exiting with the code,
        # and it waits on what the interrupt left behind. The unwinding has already removed the temporary files.
        signals.hard_exit(code)
    sys.exit(code)
