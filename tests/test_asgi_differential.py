"""Identical behaviour, proven (issue 16, item 3): the same requests through the WSGI and the
ASGI adapter built from one config give the same status, body, headers, principal, refusal
reasons, metrics events, headers left for the app, and whether the app ran.

The requests are the contract's outcomes table (``tests/test_outcomes.py``: absent, blank,
unusable JSON, control characters, sizes, repeated headers), unvalidated and validated JWTs
(bad signature, expired, other issuer, unknown key, an IdP that is down), untrusted peers and
every spelling of a header, roles and the role map, path and method rules, several sources.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import idp
import pytest
from asgi_helpers import RecordingASGIApp, all_reasons, answer_of, make_scope, run_scope
from conftest import JSON, JWT, LOOPBACK, STRANGER, STRING, FrozenClock, RecordingApp
from idp import ISSUER, dead_url, make_key, mint
from test_outcomes import UNUSABLE_JSON, json_doc, make_token
from werkzeug.test import Client

from jwt_headers import JwtHeadersConfig, JwtHeadersMiddleware
from jwt_headers.asgi import JwtHeadersASGIMiddleware

idp_server = idp.idp_server


class Recorder:
    """A metrics observer: every event, in order."""

    def __init__(self) -> None:
        self.events: Counter[str] = Counter()

    def allowed(self) -> None:
        self.events["allowed"] += 1

    def anonymous(self) -> None:
        self.events["anonymous"] += 1

    def exempt(self) -> None:
        self.events["exempt"] += 1

    def refused(self, reason: str) -> None:
        self.events[f"refused:{reason}"] += 1

    def untrusted_header(self) -> None:
        self.events["untrusted"] += 1

    def token_cache(self, hit: bool) -> None:
        self.events["hit" if hit else "miss"] += 1

    def idp_call(self, endpoint: str, ok: bool, seconds: float) -> None:
        self.events[f"idp:{endpoint}:{ok}"] += 1


@dataclass
class Request:
    headers: list[tuple[str, str]] = field(default_factory=list)
    peer: str = LOOPBACK
    method: str = "GET"
    path: str = "/"
    root_path: str = ""


def h(name: str, value: str, **request: Any) -> Request:
    return Request([(name, value)], **request)


def http_key(name: str) -> str:
    return "HTTP_" + name.upper().replace("-", "_")


def wsgi_outcome(middleware: JwtHeadersMiddleware, request: Request) -> dict[str, Any]:
    app = RecordingApp()
    middleware.app = app
    with all_reasons() as reasons:
        response = Client(middleware).open(
            request.root_path + request.path,
            method=request.method,
            headers=request.headers,
            environ_base={"REMOTE_ADDR": request.peer},
            environ_overrides={"SCRIPT_NAME": request.root_path, "PATH_INFO": request.path},
        )
        body = response.get_data()
    sent = {http_key(name) for name, _ in request.headers}
    environ = app.environ if app.called else {}
    principal = environ.get("jwt_headers.principal")
    return {
        "status": response.status_code,
        "body": body if not app.called else None,
        "headers": [(k.lower(), v) for k, v in response.headers.items()]
        if not app.called
        else None,
        "called": app.called,
        "principal": described(principal),
        "kept": sorted(key for key in sent if key in environ),
        "reasons": reasons,
    }


def asgi_outcome(middleware: JwtHeadersASGIMiddleware, request: Request) -> dict[str, Any]:
    app = RecordingASGIApp()
    middleware.app = app
    scope = make_scope(
        request.headers,
        peer=request.peer,
        method=request.method,
        path=request.path,
        root_path=request.root_path,
    )
    with all_reasons() as reasons:
        answer = answer_of(app, asyncio.run(run_scope(middleware, scope)), reasons)
    sent = {http_key(name) for name, _ in request.headers}
    seen = app.scope if app.called else {}
    principal = seen.get("jwt_headers.principal")
    if app.called:  # Starlette's view agrees with the principal
        assert seen["user"].is_authenticated is (principal is not None)
        assert seen["auth"].scopes == (list(principal.roles) if principal else [])
    return {
        "status": answer.status,
        "body": answer.body if not app.called else None,
        "headers": list(answer.headers.items(lower=True)) if not app.called else None,
        "called": app.called,
        "principal": described(principal),
        "kept": sorted(key for key in sent if app.called and key in app.header_keys()),
        "reasons": reasons,
    }


def described(principal: Any) -> Any:
    if principal is None:
        return None
    claims = None if principal.claims is None else dict(principal.claims)
    return (principal.name, principal.roles, claims)


def assert_same(options: dict[str, Any], requests: list[Request], clock=None) -> None:
    """Both adapters from one config, request by request, in order (so cache hits and the
    refusal cache are compared too): without metrics (for one source reading one header, the
    adapter's one-pass cache check), then each with its own metrics recorder (two passes),
    whose events must match too."""
    clock = clock or FrozenClock()
    one = JwtHeadersConfig(**options)
    wsgi_metrics, asgi_metrics = Recorder(), Recorder()
    with_wsgi = JwtHeadersConfig(**options, metrics=wsgi_metrics)
    with_asgi = JwtHeadersConfig(**options, metrics=asgi_metrics)
    pairs = [
        (
            JwtHeadersMiddleware(RecordingApp(), wsgi_config, clock=clock),
            JwtHeadersASGIMiddleware(RecordingASGIApp(), asgi_config, clock=clock),
        )
        for wsgi_config, asgi_config in ((one, one), (with_wsgi, with_asgi))
    ]
    for wsgi, asgi in pairs:
        for request in requests:
            for _ in range(2):  # cold, then from the caches
                expected = wsgi_outcome(wsgi, request)
                got = asgi_outcome(asgi, request)
                assert got == expected, request
    assert asgi_metrics.events == wsgi_metrics.events


# --------------------------------------------------------------------------- the outcomes table
STRING_REQUESTS = [
    Request(),
    h("X-User", "alice"),
    h("X-User", "  alice  "),
    h("X-User", ""),
    h("X-User", "   "),
    h("X-User", "al\x01ice"),
    h("X-User", "a" * 257),
    h("X-User", "x" * 20000),
    h("X-User", "Jos\xc3\xa9"),  # UTF-8 bytes read as latin-1
    h("X-User", "\xff"),
    h("X_User", "alice"),  # underscore spelling: the same key, as WSGI servers that keep it
    Request([("X-User", "alice"), ("X-User", "bob")]),
    Request([("X-User", "alice"), ("X_User", "alice")]),
    h("Remote-User", "root"),
    h("X-User", "mallory", peer=STRANGER),
    h("X_User", "mallory", peer=STRANGER),
    h("X-User", "", peer=STRANGER),
    h("X-User", "alice", peer="::ffff:127.0.0.1"),
    h("X-User", "alice", peer="not-an-address"),
]


@pytest.mark.parametrize("anonymous", [True, False])
def test_string_header_outcomes_are_the_same(anonymous):
    assert_same({**STRING, "allow_anonymous": anonymous}, STRING_REQUESTS)


def test_json_header_outcomes_are_the_same():
    values = [param.values[0] for param in UNUSABLE_JSON]
    requests = [h("OIDC_id_token_payload", v) for v in values if v.isascii()]
    requests += [
        h("OIDC-id-token-payload", json_doc("alice", roles=["a"])),
        h("OIDC_id_token_payload", json_doc("alice"), peer=STRANGER),
        h("OIDC_id_token_payload", '{"preferred_username":"\xff"}'),
        h("OIDC_id_token_payload", "eyJwcmVmZXJyZWRfdXNlcm5hbWUiOiJhbGljZSJ9"),
    ]
    assert_same(JSON, requests)
    assert_same({**JSON, "header_encoding": "base64url"}, requests)


TOKEN = make_token()
JWT_VALUES = [
    f"Bearer {TOKEN}",
    f"bearer {TOKEN}",
    TOKEN,
    "Basic YWxpY2U6c2VjcmV0",
    "Bearer",
    "Bearer not.a.token",
    "Bearer a.b",
    f"Bearer {make_token({'sub': '1'})}",
    f"Bearer {make_token({'preferred_username': 'bob'}, {'alg': 'none'}, signature='')}",
    f"Bearer {make_token('[1]')}",
    f"Bearer {TOKEN}, Bearer {TOKEN}",
]


def test_unvalidated_jwt_outcomes_are_the_same():
    requests = [h("Authorization", v) for v in JWT_VALUES]
    requests.append(h("Authorization", f"Bearer {TOKEN}", peer=STRANGER))
    assert_same(JWT, requests)


def test_roles_and_role_map_are_the_same():
    options = {
        **STRING,
        "roles_source": "header",
        "roles_header": "X-Roles",
        "role_converter": "admin=ROLE_ADMIN;ops=ROLE_OPS",
        "only_external_listed_roles": True,
    }
    requests = [
        Request([("X-User", "alice"), ("X-Roles", "admin, viewer,ops")]),
        Request([("X-User", "alice"), ("X-Roles", '["admin", "ops"]')]),
        Request([("X-User", "alice"), ("X-Roles", "admin"), ("X-Roles", "ops")]),
        Request([("X-User", "alice"), ("X-Roles", "admin")], peer=STRANGER),
        h("X-Roles", "admin"),
    ]
    assert_same(options, requests)
    json_roles = {**JSON, "roles_source": "json", "roles_json_path": "roles"}
    assert_same(
        json_roles,
        [
            h("OIDC_id_token_payload", json_doc("alice", roles=["a", "b", "a"])),
            h("OIDC_id_token_payload", json_doc("alice", roles="a")),
            h("OIDC_id_token_payload", json_doc("alice", roles=[1])),
        ],
    )


def test_path_and_method_rules_are_the_same():
    options = {
        **STRING,
        "exempt_paths": ["/health", "/static/*"],
        "protected_paths": ["/admin/*"],
    }
    requests = [
        Request(path="/health"),
        Request(path="/admin/x"),
        Request(path="//admin/x"),
        Request(path="/static/../admin/x"),
        Request(path="/x", method="OPTIONS"),
        Request(path="/admin/x", method="OPTIONS"),
        Request(path="/admin/x", method="options"),
        h("X-User", "alice", path="/admin/x"),
        h("X-User", "mallory", path="/admin/x", peer=STRANGER),
        Request(path="/admin/x", root_path="/app"),
        Request(path="/x", root_path="/admin"),
        Request(path="/health", root_path="/app"),
    ]
    assert_same(options, requests)
    assert_same({**options, "allow_anonymous": False}, requests)


def test_several_sources_and_conflicts_are_the_same():
    options = {
        "sources": [
            {**JSON},
            {**STRING},
            {**JWT},
        ]
    }
    alice_json = json_doc("alice")
    requests = [
        h("OIDC_id_token_payload", alice_json),
        h("X-User", "alice"),
        Request([("OIDC_id_token_payload", alice_json), ("X-User", "alice")]),
        Request([("OIDC_id_token_payload", alice_json), ("X-User", "bob")]),
        Request([("X-User", "alice"), ("Authorization", f"Bearer {TOKEN}")]),
        Request([("X-User", "bob"), ("Authorization", f"Bearer {TOKEN}")]),
        Request([("X-User", "bob"), ("Authorization", "Bearer x.y.z")]),
        Request([("OIDC_id_token_payload", alice_json), ("X-User", "bob")], peer=STRANGER),
    ]
    assert_same(options, requests)


# --------------------------------------------------------------------------- validated tokens
def robot_options(server: idp.IdpServer, **extra: Any) -> dict[str, Any]:
    return {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "roles_source": "jwt",
        "roles_json_path": "resource_access.live-key2.roles",
        "role_converter": "GeoserverAdministrator=ROLE_ADMINISTRATOR",
        "validate_token": True,
        "jwks_uri": server.jwks_uri,
        "validate_issuer": True,
        "issuer": ISSUER,
        **extra,
    }


def test_validated_token_outcomes_are_the_same(idp_server):
    clock = FrozenClock()
    now = clock.now
    key = idp_server.key
    stranger_key = make_key("RS256", kid=key.kid)
    tokens = [
        mint(None, key, now),
        mint({"preferred_username": "bob"}, key, now),
        mint({"exp": now - 3600}, key, now),
        mint({"iss": "https://other.example.test"}, key, now),
        mint({"nbf": now + 3600}, key, now),
        mint(None, stranger_key, now),  # right kid, wrong key: bad signature
        mint(None, make_key("RS256"), now),  # unknown kid
        mint(None, key, now, headers={"typ": "x"}),
    ]
    requests = [h("Authorization", f"Bearer {token}") for token in tokens]
    requests.append(h("Authorization", f"Bearer {tokens[0]}", peer=STRANGER))
    assert_same(robot_options(idp_server), requests, clock)
    assert_same(
        robot_options(idp_server, validate_audience=True, audience=["someone-else"]),
        requests[:2],
        clock,
    )


def test_identity_provider_down_is_the_same_503():
    options = {
        **JWT,
        "validate_token": True,
        "jwks_uri": dead_url(),
        "validate_issuer": True,
        "issuer": ISSUER,
    }
    clock = FrozenClock()
    assert_same(options, [h("Authorization", f"Bearer {TOKEN}")], clock)
