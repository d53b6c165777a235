"""The ASGI adapter under a real uvicorn on 127.0.0.1 (issue 16, item 2): the FastAPI sample
(``samples/fastapi_app.py``: a dependency returning the Principal, a role-guarded route) and a
Starlette app using ``request.user``, ``request.auth.scopes`` and ``@requires``
(``tests/asgi_starlette_app.py``), with Bearer tokens checked against the fake IdP, a header
from an untrusted peer, and WebSocket handshakes (refused: HTTP 403 before any accept).
"""

from __future__ import annotations

import base64
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import idp
import pytest
from conftest import LOOPBACK, stop_process, wait_until_listening
from idp import ISSUER, USER_NAME, make_key, mint
from test_real_server import Server, free_port

idp_server = idp.idp_server

ROOT = Path(__file__).resolve().parent.parent
TESTS_DIR = ROOT / "tests"
SAMPLES_DIR = ROOT / "samples"
START_TIMEOUT = 30.0


@contextlib.contextmanager
def uvicorn_server(target: str, app_dir: Path, config: dict[str, str]) -> Iterator[Server]:
    """Run ``uvicorn --factory target`` on 127.0.0.1, configured by ``JWT_HEADERS_*``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("JWT_HEADERS_")}
    env.update({f"JWT_HEADERS_{key.upper()}": value for key, value in config.items()})
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "--host",
        LOOPBACK,
        "--port",
        str(port),
        "--app-dir",
        str(app_dir),
        "--no-access-log",
        "--no-proxy-headers",
        target,
    ]
    with tempfile.TemporaryDirectory(prefix="jwt-headers-uvicorn-") as tmp:
        log_path = Path(tmp) / "uvicorn.log"
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                command, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp
            )
        server = Server(port, log_path, process)
        try:
            wait_until_listening(process, port, START_TIMEOUT, server.log)
            yield server
        finally:
            stop_process(process)


def robot_config(server: idp.IdpServer) -> dict[str, str]:
    return {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "roles_source": "jwt",
        "roles_json_path": "resource_access.live-key2.roles",
        "role_converter": "GeoserverAdministrator=ROLE_ADMINISTRATOR",
        "only_external_listed_roles": "true",
        "validate_token": "true",
        "jwks_uri": server.jwks_uri,
        "validate_issuer": "true",
        "issuer": ISSUER,
    }


def bearer(token: str) -> list[tuple[str, str]]:
    return [("Authorization", f"Bearer {token}")]


def upgrade(server: Server, path: str, headers: list[tuple[str, str]]) -> tuple[int, bytes]:
    """A WebSocket handshake by hand: the status line's code and the first bytes after it."""
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {LOOPBACK}:{server.port}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
        *(f"{name}: {value}" for name, value in headers),
    ]
    with socket.create_connection((LOOPBACK, server.port), timeout=10) as sock:
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        if status == 101:
            while len(rest) < 2:
                rest += sock.recv(4096)
        return status, rest


# --------------------------------------------------------------------------- FastAPI sample
@pytest.fixture
def fastapi_server(idp_server) -> Iterator[tuple[Server, idp.IdpServer]]:
    config = {**robot_config(idp_server), "trusted_proxies": "127.0.0.1"}
    with uvicorn_server("fastapi_app:create_app", SAMPLES_DIR, config) as server:
        yield server, idp_server


def test_fastapi_sample_dependency_returns_the_principal(fastapi_server):
    server, provider = fastapi_server
    token = mint(None, provider.key)
    reply = server.get(bearer(token), path="/me")
    assert reply.status == 200, (reply.body, server.log())
    assert reply.json == {"user": USER_NAME, "roles": ["ROLE_ADMINISTRATOR"]}
    assert server.get(bearer(token), path="/admin").json == {"admin": USER_NAME}
    whoami = server.get(bearer(token), path="/whoami").json
    assert whoami == {"user": USER_NAME, "roles": ["ROLE_ADMINISTRATOR"], "anonymous": False}


def test_fastapi_sample_role_guard_and_anonymous(fastapi_server):
    server, provider = fastapi_server
    no_role = mint({"resource_access": {}}, provider.key)
    assert server.get(bearer(no_role), path="/admin").status == 403
    assert server.get(bearer(no_role), path="/me").json["roles"] == []
    anonymous = server.get(path="/admin")
    assert anonymous.status == 401
    assert server.get(path="/whoami").json == {"user": None, "roles": [], "anonymous": True}
    assert server.get(path="/health").json == {"status": "ok"}


def test_fastapi_sample_bad_token_is_the_wsgi_401(fastapi_server):
    server, provider = fastapi_server
    forged = mint(None, make_key("RS256", kid=provider.key.kid))
    reply = server.get(bearer(forged), path="/me")
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert reply.headers["Cache-Control"] == "no-store"
    assert reply.json["error"]["code"] == "INVALID_TOKEN"
    assert "bad_signature" in server.log()
    assert forged not in server.log()  # R35: never a token in a log


def test_fastapi_sample_identity_provider_down_is_503(fastapi_server):
    server, provider = fastapi_server
    provider.jwks_mode = "500"
    reply = server.get(bearer(mint(None, provider.key)), path="/me")
    assert reply.status == 503
    assert reply.headers["Retry-After"].isdigit()
    assert reply.json["error"]["code"] == "IDP_UNAVAILABLE"


# --------------------------------------------------------------------------- Starlette
@pytest.fixture
def starlette_server(idp_server) -> Iterator[tuple[Server, idp.IdpServer]]:
    with uvicorn_server(
        "asgi_starlette_app:create_app", TESTS_DIR, robot_config(idp_server)
    ) as server:
        yield server, idp_server


def test_starlette_requires_and_request_user(starlette_server):
    server, provider = starlette_server
    token = mint(None, provider.key)
    admin = server.get(bearer(token), path="/admin")
    assert admin.status == 200, (admin.body, server.log())
    assert admin.json == {"admin": USER_NAME}
    whoami = server.get(bearer(token), path="/whoami").json
    assert whoami["user"] == USER_NAME
    assert whoami["scopes"] == ["ROLE_ADMINISTRATOR"]
    no_role = mint({"resource_access": {}}, provider.key)
    assert server.get(bearer(no_role), path="/admin").status == 403  # Starlette's requires
    assert server.get(path="/admin").status == 403
    assert server.get(path="/whoami").json["user"] is None


def test_starlette_websocket_refused_before_accept_and_accepted(starlette_server):
    server, provider = starlette_server
    status, _ = upgrade(server, "/ws", bearer(mint({"exp": 1}, provider.key)))
    assert status == 403  # closed with 1008 before accept: uvicorn answers the handshake 403
    status, frame = upgrade(server, "/ws", bearer(mint(None, provider.key)))
    assert status == 101
    assert frame[0] == 0x81  # a text frame: the app ran and sent the user's name


def test_starlette_untrusted_peer_header_is_dropped():
    """A header that proves nothing, from 127.0.0.2 while only 127.0.0.1 is trusted: ignored,
    and gone from ``request.headers``."""
    config = {"user_name_header": "X-User", "trusted_proxies": "127.0.0.1"}
    with uvicorn_server("asgi_starlette_app:create_app", TESTS_DIR, config) as server:
        trusted = server.get([("X-User", "alice")], path="/whoami").json
        assert trusted["user"] == "alice"
        stranger: Any = server.get([("X-User", "mallory")], path="/whoami", source="127.0.0.2")
        assert stranger.json["user"] is None
        assert "x-user" not in stranger.json["headers"]
        assert "untrusted_source_header" in server.log()
