"""Path and method rules (issue 13): ``exempt_paths``, ``exempt_methods``, ``protected_paths``.

An exempt request reads no header and calls no identity provider, yet upstream ``REMOTE_USER``
and ``jwt_headers.principal`` are still removed (R18). A protected path is never anonymous. The
rules judge the path the app routes on, normalised, and the path as sent; the stricter answer
wins, so no spelling of ``/admin`` rides an exempt rule or slips past a protected one.
"""

from __future__ import annotations

from typing import Any

import idp
import pytest
from conftest import (
    JWT,
    NOW,
    STRANGER,
    STRING,
    FrozenClock,
    RecordingApp,
    assert_invalid_token,
    call,
)
from idp import mint
from werkzeug.test import Client

from jwt_headers import ConfigError, JwtHeadersConfig, JwtHeadersMiddleware, Principal
from jwt_headers.rules import PathRule, PathRules, normalize_path

idp_server = idp.idp_server

RULES: dict[str, Any] = {
    "exempt_paths": ["/healthz", "/static/*"],
    "protected_paths": ["/admin"],
}


def request(
    middleware: JwtHeadersMiddleware,
    path: str,
    *,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    environ: dict[str, Any] | None = None,
    script_name: str = "",
) -> tuple[int, RecordingApp, dict[str, Any]]:
    """One request with ``PATH_INFO`` exactly ``path`` (werkzeug's client would not keep
    ``//`` or ``..``); the status, the app and the environ it saw (``{}`` if not called)."""
    app = RecordingApp()
    middleware.app = app
    base = {
        "REMOTE_ADDR": "127.0.0.1",
        "REQUEST_METHOD": method,
        "SCRIPT_NAME": script_name,
        "PATH_INFO": path,
        **(environ or {}),
    }
    for name, value in (headers or {}).items():
        base["HTTP_" + name.upper().replace("-", "_")] = value
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"] = int(status.split(maxsplit=1)[0])

    b"".join(middleware(base, start_response))
    return seen["status"], app, (app.environ if app.called else {})


def strict(**extra: Any) -> JwtHeadersMiddleware:
    return JwtHeadersMiddleware(RecordingApp(), **STRING, allow_anonymous=False, **RULES, **extra)


# --------------------------------------------------------------------------- exempt
@pytest.mark.parametrize(
    "path", ["/healthz", "/healthz/", "/healthz/live", "/static/site.css", "/static/a/b/c.js"]
)
def test_exempt_path_passes_without_credentials(path):
    status, _, environ = request(strict(), path)
    assert status == 200
    assert "REMOTE_USER" not in environ


@pytest.mark.parametrize("path", ["/healthz", "/static/x.css"])
def test_exempt_path_reads_no_header(path):
    """An unusable header on an exempt path is not even parsed (no 401), and a usable one
    names nobody: the request is anonymous by the operator's rule."""
    middleware = JwtHeadersMiddleware(RecordingApp(), **JWT, **RULES)
    status, _, environ = request(middleware, path, headers={"Authorization": "Bearer x.y"})
    assert status == 200
    status, _, environ = request(
        JwtHeadersMiddleware(RecordingApp(), **STRING, **RULES), path, headers={"X-User": "bob"}
    )
    assert status == 200
    assert "REMOTE_USER" not in environ
    assert "jwt_headers.principal" not in environ


def test_exempt_path_still_removes_upstream_identity():
    """R18 holds on exempt paths: a REMOTE_USER or principal set upstream never reaches the app."""
    fake = Principal(name="mallory", roles=("ROLE_ADMINISTRATOR",))
    upstream = {"REMOTE_USER": "mallory", "jwt_headers.principal": fake}
    status, _, environ = request(strict(), "/healthz", environ=upstream)
    assert status == 200
    assert "REMOTE_USER" not in environ
    assert "jwt_headers.principal" not in environ


def test_exempt_path_makes_no_identity_provider_call(idp_server):
    """No key-set fetch and no userinfo call for an exempt request, even with a token."""
    middleware = JwtHeadersMiddleware(
        RecordingApp(),
        clock=FrozenClock(),
        **JWT,
        validate_token=True,
        jwks_uri=idp_server.jwks_uri,
        validate_userinfo=True,
        userinfo_endpoint=idp_server.userinfo_endpoint,
        **RULES,
    )
    token = mint(None, idp_server.key, NOW)
    status, _, environ = request(
        middleware, "/healthz", headers={"Authorization": f"Bearer {token}"}
    )
    assert status == 200
    assert "REMOTE_USER" not in environ
    assert idp_server.total_requests == 0
    status, _, environ = request(middleware, "/api", headers={"Authorization": f"Bearer {token}"})
    assert (status, environ.get("REMOTE_USER")) == (200, idp.USER_NAME)  # the control
    assert idp_server.total_requests == 2


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/healthzz",  # a prefix ends at a segment boundary
        "/static",  # the glob needs something after the slash
        "/Healthz",  # case-sensitive, as routers are
        "//healthz",  # as sent, not the exempt path: stricter wins
        "/admin/../healthz",  # a router that does not normalise serves it under /admin
        "/api/healthz",
    ],
)
def test_not_exempt_paths_need_credentials(path):
    status, app, _ = request(strict(), path)
    assert status == 401
    assert not app.called
    status, _, environ = request(strict(), path, headers={"X-User": "alice"})
    assert (status, environ.get("REMOTE_USER")) == (200, "alice")


# --------------------------------------------------------------------------- methods
def test_options_is_exempt_by_default_even_on_protected_paths():
    """A CORS preflight carries no token: it reaches the app anonymously, also under a
    protected path, also with allow_anonymous=False."""
    middleware = strict()
    for path in ("/admin", "/api"):
        status, _, environ = request(middleware, path, method="OPTIONS")
        assert status == 200
        assert "REMOTE_USER" not in environ
    # RFC 9110 9.1: the method is case-sensitive; "options" is not OPTIONS, so it is
    # authenticated like any other request (fail closed)
    status, _, _ = request(middleware, "/api", method="options")
    assert status == 401


def test_exempt_methods_empty_switches_the_exemption_off():
    middleware = strict(exempt_methods=())
    status, app, _ = request(middleware, "/api", method="OPTIONS")
    assert status == 401
    assert not app.called


def test_exempt_methods_other_methods():
    middleware = strict(exempt_methods=["OPTIONS", "head"])  # configured names are upper-cased
    assert request(middleware, "/api", method="HEAD")[0] == 200
    assert request(middleware, "/api", method="GET")[0] == 401


# --------------------------------------------------------------------------- protected
@pytest.mark.parametrize(
    "path",
    [
        "/admin",
        "/admin/",
        "/admin/users",
        "//admin",
        "///admin//users",
        "/./admin",
        "/x/../admin",
        "/static/../admin",  # an exempt glob does not cover a path that leaves it
        "/healthz/../admin",
        "/healthz/../../admin",
        "/static/./../admin/",
        "/admin/.",
    ],
)
def test_protected_path_is_never_anonymous(path):
    """allow_anonymous=True elsewhere; every spelling of /admin without credentials: 401
    UNAUTHENTICATED, the app not called; with a name, the app runs as that user."""
    middleware = JwtHeadersMiddleware(RecordingApp(), **STRING, **RULES)
    assert request(middleware, "/elsewhere")[0] == 200  # anonymous allowed there
    status, app, _ = request(middleware, path)
    assert status == 401, path
    assert not app.called
    status, _, environ = request(middleware, path, headers={"X-User": "alice"})
    assert (status, environ.get("REMOTE_USER")) == (200, "alice")


def test_protected_path_untrusted_header_is_anonymous_and_refused():
    """R16 still applies: a name from a peer outside trusted_proxies is dropped, and on a
    protected path the request is then refused."""
    middleware = JwtHeadersMiddleware(RecordingApp(), **STRING, **RULES)
    answer = call(middleware, headers={"X-User": "alice"}, peer=STRANGER)
    assert answer.status == 200 and answer.user is None  # the control: elsewhere anonymous
    status, app, _ = request(
        middleware, "/admin", headers={"X-User": "alice"}, environ={"REMOTE_ADDR": STRANGER}
    )
    assert status == 401
    assert not app.called


def test_protected_path_bad_credentials_are_still_invalid_token():
    middleware = JwtHeadersMiddleware(RecordingApp(), **STRING, **RULES)
    answer = call(middleware, headers={"X-User": "ali\x01ce"})
    assert_invalid_token(answer, "bad_user_name")


def test_script_name_is_part_of_the_path():
    """Mounted under /app: the rules see SCRIPT_NAME + PATH_INFO, the path the app routes on."""
    middleware = JwtHeadersMiddleware(
        RecordingApp(), **STRING, exempt_paths=["/app/healthz"], protected_paths=["/app/admin"]
    )
    assert request(middleware, "/healthz", script_name="/app")[0] == 200
    assert request(middleware, "/admin", script_name="/app")[0] == 401
    assert request(middleware, "/../app/admin", script_name="/x")[0] == 401
    assert request(middleware, "/admin")[0] == 200  # not under /app: neither rule


def test_non_ascii_patterns_match_the_wsgi_path():
    """A pattern is written as text; PATH_INFO holds the UTF-8 bytes as latin-1 text."""
    middleware = JwtHeadersMiddleware(RecordingApp(), **STRING, protected_paths=["/caf\u00e9"])
    wsgi_path = "/caf\u00e9".encode().decode("latin-1")
    assert request(middleware, wsgi_path)[0] == 401
    assert request(middleware, "/cafe")[0] == 200


def test_real_http_request_through_werkzeug():
    """The same through werkzeug's test client (a real WSGI environ)."""
    middleware = JwtHeadersMiddleware(RecordingApp(), **STRING, **RULES)
    client = Client(middleware)
    assert client.get("/admin").status_code == 401
    assert client.get("/healthz").status_code == 200
    assert client.options("/admin").status_code == 200


# --------------------------------------------------------------------------- the rules alone
@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("", "/"),
        ("/", "/"),
        ("//", "/"),
        ("/a//b", "/a/b"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/../../b", "/b"),
        ("/..", "/"),
        ("/a/.", "/a/"),
        ("a/b", "/a/b"),
    ],
)
def test_normalize_path(raw, normalized):
    assert normalize_path("", raw) == normalized


def test_rules_decide():
    rules = PathRules(["/healthz", "/static/*"], ["OPTIONS"], ["/admin"])
    assert rules.decide("GET", "", "/healthz") is PathRule.EXEMPT
    assert rules.decide("GET", "", "/admin/x") is PathRule.PROTECTED
    assert rules.decide("GET", "", "/other") is PathRule.DEFAULT
    assert rules.decide("OPTIONS", "", "/admin") is PathRule.EXEMPT
    assert rules.decide(None, None, None) is PathRule.DEFAULT  # odd environ values: no crash
    assert PathRules().empty
    assert not PathRules(exempt_methods=["OPTIONS"]).empty


def test_empty_rule_set_is_not_consulted():
    """With no rule at all the config holds no rule object: nothing is looked at per request."""
    config = JwtHeadersConfig(**STRING, exempt_methods=())
    assert config.path_rules is None
    assert JwtHeadersConfig(**STRING).path_rules is not None  # OPTIONS by default


# --------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"exempt_paths": ["healthz"]}, "exempt_paths: 'healthz' is not a path pattern"),
        ({"protected_paths": "admin"}, "protected_paths: 'admin' is not a path pattern"),
        ({"exempt_paths": [7]}, "exempt_paths"),
        ({"exempt_methods": ["GET POST"]}, "exempt_methods: 'GET POST' is not an HTTP method"),
        ({"exempt_methods": ["GET/1"]}, "exempt_methods"),
    ],
)
def test_bad_rules_are_config_errors(options, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        JwtHeadersConfig(**STRING, **options)


def test_rules_from_mapping_env_and_toml(tmp_path):
    expected = (("/healthz", "/static/*"), (), ("/admin",))

    def seen(config: JwtHeadersConfig) -> tuple[Any, ...]:
        return config.exempt_paths, config.exempt_methods, config.protected_paths

    mapping = {
        "user_name_header": "X-User",
        "exempt_paths": "/healthz, /static/*",
        "exempt_methods": "",
        "protected_paths": "/admin",
    }
    assert seen(JwtHeadersConfig.from_mapping(mapping)) == expected
    env = {f"JWT_HEADERS_{k.upper()}": v for k, v in mapping.items()}
    assert seen(JwtHeadersConfig.from_env(environ=env)) == expected
    path = tmp_path / "config.toml"
    path.write_text(
        "[jwt_headers]\n"
        'user_name_header = "X-User"\n'
        'exempt_paths = ["/healthz", "/static/*"]\n'
        "exempt_methods = []\n"
        'protected_paths = ["/admin"]\n'
    )
    assert seen(JwtHeadersConfig.from_file(path)) == expected
    assert JwtHeadersConfig.from_mapping({"user_name_header": "X-User"}).exempt_methods == (
        "OPTIONS",
    )


def test_remembered_decisions_are_bounded_and_stay_right():
    """Decisions are remembered per path (a lookup instead of a regular expression), in a
    bounded table: a flood of distinct paths never grows it past its bound, long paths are not
    kept, and every answer stays the one the patterns give."""
    rules = PathRules(["/healthz"], ["OPTIONS"], ["/admin"])
    for index in range(10_000):
        assert rules.decide("GET", "", f"/api/{index}") is PathRule.DEFAULT
        assert len(rules._decided) <= 4096
    assert rules.decide("GET", "", "/admin/x") is PathRule.PROTECTED
    assert rules.decide("GET", "", "/admin/x") is PathRule.PROTECTED  # remembered
    assert rules.decide("GET", "", "/healthz") is PathRule.EXEMPT
    long = "/admin/" + "x" * 300
    assert rules.decide("GET", "", long) is PathRule.PROTECTED
    assert long not in rules._decided
