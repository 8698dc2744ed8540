"""Who may talk to `realesr serve`: the token, the Host header (DNS rebinding), the Origin (other sites' pages),
and the upload size, checked before any route runs (a plain ASGI middleware)."""

from __future__ import annotations

import hmac
import ipaddress
import json
from collections.abc import Iterable
from typing import Any
from urllib.parse import parse_qs, urlsplit

COOKIE_PREFIX = "realesr_token_"

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def allowed_host_names(host: str, port: int) -> set[str]:
    """The Host header values a browser sends for this server: loopback names when bound to loopback or to
    every interface, and the explicit ``--host``, each with and without the port."""
    names = {host if ":" not in host or host.startswith("[") else f"[{host}]"}
    if is_loopback(host) or host in ("0.0.0.0", "::"):
        names.update(LOOPBACK_NAMES)
    names.discard("0.0.0.0")
    names.discard("[::]")
    return {n.lower() for name in names for n in (name, f"{name}:{port}")}


def _json(status: int, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": message}).encode()


class Guard:
    """ASGI middleware: 403 for a foreign Host or Origin, 401 without the token, 413 for an upload over
    ``max_upload_bytes`` (by Content-Length, and by counting the body as it arrives)."""

    def __init__(self, app: Any, token: str, hosts: Iterable[str], port: int, max_upload_bytes: int) -> None:
        self.app = app
        self.token = token.encode()
        self.hosts = {h.lower() for h in hosts}
        self.origins = {f"http://{h}" for h in self.hosts}
        self.cookie = f"{COOKIE_PREFIX}{port}"
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _reply(send, *refusal)
            return
        if scope["method"] == "POST":
            length = headers.get("content-length")
            if length is not None and length.isdigit() and int(length) > self.max_upload_bytes:
                await _reply(send, *_json(413, self._too_large()))
                return
            receive = self._counting(receive, send)
        try:
            await self.app(scope, receive, send)
        except _UploadTooLarge:
            await _reply(send, *_json(413, self._too_large()))

    def _too_large(self) -> str:
        return f"the upload is larger than the server's limit of {self.max_upload_bytes / 1e6:g} MB (max_upload_mb)"

    def _refusal(self, scope: dict, headers: dict[str, str]) -> tuple[int, bytes] | None:
        if headers.get("host", "").lower() not in self.hosts:
            return _json(403, "this server answers only to its own address (Host header refused)")
        origin = headers.get("origin")
        if origin is not None and origin.lower().rstrip("/") not in self.origins:
            return _json(403, "requests from other sites are refused (Origin header)")
        if headers.get("sec-fetch-site") == "cross-site":
            return _json(403, "requests from other sites are refused (Sec-Fetch-Site)")
        if self._has_token(scope, headers):
            return None
        if scope["path"] in ("/", "/index.html") and scope["method"] == "GET":
            page = (
                "<!doctype html><meta charset=utf-8><title>realesr</title><p>Open the address that "
                "<code>realesr serve</code> printed: it carries the access token.</p>"
            )
            return 401, page.encode()
        return _json(
            401,
            "the access token is missing or wrong: send Authorization: Bearer TOKEN "
            "(the token is printed by realesr serve)",
        )

    def _has_token(self, scope: dict, headers: dict[str, str]) -> bool:
        given: list[str] = []
        auth = headers.get("authorization", "")
        if auth.lower().startswith("bearer "):
            given.append(auth[7:].strip())
        for part in headers.get("cookie", "").split(";"):
            name, _, value = part.strip().partition("=")
            if name == self.cookie:
                given.append(value)
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        given.extend(query.get("token", []))
        return any(hmac.compare_digest(value.encode(), self.token) for value in given)

    def _counting(self, receive: Any, send: Any) -> Any:
        seen = 0
        limit = self.max_upload_bytes

        async def counted() -> dict:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _UploadTooLarge()
            return message

        return counted


class _UploadTooLarge(Exception):
    pass


async def _reply(send: Any, status: int, body: bytes) -> None:
    kind = b"text/html; charset=utf-8" if body.startswith(b"<!doctype") else b"application/json"
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", kind),
                (b"content-length", str(len(body)).encode()),
                (b"cache-control", b"no-store"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def origin_of(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"
