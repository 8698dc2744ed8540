"""`realesr serve`: a local web page (and HTTP API) that upscales what is dropped on it."""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import socket
import sys
from pathlib import Path

from realesr.cli._options import number
from realesr.errors import MissingExtraError, RealesrError, UsageError

FLAGS = {
    "model": "--model",
    "device": "--device",
    "host": "--host",
    "port": "--port",
    "token": "--token",
    "results": "--results",
}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="a local web page for upscaling (needs the web extra)",
        description="Serve a web page on this machine that upscales the images dropped on it, with the same "
        "results as `realesr upscale`. The printed address carries an access token; requests without "
        "it, from another site's page or for another host name are refused. Binds to loopback "
        "unless --host says otherwise. Needs `pip install realesr[web]`.",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1, this machine only; anything else makes the "
        "token the only guard)",
    )
    parser.add_argument(
        "--port", type=number(int, 0, 65535), default=7860, help="port (default 7860; 0 picks a free one)"
    )
    parser.add_argument(
        "--device",
        default="auto",
        help="where the networks run: auto, cpu, cuda, cuda:N, mps, or a comma list (one worker per device)",
    )
    parser.add_argument("--precision", choices=("auto", "fp32", "fp16", "bf16"), default="auto")
    parser.add_argument(
        "--token",
        default=None,
        help="the access token, at least 8 letters, digits or . _ ~ + / = - (default: $REALESR_TOKEN, else the one "
        "kept in --results from an earlier start, else a new random one)",
    )
    parser.add_argument(
        "--model",
        action="append",
        default=[],
        metavar="WEIGHTS",
        help="also offer this weights file (repeatable); the page lists it by its file name",
    )
    parser.add_argument("--only", action="store_true", help="offer only the --model files, not the official models")
    parser.add_argument(
        "--no-download",
        action="store_true",
        help="never download official weights: the page lists only the models on this machine",
    )
    _add_limits(parser)
    _add_storage(parser)
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.set_defaults(func=run, flags=FLAGS)


def _add_limits(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-upload-mb",
        type=number(float, above=0),
        default=200.0,
        metavar="MB",
        help="largest upload (default 200 MB)",
    )
    parser.add_argument(
        "--max-pixels",
        type=number(float, above=0),
        default=50.0,
        metavar="MP",
        help="largest input image in megapixels (default 50)",
    )
    parser.add_argument(
        "--max-jobs",
        type=number(int, above=0),
        default=100,
        metavar="N",
        help="most jobs queued or running at once (default 100)",
    )


def _add_storage(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--results",
        default=None,
        metavar="DIR",
        help="where the job list, uploads and results are kept, one folder per token, so that a reload or a "
        "restart shows the same jobs (default: $XDG_STATE_HOME/realesr/serve or ~/.local/state/realesr/serve)",
    )
    parser.add_argument(
        "--keep-days",
        type=number(float, 0, 36500),
        default=7.0,
        metavar="DAYS",
        help="delete finished jobs and their files after this many days (default 7; 0 keeps them until removed)",
    )
    parser.add_argument(
        "--no-keep",
        action="store_true",
        help="keep nothing: uploads and results go to a temporary folder deleted when the server stops",
    )


def _devices(text: str) -> list[str]:
    from realesr.devices import pick_device

    names = [part.strip() for part in text.split(",") if part.strip()] or ["auto"]
    return [str(pick_device(name)) for name in names]


def _results_dir(given: str | None) -> Path:
    if given is not None:
        return Path(given).expanduser()
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "realesr" / "serve"


def _token(given: str | None, results: Path | None) -> str:
    """--token, else $REALESR_TOKEN, else the token kept in the results folder (so that a restart keeps the
    address and the jobs), else a new one (kept there, readable by this user only). Never blank."""
    from realesr.serve.security import check_token

    if given is not None:
        return check_token(given, "--token")
    if "REALESR_TOKEN" in os.environ:
        return check_token(os.environ["REALESR_TOKEN"], "$REALESR_TOKEN")
    kept = None if results is None else results / "token"
    if kept is not None:
        with contextlib.suppress(OSError, UsageError):
            return check_token(kept.read_text(encoding="ascii").strip(), str(kept))
    token = secrets.token_urlsafe(24)
    if kept is not None:
        try:
            kept.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(kept, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="ascii") as out:
                out.write(token + "\n")
        except OSError as err:
            raise UsageError(f"cannot write {kept}: {err.strerror or err}", params=("results",)) from None
    return token


def _token_folder(token: str) -> str:
    """Each token sees its own jobs; the folder is named by a digest, so the token is not in a path."""
    import hashlib

    return "jobs-" + hashlib.sha256(token.encode()).hexdigest()[:16]


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401 - checked here, used in _serve

        from realesr.serve.app import Limits, available_models, create_app, file_model
    except ImportError as err:
        raise MissingExtraError("realesr serve", "web", err.name or "") from None

    results = None if args.no_keep else _results_dir(args.results)
    token = _token(args.token, results)
    devices = _devices(args.device)
    models = [] if args.only else available_models()
    for path in args.model:
        try:
            models.append(file_model(path))
        except RealesrError as err:  # a model the user named that cannot be served: a usage error
            raise UsageError(str(err), params=("model",)) from None
    if not models:
        raise UsageError("--only without --model leaves no model to serve")
    if args.model:  # the user's own weights first: they asked for them
        models.sort(key=lambda m: m.where != "file")

    sock = _bind(args.host, args.port)
    port = sock.getsockname()[1]
    limits = Limits(int(args.max_upload_mb * 1e6), int(args.max_pixels * 1e6), args.max_jobs)
    app = create_app(
        models,
        token=token,
        host=args.host,
        port=port,
        devices=devices,
        precision=args.precision,
        limits=limits,
        allow_download=not args.no_download,
        work_dir=None if results is None else results / _token_folder(token),
        keep_seconds=args.keep_days * 86400,
    )
    try:
        _serve(app, sock, args, token, devices, models)
    finally:
        # Also when a signal comes before uvicorn has taken over: every upload and result is deleted.
        app.state.jobs.close()
    return 0


def _serve(app, sock: socket.socket, args: argparse.Namespace, token: str, devices: list[str], models: list) -> None:
    import uvicorn

    from realesr.serve.security import is_loopback

    port = sock.getsockname()[1]
    shown = "127.0.0.1" if args.host in ("0.0.0.0", "::") else args.host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{port}/?token={token}"
    if not is_loopback(args.host):
        print(
            f"warning: listening on {args.host}: anyone who can reach this machine and knows the token can use "
            "it; the token is the only guard (no TLS)",
            file=sys.stderr,
        )
    print(f"realesr serve: open {url}", flush=True)
    print(
        f"  devices: {', '.join(devices)}; models: {', '.join(m.name for m in models if m.available)} "
        "(offline); "
        + (
            f"uploads and results in {app.state.jobs.work_dir}, deleted when Ctrl-C stops the server"
            if args.no_keep
            else f"jobs are kept in {app.state.jobs.work_dir} for {args.keep_days:g} days or until removed"
        ),
        flush=True,
    )
    if args.open:
        import webbrowser

        webbrowser.open(url)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as err:
        sock.close()
        raise UsageError(f"cannot listen on {host}:{port}: {err.strerror or err}", params=("host", "port")) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
