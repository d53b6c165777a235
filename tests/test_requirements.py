"""One test per security requirement (security.md R1-R37, C1-C2) that no other module names,
and a guard that every requirement stays named by some test.

Other modules cover most requirements in depth; the tests here close the gaps in *naming* (a
requirement with no ``test_rNN_...`` is invisible to anyone auditing the suite) and in
*behaviour* where the existing tests stopped short: R17's warning from a config built once,
R18 with every way a client can smuggle an identity in, R22 for a Bearer robot, R26's memory per
cached token, R32's negative cache expiring, R33 against a separate attacker server, R34's full
response shape, R36 for every user-controlled string that reaches a log line, R37 for environ
values no WSGI server would send, C1 and C2 for each start-up option.

Each test drives the middleware from the outside (WSGI calls, a real fake identity provider,
captured log records) rather than inspecting its internals, so a refactoring that keeps the
behaviour keeps the tests green and one that breaks a requirement turns them red.
"""

from __future__ import annotations

import ast
import gc
import json
import logging
import re
import tracemalloc
from pathlib import Path
from typing import Any

import idp
import pytest
from conftest import (
    JSON,
    JWT,
    LOOPBACK,
    NOW,
    STRANGER,
    STRING,
    Answer,
    FrozenClock,
    RecordingApp,
    assert_invalid_token,
    call,
)
from idp import ISSUER, USER_NAME, IdpServer, compact_jws, dead_url, make_key, mint

from jwt_headers import ConfigError, JwtHeadersConfig, JwtHeadersMiddleware, Principal

idp_server = idp.idp_server  # the pytest fixture, bound here so pytest finds it

LOGGER = "jwt_headers"
LONG_EXP = NOW + 10 * 86400

JSON_VALUE = json.dumps({"preferred_username": "alice", "roles": ["reader"]})
#: An unsigned-but-well-formed token; validation is off wherever it is used.
UNCHECKED_TOKEN = compact_jws({"alg": "RS256"}, {"preferred_username": "alice"}, b"s" * 32)


# --------------------------------------------------------------------------- helpers


def robot_options(server: IdpServer, **extra: Any) -> dict[str, Any]:
    """D2: a Bearer JWT checked by signature (the fake IdP's JWKS) and issuer."""
    options: dict[str, Any] = {
        **JWT,
        "validate_token": True,
        "jwks_uri": server.jwks_uri,
        "validate_issuer": True,
        "issuer": ISSUER,
        "http_connect_timeout": 0.5,
        "http_read_timeout": 0.5,
    }
    options.update(extra)
    return options


def run(middleware: Any, environ: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    """Call the middleware with exactly this environ: no test client normalising the values,
    so the test controls what a broken or hostile server could put there."""
    seen: dict[str, Any] = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, headers

    body = b"".join(middleware(environ, start_response))
    return seen["status"], seen["headers"], body


def records(caplog: pytest.LogCaptureFixture, level: int | None = None) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name.startswith(LOGGER) and (level is None or record.levelno == level)
    ]


def assert_anonymous(answer: Answer) -> None:
    assert answer.status == 200, answer.body
    assert answer.app.called
    assert "REMOTE_USER" not in answer.app.environ
    assert "jwt_headers.principal" not in answer.app.environ


# --------------------------------------------------------------------------- R15
@pytest.mark.parametrize(
    "configured",
    [
        "OIDC_id_token_payload",
        "oidc-id-token-payload",
        "OIDC-ID-TOKEN-PAYLOAD",
        "Oidc_Id-Token_PAYLOAD",
    ],
)
@pytest.mark.parametrize(
    "sent", ["OIDC-Id-Token-Payload", "oidc_id_token_payload", "OIDC_ID_TOKEN_PAYLOAD"]
)
def test_r15_header_names_match_case_insensitively_with_dash_and_underscore_alike(configured, sent):
    """R15: WSGI servers upper-case header names and turn ``-`` into ``_`` (every spelling sent
    here arrives as ``HTTP_OIDC_ID_TOKEN_PAYLOAD``), so the name an operator configures must match
    however it is written; otherwise the dashed rename that gunicorn needs (deployment-facts.md)
    would silently make everyone anonymous. The roles header follows the same rule."""
    answer = call(
        headers={sent: JSON_VALUE, "x_roles": "reader, writer"},
        peer=LOOPBACK,
        **{
            **JSON,
            "user_name_header": configured,
            "roles_source": "header",
            "roles_header": "X-Roles",
        },
    )
    assert answer.status == 200, answer.body
    assert answer.user == "alice"
    assert answer.principal.roles == ("reader", "writer")


# --------------------------------------------------------------------------- R17
UNVERIFIED_USER = [
    pytest.param(STRING, id="string"),
    pytest.param(JSON, id="json"),
    pytest.param({**JWT, "user_name_header": "OIDC_access_token"}, id="jwt-unvalidated"),
    pytest.param(
        {**JWT, "validate_token": True, "validate_signature": False},
        id="jwt-expiry-only",
    ),
]


def _star_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in records(caplog, logging.WARNING) if "trusted_proxies" in r.getMessage()]


@pytest.mark.parametrize("options", UNVERIFIED_USER)
def test_r17_star_trust_with_unverified_user_header_warns_once_at_start_up(caplog, options):
    """R17: ``trusted_proxies=("*",)`` with a user header that proves nothing lets any client
    that reaches the port choose its user. The operator must hear it once, at WARNING, when the
    middleware is built (naming the header and telling how to narrow the list), and not once per
    request, where it would drown in traffic and be ignored."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    app = RecordingApp()
    middleware = JwtHeadersMiddleware(app, trusted_proxies=("*",), **options)
    warnings = _star_warnings(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    message = warnings[0].getMessage()
    assert options["user_name_header"] in message
    assert "*" in message

    value = {
        "string": "alice",
        "json": JSON_VALUE,
        "jwt": _expiring_token() if options.get("validate_token") else UNCHECKED_TOKEN,
    }[options.get("user_name_format", "string")]
    for peer in (STRANGER, LOOPBACK, STRANGER):
        call(middleware, headers={options["user_name_header"]: value}, peer=peer)
    assert app.called
    assert len(_star_warnings(caplog)) == 1


def _expiring_token() -> str:
    claims = {"preferred_username": "alice", "exp": 4_000_000_000}
    return compact_jws({"alg": "RS256"}, claims, b"s" * 32)


def test_r17_no_star_warning_for_a_signature_checked_bearer_or_a_narrow_list(caplog):
    """R17: the warning must mean something: a signature-checked Bearer token proves itself
    whatever the peer, and the default loopback list is already narrow, so neither warns."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    checked = {
        **JWT,
        "validate_token": True,
        "jwks_uri": dead_url(),
        "validate_issuer": True,
        "issuer": ISSUER,
    }
    JwtHeadersMiddleware(RecordingApp(), trusted_proxies=("*",), **checked)
    JwtHeadersMiddleware(RecordingApp(), **STRING)
    assert not _star_warnings(caplog)


# --------------------------------------------------------------------------- R18
SMUGGLED = Principal(name="mallory", roles=("ROLE_ADMINISTRATOR",))


@pytest.mark.parametrize(
    ("headers", "peer", "expected"),
    [
        pytest.param({}, LOOPBACK, None, id="no-identity-header"),
        pytest.param({"X-User": "alice"}, STRANGER, None, id="untrusted-peer"),
        pytest.param({"X-User": "alice"}, LOOPBACK, "alice", id="our-own-result"),
        pytest.param({"Remote-User": "admin"}, LOOPBACK, None, id="remote-user-http-header"),
        pytest.param(
            {"Remote-User": "admin", "X-User": "alice"}, LOOPBACK, "alice", id="both-headers"
        ),
    ],
)
def test_r18_client_supplied_identity_never_reaches_the_app(headers, peer, expected):
    """R18: a ``REMOTE_USER`` or ``jwt_headers.principal`` already in the environ (set by a
    server, an outer middleware or a misconfigured proxy) and a client's ``Remote-User:``
    header are never the identity: the app sees only what the middleware established, or
    nothing at all."""
    answer = call(
        headers=headers,
        peer=peer,
        environ={"REMOTE_USER": "mallory", "jwt_headers.principal": SMUGGLED},
        **STRING,
    )
    assert answer.status == 200, answer.body
    seen = answer.app.environ
    if expected is None:
        assert "REMOTE_USER" not in seen
        assert "jwt_headers.principal" not in seen
    else:
        assert seen["REMOTE_USER"] == expected
        assert seen["jwt_headers.principal"] is not SMUGGLED
        assert seen["jwt_headers.principal"].name == expected
        assert seen["jwt_headers.principal"].roles == ()


# --------------------------------------------------------------------------- R19
def test_r19_several_identity_values_never_resolve_to_the_first(idp_server):
    """R19: two valid tokens for different users in one request are an ambiguity an attacker
    can exploit (whichever one a component reads first wins), so the request is refused rather
    than resolved. Both tokens here are genuinely valid: the refusal can only come from their
    number, not from either token."""
    alice = mint({"preferred_username": "alice"}, idp_server.key)
    bob = mint({"preferred_username": "bob"}, idp_server.key)
    header_token = robot_options(idp_server, user_name_header="OIDC_access_token")
    bearer = robot_options(idp_server)

    # Control: each token alone is accepted.
    assert call(headers={"OIDC-Access-Token": alice}, peer=STRANGER, **header_token).user == (
        "alice"
    )
    assert call(headers={"Authorization": f"Bearer {bob}"}, **bearer).user == "bob"

    both = call(
        headers={"OIDC-Access-Token": alice, "Authorization": f"Bearer {bob}"},
        peer=STRANGER,
        **header_token,
    )
    repeated_bearer = call(headers={"Authorization": f"Bearer {alice}, Bearer {bob}"}, **bearer)
    repeated_bare = call(headers={"Authorization": f"{alice},{bob}"}, **bearer)
    # R19 allows a 400; the contract defines no 400 body, so we answer 401 invalid_token
    assert_invalid_token(both, "conflicting_credentials")
    assert_invalid_token(repeated_bearer, "repeated_header")
    assert_invalid_token(repeated_bare, "repeated_header")


# --------------------------------------------------------------------------- R21
def test_r21_only_listed_external_roles_reach_the_principal(caplog):
    """R21: with ``only_external_listed_roles`` an IdP-side role that happens to be spelled like
    an internal one (``ROLE_ADMINISTRATOR``), or a near-miss of a listed one (case, white
    space), must not be granted: matching is exact. Non-string values are never stringified
    into roles (``true`` is not a role), and say so at DEBUG for the operator."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    options = {
        **JSON,
        "roles_source": "json",
        "roles_json_path": "roles",
        "role_converter": "GeoserverAdministrator=ROLE_ADMINISTRATOR;reader=ROLE_READER",
    }
    roles = [
        "ROLE_ADMINISTRATOR",
        "geoserveradministrator",
        "GeoserverAdministrator ",
        "Reader",
        "reader",
        1,
        None,
        True,
        {"name": "ROLE_ADMINISTRATOR"},
    ]
    value = json.dumps({"preferred_username": "alice", "roles": roles})

    listed = call(
        headers={"OIDC_id_token_payload": value}, only_external_listed_roles=True, **options
    )
    assert listed.status == 200, listed.body
    assert listed.principal.roles == ("ROLE_READER",)

    admin = json.dumps({"preferred_username": "alice", "roles": ["GeoserverAdministrator"]})
    granted = call(
        headers={"OIDC_id_token_payload": admin}, only_external_listed_roles=True, **options
    )
    assert granted.principal.roles == ("ROLE_ADMINISTRATOR",)

    unlisted = call(headers={"OIDC_id_token_payload": value}, **options)
    assert unlisted.status == 200, unlisted.body
    for role in unlisted.principal.roles:
        assert isinstance(role, str)
        assert role not in {"1", "None", "True", "true", "null"}
        assert not role.startswith("{")
    assert any(r.levelno == logging.DEBUG and "role" in r.getMessage() for r in records(caplog))


# --------------------------------------------------------------------------- R22
def test_r22_untrusted_peer_cannot_add_roles_to_a_bearer_robot(idp_server, caplog):
    """R22: a robot's Bearer token is accepted from any peer because its signature proves it,
    but a roles header beside it proves nothing: from a peer outside ``trusted_proxies`` it is
    dropped (and removed from the environ, so the app cannot read it either), while the robot
    itself still gets in with no extra roles. From Apache's address the same header counts."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    options = robot_options(
        idp_server,
        roles_source="header",
        roles_header="X-Roles",
        trust_unvalidated_roles_header=True,
        role_converter="admin=ROLE_ADMINISTRATOR",
    )
    middleware = JwtHeadersMiddleware(RecordingApp(), **options)
    token = mint(None, idp_server.key)
    headers = {"Authorization": f"Bearer {token}", "X-Roles": "admin"}

    from_stranger = call(middleware, headers=headers, peer=STRANGER)
    assert from_stranger.status == 200, from_stranger.body
    assert from_stranger.user == USER_NAME
    assert from_stranger.principal.roles == ()
    assert "HTTP_X_ROLES" not in from_stranger.app.environ
    assert any(
        "untrusted_source_header" in r.getMessage() and "X-Roles" in r.getMessage()
        for r in records(caplog, logging.WARNING)
    )

    middleware.app = RecordingApp()
    from_proxy = call(middleware, headers=headers, peer=LOOPBACK)
    assert from_proxy.principal.roles == ("ROLE_ADMINISTRATOR",)

    middleware.app = RecordingApp()  # the trusted result is not served to the stranger later
    again = call(middleware, headers=headers, peer=STRANGER)
    assert again.principal.roles == ()


# --------------------------------------------------------------------------- R26
def test_r26_a_cached_token_costs_at_most_4_kb():
    """R26: the token cache is what makes the hot path cheap, and it holds thousands of entries;
    each must stay within 4 KB (a Keycloak access token of ~1.5 KB included), or a busy site
    pays for the cache in memory instead of CPU. Measured with tracemalloc over 400 distinct
    real tokens, each then checked to be a cache hit (a cache that kept nothing would pass the
    size bound trivially)."""
    count = 400
    with IdpServer([make_key("ES256")]) as server:
        seen: list[Any] = []

        def app(environ, start_response):
            seen.append(environ.get("jwt_headers.principal"))
            start_response("200 OK", [])
            return [b"ok"]

        middleware = JwtHeadersMiddleware(
            app,
            **robot_options(server),
            roles_source="jwt",
            roles_json_path="realm_access.roles",
        )
        tokens = [mint(None, server.key) for _ in range(count + 1)]

        def send(token: str) -> None:
            environ = {"REMOTE_ADDR": STRANGER, "HTTP_AUTHORIZATION": "Bearer " + token}
            status, _, _ = run(middleware, environ)
            assert status.startswith("200"), status

        send(tokens.pop())  # key set fetched, lazy imports done: not part of the measurement
        seen.clear()
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for token in tokens:
                send(token)
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        first = list(seen)
        seen.clear()
        for token in tokens[::40]:
            send(token)
    per_token = (after - before) / count
    assert per_token <= 4096, f"{per_token:.0f} bytes per cached token"
    assert all(again is first[i * 40] for i, again in enumerate(seen)), "not served from cache"
    assert server.jwks_requests == 1


# --------------------------------------------------------------------------- R32
def test_r32_userinfo_401_remembered_for_negative_cache_ttl_then_asked_again(idp_server):
    """R32: a token the IdP's userinfo refused (401) is remembered briefly, so a client
    replaying it cannot turn us into an amplifier against the IdP; but only for
    ``negative_cache_ttl``, because the IdP's verdict may change (a re-enabled account)."""
    clock = FrozenClock()
    middleware = JwtHeadersMiddleware(
        RecordingApp(),
        clock=clock,
        **robot_options(
            idp_server,
            validate_userinfo=True,
            userinfo_endpoint=idp_server.userinfo_endpoint,
            negative_cache_ttl=10,
        ),
    )
    token = mint({"exp": LONG_EXP}, idp_server.key, now=NOW)
    idp_server.userinfo_mode = "401"

    for _ in range(5):
        assert_invalid_token(
            call(middleware, headers={"Authorization": f"Bearer {token}"}), "userinfo_rejected"
        )
    assert idp_server.userinfo_requests == 1

    clock.advance(9)
    assert_invalid_token(
        call(middleware, headers={"Authorization": f"Bearer {token}"}), "userinfo_rejected"
    )
    assert idp_server.userinfo_requests == 1

    clock.advance(2)  # past negative_cache_ttl: the IdP is asked again, and now accepts
    idp_server.userinfo_mode = "ok"
    middleware.app = RecordingApp()
    answer = call(middleware, headers={"Authorization": f"Bearer {token}"})
    assert answer.status == 200, answer.body
    assert idp_server.userinfo_requests == 2


# --------------------------------------------------------------------------- R33
def test_r33_token_content_never_chooses_an_outbound_url(idp_server):
    """R33 (A4, SSRF): a token can name any URL in ``jku``, ``x5u``, ``kid``, ``iss`` or an
    embedded ``jwk``/``x5c``. None of them may cause a request: an attacker-run server (a
    separate one here, so a hit cannot be confused with the real IdP) sees nothing, on a cold
    start (the very first key-set fetch) as much as later, with userinfo on too."""
    with IdpServer() as attacker:
        middleware = JwtHeadersMiddleware(
            RecordingApp(),
            **robot_options(
                idp_server,
                validate_issuer=False,
                validate_userinfo=True,
                userinfo_endpoint=idp_server.userinfo_endpoint,
            ),
        )
        bait_headers = {
            "jku": attacker.url("/jwks"),
            "x5u": attacker.url("/cert.pem"),
            "jwk": attacker.key.public_jwk(),
            "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
        }
        bait_claims = {"iss": attacker.url("/realms/evil")}
        tokens = [
            # the real key with bait around it: accepted, the bait ignored
            mint(bait_claims, idp_server.key, headers=bait_headers),
            # the attacker's key, its own kid: unknown key
            mint(bait_claims, attacker.key, headers=bait_headers),
            # the attacker's key under the real kid: bad signature
            mint(bait_claims, attacker.key, headers={**bait_headers, "kid": idp_server.key.kid}),
            # a kid that is a URL
            mint(bait_claims, attacker.key, headers={"kid": attacker.url("/kid")}),
        ]
        answers = []
        for token in tokens:
            middleware.app = RecordingApp()  # so `app.called` is about this request only
            answers.append(
                call(middleware, headers={"Authorization": f"Bearer {token}"}, peer=STRANGER)
            )
        assert attacker.total_requests == 0, [r.raw_path for r in attacker.requests]
    assert answers[0].status == 200, answers[0].body
    for answer in answers[1:]:  # signed by the attacker: no such kid, or not the IdP's key
        assert_invalid_token(answer, answer.reasons[-1] if answer.reasons else "none logged")
        assert answer.reasons[-1] in ("unknown_key", "bad_signature")
    assert {r.path for r in idp_server.requests} == {"/jwks", "/userinfo"}


# --------------------------------------------------------------------------- R34
class CookieApp(RecordingApp):
    """An app that would set a session cookie: if it ever ran on a refused request, the
    cookie would show in the answer."""

    def __call__(self, environ, start_response):
        self.calls.append(dict(environ))
        start_response("200 OK", [("Content-Type", "text/plain"), ("Set-Cookie", "session=1")])
        return [b"ok"]


REFUSALS = [
    pytest.param(JWT, {"Authorization": "Bearer not.a-token"}, "malformed", id="malformed"),
    pytest.param(JWT, {"Authorization": "Bearer " + "a" * 20000}, "oversized", id="oversized"),
    pytest.param(
        JWT,
        {"Authorization": "Bearer " + compact_jws({"alg": "none"}, {"preferred_username": "a"})},
        "malformed",
        id="alg-none",
    ),
    pytest.param(
        {**JWT, "validate_token": True, "validate_signature": False},
        {"Authorization": f"Bearer {UNCHECKED_TOKEN}"},
        "no_valid_exp",
        id="no-exp",
    ),
    pytest.param(
        JSON, {"OIDC_id_token_payload": '{"preferred_username": '}, "malformed", id="bad-json"
    ),
    pytest.param(
        {**STRING, "denied_user_names": "root"}, {"X-User": "root"}, "denied_user_name", id="denied"
    ),
]


@pytest.mark.parametrize(("options", "headers", "reason"), REFUSALS)
def test_r34_refusal_has_the_rfc6750_shape_and_nothing_more(options, headers, reason):
    """R34: a refusal is 401 with ``WWW-Authenticate: Bearer error="invalid_token"``, a JSON body
    of exactly ``{"error": {"code": "INVALID_TOKEN", "message": ...}}``, the app not called,
    no ``Set-Cookie`` (nothing may start or refresh a session on a refused request) and
    ``Cache-Control: no-store`` (no cache in between may replay a refusal to another client).
    The optional error_description carries no token data."""
    middleware = JwtHeadersMiddleware(CookieApp(), **options)
    answer = call(middleware, headers=headers)
    assert_invalid_token(answer, reason)
    assert answer.json == {
        "error": {"code": "INVALID_TOKEN", "message": answer.json["error"]["message"]}
    }
    assert isinstance(answer.json["error"]["message"], str)
    assert answer.json["error"]["message"]
    assert "Set-Cookie" not in answer.headers
    assert "no-store" in answer.headers.get("Cache-Control", "")
    challenge = answer.headers["WWW-Authenticate"]
    for value in headers.values():
        token = value.removeprefix("Bearer ")
        for secret in {value, token, *token.split(".")} - {""}:
            if len(secret) >= 8:
                assert secret not in challenge
                assert secret not in answer.body.decode()


def test_r34_other_refusals_share_the_hygiene():
    """R34/R31: the 503 of an unreachable IdP and the 401 of a missing identity are refusals
    too: app not called, JSON body, no cookie, not cacheable; the 503 says when to retry."""
    unreachable = JwtHeadersMiddleware(
        CookieApp(),
        **JWT,
        validate_token=True,
        jwks_uri=dead_url(),
        validate_issuer=True,
        issuer=ISSUER,
        http_connect_timeout=0.5,
        http_read_timeout=0.5,
    )
    down = call(unreachable, headers={"Authorization": f"Bearer {UNCHECKED_TOKEN}"})
    assert down.status == 503
    assert down.json["error"]["code"] == "IDP_UNAVAILABLE"
    assert down.headers["Retry-After"].isdigit()
    assert int(down.headers["Retry-After"]) >= 1

    anonymous = call(JwtHeadersMiddleware(CookieApp(), allow_anonymous=False, **STRING))
    assert anonymous.status == 401
    assert anonymous.headers["WWW-Authenticate"] == "Bearer"
    assert anonymous.json["error"]["code"] == "UNAUTHENTICATED"

    for answer in (down, anonymous):
        assert not answer.app.called
        assert answer.headers["Content-Type"] == "application/json"
        assert "Set-Cookie" not in answer.headers
        assert "no-store" in answer.headers.get("Cache-Control", "")


# --------------------------------------------------------------------------- R36
INJECTED = "\r\nINFO forged_line user=admin"


def test_r36_user_controlled_strings_in_logs_are_truncated_and_escaped(caplog):
    """R36: whatever a client controls and we log (an ``alg``, a peer address) is cut short and
    has control characters escaped, so one request cannot forge a second log line (CR/LF), paint
    a terminal (ESC) or flood the log with a megabyte of "address". The escaped form must still
    be there: the operator needs to see what was sent."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    tail = "TAIL-MARKER-beyond-any-sane-limit"
    validated = JwtHeadersMiddleware(
        RecordingApp(),
        **JWT,
        validate_token=True,
        jwks_uri=dead_url(),
        validate_issuer=True,
        issuer=ISSUER,
    )
    alg = "RS256" + INJECTED + "x" * 40 + tail
    token = compact_jws({"alg": alg, "kid": "k"}, {"preferred_username": "a"}, b"s" * 64)
    assert_invalid_token(
        call(validated, headers={"Authorization": f"Bearer {token}"}), "alg_not_allowed"
    )

    peer = "203.0.113.9" + INJECTED + "\x1b[31m" + "9" * 300 + tail
    assert_anonymous(call(headers={"X-User": "alice"}, peer=peer, **STRING))

    name = "alice" + INJECTED
    assert_invalid_token(call(environ={"HTTP_X_USER": name}, **STRING), "bad_user_name")
    document = json.dumps({"preferred_username": name})
    assert_invalid_token(call(headers={"OIDC_id_token_payload": document}, **JSON), "bad_user_name")

    messages = [r.getMessage() for r in records(caplog)]
    assert any("alg=" in m for m in messages), messages
    assert any("untrusted_source_header" in m for m in messages), messages
    for message in messages:
        assert "\r" not in message, message
        assert "\n" not in message, message
        assert "\x1b" not in message, message
        assert tail not in message, message
        assert "forged_line" not in message or "\\r\\n" in message, message
    assert any("\\r\\n" in m for m in messages if "alg=" in m)


# --------------------------------------------------------------------------- R37
class AppBoom(Exception):
    """An exception only the wrapped app raises."""


def test_r37_exception_from_the_wrapped_app_is_the_same_object():
    """R37: the app's own exceptions belong to the server's error handling (and to the
    developer's traceback); the middleware must neither swallow them into a 401/500 nor
    replace them with another exception."""
    error = AppBoom("from the app")

    def raising_app(environ, start_response):
        raise error

    def raising_while_iterated(environ, start_response):
        start_response("200 OK", [])
        yield b"partial"
        raise error

    for environ in ({}, {"HTTP_X_USER": "alice"}):
        with pytest.raises(AppBoom) as caught:
            run(JwtHeadersMiddleware(raising_app, **STRING), {"REMOTE_ADDR": LOOPBACK, **environ})
        assert caught.value is error
        with pytest.raises(AppBoom) as caught:
            run(
                JwtHeadersMiddleware(raising_while_iterated, **STRING),
                {"REMOTE_ADDR": LOOPBACK, **environ},
            )
        assert caught.value is error


def test_r37_iterable_from_the_wrapped_app_is_served_and_closed():
    """R37/PEP 3333: the app's iterable reaches the server as is: every chunk in order, and its
    ``close()`` still reachable (a streaming app releases files and connections there)."""

    class Body:
        closed = False

        def __iter__(self):
            return iter([b"one", b"two"])

        def close(self):
            Body.closed = True

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return Body()

    def generator_app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield from (b"a", b"b", b"c")

    environ = {"REMOTE_ADDR": LOOPBACK, "HTTP_X_USER": "alice"}
    result = JwtHeadersMiddleware(app, **STRING)(dict(environ), lambda *a: None)
    assert b"".join(result) == b"onetwo"
    result.close()
    assert Body.closed
    status, _, body = run(JwtHeadersMiddleware(generator_app, **STRING), dict(environ))
    assert status.startswith("200")
    assert body == b"abc"


WEIRD_VALUES = [
    b"alice",
    None,
    42,
    ["alice"],
    {"user": "alice"},
    object(),
    "",
    "\x00",
    "alice\r\nX-Admin: 1",
    "\udce9\udcff",
    "Bearer \udce9.a.b",
    ",,,",
    "Bearer",
    "{" * 5000,
    "x" * 70000,
]
WEIRD_PEERS = [
    None,
    b"127.0.0.1",
    42,
    ["127.0.0.1"],
    {"a": 1},
    "",
    "not-an-ip",
    "127.0.0.1\n",
    "::1%",
]


def test_r37_no_request_input_yields_500_or_an_exception():
    """R37: a WSGI server, an outer middleware or a test harness can put anything in the
    environ: bytes, ``None``, lists, lone surrogates, absurd sizes, no ``REMOTE_ADDR`` at all.
    None of it may crash the middleware or produce a 500: the answer is a pass (200), a
    refusal (401) or, with validation against an unreachable IdP, a 503."""
    unreachable = dead_url()
    configs = [
        STRING,
        JSON,
        JWT,
        {
            **JWT,
            "validate_token": True,
            "jwks_uri": unreachable,
            "validate_issuer": True,
            "issuer": ISSUER,
            "roles_source": "header",
            "roles_header": "X-Roles",
            "trust_unvalidated_roles_header": True,
            "http_connect_timeout": 0.2,
            "http_read_timeout": 0.2,
        },
    ]
    for options in configs:
        middleware = JwtHeadersMiddleware(RecordingApp(), **options)
        for value in WEIRD_VALUES:
            for peer in [*WEIRD_PEERS, "absent"]:
                environ: dict[str, Any] = {
                    "REQUEST_METHOD": "GET",
                    "HTTP_X_USER": value,
                    "HTTP_AUTHORIZATION": value,
                    "HTTP_OIDC_ID_TOKEN_PAYLOAD": value,
                    "OIDC_id_token_payload": value,
                    "HTTP_X_ROLES": value,
                    "REMOTE_USER": value,
                    "jwt_headers.principal": value,
                }
                if peer != "absent":
                    environ["REMOTE_ADDR"] = peer
                status, headers, body = run(middleware, environ)
                code = int(status.split()[0])
                assert code in (200, 401, 503), (options, value, peer, status, body)
                if code != 200:
                    assert dict(headers)["Content-Type"] == "application/json"
                    json.loads(body)


@pytest.mark.parametrize(
    ("claims", "claim"),
    [
        pytest.param({"exp": 10**400}, "exp", id="exp-beyond-float"),
        pytest.param({"exp": 4_000_000_000, "nbf": 10**400}, "nbf", id="nbf-beyond-float"),
        pytest.param({"exp": 4_000_000_000, "iat": -(10**400)}, "iat", id="iat-beyond-float"),
    ],
)
def test_r6_r7_r37_time_claims_beyond_float_range_are_judged_not_crashed(caplog, claims, claim):
    """R6/R7/R37: ``exp``, ``nbf`` and ``iat`` are JSON numbers, and JSON integers have no size
    limit. One too large for a float must be judged like any other number (accepted, or refused
    naming the claim), not crash the claim checks into the middleware's last-resort
    ``internal_error`` net: that net answers a generic message, logs at ERROR on every replay
    and bypasses the negative cache. Expiry-only validation (a D1 configuration) reaches this
    without any signature."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    text = json.dumps({"preferred_username": "alice", **claims})
    token = compact_jws({"alg": "RS256"}, text, b"s" * 32)
    answer = call(
        headers={"Authorization": f"Bearer {token}"},
        **JWT,
        validate_token=True,
        validate_signature=False,
    )
    assert not [r for r in records(caplog, logging.ERROR)], [
        r.getMessage() for r in records(caplog)
    ]
    if answer.status != 200:
        assert_invalid_token(answer, "no_valid_exp" if claim == "exp" else f"bad_{claim}", claim)


# --------------------------------------------------------------------------- R12 (gap)
@pytest.mark.parametrize("cty", ["application/jwt", "application/JWT", "Application/Jwt"])
def test_r12_cty_application_jwt_is_a_nested_token_too(cty):
    """R12 (SHOULD refuse a ``cty`` of ``JWT``): RFC 7515 §4.1.10 makes a ``cty`` without ``/``
    shorthand for ``application/<cty>``, and media types compare case-insensitively, so
    ``application/jwt`` announces a nested token exactly as ``JWT`` does and must be refused
    the same way."""
    token = compact_jws({"alg": "RS256", "cty": cty}, {"preferred_username": "a"}, b"s" * 32)
    assert_invalid_token(call(headers={"Authorization": f"Bearer {token}"}, **JWT), "malformed")


# --------------------------------------------------------------------------- C1
SIGNED = {**JWT, "validate_token": True}
EXPIRY_ONLY = {**SIGNED, "validate_signature": False}
C1_CASES = [
    pytest.param(SIGNED, "jwks_uri", id="signature-without-jwks_uri"),
    pytest.param({**EXPIRY_ONLY, "validate_userinfo": True}, "userinfo_endpoint", id="userinfo"),
    pytest.param({**EXPIRY_ONLY, "validate_audience": True}, "audience", id="audience"),
    pytest.param({**EXPIRY_ONLY, "validate_issuer": True}, "issuer", id="issuer"),
    pytest.param(
        {**SIGNED, "jwks_uri": "file://idp.example/etc/jwks.json"}, "jwks_uri", id="remote-file-url"
    ),
    pytest.param({**SIGNED, "jwks_uri": "file:jwks.json"}, "jwks_uri", id="relative-file-url"),
    pytest.param({**SIGNED, "jwks_uri": "ftp://idp.example/jwks"}, "jwks_uri", id="ftp-url"),
    pytest.param({**SIGNED, "jwks_uri": "https:///jwks"}, "jwks_uri", id="url-without-host"),
    pytest.param(
        {**EXPIRY_ONLY, "validate_userinfo": True, "userinfo_endpoint": "javascript:alert(1)"},
        "userinfo_endpoint",
        id="userinfo-not-http",
    ),
    pytest.param({**STRING, "user_name_format": "xml"}, "user_name_format", id="format"),
    pytest.param({**JSON, "user_name_json_path": "$["}, "user_name_json_path", id="json-path"),
    pytest.param(
        {**JSON, "roles_source": "json", "roles_json_path": "$.[?("},
        "roles_json_path",
        id="roles-json-path",
    ),
    pytest.param({**STRING, "role_converter": "A=B=C"}, "role_converter", id="role-map"),
    pytest.param({**STRING, "role_converter": "A=;B=C"}, "role_converter", id="role-map-empty"),
    pytest.param({**STRING, "roles_source": "ldap"}, "roles_source", id="roles-source"),
    pytest.param(
        {**SIGNED, "jwks_uri": "https://idp.example/jwks", "algorithms": ["HS256"]},
        "algorithms",
        id="hmac-algorithm",
    ),
    pytest.param({**STRING, "trusted_proxies": ["proxy.local"]}, "trusted_proxies", id="proxies"),
    pytest.param({**STRING, "user_name_headr": "X"}, "user_name_headr", id="unknown-option"),
]


@pytest.mark.parametrize(("options", "option"), C1_CASES)
def test_c1_start_up_errors_name_their_option(options, option):
    """C1: a configuration mistake must stop the deployment when the middleware is built, not
    on the first request (when it would be a 500 or, worse, an unchecked token), and the error
    must name the option so the operator knows what to fix."""
    word = re.compile(rf"(?<![A-Za-z0-9_]){re.escape(option)}(?![A-Za-z0-9_])")
    with pytest.raises(ConfigError) as from_config:
        JwtHeadersConfig(**options)
    assert isinstance(from_config.value, ValueError)
    assert word.search(str(from_config.value)), str(from_config.value)
    with pytest.raises(ConfigError) as from_middleware:
        JwtHeadersMiddleware(RecordingApp(), **options)
    assert word.search(str(from_middleware.value)), str(from_middleware.value)


# --------------------------------------------------------------------------- C2
@pytest.mark.parametrize(
    ("url", "warns"),
    [
        pytest.param("http://idp.example.test/realms/r/certs", True, id="remote-http"),
        pytest.param("http://10.0.0.7:8080/certs", True, id="private-address-http"),
        pytest.param("http://127.0.0.1.nip.io/certs", True, id="loopback-look-alike"),
        pytest.param("http://127.0.0.1:8080/certs", False, id="loopback-v4"),
        pytest.param("http://localhost/certs", False, id="localhost"),
        pytest.param("http://[::1]:8080/certs", False, id="loopback-v6"),
        pytest.param("https://idp.example.test/realms/r/certs", False, id="https"),
    ],
)
@pytest.mark.parametrize("option", ["jwks_uri", "userinfo_endpoint"])
def test_c2_plain_http_to_a_remote_host_warns(caplog, url, warns, option):
    """C2: keys and tokens over plain http to another host can be read or swapped on the way
    (a forged JWKS accepts forged tokens), so the operator gets a WARNING naming the option;
    on loopback or https there is nothing to warn about, and a warning there would teach
    operators to ignore it."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    options: dict[str, Any] = {
        **SIGNED,
        "jwks_uri": "https://idp.example.test/certs",
        "validate_issuer": True,
        "issuer": ISSUER,
        "validate_userinfo": True,
        "userinfo_endpoint": "https://idp.example.test/userinfo",
    }
    options[option] = url
    JwtHeadersConfig(**options)
    warnings = records(caplog, logging.WARNING)
    if warns:
        assert len(warnings) == 1, [r.getMessage() for r in warnings]
        message = warnings[0].getMessage()
        assert option in message
        assert "http" in message
    else:
        assert not warnings, [r.getMessage() for r in warnings]


# --------------------------------------------------------------------------- the guard
REQUIREMENT_IDS = [f"R{n}" for n in range(1, 38)] + ["C1", "C2"]
TESTS_DIR = Path(__file__).resolve().parent


def _test_names_in(path: Path) -> list[str]:
    """Names of the test functions (module level, in classes, async or not) defined in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return [
        node.name
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name.startswith("test")
    ]


def test_every_requirement_is_named_by_a_test():
    """Every requirement of security.md must be named by at least one test function
    (``test_r16_...``, ``test_..._r16_...``): the name is how an auditor finds the proof, and
    this guard makes deleting or renaming the last test of a requirement fail loudly instead
    of silently leaving the requirement unchecked."""
    names = [name for path in sorted(TESTS_DIR.glob("*.py")) for name in _test_names_in(path)]
    assert len(names) > 100, "the scan found suspiciously few tests"
    missing = [
        rid
        for rid in REQUIREMENT_IDS
        if not any(re.search(rf"(?:^|_){rid.lower()}(?:_|$)", n, re.IGNORECASE) for n in names)
    ]
    assert not missing, f"requirements no test function names: {missing}"
