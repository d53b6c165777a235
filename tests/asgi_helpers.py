"""Driving the ASGI adapter in-process: a recording ASGI app and a request runner that returns
what a test asserts on, shaped like conftest's WSGI ``Answer`` (status, headers, body, whether
the app ran and what it saw, the refusal reasons logged)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from conftest import LOOPBACK
from werkzeug.datastructures import Headers

from jwt_headers.asgi import JwtHeadersASGIMiddleware


@dataclass
class RecordingASGIApp:
    """An ASGI app that remembers the scope of each call: 200 ``ok`` for http, accept then
    close 1000 for a WebSocket, the lifespan protocol for lifespan."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    async def __call__(self, scope, receive, send):
        self.calls.append(dict(scope, headers=list(scope.get("headers") or ())))
        if scope["type"] == "http":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/plain")],
                }
            )
            await send({"type": "http.response.body", "body": b"ok"})
        elif scope["type"] == "websocket":
            await receive()  # websocket.connect
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
        elif scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    @property
    def called(self) -> bool:
        return bool(self.calls)

    @property
    def scope(self) -> dict[str, Any]:
        return self.calls[-1]

    def header_keys(self) -> set[str]:
        """The WSGI keys of the headers the app was given (to compare with a WSGI environ)."""
        return {
            "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
            for name, _value in self.scope["headers"]
        }


@dataclass
class ASGIAnswer:
    status: int
    headers: Headers
    body: bytes
    app: RecordingASGIApp
    messages: list[dict[str, Any]]
    reasons: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def principal(self):
        return self.app.scope.get("jwt_headers.principal") if self.app.called else None

    @property
    def user(self) -> str | None:
        principal = self.principal
        return None if principal is None else principal.name


class _AllReasons(logging.Handler):
    """Keeps the ``reason`` of each refusal logged, from any thread (a cold token is decided
    in a worker thread)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        reason = getattr(record, "reason", None)
        if reason is not None:
            self.reasons.append(reason)


@contextlib.contextmanager
def all_reasons() -> Iterator[list[str]]:
    logger = logging.getLogger("jwt_headers")
    handler = _AllReasons()
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield handler.reasons
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def make_scope(
    headers: list[tuple[str, str]] | dict[str, str] | None = None,
    *,
    peer: str | None = LOOPBACK,
    method: str = "GET",
    path: str = "/",
    root_path: str = "",
    kind: str = "http",
    **extra: Any,
) -> dict[str, Any]:
    """An ASGI scope as uvicorn builds it (lower-case header names, latin-1 bytes)."""
    pairs = list(headers.items()) if isinstance(headers, dict) else list(headers or [])
    scope: dict[str, Any] = {
        "type": kind,
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "scheme": "http" if kind == "http" else "ws",
        "path": root_path + path,
        "raw_path": (root_path + path).encode("utf-8"),
        "root_path": root_path,
        "query_string": b"",
        "headers": [
            (name.lower().encode("latin-1"), value.encode("latin-1")) for name, value in pairs
        ],
        "client": (peer, 50000) if peer is not None else None,
        "server": ("127.0.0.1", 8000),
    }
    if kind == "http":
        scope["method"] = method
    scope.update(extra)
    return scope


async def run_scope(middleware: Any, scope: dict[str, Any]) -> list[dict[str, Any]]:
    """Run one scope through ``middleware``; the messages it sent."""
    sent: list[dict[str, Any]] = []
    if scope["type"] == "websocket":
        inbox: list[dict[str, Any]] = [{"type": "websocket.connect"}]
    else:
        inbox = [{"type": "http.request", "body": b"", "more_body": False}]

    async def receive() -> dict[str, Any]:
        if inbox:
            return inbox.pop(0)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await middleware(scope, receive, send)
    return sent


def answer_of(app: RecordingASGIApp, sent: list[dict[str, Any]], reasons: list[str]) -> ASGIAnswer:
    status, headers, body = 0, Headers(), b""
    for message in sent:
        if message["type"] == "http.response.start":
            status = message["status"]
            for name, value in message["headers"]:
                headers.add(name.decode("latin-1"), value.decode("latin-1"))
        elif message["type"] == "http.response.body":
            body += message.get("body", b"")
    return ASGIAnswer(status, headers, body, app, sent, reasons)


def asgi_call(
    *args: Any,
    scope: dict[str, Any] | None = None,
    **options: Any,
) -> ASGIAnswer:
    """Send one request through an ASGI middleware: ``asgi_call([middleware,] [headers,]
    **options)``; the request is built by :func:`make_scope` from ``headers`` and the scope
    keywords ``peer``, ``method``, ``path``, ``root_path``, ``kind``; without a middleware,
    one is built from the remaining ``options``."""
    rest = list(args)
    middleware = rest.pop(0) if rest and isinstance(rest[0], JwtHeadersASGIMiddleware) else None
    headers = rest.pop(0) if rest else None
    assert not rest, rest
    scope_keys = {
        k: options.pop(k) for k in ("peer", "method", "path", "root_path", "kind") if k in options
    }
    if middleware is not None:
        app = middleware.app
    else:
        app = RecordingASGIApp()
        middleware = JwtHeadersASGIMiddleware(app, **options)
    if scope is None:
        scope = make_scope(headers, **scope_keys)
    with all_reasons() as reasons:
        sent = asyncio.run(run_scope(middleware, scope))
    return answer_of(app, sent, reasons)
