"""Who may talk to `realesr serve`: the token, the Host header (DNS rebinding), the Origin (other sites' pages),
and the upload size, checked before any route runs (a plain ASGI middleware)."""

from __future__ import annotations

import hmac
import ipaddress
import json
import re
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


# Characters a token may hold: it travels in a URL, a cookie and a header, each of which would alter or split others.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9._~+/=-]+")


def check_token(token: str, source: str = "the token") -> str:
    """The token as given, if usable: at least 8 characters, none of them blank, a separator or a control
    character (a token of spaces would otherwise be a token nobody can tell from none). UsageError otherwise."""
    from realesr.errors import UsageError

    if not token.strip():
        raise UsageError(f"{source} is blank: give at least 8 letters or digits", params=("token",))
    if not _TOKEN_CHARS.fullmatch(token):
        raise UsageError(
            f"{source} may only hold letters, digits and . _ ~ + / = - (no spaces, quotes, ; or ,)",
            params=("token",),
        )
    if len(token) < 8:
        raise UsageError(f"{source} must have at least 8 characters", params=("token",))
    return token


def _json(status: int, message: str) -> tuple[int, bytes]:
    return status, json.dumps({"error": message}).encode()


class Guard:
    """ASGI middleware: 403 for a foreign Host or Origin, 401 without the token, 413 for an upload over
    ``max_upload_bytes`` (by Content-Length, and by counting the body as it arrives)."""

    def __init__(self, app: Any, token: str, hosts: Iterable[str], port: int, max_upload_bytes: int) -> None:
        self.app = app
        self.token = check_token(token).encode()
        self.hosts = {h.lower() for h in hosts}
        self.origins = {f"http://{h}" for h in self.hosts}
        self.cookie = f"{COOKIE_PREFIX}{port}"
        self.max_upload_bytes = max_upload_bytes

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        pairs = [(k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope.get("headers", [])]
        headers = dict(pairs)
        names = [k for k, _ in pairs]
        if any(names.count(k) > 1 for k in ("authorization", "cookie", "host", "origin")):
            # Which of two would count? None: a request that says two things about who it is gets no choice.
            await _reply(
                send, *_json(400, "a header that says who is asking (Authorization, Cookie, Host or Origin) came twice")
            )
            return
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
        given = self._given_token(scope, headers)
        if given is _TWICE:
            return _json(400, "the token was given more than once: send it once (one token= in the address)")
        if isinstance(given, str) and hmac.compare_digest(given.encode(), self.token):
            return None
        if scope["path"] in ("/", "/index.html") and scope["method"] == "GET":
            page = (
                "<!doctype html><meta charset=utf-8><title>realesr</title><p>Open the address that "
                "<code>realesr serve</code> printed: it carries the access token.</p>"
            )
            return 401, page.encode()
        if scope["path"] == "/favicon.ico" and scope["method"] == "GET":
            return None  # the icon is the package's, as public as the 401 page that asks for it
        return _json(
            401,
            "the access token is missing or wrong: send Authorization: Bearer TOKEN "
            "(the token is printed by realesr serve)",
        )

    def _given_token(self, scope: dict, headers: dict[str, str]) -> str | object | None:
        """The one token the request carries, from the first source that has one (``?token=``, so that the
        printed address wins over a cookie left by an earlier server; then Authorization; then the cookie), or
        _TWICE when that source holds several: never a choice among values."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True).get("token", [])
        auth = headers.get("authorization", "")
        bearer = [auth[7:].strip()] if auth.lower().startswith("bearer ") else []
        cookies = [
            value
            for name, _, value in (part.strip().partition("=") for part in headers.get("cookie", "").split(";"))
            if name == self.cookie
        ]
        for values in (query, bearer, cookies):
            if len(values) > 1:
                return _TWICE
            if values:
                return values[0]
        return None

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


_TWICE = object()


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
