"""Shared pieces of the `realesr serve` tests: a tiny network saved as weights, a live server in a thread."""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import torch

from realesr.archs import SRVGGNetCompact
from realesr.weights import save_model

TOKEN = "test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def tiny_weights(folder: Path, name: str = "tiny") -> Path:
    """A 2x SRVGGNetCompact with fixed random weights: fast, and not the identity, so wrong results show."""
    torch.manual_seed(1234)
    net = SRVGGNetCompact(3, 3, num_feat=4, num_conv=2, upscale=2)
    path = folder / f"{name}.safetensors"
    save_model(net, path)
    return path


@contextmanager
def live_server(app, host: str = "127.0.0.1"):
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}", port
    finally:
        server.should_exit = True
        thread.join(timeout=20)
        sock.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
