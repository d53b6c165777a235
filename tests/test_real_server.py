"""The headers of headers-examples.md through a real gunicorn in front of the middleware.

In-process tests hand the middleware an environ; this module sends real HTTP to gunicorn serving
``tests/wsgi_echo.py`` (the middleware configured from ``JWT_HEADERS_*`` in front of an app that
echoes what it received), and so also checks what gunicorn does to the header names first:

- the dashed spellings (``OIDC-Id-Token-Payload``) that Apache is told to send in
  deployment-facts.md reach the app and match a configured ``OIDC_id_token_payload``;
- gunicorn (>= 22, default ``--header-map drop``) silently drops the underscore spelling, unless
  ``--forwarder-headers`` names it and the peer is in ``--forwarded-allow-ips``.

Requests go through ``http.client`` so every header name is sent exactly as written. Each server is
started on a free loopback port, polled until it accepts connections (20 s at most) and stopped by
its PID; servers sharing a configuration are module-scoped fixtures.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import stop_process, wait_until_listening

TESTS_DIR = Path(__file__).resolve().parent
START_TIMEOUT = 20.0
LOOPBACK = "127.0.0.1"
# Another loopback address: reaches the server, but is not 127.0.0.1.
OTHER_PEER = "127.0.0.2"

# Copied verbatim from headers-examples.md.
ID_TOKEN_PAYLOAD = '{"exp":1708555947,"iat":1708555647,"auth_time":1708555288,"jti":"42ee833e-89d3-4779-bd9d-06b979329c9f","iss":"http://localhost:7777/realms/dave-test2","aud":"live-key2","sub":"98cfe060-f980-4a05-8612-6c609219ffe9","typ":"ID","azp":"live-key2","nonce":"4PhqmZSJ355KBtJPbAP_PdwqiLnc7B1lA2SGpB0zXr4","session_state":"7712b364-339a-4053-ae0c-7d3adfca9005","at_hash":"2Tyw8q4ZMewuYrD38alCug","acr":"0","sid":"7712b364-339a-4053-ae0c-7d3adfca9005","upn":"david.blasby@geocat.net","resource_access":{"live-key2":{"roles":["GeonetworkAdministrator","GeoserverAdministrator"]}},"email_verified":false,"address":{},"name":"david blasby","groups":["default-roles-dave-test2","offline_access","uma_authorization"],"preferred_username":"david.blasby@geocat.net","given_name":"david","family_name":"blasby","email":"david.blasby@geocat.net"}'
ACCESS_TOKEN = "eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6ICItb0QyZXphcjF3ZHBUUmZCS0NqMFY4cm5ZVkJGQmxJLW5ldzFEREJCNTJrIn0.eyJleHAiOjE3MDg1NTU5NDcsImlhdCI6MTcwODU1NTY0NywiYXV0aF90aW1lIjoxNzA4NTU1Mjg4LCJqdGkiOiI0M2UyYjUwZS1hYjJkLTQ2OWQtYWJjOC01Nzc1YTY0MTMwNTkiLCJpc3MiOiJodHRwOi8vbG9jYWxob3N0Ojc3NzcvcmVhbG1zL2RhdmUtdGVzdDIiLCJhdWQiOiJhY2NvdW50Iiwic3ViIjoiOThjZmUwNjAtZjk4MC00YTA1LTg2MTItNmM2MDkyMTlmZmU5IiwidHlwIjoiQmVhcmVyIiwiYXpwIjoibGl2ZS1rZXkyIiwibm9uY2UiOiI0UGhxbVpTSjM1NUtCdEpQYkFQX1Bkd3FpTG5jN0IxbEEyU0dwQjB6WHI0Iiwic2Vzc2lvbl9zdGF0ZSI6Ijc3MTJiMzY0LTMzOWEtNDA1My1hZTBjLTdkM2FkZmNhOTAwNSIsImFjciI6IjAiLCJyZWFsbV9hY2Nlc3MiOnsicm9sZXMiOlsiZGVmYXVsdC1yb2xlcy1kYXZlLXRlc3QyIiwib2ZmbGluZV9hY2Nlc3MiLCJ1bWFfYXV0aG9yaXphdGlvbiJdfSwicmVzb3VyY2VfYWNjZXNzIjp7ImxpdmUta2V5MiI6eyJyb2xlcyI6WyJHZW9uZXR3b3JrQWRtaW5pc3RyYXRvciIsIkdlb3NlcnZlckFkbWluaXN0cmF0b3IiXX0sImFjY291bnQiOnsicm9sZXMiOlsibWFuYWdlLWFjY291bnQiLCJtYW5hZ2UtYWNjb3VudC1saW5rcyIsInZpZXctcHJvZmlsZSJdfX0sInNjb3BlIjoib3BlbmlkIHBob25lIG9mZmxpbmVfYWNjZXNzIG1pY3JvcHJvZmlsZS1qd3QgcHJvZmlsZSBhZGRyZXNzIGVtYWlsIiwic2lkIjoiNzcxMmIzNjQtMzM5YS00MDUzLWFlMGMtN2QzYWRmY2E5MDA1IiwidXBuIjoiZGF2aWQuYmxhc2J5QGdlb2NhdC5uZXQiLCJlbWFpbF92ZXJpZmllZCI6ZmFsc2UsImFkZHJlc3MiOnt9LCJuYW1lIjoiZGF2aWQgYmxhc2J5IiwiZ3JvdXBzIjpbImRlZmF1bHQtcm9sZXMtZGF2ZS10ZXN0MiIsIm9mZmxpbmVfYWNjZXNzIiwidW1hX2F1dGhvcml6YXRpb24iXSwicHJlZmVycmVkX3VzZXJuYW1lIjoiZGF2aWQuYmxhc2J5QGdlb2NhdC5uZXQiLCJnaXZlbl9uYW1lIjoiZGF2aWQiLCJmYW1pbHlfbmFtZSI6ImJsYXNieSIsImVtYWlsIjoiZGF2aWQuYmxhc2J5QGdlb2NhdC5uZXQifQ.Iq8YJ99s_HBd-gU2zaDqGbJadCE--7PlS2kRHaegYTil7WoNKfjfcH-K-59mHGzJm-V_SefE-iWG63z2c6ChddzhvG8I_O5vDNFoGlGOQFunZC379SqhqhCEdwscEUDkNA3iTTXvK9vn0muStDiv9OzpJ1zcpqYqsgxGbolGgLJgeuK8yNDH7kzDtoRzHiHw2rx4seeVpxUYAjyg_cCkEjRt3wzud7H3xlfQWRx75YfpJ0pnVphuXYR7Z8x9p6hCPtrBfDeriudm-wkwXtcV2LNlXrZ2zpKS_6Zdxzza2lN30q_6DQXHGo8EAIr8SiiQrxPQulNiX9r8XmQ917Ep0g"
PREFERRED_USERNAME = "david.blasby@geocat.net"

EXPECTED_USER = "david.blasby@geocat.net"
CLIENT_ROLES = ["GeonetworkAdministrator", "GeoserverAdministrator"]
REALM_ROLES = ["default-roles-dave-test2", "offline_access", "uma_authorization"]
ID_TOKEN_CLAIM_NAMES = sorted(json.loads(ID_TOKEN_PAYLOAD))
ACCESS_TOKEN_CLAIM_NAMES = sorted(
    json.loads(base64.urlsafe_b64decode(ACCESS_TOKEN.split(".")[1] + "=="))
)

# What mod_auth_openidc's values look like once Apache renames them to dashes
# (deployment-facts.md, working set-up 2): the configuration keeps the underscore names.
DASHED_HEADERS = [
    ("OIDC-Id-Token-Payload", ID_TOKEN_PAYLOAD),
    ("OIDC-Access-Token", ACCESS_TOKEN),
    ("OIDC-Preferred-Username", PREFERRED_USERNAME),
]
DASHED_SEEN = {
    "HTTP_OIDC_ID_TOKEN_PAYLOAD": ID_TOKEN_PAYLOAD,
    "HTTP_OIDC_ACCESS_TOKEN": ACCESS_TOKEN,
    "HTTP_OIDC_PREFERRED_USERNAME": PREFERRED_USERNAME,
}

JSON_USER = {
    "user_name_header": "OIDC_id_token_payload",
    "user_name_format": "json",
    "user_name_json_path": "preferred_username",
}
JSON_ROLES = {
    "roles_source": "json",
    "roles_header": "OIDC_id_token_payload",
    "roles_json_path": "resource_access.live-key2.roles",
}
JWT_USER = {
    "user_name_header": "OIDC_access_token",
    "user_name_format": "jwt",
    "user_name_json_path": "preferred_username",
}


# --------------------------------------------------------------------------- the server


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Server:
    port: int
    log_path: Path
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get(
        self,
        headers: Sequence[tuple[str, str]] = (),
        *,
        source: str = LOOPBACK,
        method: str = "GET",
        path: str = "/",
    ) -> Reply:
        """GET / (or ``method path``, sent exactly as written: no client-side normalising) with
        exactly these header names, from the local address ``source``."""
        conn = http.client.HTTPConnection(
            LOOPBACK, self.port, timeout=10, source_address=(source, 0)
        )
        try:
            conn.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
            for name, value in headers:
                conn.putheader(name, value)
            conn.endheaders()
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        except OSError as exc:
            pytest.fail(f"request to gunicorn failed: {exc!r}\n--- gunicorn log:\n{self.log()}")
        finally:
            conn.close()

    def echo(self, headers: Sequence[tuple[str, str]] = (), *, source: str = LOOPBACK) -> Any:
        """The echo app's JSON; fails unless the app answered (status 200)."""
        reply = self.get(headers, source=source)
        assert reply.status == 200, (reply.status, reply.body, self.log())
        return reply.json


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def gunicorn_server(config: dict[str, str], *extra_args: str) -> Iterator[Server]:
    """Run gunicorn with ``wsgi_echo:app`` configured by ``JWT_HEADERS_<OPTION>=<value>``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("JWT_HEADERS_") and key != "FORWARDED_ALLOW_IPS"
    }
    env.update({f"JWT_HEADERS_{key.upper()}": value for key, value in config.items()})
    env["PYTHONUNBUFFERED"] = "1"
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"{LOOPBACK}:{port}",
        "--workers",
        "1",
        "--no-control-socket",
        "--chdir",
        str(TESTS_DIR),
        *extra_args,
        "wsgi_echo:app",
    ]
    with tempfile.TemporaryDirectory(prefix="jwt-headers-gunicorn-") as tmp:
        log_path = Path(tmp) / "gunicorn.log"
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


# --------------------------------------------------------------------------- JSON payload


@pytest.fixture(scope="module")
def json_server() -> Iterator[Server]:
    """User and roles from the ID token payload; only 127.0.0.1 is a trusted proxy."""
    with gunicorn_server({**JSON_USER, **JSON_ROLES, "trusted_proxies": LOOPBACK}) as server:
        yield server


def test_json_user_and_roles_rows_through_dashed_header(json_server: Server) -> None:
    echo = json_server.echo(DASHED_HEADERS)
    assert echo["user"] == EXPECTED_USER
    assert echo["roles"] == CLIENT_ROLES
    # The user came from the ID token payload (the access token has other claims).
    assert echo["claims_keys"] == ID_TOKEN_CLAIM_NAMES
    assert echo["saw_headers"] == DASHED_SEEN
    assert echo["peer"] == LOOPBACK


def test_default_gunicorn_drops_the_underscore_spelling(json_server: Server) -> None:
    # gunicorn >= 22 (header_map=drop) removes a header with '_' in its name before the app.
    echo = json_server.echo([("OIDC_id_token_payload", ID_TOKEN_PAYLOAD)])
    assert echo["user"] is None
    assert echo["roles"] == []
    assert echo["claims_keys"] is None
    assert echo["saw_headers"] == {}


def test_header_from_untrusted_peer_is_ignored_and_removed(json_server: Server) -> None:
    headers = [("OIDC-Id-Token-Payload", ID_TOKEN_PAYLOAD)]
    trusted = json_server.echo(headers)
    assert trusted["user"] == EXPECTED_USER
    assert trusted["saw_headers"] == {"HTTP_OIDC_ID_TOKEN_PAYLOAD": ID_TOKEN_PAYLOAD}

    log_before = json_server.log()
    stranger = json_server.echo(headers, source=OTHER_PEER)
    assert stranger["peer"] == OTHER_PEER
    assert stranger["user"] is None
    assert stranger["roles"] == []
    assert stranger["claims_keys"] is None
    assert stranger["saw_headers"] == {}

    # A warning is logged (gunicorn's access log is off: only the middleware names the peer),
    # and it does not contain the header value or a claim from it.
    new_log = json_server.log()[len(log_before) :]
    assert OTHER_PEER in new_log, new_log
    assert ID_TOKEN_PAYLOAD not in new_log
    assert "4PhqmZSJ355KBtJPbAP_PdwqiLnc7B1lA2SGpB0zXr4" not in new_log  # the nonce claim


def test_malformed_json_header_is_401_invalid_token(json_server: Server) -> None:
    secret = "s3cr3t-marker-7f1c"
    malformed = '{"preferred_username": "' + secret + '"'  # no closing brace
    reply = json_server.get([("OIDC-Id-Token-Payload", malformed)])
    assert reply.status == 401, reply.body
    challenge = reply.headers["WWW-Authenticate"]
    assert challenge is not None
    assert challenge.startswith('Bearer error="invalid_token"'), challenge
    body = reply.json
    assert body["error"]["code"] == "INVALID_TOKEN", body
    assert "user" not in body  # the echo app did not answer
    assert secret not in reply.body.decode()
    assert secret not in json_server.log()


# --------------------------------------------------------------------------- access token


@pytest.mark.parametrize(
    ("roles_json_path", "expected_roles"),
    [
        ("resource_access.live-key2.roles", CLIENT_ROLES),
        ("realm_access.roles", REALM_ROLES),
    ],
)
def test_jwt_user_and_roles_rows_through_dashed_header(
    roles_json_path: str, expected_roles: list[str]
) -> None:
    config = {
        **JWT_USER,
        "roles_source": "jwt",
        "roles_header": "OIDC_access_token",
        "roles_json_path": roles_json_path,
    }
    with gunicorn_server(config) as server:
        echo = server.echo(DASHED_HEADERS)
    assert echo["user"] == EXPECTED_USER
    assert echo["roles"] == expected_roles
    # The user came from the access token (the ID token payload has other claims).
    assert echo["claims_keys"] == ACCESS_TOKEN_CLAIM_NAMES
    assert echo["saw_headers"] == DASHED_SEEN


# --------------------------------------------------------------------------- plain string


@pytest.fixture(scope="module")
def string_server() -> Iterator[Server]:
    """The plain user-name header, and no anonymous access."""
    config = {"user_name_header": "OIDC_preferred_username", "allow_anonymous": "false"}
    with gunicorn_server(config) as server:
        yield server


def test_string_user_row_through_dashed_header(string_server: Server) -> None:
    echo = string_server.echo(DASHED_HEADERS)
    assert echo["user"] == EXPECTED_USER
    assert echo["roles"] == []
    assert echo["claims_keys"] is None
    assert echo["saw_headers"] == DASHED_SEEN


def test_anonymous_refused_is_401_unauthenticated(string_server: Server) -> None:
    # Only the headers that do not carry the configured user name.
    reply = string_server.get(DASHED_HEADERS[:2])
    assert reply.status == 401, reply.body
    challenge = reply.headers["WWW-Authenticate"]
    assert challenge is not None
    assert challenge.strip() == "Bearer", challenge
    body = reply.json
    assert body["error"]["code"] == "UNAUTHENTICATED", body
    assert "user" not in body


# --------------------------------------------------------------------------- path rules


@pytest.fixture(scope="module")
def rules_server() -> Iterator[Server]:
    """No anonymous access except the health check, the static files and CORS preflights."""
    config = {
        "user_name_header": "X-User",
        "allow_anonymous": "false",
        "exempt_paths": "/healthz, /static/*",
        "protected_paths": "/admin",
    }
    with gunicorn_server(config) as server:
        yield server


@pytest.mark.parametrize(
    ("method", "path"),
    [("GET", "/healthz"), ("GET", "/healthz/live"), ("GET", "/static/css/site.css"),
     ("OPTIONS", "/admin"), ("OPTIONS", "/api/things")],
)  # fmt: skip
def test_exempt_requests_pass_gunicorn_without_a_credential(rules_server, method, path):
    """Issue 13: exempt paths and methods reach the app through a real gunicorn, anonymous,
    even with allow_anonymous=False; a name sent along (here from a trusted peer) is not read."""
    reply = rules_server.get([("X-User", "alice")], method=method, path=path)
    assert reply.status == 200, (reply.status, reply.body)
    if method == "GET":
        assert reply.json["user"] is None


@pytest.mark.parametrize(
    "path",
    ["/", "/healthzz", "/static", "//healthz", "/healthz/../admin", "/static/../admin",
     "/static/%2e%2e/admin", "//admin", "/admin/../healthz", "/admin"],
)  # fmt: skip
def test_non_exempt_paths_through_gunicorn_need_a_credential(rules_server, path):
    """Bypass attempts, sent byte for byte (http.client does not normalise): 401
    UNAUTHENTICATED without a name; with one, the app runs as that user."""
    refused = rules_server.get(path=path)
    assert refused.status == 401, (path, refused.status, refused.body)
    assert refused.json["error"]["code"] == "UNAUTHENTICATED"
    accepted = rules_server.get([("X-User", "alice")], path=path)
    assert accepted.status == 200, (path, accepted.status, accepted.body)
    assert accepted.json["user"] == "alice"


# --------------------------------------------------------------------------- the doctor at run time
def test_doctor_warns_when_gunicorn_drops_the_underscore_header() -> None:
    """Issue 13: the header is configured with '_', gunicorn drops it, the app sees anonymous
    requests and nothing else would say why: after its watch the middleware logs it once, with
    the fix; and no request ever came from trusted_proxies."""
    from jwt_headers.doctor import WATCHED_REQUESTS

    config = {**JSON_USER, "trusted_proxies": "10.0.0.5"}
    with gunicorn_server(config) as server:
        for _ in range(WATCHED_REQUESTS + 1):
            assert (
                server.echo([("OIDC_id_token_payload", '{"preferred_username": "a"}')])["user"]
                is None
            )
        deadline = time.monotonic() + 5
        while "doctor no_trusted_peer" not in server.log() and time.monotonic() < deadline:
            time.sleep(0.05)
        log = server.log()
    dropped = [line for line in log.splitlines() if "doctor dropped" in line]
    assert len(dropped) == 1, log
    assert "gunicorn" in dropped[0]
    assert "'OIDC-id-token-payload'" in dropped[0]
    assert log.count("doctor no_trusted_peer") == 1
    assert log.count("doctor underscore_header") == 1  # the static finding, at start-up


# --------------------------------------------------------------------------- forwarder headers


def test_forwarder_headers_let_the_underscore_spelling_through() -> None:
    # --forwarder-headers replaces gunicorn's default list (SCRIPT_NAME,PATH_INFO); the header is
    # kept only from a peer in --forwarded-allow-ips.
    extra = ("--forwarder-headers", "OIDC_ID_TOKEN_PAYLOAD", "--forwarded-allow-ips", LOOPBACK)
    underscore = [("OIDC_id_token_payload", ID_TOKEN_PAYLOAD)]
    with gunicorn_server({**JSON_USER, **JSON_ROLES}, *extra) as server:
        from_proxy = server.echo(underscore)
        from_other = server.echo(underscore, source=OTHER_PEER)
        dashed_from_other = server.echo(DASHED_HEADERS[:1], source=OTHER_PEER)

    assert from_proxy["user"] == EXPECTED_USER
    assert from_proxy["roles"] == CLIENT_ROLES
    assert from_proxy["claims_keys"] == ID_TOKEN_CLAIM_NAMES
    assert from_proxy["saw_headers"] == {"HTTP_OIDC_ID_TOKEN_PAYLOAD": ID_TOKEN_PAYLOAD}

    # 127.0.0.2 is not in --forwarded-allow-ips: gunicorn drops the underscore header ...
    assert from_other["peer"] == OTHER_PEER
    assert from_other["user"] is None
    assert from_other["saw_headers"] == {}
    # ... although the middleware trusts it (default trusted_proxies 127.0.0.0/8).
    assert dashed_from_other["peer"] == OTHER_PEER
    assert dashed_from_other["user"] == EXPECTED_USER
    assert dashed_from_other["roles"] == CLIENT_ROLES


# --------------------------------------------------------------------------- role conversion


@pytest.mark.parametrize(
    ("role_converter", "only_listed", "expected_roles", "ordered"),
    [
        ("GeoserverAdministrator=ROLE_ADMINISTRATOR", "true", ["ROLE_ADMINISTRATOR"], True),
        (
            "GeoserverAdministrator=ROLE_ADMINISTRATOR",
            "false",
            ["ROLE_ADMINISTRATOR", "GeonetworkAdministrator"],
            False,  # "either order"
        ),
        (
            "GeoserverAdministrator=ROLE_ADMINISTRATOR;GeoserverAdministrator=ADMIN",
            "true",
            ["ROLE_ADMINISTRATOR", "ADMIN"],
            True,
        ),
    ],
)
def test_role_conversion_rows(
    role_converter: str, only_listed: str, expected_roles: list[str], ordered: bool
) -> None:
    config = {
        **JSON_USER,
        **JSON_ROLES,
        "role_converter": role_converter,
        "only_external_listed_roles": only_listed,
    }
    with gunicorn_server(config) as server:
        echo = server.echo(DASHED_HEADERS)
    assert echo["user"] == EXPECTED_USER
    roles = echo["roles"]
    if ordered:
        assert roles == expected_roles
    else:
        assert sorted(roles) == sorted(expected_roles)
        assert len(roles) == len(expected_roles)
