"""The ASGI adapter (issue 16): scopes, Starlette's ``user``/``auth`` conventions, refusals for
http and WebSocket, pass-through of lifespan, trust without a client, the R18 scope cleaning,
R37's catch-all, and the proof that identity-provider I/O never blocks the event loop.

Requests run in-process through a recording ASGI app (``tests/asgi_helpers.py``); the
identity provider is the real fake IdP on 127.0.0.1 (``tests/idp.py``).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from typing import Any

import idp
import pytest
from asgi_helpers import RecordingASGIApp, asgi_call, make_scope, run_scope
from conftest import JSON, JWT, STRANGER, STRING, FrozenClock, RecordingApp, call
from idp import ISSUER, USER_NAME, make_key, mint

from jwt_headers import ConfigError, JwtHeadersConfig, JwtHeadersMiddleware, Principal
from jwt_headers.asgi import AnonymousUser, AuthCredentials, JwtHeadersASGIMiddleware
from jwt_headers.errors import InvalidToken
from jwt_headers.middleware import refusal_response

idp_server = idp.idp_server

ROLES: dict[str, Any] = {
    **STRING,
    "roles_source": "header",
    "roles_header": "X-Roles",
    "role_converter": "admin=ROLE_ADMIN",
}


def robot(server: idp.IdpServer, clock: FrozenClock, **extra: Any) -> JwtHeadersASGIMiddleware:
    return JwtHeadersASGIMiddleware(
        RecordingASGIApp(),
        clock=clock,
        user_name_header="Authorization",
        user_name_format="jwt",
        user_name_json_path="preferred_username",
        validate_token=True,
        jwks_uri=server.jwks_uri,
        validate_issuer=True,
        issuer=ISSUER,
        **extra,
    )


# --------------------------------------------------------------------------- success, anonymous
def test_success_sets_principal_user_and_auth_scopes():
    answer = asgi_call(
        {"X-User": "alice", "X-Roles": "admin, viewer"}, **ROLES, only_external_listed_roles=False
    )
    assert answer.status == 200 and answer.body == b"ok"
    scope = answer.app.scope
    principal = scope["jwt_headers.principal"]
    assert isinstance(principal, Principal)
    assert principal.name == "alice"
    assert scope["user"].is_authenticated is True
    assert scope["user"].display_name == "alice"
    assert scope["user"].identity == "alice"
    assert scope["auth"].scopes == list(principal.roles)
    assert "ROLE_ADMIN" in scope["auth"].scopes


def test_principal_is_the_one_the_wsgi_adapter_gives():
    config = JwtHeadersConfig(**ROLES)
    wsgi = call(JwtHeadersMiddleware(RecordingApp(), config), environ={"HTTP_X_USER": "alice"})
    asgi = asgi_call(JwtHeadersASGIMiddleware(RecordingASGIApp(), config), {"X-User": "alice"})
    assert asgi.principal == wsgi.principal


@pytest.mark.parametrize("fmt", [STRING, JSON, JWT], ids=["string", "json", "jwt"])
def test_anonymous_has_no_principal_and_an_unauthenticated_user(fmt):
    answer = asgi_call(**fmt)
    assert answer.status == 200
    scope = answer.app.scope
    assert "jwt_headers.principal" not in scope
    assert scope["user"].is_authenticated is False
    assert scope["auth"].scopes == []


def test_r18_upstream_principal_user_and_auth_are_removed_first():
    """R18: a principal, user or auth put in the scope by anything before us never reaches the
    app, whether the request then is anonymous or refused."""
    forged = Principal("mallory", ("ROLE_ADMIN",))
    upstream = {
        "jwt_headers.principal": forged,
        "user": "mallory",
        "auth": AuthCredentials(["ROLE_ADMIN"]),
    }
    anonymous = asgi_call(scope=make_scope(**upstream), **STRING)
    assert anonymous.status == 200
    scope = anonymous.app.scope
    assert "jwt_headers.principal" not in scope
    assert isinstance(scope["user"], AnonymousUser)
    assert scope["auth"].scopes == []
    # An untrusted header: dropped, and the forged values are still gone.
    stranger = asgi_call(
        scope=make_scope({"X-User": "mallory"}, peer=STRANGER, **upstream), **STRING
    )
    assert stranger.app.scope["user"].is_authenticated is False
    assert "jwt_headers.principal" not in stranger.app.scope


# --------------------------------------------------------------------------- refusals
@pytest.mark.parametrize(
    ("headers", "options"),
    [
        ({}, {**STRING, "allow_anonymous": False}),
        ({"X-User": "al\x01ice"}, STRING),
        ({"Authorization": "Bearer not.a.token"}, JWT),
    ],
    ids=["unauthenticated", "bad_name", "bad_token"],
)
def test_http_refusal_is_the_wsgi_response_and_the_app_is_not_called(headers, options):
    wsgi = call(headers=headers, **options)
    asgi = asgi_call(headers, **options)
    assert not asgi.app.called
    assert asgi.status == wsgi.status
    assert asgi.body == wsgi.body
    assert list(asgi.headers.items(lower=True)) == [
        (name.lower(), value) for name, value in wsgi.headers.items()
    ]
    assert asgi.reasons == wsgi.reasons


def test_refusal_rendering_is_refusal_response():
    refusal = InvalidToken("bad_signature", "token signature is invalid")
    status, headers, body = refusal_response(refusal)
    answer = asgi_call({"Authorization": "Bearer x.y.z"}, **JWT)
    assert answer.status == int(status.split()[0]) == 401
    assert [name.lower() for name, _ in headers] == [n for n, _ in answer.headers.items(lower=True)]
    assert body.startswith(b'{"error": {"code": "INVALID_TOKEN"')


def test_websocket_refused_with_close_1008_before_any_accept():
    answer = asgi_call(kind="websocket", **STRING, allow_anonymous=False)
    assert not answer.app.called
    assert answer.messages == [{"type": "websocket.close", "code": 1008}]


def test_websocket_with_a_bad_token_refused_before_accept():
    answer = asgi_call({"Authorization": "Bearer x.y.z"}, kind="websocket", **JWT)
    assert not answer.app.called
    assert answer.messages == [{"type": "websocket.close", "code": 1008}]
    assert answer.reasons


def test_websocket_accepted_gets_the_principal():
    answer = asgi_call({"X-User": "alice"}, kind="websocket", **STRING)
    assert answer.app.called
    assert answer.app.scope["user"].display_name == "alice"
    assert answer.messages[0] == {"type": "websocket.accept"}


def test_r37_unexpected_exception_is_401_internal_error_never_a_500():
    """R37: a scope no server would send (a header value that is not bytes) fails closed."""
    scope = make_scope(allow_anonymous=False)
    scope["headers"] = [(b"x-user", "alice")]  # str, not bytes
    answer = asgi_call(scope=scope, **STRING)
    assert answer.status == 401
    assert not answer.app.called
    assert answer.json["error"]["code"] == "INVALID_TOKEN"
    assert answer.reasons == ["internal_error"]


# --------------------------------------------------------------------------- pass-through
def test_lifespan_passes_through_untouched():
    app = RecordingASGIApp()
    middleware = JwtHeadersASGIMiddleware(app, **STRING, allow_anonymous=False)
    scope: dict[str, Any] = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    inbox = [{"type": "lifespan.startup"}, {"type": "lifespan.shutdown"}]
    sent: list[dict[str, Any]] = []

    async def receive():
        return inbox.pop(0)

    async def send(message):
        sent.append(message)

    asyncio.run(middleware(scope, receive, send))
    assert app.calls == [
        {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}, "headers": []}
    ]
    assert scope == {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    assert sent == [{"type": "lifespan.startup.complete"}, {"type": "lifespan.shutdown.complete"}]


def test_other_scope_types_pass_through_untouched():
    seen: list[dict[str, Any]] = []

    async def app(scope, receive, send):
        seen.append(scope)

    middleware = JwtHeadersASGIMiddleware(app, **STRING, allow_anonymous=False)
    scope = {"type": "webtransport", "user": "kept"}
    asyncio.run(middleware(scope, None, None))
    assert seen == [{"type": "webtransport", "user": "kept"}]


# --------------------------------------------------------------------------- trust
def test_r16_untrusted_peer_header_ignored_and_removed_in_every_spelling():
    """R16: from a stranger the header is not believed, and no spelling of it (``X-User``,
    ``X_User``) reaches the app, which might read it itself."""
    answer = asgi_call(
        [("X-User", "mallory"), ("X_User", "eve"), ("X-Other", "kept")], peer=STRANGER, **STRING
    )
    assert answer.status == 200
    assert answer.app.scope["user"].is_authenticated is False
    assert answer.app.scope["headers"] == [(b"x-other", b"kept")]


def test_r16_no_client_is_an_untrusted_peer():
    """A scope without ``client`` (a unix socket): no address, so not a trusted proxy."""
    answer = asgi_call({"X-User": "mallory"}, peer=None, **STRING)
    assert answer.status == 200
    assert answer.app.scope["user"].is_authenticated is False
    assert answer.app.scope["headers"] == []


def test_no_client_is_trusted_only_with_every_peer_trusted():
    answer = asgi_call({"X-User": "alice"}, peer=None, **STRING, trusted_proxies=["*"])
    assert answer.app.scope["user"].display_name == "alice"


def test_repeated_header_gives_the_wsgi_joined_value():
    """Two ``X-User`` headers: the same outcome as WSGI's ``", "``-joined value."""
    options = {**STRING, "allow_anonymous": False}
    wsgi = call(environ={"HTTP_X_USER": "alice, bob"}, **options)
    asgi = asgi_call([("X-User", "alice"), ("X-User", "bob")], **options)
    assert (asgi.status, asgi.body, asgi.user) == (wsgi.status, wsgi.body, wsgi.user)


def test_latin1_header_bytes_decoded_as_wsgi_does():
    """Header bytes are read as latin-1, so ``header_encoding`` applies unchanged: UTF-8
    ``é`` arrives as two latin-1 characters and ``auto`` decodes it back."""
    scope = make_scope()
    scope["headers"] = [(b"x-user", "José".encode())]
    answer = asgi_call(scope=scope, **STRING)
    assert answer.user == "José"


# --------------------------------------------------------------------------- config
def test_same_config_errors_as_the_wsgi_middleware():
    with pytest.raises(ConfigError) as wsgi:
        JwtHeadersMiddleware(RecordingApp(), user_name_format="xml", user_name_header="X")
    with pytest.raises(ConfigError) as asgi:
        JwtHeadersASGIMiddleware(RecordingASGIApp(), user_name_format="xml", user_name_header="X")
    assert str(asgi.value) == str(wsgi.value)
    with pytest.raises(ConfigError, match="either a config or options"):
        JwtHeadersASGIMiddleware(RecordingASGIApp(), JwtHeadersConfig(**STRING), leeway=3)


def test_path_rules_use_root_path_and_path():
    """``root_path`` is SCRIPT_NAME and ``path`` (with or without ``root_path``) PATH_INFO."""
    options = {**STRING, "allow_anonymous": False, "exempt_paths": ["/api/health"]}
    exempt = asgi_call(root_path="/api", path="/health", **options)
    assert exempt.status == 200
    scope = make_scope(root_path="/api", path="/health")
    scope["path"] = "/health"  # a server that leaves root_path out of path
    assert asgi_call(scope=scope, **options).status == 200
    assert asgi_call(root_path="/api", path="/other", **options).status == 401


# --------------------------------------------------------------------------- off the loop
class CountingExecutor(concurrent.futures.ThreadPoolExecutor):
    """The loop's default executor, counting what is handed to a worker thread."""

    def __init__(self) -> None:
        super().__init__(max_workers=8)
        self.submitted = 0

    def submit(self, fn, /, *args, **kwargs):
        self.submitted += 1
        return super().submit(fn, *args, **kwargs)


class NullMetrics:
    """A metrics observer: with metrics the adapter takes the two-pass cache check."""

    def allowed(self) -> None: ...
    def anonymous(self) -> None: ...
    def exempt(self) -> None: ...
    def refused(self, reason: str) -> None: ...
    def untrusted_header(self) -> None: ...
    def token_cache(self, hit: bool) -> None: ...
    def idp_call(self, endpoint: str, ok: bool, seconds: float) -> None: ...


#: One source reading one header (the one-pass cache check), and with metrics (two passes).
CACHE_CHECKS = pytest.mark.parametrize(
    "extra", [{}, {"metrics": NullMetrics()}], ids=["one_pass", "two_passes"]
)


@CACHE_CHECKS
def test_cold_token_waits_off_the_loop_while_cached_tokens_are_answered(idp_server, extra):
    """While a cold token's key-set fetch is held by the IdP, twenty requests with a cached
    token are answered, on the loop (no thread hop), and the cold one still waits: proven by
    order, not by timing. Released, the cold one is accepted with one fetch (single flight)."""
    clock = FrozenClock()
    now = clock.now
    middleware = robot(idp_server, clock, **extra)
    warm = mint({"preferred_username": "alice"}, idp_server.key, now)

    async def scenario() -> None:
        executor = CountingExecutor()
        asyncio.get_running_loop().set_default_executor(executor)
        first = await run_scope(middleware, make_scope({"Authorization": f"Bearer {warm}"}))
        assert first[0]["status"] == 200  # fetched the key set in a worker thread
        assert executor.submitted == 1
        # A new signing key: the cold token's kid is unknown, so the key set is fetched again,
        # and the IdP holds that fetch.
        new_key = make_key("RS256", kid="rotated")
        idp_server.keys.append(new_key)
        clock.advance(60)  # past the refetch cooldown; the warm token stays valid
        idp_server.jwks_mode = "hold"
        cold = mint({"preferred_username": "bob"}, new_key, clock.now)
        colds = [
            asyncio.ensure_future(
                run_scope(middleware, make_scope({"Authorization": f"Bearer {cold}"}))
            )
            for _ in range(3)
        ]
        assert await asyncio.to_thread(idp_server.wait_for, "/jwks", 2, 10.0)
        before = executor.submitted
        for _ in range(20):
            sent = await asyncio.wait_for(
                run_scope(middleware, make_scope({"Authorization": f"Bearer {warm}"})), 10
            )
            assert sent[0]["status"] == 200
        assert executor.submitted == before  # every cached answer stayed on the loop
        assert not any(task.done() for task in colds)  # the cold ones still wait
        idp_server.release()
        for sent in await asyncio.gather(*colds):
            assert sent[0]["status"] == 200
        assert idp_server.jwks_requests == 2  # one initial, one refetch for three requests

    asyncio.run(scenario())
    assert middleware.app.calls[-1]["user"].display_name == "bob"


@CACHE_CHECKS
def test_refused_token_in_the_refusal_cache_is_answered_on_the_loop(idp_server, extra):
    clock = FrozenClock()
    middleware = robot(idp_server, clock, **extra)
    bad = mint({"iss": "https://other.example.test"}, idp_server.key, clock.now)

    async def scenario() -> list[int]:
        executor = CountingExecutor()
        asyncio.get_running_loop().set_default_executor(executor)
        statuses = []
        for _ in range(3):
            sent = await run_scope(middleware, make_scope({"Authorization": f"Bearer {bad}"}))
            statuses.append(sent[0]["status"])
        return [*statuses, executor.submitted]

    assert asyncio.run(scenario()) == [401, 401, 401, 1]


@CACHE_CHECKS
def test_cold_token_is_decided_in_a_worker_thread(idp_server, extra):
    """The first request of a token is verified off the loop's thread."""
    clock = FrozenClock()
    threads: list[int] = []
    middleware = robot(idp_server, clock, **extra)
    verify = middleware.authenticator.readers[0].verifier
    assert verify is not None
    original = verify.__call__

    def recording(document):
        threads.append(threading.get_ident())
        return original(document)

    middleware.authenticator.readers[0]._verify = recording
    token = mint(None, idp_server.key, clock.now)

    async def scenario() -> int:
        await run_scope(middleware, make_scope({"Authorization": f"Bearer {token}"}))
        return threading.get_ident()

    loop_thread = asyncio.run(scenario())
    assert threads and threads[0] != loop_thread
    assert middleware.app.scope["user"].display_name == USER_NAME


def test_the_adapter_imports_no_web_framework():
    """Starlette is not a dependency of the core: the adapter only borrows its names."""
    import subprocess
    import sys

    code = (
        "import sys, jwt_headers.asgi; "
        "print(sorted(m for m in ('starlette', 'fastapi', 'anyio') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
