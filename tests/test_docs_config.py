"""The configuration examples of README.rst, run as written (issue 17 item 5: docs that run).

Each test takes its example's text from the README with ``example()`` and fills only its
placeholders (``idp.example`` URLs become a fake IdP's on 127.0.0.1, ``app`` a recording app,
a ``...`` standing for more keyword arguments ``**OPTIONS``), then checks what the text around
the example promises. The TOML twin of a Python example must build the same configuration.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from asgi_helpers import make_scope, run_scope
from conftest import (
    LOOPBACK,
    STRANGER,
    Answer,
    RecordingApp,
    assert_accepted,
    assert_invalid_token,
    logged_reasons,
)
from docs_examples import example, fill
from idp import IdpServer, make_key, mint
from werkzeug.test import Client

from jwt_headers import PRINCIPAL_KEY, JwtHeadersConfig, JwtHeadersMiddleware, Principal
from jwt_headers.asgi import JwtHeadersASGIMiddleware

README_JWKS = "https://idp.example/realms/r/protocol/openid-connect/certs"
README_ISSUER = "https://idp.example/realms/r"


@pytest.fixture
def realm():
    """The README's ``https://idp.example/realms/r``, on 127.0.0.1."""
    with IdpServer() as server:
        server.issuer = server.url("/realms/r")
        yield server


def filled(text: str, realm: IdpServer) -> str:
    """The example with the README's provider URLs pointed at ``realm`` (the key-set URL first:
    it starts with the issuer)."""
    text = fill(text, README_JWKS, realm.jwks_uri)
    return fill(text, README_ISSUER, realm.issuer)


def from_toml(text: str, tmp_path: Path) -> JwtHeadersConfig:
    path = tmp_path / "auth.toml"
    path.write_text(text, encoding="utf-8")
    return JwtHeadersConfig.from_file(path)


def send(
    middleware: JwtHeadersMiddleware,
    headers: dict[str, str],
    *,
    peer: str = LOOPBACK,
    path: str = "/",
    method: str = "GET",
) -> Answer:
    """One request through ``middleware`` with a fresh recording app, so ``app.called`` is
    about this request only."""
    app = middleware.app = RecordingApp()
    with logged_reasons() as reasons:
        response = Client(middleware).open(
            path, method=method, headers=headers, environ_base={"REMOTE_ADDR": peer}
        )
        body = response.get_data()
    return Answer(response.status_code, response.headers, body, app, reasons)


def options(config: JwtHeadersConfig) -> dict[str, Any]:
    """Every option's value (derived members such as compiled rules compare by identity)."""
    return {name: getattr(config, name) for name in JwtHeadersConfig.option_names()}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# --------------------------------------------------------------------------- sources


def sources_middleware(realm: IdpServer) -> JwtHeadersMiddleware:
    code = filled(
        example("README.rst", "# robots: a Bearer token, signature-checked, from any peer"), realm
    )
    middleware = eval(
        compile(code, "README.rst", "eval"),
        {"JwtHeadersMiddleware": JwtHeadersMiddleware, "app": RecordingApp()},
    )
    assert isinstance(middleware, JwtHeadersMiddleware)
    return middleware


def test_browsers_and_robots_example_r16(realm):
    """ "Browsers and robots in one app", the Python example: Apache's JSON header is believed
    from 127.0.0.1 only (R16), a Bearer token signed by the realm from any peer, and the two
    naming different users are refused as ``conflicting_credentials``."""
    middleware = sources_middleware(realm)
    browser = {"OIDC-Id-Token-Payload": '{"preferred_username": "alice"}'}
    assert_accepted(send(middleware, browser, peer=LOOPBACK), "alice")
    answer = send(middleware, browser, peer=STRANGER)
    assert answer.status == 200 and answer.user is None  # not believed: anonymous
    token = mint({"iss": realm.issuer, "preferred_username": "robot-1"}, realm.key)
    assert_accepted(send(middleware, bearer(token), peer=STRANGER), "robot-1")
    forged = mint(
        {"iss": realm.issuer, "preferred_username": "robot-1"}, make_key("RS256", kid=realm.key.kid)
    )
    assert_invalid_token(send(middleware, bearer(forged), peer=STRANGER), "bad_signature")
    both = {**browser, **bearer(token)}
    assert_invalid_token(send(middleware, both, peer=LOOPBACK), "conflicting_credentials")


def test_browsers_and_robots_toml_is_the_same_config(realm, tmp_path):
    """The TOML form beside it builds exactly the Python example's configuration."""
    toml = filled(example("README.rst", "[[jwt_headers.sources]]"), realm)
    assert options(from_toml(toml, tmp_path)) == options(sources_middleware(realm).config)


# --------------------------------------------------------------------------- providers


def test_several_providers_example(tmp_path):
    """ "Several identity providers": the staff realm found by discovery, the partner's key set
    given, each with its own audience and algorithms; a token goes to its issuer's provider,
    another issuer is ``unknown_issuer`` with no request made."""
    with IdpServer() as staff, IdpServer(keys=[make_key("ES256")]) as partner:
        staff.issuer = staff.url("/realms/staff")
        partner.issuer = partner.url("")
        text = example("README.rst", "[[jwt_headers.providers]]")
        text = fill(text, '"https://login.partner.example/keys"', f'"{partner.jwks_uri}"', 1)
        text = fill(text, '"https://login.partner.example"', f'"{partner.issuer}"', 1)
        text = fill(text, '"https://idp.example/realms/staff"', f'"{staff.issuer}"', 1)
        middleware = JwtHeadersMiddleware(RecordingApp(), from_toml(text, tmp_path))

        def robot(token: str) -> Answer:
            return send(middleware, bearer(token), peer=STRANGER)

        own = mint({"iss": staff.issuer, "aud": "my-api", "preferred_username": "ann"}, staff.key)
        assert_accepted(robot(own), "ann")
        theirs = {"iss": partner.issuer, "aud": "partner-api", "preferred_username": "pat"}
        assert_accepted(robot(mint(theirs, partner.key)), "pat")
        assert_invalid_token(
            robot(mint({**theirs, "aud": "my-api"}, partner.key)), "wrong_audience"
        )
        rsa = make_key("RS256")
        partner.keys.append(rsa)
        assert_invalid_token(robot(mint(theirs, rsa)), "alg_not_allowed")
        before = len(staff.requests) + len(partner.requests)
        stranger = mint({"iss": "https://elsewhere.example", "aud": "my-api"}, staff.key)
        assert_invalid_token(robot(stranger), "unknown_issuer")
        assert len(staff.requests) + len(partner.requests) == before


# --------------------------------------------------------------------------- path rules

PLAIN = {"user_name_header": "X-User", "allow_anonymous": True}


def rules_middleware() -> JwtHeadersMiddleware:
    code = example("README.rst", 'exempt_methods=["OPTIONS"]')
    # ``...`` stands for the rest of a JWT source's options.
    code = fill(code, '"jwt", ...,', '"jwt", **OPTIONS,', 1)
    namespace = {
        "JwtHeadersMiddleware": JwtHeadersMiddleware,
        "app": RecordingApp(),
        "OPTIONS": {"user_name_json_path": "preferred_username"},
    }
    middleware = eval(compile(code, "README.rst", "eval"), namespace)
    assert isinstance(middleware, JwtHeadersMiddleware)
    return middleware


def test_path_rules_example():
    """ "Path and method rules": ``/healthz`` and ``/static/...`` answer without reading the
    header (a bad token there is not even looked at), a preflight reaches the app anonymously,
    ``/admin`` is never anonymous (401 ``UNAUTHENTICATED``, the app not called), the rest of
    the site may be."""
    middleware = rules_middleware()
    garbage = bearer("not.a.token")
    for path in ("/healthz", "/healthz/live", "/static/css/site.css"):
        answer = send(middleware, garbage, path=path)
        assert answer.status == 200 and answer.app.called and answer.user is None, path
    assert_invalid_token(send(middleware, garbage, path="/healthzz"), "malformed")
    answer = send(middleware, {}, path="/admin", method="OPTIONS")
    assert answer.status == 200 and answer.app.called
    for path in ("/admin", "/admin/users", "/static/../admin"):
        answer = send(middleware, {}, path=path)
        assert answer.status == 401 and not answer.app.called, path
        assert answer.json["error"]["code"] == "UNAUTHENTICATED"
    answer = send(middleware, {}, path="/reports")
    assert answer.status == 200 and answer.app.called and answer.user is None


def test_path_rules_toml_sets_the_same_rules(tmp_path):
    """The TOML twin gives the same three rules as the Python example (``exempt_methods``
    left at its default, ``OPTIONS``, which the Python example spells out)."""
    toml = example("README.rst", 'exempt_paths = ["/healthz", "/static/*"]')
    config = from_toml(
        toml
        + 'user_name_header = "Authorization"\nuser_name_format = "jwt"\n'
        + 'user_name_json_path = "preferred_username"\n',
        tmp_path,
    )
    python = rules_middleware().config
    for name in ("exempt_paths", "protected_paths", "exempt_methods"):
        assert getattr(config, name) == getattr(python, name), name


# --------------------------------------------------------------------------- ASGI


def get(app: Any, path: str, headers: dict[str, str]) -> tuple[int, Any]:
    """One ``GET`` through an ASGI app, as uvicorn would send it from a peer outside any
    ``trusted_proxies``; the status and the JSON body (or the bytes of another body)."""
    sent = asyncio.run(run_scope(app, make_scope(headers, peer="203.0.113.9", path=path)))
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return sent[0]["status"], json.loads(body) if body.startswith(b"{") else body


def test_starlette_example_requires_a_role(realm):
    """ "ASGI: Starlette and FastAPI", the Starlette example: ``@requires("ROLE_ADMINISTRATOR")``
    sees the converted realm roles as ``request.auth.scopes``: 200 with the role, 403 without,
    and a forged token never reaches Starlette (401)."""
    namespace: dict[str, Any] = {}
    exec(
        compile(
            filled(example("README.rst", "from starlette.applications import Starlette"), realm),
            "README.rst",
            "exec",
        ),
        namespace,
    )
    app = namespace["app"]
    assert isinstance(app, JwtHeadersASGIMiddleware)
    admin = {
        "iss": realm.issuer,
        "preferred_username": "ann",
        "realm_access": {"roles": ["GeoserverAdministrator"]},
    }
    status, body = get(app, "/admin", bearer(mint(admin, realm.key)))
    assert (status, body) == (200, {"user": "ann", "roles": ["ROLE_ADMINISTRATOR"]})
    reader = {**admin, "realm_access": {"roles": ["reader"]}}
    assert get(app, "/admin", bearer(mint(reader, realm.key)))[0] == 403
    forged = mint(admin, make_key("RS256", kid=realm.key.kid))
    status, body = get(app, "/admin", bearer(forged))
    assert (status, body["error"]["code"]) == (401, "INVALID_TOKEN")


def test_fastapi_example_dependency(realm):
    """The FastAPI excerpt (from ``samples/fastapi_app.py``, whose names it uses): the
    ``principal`` dependency gives ``/me`` the caller, and an anonymous caller a 401 from
    FastAPI; run with the names the sample imports and the whole API wrapped as the sample
    does."""
    from fastapi import Depends, FastAPI, HTTPException, Request

    code = example("README.rst", "def principal(request: Request) -> Principal:")
    sample = (Path(__file__).resolve().parent.parent / "samples" / "fastapi_app.py").read_text(
        encoding="utf-8"
    )
    for name in (
        "def principal(request: Request) -> Principal:",
        "def me(caller: Principal = Depends(principal))",
        "raise HTTPException(status_code=401",
    ):
        assert name in code and name in sample, name
    api = FastAPI()
    namespace = {
        "Request": Request,
        "Principal": Principal,
        "PRINCIPAL_KEY": PRINCIPAL_KEY,
        "HTTPException": HTTPException,
        "Depends": Depends,
        "api": api,
    }
    exec(compile(code, "README.rst", "exec"), namespace)
    app = JwtHeadersASGIMiddleware(
        api,
        user_name_header="Authorization",
        user_name_format="jwt",
        user_name_json_path="preferred_username",
        roles_source="jwt",
        roles_json_path="realm_access.roles",
        validate_token=True,
        jwks_uri=realm.jwks_uri,
        validate_issuer=True,
        issuer=realm.issuer,
    )
    token = mint(
        {"iss": realm.issuer, "preferred_username": "ann", "realm_access": {"roles": ["r1"]}},
        realm.key,
    )
    assert get(app, "/me", bearer(token)) == (200, {"user": "ann", "roles": ["r1"]})
    assert get(app, "/me", {}) == (401, {"detail": "authentication required"})
