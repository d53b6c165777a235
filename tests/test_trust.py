"""trusted_proxies (R16, R22) and where a header may come from (plain environ key, HTTP_ key,
never a CGI key)."""

from __future__ import annotations

import base64
import json
import logging
import time

import pytest
from conftest import LOOPBACK, STRANGER, RecordingApp, call

from jwt_headers import JwtHeadersMiddleware

LOGGER = "jwt_headers"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_token(claims: dict) -> str:
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims).encode())
    return f"{header}.{payload}.{b64url(b'x' * 32)}"


TOKEN = make_token({"preferred_username": "alice", "roles": ["r1", "r2"]})
JSON_VALUE = json.dumps({"preferred_username": "alice", "roles": ["r1", "r2"]})

STRING = {"user_name_header": "X-User"}
JSON = {
    "user_name_header": "OIDC_id_token_payload",
    "user_name_format": "json",
    "user_name_json_path": "preferred_username",
}
JWT = {
    "user_name_header": "OIDC_access_token",
    "user_name_format": "jwt",
    "user_name_json_path": "preferred_username",
}
BEARER = {**JWT, "user_name_header": "Authorization"}

# (options, HTTP header name, value): every header that proves nothing by itself
UNVERIFIED = [
    pytest.param(STRING, "X-User", "alice", id="string"),
    pytest.param(JSON, "OIDC-Id-Token-Payload", JSON_VALUE, id="json"),
    pytest.param(JWT, "OIDC-Access-Token", TOKEN, id="jwt-unvalidated"),
    pytest.param(BEARER, "Authorization", f"Bearer {TOKEN}", id="bearer-unvalidated"),
]


def http_key(name: str) -> str:
    return "HTTP_" + name.upper().replace("-", "_")


def untrusted_warnings(caplog) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name.startswith(LOGGER)
        and record.levelno == logging.WARNING
        and "untrusted_source_header" in record.getMessage()
    ]


def assert_anonymous(answer) -> None:
    assert answer.status == 200, answer.body
    assert answer.app.called
    assert "REMOTE_USER" not in answer.app.environ
    assert "jwt_headers.principal" not in answer.app.environ


def assert_user(answer, name: str = "alice", roles: tuple[str, ...] | None = None) -> None:
    assert answer.status == 200, answer.body
    assert answer.app.called
    assert answer.app.environ["REMOTE_USER"] == name
    assert answer.principal.name == name
    if roles is not None:
        assert answer.principal.roles == roles


def run(middleware: JwtHeadersMiddleware, environ: dict) -> tuple[str, list, bytes]:
    """Call the middleware with exactly this environ (no test client adding keys)."""
    seen: dict = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers

    body = b"".join(middleware(environ, start_response))
    return seen["status"], seen["headers"], body


# --------------------------------------------------------------------------- R16
@pytest.mark.parametrize(("options", "header", "value"), UNVERIFIED)
def test_unverified_header_from_stranger_is_ignored(caplog, options, header, value):
    """R16: anonymous, app called, the header removed from the environ, a warning logged."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = call(headers={header: value}, peer=STRANGER, **options)
    assert_anonymous(answer)
    assert http_key(header) not in answer.app.environ
    warnings = untrusted_warnings(caplog)
    assert len(warnings) == 1
    message = warnings[0].getMessage()
    assert f"peer={STRANGER}" in message
    assert "header=" in message
    assert value not in message


@pytest.mark.parametrize(("options", "header", "value"), UNVERIFIED)
def test_unverified_header_from_stranger_refused_when_anonymous_not_allowed(
    caplog, options, header, value
):
    caplog.set_level(logging.WARNING, logger=LOGGER)
    answer = call(headers={header: value}, peer=STRANGER, allow_anonymous=False, **options)
    assert answer.status == 401
    assert not answer.app.called
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.json["error"]["code"] == "UNAUTHENTICATED"
    assert untrusted_warnings(caplog)


@pytest.mark.parametrize(("options", "header", "value"), UNVERIFIED)
@pytest.mark.parametrize("peer", [LOOPBACK, "127.9.8.7", "::1"])
def test_unverified_header_from_loopback_is_accepted(caplog, options, header, value, peer):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = call(headers={header: value}, peer=peer, **options)
    assert_user(answer)
    assert not untrusted_warnings(caplog)


@pytest.mark.parametrize(
    ("options", "header"), [(JSON, "OIDC_id_token_payload"), (BEARER, "Authorization")]
)
def test_garbage_from_stranger_is_ignored_not_parsed(caplog, options, header):
    """An untrusted header is treated as absent: no 401 for its malformed content."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = call(headers={header: "{not json . at all"}, peer=STRANGER, **options)
    assert_anonymous(answer)
    assert untrusted_warnings(caplog)


def test_expiry_only_validation_is_not_a_signature_check(caplog):
    """R16: a jwt checked for expiry but not signature still obeys trusted_proxies."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    token = make_token({"preferred_username": "alice", "exp": int(time.time()) + 3600})
    options = {
        **BEARER,
        "validate_token": True,
        "validate_signature": False,
        "validate_expiry": True,
    }
    stranger = call(headers={"Authorization": f"Bearer {token}"}, peer=STRANGER, **options)
    assert_anonymous(stranger)
    assert "HTTP_AUTHORIZATION" not in stranger.app.environ
    assert untrusted_warnings(caplog)
    assert_user(call(headers={"Authorization": f"Bearer {token}"}, peer=LOOPBACK, **options))


@pytest.mark.parametrize(
    "forwarded",
    [
        {"X-Forwarded-For": "127.0.0.1"},
        {"Forwarded": "for=127.0.0.1"},
        {"X-Real-IP": "127.0.0.1"},
    ],
)
def test_forwarded_headers_do_not_confer_trust(caplog, forwarded):
    """R16: trust is decided on REMOTE_ADDR only."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = call(headers={"X-User": "alice", **forwarded}, peer=STRANGER, **STRING)
    assert_anonymous(answer)
    assert untrusted_warnings(caplog)


def test_missing_remote_addr_is_not_trusted(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    app = RecordingApp()
    middleware = JwtHeadersMiddleware(app, **STRING)
    status, _, _ = run(middleware, {"REQUEST_METHOD": "GET", "HTTP_X_USER": "alice"})
    assert status.startswith("200")
    assert app.called
    assert "REMOTE_USER" not in app.environ
    assert "HTTP_X_USER" not in app.environ


@pytest.mark.parametrize("peer", ["not-an-ip", "", "127.0.0.1, 203.0.113.9"])
def test_garbage_remote_addr_is_not_trusted(peer):
    answer = call(headers={"X-User": "alice"}, peer=peer, **STRING)
    assert_anonymous(answer)


# --------------------------------------------------------------------------- trusted_proxies
@pytest.mark.parametrize(
    ("peer", "trusted"),
    [
        ("10.0.0.1", True),
        ("10.255.255.254", True),
        ("192.0.2.7", True),
        ("192.0.2.8", False),
        ("11.0.0.1", False),
        (LOOPBACK, False),  # loopback is no longer listed
        (STRANGER, False),
    ],
)
def test_cidr_entries(caplog, peer, trusted):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    options = {**JSON, "trusted_proxies": ("10.0.0.0/8", "192.0.2.7")}
    answer = call(headers={"OIDC-Id-Token-Payload": JSON_VALUE}, peer=peer, **options)
    if trusted:
        assert_user(answer)
        assert not untrusted_warnings(caplog)
    else:
        assert_anonymous(answer)
        assert "HTTP_OIDC_ID_TOKEN_PAYLOAD" not in answer.app.environ
        assert untrusted_warnings(caplog)


def test_cidr_entry_for_the_stranger_network():
    options = {**STRING, "trusted_proxies": ["203.0.113.0/24"]}
    assert_user(call(headers={"X-User": "alice"}, peer=STRANGER, **options))
    assert_anonymous(call(headers={"X-User": "alice"}, peer="203.0.114.9", **options))


@pytest.mark.parametrize(("options", "header", "value"), UNVERIFIED)
@pytest.mark.parametrize("peer", [STRANGER, "10.1.2.3", "2001:db8::5", LOOPBACK])
def test_star_trusts_every_peer(options, header, value, peer):
    answer = call(headers={header: value}, peer=peer, trusted_proxies=("*",), **options)
    assert_user(answer)


@pytest.mark.parametrize(
    ("trusted_proxies", "peer", "trusted"),
    [
        (("127.0.0.0/8", "::1"), "::1", True),
        (("127.0.0.0/8", "::1"), "2001:db8::1", False),
        (("127.0.0.0/8", "::1"), "::2", False),
        (("2001:db8::/32",), "2001:db8::1", True),
        (("2001:db8::/32",), "2001:db8:ffff::1", True),
        (("2001:db8::/32",), "2001:db9::1", False),
        (("2001:db8::/32",), "::1", False),
        (("::1",), LOOPBACK, False),
    ],
)
def test_ipv6_peers(trusted_proxies, peer, trusted):
    answer = call(headers={"X-User": "alice"}, peer=peer, trusted_proxies=trusted_proxies, **STRING)
    if trusted:
        assert_user(answer)
    else:
        assert_anonymous(answer)
        assert "HTTP_X_USER" not in answer.app.environ


def test_trusted_proxies_default_is_loopback_only():
    assert_user(call(headers={"X-User": "alice"}, peer="127.0.0.1", **STRING))
    assert_user(call(headers={"X-User": "alice"}, peer="::1", **STRING))
    for peer in ("10.0.0.1", "192.168.1.1", "172.16.0.1", STRANGER):
        assert_anonymous(call(headers={"X-User": "alice"}, peer=peer, **STRING))


# --------------------------------------------------------------------------- R22 roles header
HEADER_ROLES = {
    "user_name_header": "OIDC_preferred_username",
    "roles_source": "header",
    "roles_header": "X-Roles",
}


def test_roles_header_from_stranger_ignored_while_user_header_trusted(caplog):
    """R22: a client cannot add roles beside a trusted (plain environ key) user header."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = call(
        environ={"OIDC_preferred_username": "alice"},
        headers={"X-Roles": "ROLE_ADMINISTRATOR"},
        peer=STRANGER,
        **HEADER_ROLES,
    )
    assert_user(answer, roles=())
    assert "HTTP_X_ROLES" not in answer.app.environ
    warnings = untrusted_warnings(caplog)
    assert len(warnings) == 1
    assert "X-Roles" in warnings[0].getMessage()
    assert "ROLE_ADMINISTRATOR" not in warnings[0].getMessage()


def test_roles_header_from_loopback_accepted_with_plain_user_key():
    answer = call(
        environ={"OIDC_preferred_username": "alice"},
        headers={"X-Roles": "r1,r2"},
        peer=LOOPBACK,
        **HEADER_ROLES,
    )
    assert_user(answer, roles=("r1", "r2"))


def test_roles_as_plain_environ_key_trusted_from_stranger():
    answer = call(
        environ={"OIDC_preferred_username": "alice", "X-Roles": "r1,r2"},
        peer=STRANGER,
        **HEADER_ROLES,
    )
    assert_user(answer, roles=("r1", "r2"))


@pytest.mark.parametrize(
    ("source", "roles_header", "value"),
    [
        ("json", "OIDC_id_token_payload", JSON_VALUE),
        ("jwt", "OIDC_access_token", TOKEN),
    ],
)
def test_json_and_unvalidated_jwt_roles_header_from_stranger_ignored(
    caplog, source, roles_header, value
):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    options = {
        "user_name_header": "OIDC_preferred_username",
        "roles_source": source,
        "roles_header": roles_header,
        "roles_json_path": "roles",
    }
    answer = call(
        environ={"OIDC_preferred_username": "alice"},
        headers={roles_header: value},
        peer=STRANGER,
        **options,
    )
    assert_user(answer, roles=())
    assert http_key(roles_header) not in answer.app.environ
    assert untrusted_warnings(caplog)
    trusted = call(
        environ={"OIDC_preferred_username": "alice"},
        headers={roles_header: value},
        peer=LOOPBACK,
        **options,
    )
    assert_user(trusted, roles=("r1", "r2"))


def test_user_and_roles_headers_both_from_stranger_are_dropped(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = call(
        headers={"OIDC-Preferred-Username": "alice", "X-Roles": "ROLE_ADMINISTRATOR"},
        peer=STRANGER,
        **HEADER_ROLES,
    )
    assert_anonymous(answer)
    assert "HTTP_OIDC_PREFERRED_USERNAME" not in answer.app.environ
    assert "HTTP_X_ROLES" not in answer.app.environ
    assert len(untrusted_warnings(caplog)) == 2


# --------------------------------------------------------------------------- plain environ key
@pytest.mark.parametrize(
    ("options", "value"),
    [
        pytest.param(STRING, "alice", id="string"),
        pytest.param(JSON, JSON_VALUE, id="json"),
        pytest.param(JWT, TOKEN, id="jwt"),
        pytest.param(JWT, f"Bearer {TOKEN}", id="jwt-bearer"),
    ],
)
@pytest.mark.parametrize("peer", [STRANGER, LOOPBACK, "2001:db8::1"])
def test_plain_environ_key_is_trusted_from_any_peer(caplog, options, value, peer):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = call(environ={options["user_name_header"]: value}, peer=peer, **options)
    assert_user(answer)
    assert not untrusted_warnings(caplog)


def test_plain_environ_key_wins_over_http_header_from_stranger():
    answer = call(
        environ={"X-User": "alice"}, headers={"X-User": "mallory"}, peer=STRANGER, **STRING
    )
    assert_user(answer)


def test_plain_key_is_the_exact_configured_name():
    """A plain key spelled differently from the configuration is not the header."""
    answer = call(environ={"x_user": "alice", "X_USER": "alice"}, peer=STRANGER, **STRING)
    assert_anonymous(answer)


# --------------------------------------------------------------------------- CGI keys
CGI_KEYS = [
    "AUTH_TYPE",
    "CONTENT_LENGTH",
    "CONTENT_TYPE",
    "GATEWAY_INTERFACE",
    "PATH_INFO",
    "PATH_TRANSLATED",
    "QUERY_STRING",
    "REMOTE_ADDR",
    "REMOTE_HOST",
    "REMOTE_IDENT",
    "REMOTE_USER",
    "REQUEST_METHOD",
    "SCRIPT_NAME",
    "SERVER_NAME",
    "SERVER_PORT",
    "SERVER_PROTOCOL",
    "SERVER_SOFTWARE",
    "REQUEST_URI",
    "SCRIPT_FILENAME",
    "DOCUMENT_ROOT",
    "HTTPS",
    "REMOTE_PORT",
    "wsgi.url_scheme",
    "wsgi.version_text",
]


def test_remote_user_configured_as_user_header_is_never_read():
    """REMOTE_USER from upstream is removed and never taken as the identity header."""
    answer = call(environ={"REMOTE_USER": "admin"}, user_name_header="REMOTE_USER")
    assert_anonymous(answer)
    assert "REMOTE_USER" not in answer.app.environ


@pytest.mark.parametrize("key", CGI_KEYS)
@pytest.mark.parametrize("peer", [LOOPBACK, STRANGER])
def test_cgi_key_never_read_as_identity_header(key, peer):
    app = RecordingApp()
    middleware = JwtHeadersMiddleware(app, user_name_header=key)
    environ = {"REQUEST_METHOD": "GET", "REMOTE_ADDR": peer, key: "alice"}
    if key == "REMOTE_ADDR":
        environ[key] = peer
    status, _, _ = run(middleware, environ)
    assert status.startswith("200")
    assert app.called
    assert "REMOTE_USER" not in app.environ
    assert "jwt_headers.principal" not in app.environ


@pytest.mark.parametrize("key", CGI_KEYS)
def test_cgi_key_counts_as_absent_when_anonymous_not_allowed(key):
    app = RecordingApp()
    middleware = JwtHeadersMiddleware(app, user_name_header=key, allow_anonymous=False)
    environ = {"REQUEST_METHOD": "GET", "REMOTE_ADDR": LOOPBACK, key: "alice"}
    if key == "REMOTE_ADDR":
        environ[key] = LOOPBACK
    status, headers, body = run(middleware, environ)
    assert status.startswith("401")
    assert not app.called
    assert dict(headers)["WWW-Authenticate"] == "Bearer"
    assert json.loads(body)["error"]["code"] == "UNAUTHENTICATED"


@pytest.mark.parametrize("key", ["CONTENT_TYPE", "QUERY_STRING", "REMOTE_USER"])
def test_cgi_key_json_format_never_read(key):
    app = RecordingApp()
    middleware = JwtHeadersMiddleware(
        app, user_name_header=key, user_name_format="json", user_name_json_path="preferred_username"
    )
    environ = {"REQUEST_METHOD": "GET", "REMOTE_ADDR": STRANGER, key: JSON_VALUE}
    status, _, _ = run(middleware, environ)
    assert status.startswith("200")
    assert app.called
    assert "REMOTE_USER" not in app.environ


# --------------------------------------------------------------------------- HTTP_ names
@pytest.mark.parametrize("configured", ["HTTP_X_USER", "http_x_user", "Http-X-User"])
@pytest.mark.parametrize("peer", [STRANGER, LOOPBACK])
def test_http_prefixed_configured_name_never_read_as_plain_key(configured, peer):
    """A client's `X-User` arrives as HTTP_X_USER: it is not a server-set plain key."""
    answer = call(
        environ={"HTTP_X_USER": "alice", configured: "alice"},
        peer=peer,
        user_name_header=configured,
    )
    assert_anonymous(answer)


def test_http_prefixed_configured_name_from_stranger_client_header():
    answer = call(headers={"X-User": "alice"}, peer=STRANGER, user_name_header="HTTP_X_USER")
    assert_anonymous(answer)


def test_http_prefixed_configured_name_as_real_http_header():
    """Positive control: the header literally named HTTP-X-User is read as HTTP_HTTP_X_USER."""
    assert_user(call(headers={"HTTP-X-User": "alice"}, user_name_header="HTTP_X_USER"))
    answer = call(headers={"HTTP-X-User": "alice"}, peer=STRANGER, user_name_header="HTTP_X_USER")
    assert_anonymous(answer)
    assert "HTTP_HTTP_X_USER" not in answer.app.environ


# --------------------------------------------------------------------------- misc
def test_warning_is_logged_for_every_untrusted_request(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    middleware = JwtHeadersMiddleware(RecordingApp(), **STRING)
    for _ in range(3):
        assert_anonymous(call(middleware, headers={"X-User": "alice"}, peer=STRANGER))
    assert len(untrusted_warnings(caplog)) == 3


def test_trusted_then_untrusted_on_one_middleware_do_not_share_results():
    """The token cache must not let a trusted request's result serve an untrusted one."""
    middleware = JwtHeadersMiddleware(RecordingApp(), **JSON)
    headers = {"OIDC-Id-Token-Payload": JSON_VALUE}
    assert_user(call(middleware, headers=headers, peer=LOOPBACK))
    assert_anonymous(call(middleware, headers=headers, peer=STRANGER))
    assert_user(call(middleware, headers=headers, peer=LOOPBACK))


# --------------------------------------------------------------------------- R17
def _star_warnings(caplog) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name.startswith(LOGGER)
        and record.levelno == logging.WARNING
        and "trusted_proxies" in record.getMessage()
        and "*" in record.getMessage()
    ]


@pytest.mark.parametrize(("options", "header", "value"), UNVERIFIED)
def test_star_with_unverified_header_warns_once_at_start_up(caplog, options, header, value):
    """R17: one WARNING when the middleware is built, none per request."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    middleware = JwtHeadersMiddleware(RecordingApp(), trusted_proxies=("*",), **options)
    assert len(_star_warnings(caplog)) == 1
    for _ in range(2):
        assert_user(call(middleware, headers={header: value}, peer=STRANGER))
    assert len(_star_warnings(caplog)) == 1


def test_no_star_warning_with_default_trusted_proxies(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    JwtHeadersMiddleware(RecordingApp(), **STRING)
    assert not _star_warnings(caplog)


def test_same_named_request_header_from_stranger_is_removed_beside_the_server_key(caplog):
    """R16/R18: the server's plain environ key wins, and the client's ``HTTP_`` copy of the same
    header must not reach an app that might read it itself."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = call(
        environ={"OIDC_preferred_username": "alice"},
        headers={"OIDC-preferred-username": "mallory"},
        peer=STRANGER,
        user_name_header="OIDC_preferred_username",
    )
    assert_user(answer)
    assert "HTTP_OIDC_PREFERRED_USERNAME" not in answer.app.environ
    assert "mallory" not in answer.body.decode()


def test_same_named_request_header_from_proxy_is_kept_beside_the_server_key():
    answer = call(
        environ={"OIDC_preferred_username": "alice"},
        headers={"OIDC-preferred-username": "alice"},
        peer=LOOPBACK,
        user_name_header="OIDC_preferred_username",
    )
    assert_user(answer)
    assert answer.app.environ["HTTP_OIDC_PREFERRED_USERNAME"] == "alice"


@pytest.mark.parametrize("peer", [["127.0.0.1"], {"a": 1}, 127, None, b"127.0.0.1"])
def test_non_string_remote_addr_is_an_untrusted_peer_not_an_error(caplog, peer):
    """R16/R37: a broken server's ``REMOTE_ADDR`` (a list is unhashable for the per-address
    memo) is simply not a trusted address: the header is ignored, no 500, no internal_error."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    app = RecordingApp()
    middleware = JwtHeadersMiddleware(app, user_name_header="X-User", allow_anonymous=True)
    status, _, _ = run(
        middleware,
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": peer, "HTTP_X_USER": "alice"},
    )
    assert status.startswith("200")
    assert app.called
    assert app.environ.get("REMOTE_USER") is None
    assert "HTTP_X_USER" not in app.environ
    assert not [r for r in caplog.records if "internal_error" in r.getMessage()]


@pytest.mark.parametrize("value", ["", "   ", "\x85", "\x1f\xa0"])
def test_blank_header_from_stranger_is_removed_too(value):
    """R16, found by the atheris target: a value that is empty or only white space (as Python's
    ``str.strip`` sees it: ``\\x85``, ``\\xa0``...) names nobody, but from an untrusted peer it
    must still be removed before the app, which may read the header itself."""
    app = RecordingApp()
    middleware = JwtHeadersMiddleware(app, user_name_header="X-User")
    status, _, _ = run(
        middleware,
        {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": STRANGER, "HTTP_X_USER": value},
    )
    assert status.startswith("200")
    assert "HTTP_X_USER" not in app.environ
    assert "REMOTE_USER" not in app.environ


def test_blank_header_from_proxy_is_left_in_place():
    app = RecordingApp()
    middleware = JwtHeadersMiddleware(app, user_name_header="X-User")
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "REMOTE_ADDR": LOOPBACK,
        "HTTP_X_USER": " ",
    }
    status, _, _ = run(middleware, environ)
    assert status.startswith("200")
    assert app.environ["HTTP_X_USER"] == " "
