"""The feed's outer ASGI guard: Host allow-list, body limits before parsing, security headers."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

# The page loads only its own script, style and images (no inline code, no CDN).
CSP = (
    "default-src 'self'; img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)
SECURITY_HEADERS = (
    (b"content-security-policy", CSP.encode()),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-resource-policy", b"same-origin"),
)
WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def host_name(host_header: str) -> str:
    """The host part of a Host header (``[::1]:8080`` -> ``::1``), lower case."""
    h = host_header.strip().lower()
    if h.startswith("["):
        return h[1 : h.find("]")] if "]" in h else h
    return h.rsplit(":", 1)[0] if h.count(":") == 1 else h


class Guard:
    """Runs before routing, parsing and authentication:

    - ``Host`` must be in ``allowed_hosts`` (``*`` allows any): DNS rebinding gets 421;
    - a write under ``/api/`` without ``Authorization: Bearer`` gets 401 before its body is
      read; a body needs a ``Content-Length`` (411) of at most ``max_body`` bytes (413), and
      no more than that is ever read;
    - every response carries the security headers (CSP, frame-ancestors, nosniff, ...).
    """

    def __init__(self, app: ASGIApp, allowed_hosts: Iterable[str], max_body: int) -> None:
        self.app = app
        self.hosts = frozenset(h.lower().strip("[]") for h in allowed_hosts)
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await _reply(send, *refusal)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.lower() for k, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in SECURITY_HEADERS if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, _bounded(receive, self.max_body), send_with_headers)

    def _refusal(self, scope: Scope, headers: dict[str, str]) -> tuple[int, str, str] | None:
        if "*" not in self.hosts and host_name(headers.get("host", "")) not in self.hosts:
            return 421, "bad_host", "this Host is not served here (LINEWATCH_FEED_ALLOWED_HOSTS)"
        method, path = scope["method"], scope["path"]
        if method in WRITES and path.startswith("/api/"):
            scheme = headers.get("authorization", "").partition(" ")[0]
            if scheme.lower() != "bearer":
                return 401, "unauthorized", "writes need 'Authorization: Bearer <token>'"
        length = headers.get("content-length")
        if length is None:
            if "chunked" in headers.get("transfer-encoding", "").lower():
                return 411, "length_required", "a request body needs a Content-Length"
            return None
        if not length.isdigit():
            return 400, "bad_request", "Content-Length is not a number"
        if int(length) > self.max_body:
            return 413, "too_large", f"request body over {self.max_body} bytes"
        return None


def _bounded(receive: Receive, limit: int) -> Receive:
    """``receive`` that never hands the app more than ``limit`` body bytes."""
    seen = 0

    async def inner() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                return {"type": "http.disconnect"}
        return message

    return inner


async def _reply(send: Send, status: int, code: str, detail: str) -> None:
    body = json.dumps({"error": code, "detail": detail}).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
        *SECURITY_HEADERS,
    ]
    if status == 401:
        headers.append((b"www-authenticate", b"Bearer"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
