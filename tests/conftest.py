"""Shared helpers: a recording WSGI app and a request runner that returns everything a test
asserts on (status, headers, JSON body, whether the app ran and what it saw)."""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from idp import USER_NAME
from werkzeug.test import Client

from jwt_headers import JwtHeadersMiddleware

LOOPBACK = "127.0.0.1"
STRANGER = "203.0.113.9"


#: The frozen "now" of the validation tests (2025-10-09): far from any real token's lifetime.
NOW = 1_760_000_000

#: Minimal option sets for the three user-name formats.
STRING: dict[str, Any] = {"user_name_header": "X-User"}
JSON: dict[str, Any] = {
    "user_name_header": "OIDC_id_token_payload",
    "user_name_format": "json",
    "user_name_json_path": "preferred_username",
}
JWT: dict[str, Any] = {
    "user_name_header": "Authorization",
    "user_name_format": "jwt",
    "user_name_json_path": "preferred_username",
}


class FrozenClock:
    """A clock that only moves when told to, so TTL and expiry tests never sleep."""

    def __init__(self, now: float = NOW) -> None:
        self.now = float(now)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass
class RecordingApp:
    """A WSGI app that remembers the environ of each call."""

    calls: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, environ, start_response):
        self.calls.append(dict(environ))
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    @property
    def called(self) -> bool:
        return bool(self.calls)

    @property
    def environ(self) -> dict[str, Any]:
        return self.calls[-1]


@dataclass
class Answer:
    status: int
    headers: Any
    body: bytes
    app: RecordingApp
    #: The reason codes of the refusals logged while this request was answered (the log
    #: record's ``reason`` attribute), oldest first.
    reasons: list[str] = field(default_factory=list)

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def user(self) -> str | None:
        return self.app.environ.get("REMOTE_USER") if self.app.called else None

    @property
    def principal(self):
        return self.app.environ.get("jwt_headers.principal") if self.app.called else None


class _ReasonLog(logging.Handler):
    """Keeps the ``reason`` of each refusal the calling thread logs."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.thread = threading.get_ident()
        self.reasons: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        reason = getattr(record, "reason", None)
        if reason is not None and record.thread == self.thread:
            self.reasons.append(reason)


@contextlib.contextmanager
def logged_reasons() -> Iterator[list[str]]:
    """The reason codes the middleware logs in this thread inside the ``with`` block."""
    logger = logging.getLogger("jwt_headers")
    handler = _ReasonLog()
    level = logger.level
    logger.addHandler(handler)
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)  # refusals are logged at INFO
    try:
        yield handler.reasons
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def call(
    middleware_or_options: Any = None,
    headers: dict[str, str] | None = None,
    *,
    peer: str = LOOPBACK,
    environ: dict[str, Any] | None = None,
    **options: Any,
) -> Answer:
    """Send one request through a middleware (given, or built from ``options``)."""
    if isinstance(middleware_or_options, JwtHeadersMiddleware):
        middleware = middleware_or_options
        app = middleware.app
    else:
        app = RecordingApp()
        middleware = JwtHeadersMiddleware(app, **options)
    base = {"REMOTE_ADDR": peer}
    base.update(environ or {})
    with logged_reasons() as reasons:
        response = Client(middleware).get("/", headers=headers or {}, environ_base=base)
        body = response.get_data()
    return Answer(response.status_code, response.headers, body, app, reasons)


def assert_invalid_token(answer: Answer, reason: str, fragment: str | None = None) -> None:
    """401 per RFC 6750 with our JSON body, the app never ran, and the refusal logged for it
    has the reason code ``reason`` (so a crash caught as ``internal_error`` never passes for
    a real refusal); ``fragment``, when given, is part of the client's message."""
    assert answer.status == 401, answer.body
    assert not answer.app.called
    assert answer.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.json
    assert body["error"]["code"] == "INVALID_TOKEN"
    assert answer.reasons, "no refusal was logged with a reason code"
    if reason != "internal_error":
        assert "internal_error" not in answer.reasons, answer.reasons
    assert answer.reasons[-1] == reason, answer.reasons
    if fragment is not None:
        assert fragment in body["error"]["message"]


@pytest.fixture
def recording_app() -> RecordingApp:
    return RecordingApp()


def assert_accepted(answer: Answer, name: str = USER_NAME) -> Any:
    """200, the app ran as ``name``; the principal, for further checks."""
    assert answer.status == 200, answer.body
    assert answer.app.called
    assert answer.user == name
    principal = answer.principal
    assert principal is not None
    assert principal.name == name
    return principal


def assert_unavailable(answer: Answer) -> int:
    """R31: 503, whole-number Retry-After >= 1, JSON code IDP_UNAVAILABLE, app not called."""
    assert answer.status == 503, (answer.status, answer.body)
    assert not answer.app.called
    assert answer.headers["Content-Type"] == "application/json"
    retry_after = answer.headers.get("Retry-After")
    assert retry_after is not None
    assert retry_after.isdigit(), retry_after
    assert int(retry_after) >= 1
    assert answer.json["error"]["code"] == "IDP_UNAVAILABLE"
    return int(retry_after)


def wait_until_listening(
    process: subprocess.Popen[bytes], port: int, timeout: float, log: Callable[[], str]
) -> None:
    """Return once a server we started accepts connections on ``port``; fail the test with
    its log if it exits first or is not listening within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}\n--- log:\n{log()}")
        try:
            with socket.create_connection((LOOPBACK, port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                pytest.fail(
                    f"nothing listens on port {port} after {timeout:.0f} s\n--- log:\n{log()}"
                )
            time.sleep(0.05)


def stop_process(process: subprocess.Popen[Any], first: signal.Signals = signal.SIGTERM) -> None:
    """Stop a server a test started, by its PID: ``first`` (SIGTERM: gunicorn and uvicorn stop
    their workers and exit), then SIGKILL when it has not exited within 10 s."""
    if process.poll() is None:
        process.send_signal(first)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
