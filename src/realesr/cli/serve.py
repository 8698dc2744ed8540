"""`realesr serve`: a local web page (and HTTP API) that upscales what is dropped on it."""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import sys

from realesr.cli._options import number
from realesr.errors import RealesrError, UsageError

FLAGS = {"model": "--model", "device": "--device", "host": "--host", "port": "--port"}


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
        "--token", default=None, help="the access token (default: $REALESR_TOKEN, else a new random one)"
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
        "--no-download", action="store_true", help="never download official weights: models not on this machine fail"
    )
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
    parser.add_argument("--open", action="store_true", help="open the page in the default browser")
    parser.set_defaults(func=run, flags=FLAGS)


def _devices(text: str) -> list[str]:
    from realesr.devices import pick_device

    names = [part.strip() for part in text.split(",") if part.strip()] or ["auto"]
    return [str(pick_device(name)) for name in names]


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn  # noqa: F401 - checked here, used in _serve

        from realesr.serve.app import Limits, available_models, create_app, file_model
    except ImportError as err:
        raise UsageError(
            f"realesr serve needs the web extra ({err.name} is missing): pip install 'realesr[web]'"
        ) from None

    token = args.token or os.environ.get("REALESR_TOKEN") or secrets.token_urlsafe(24)
    if len(token) < 8:
        raise UsageError("the token must have at least 8 characters", params=("token",))
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
        f"(offline); Ctrl-C stops and deletes every upload and result",
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
