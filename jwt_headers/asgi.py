"""The ASGI adapter: the WSGI adapter's decisions, for Starlette, FastAPI and any ASGI app.

Each ``http`` or ``websocket`` request is turned into the small WSGI-shaped view the core reads
(``HTTP_*`` keys decoded as latin-1, a repeated header joined with ``", "`` as WSGI servers do,
``REMOTE_ADDR`` from ``scope["client"]``, the method, ``root_path`` and ``path``), so every rule,
source, check and cache is the WSGI adapter's, unchanged. There is no plain-environ channel:
only a WSGI server under Apache (mod_wsgi) can set those keys.

Identity-provider I/O never runs on the event loop: a request the caches can answer (the common
case, a known token) is answered on the loop without a thread hop; any other goes to a worker
thread, where the key set's and userinfo's single flights work as under a threaded WSGI server.

Example::

    from starlette.applications import Starlette
    from jwt_headers.asgi import JwtHeadersASGIMiddleware

    app = JwtHeadersASGIMiddleware(Starlette(routes=...), user_name_header="Authorization",
                                   user_name_format="jwt", ...)
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from .config import JwtHeadersConfig
from .core import MISS
from .errors import InvalidToken, Refusal, Unauthenticated
from .middleware import MARKER_KEY, PRINCIPAL_KEY, AdapterSetup, refusal_response
from .principal import Principal
from .sources import http_key

logger = logging.getLogger("jwt_headers")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Scope keys only this middleware may set: an upstream value is removed first (R18).
SCOPE_KEYS = (PRINCIPAL_KEY, "user", "auth")
#: Headers a WSGI server presents without the ``HTTP_`` prefix (PEP 3333).
_CGI_HEADERS = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}
#: Bound on the remembered header-name -> environ-key translations.
_MAX_NAMES = 1024
#: WebSocket close code "policy violation" (RFC 6455 7.4.1): sent before any accept.
WEBSOCKET_POLICY_VIOLATION = 1008


class AuthenticatedUser:
    """``scope["user"]`` for an authenticated request, with Starlette's ``BaseUser``
    attributes (``request.user.is_authenticated``, ``display_name``, ``identity``) and no
    Starlette import."""

    __slots__ = ("principal",)

    def __init__(self, principal: Principal) -> None:
        self.principal = principal

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.principal.name

    @property
    def identity(self) -> str:
        return self.principal.name

    @property
    def name(self) -> str:
        return self.principal.name

    @property
    def roles(self) -> tuple[str, ...]:
        return self.principal.roles

    def __repr__(self) -> str:
        return f"AuthenticatedUser({self.principal.name!r})"


class AnonymousUser:
    """``scope["user"]`` for an anonymous request (Starlette's ``UnauthenticatedUser``)."""

    __slots__ = ()

    is_authenticated = False
    display_name = ""
    identity = ""
    principal = None

    def __repr__(self) -> str:
        return "AnonymousUser()"


class AuthCredentials:
    """``scope["auth"]``: ``scopes`` are the principal's roles, so Starlette's
    ``requires("ROLE_X")`` and ``request.auth.scopes`` work unchanged."""

    __slots__ = ("scopes",)

    def __init__(self, scopes: list[str] | None = None) -> None:
        self.scopes = scopes if scopes is not None else []

    def __repr__(self) -> str:
        return f"AuthCredentials({self.scopes!r})"


_ANONYMOUS = AnonymousUser()


def _wsgi_path(scope: Scope) -> tuple[str, str]:
    """``SCRIPT_NAME`` and ``PATH_INFO`` as a WSGI server would give them: ``root_path`` is
    the script name; ``path`` without it (servers differ on whether ``path`` holds it); both
    as the latin-1 reading of their UTF-8 bytes, as PEP 3333 presents a path."""
    root = scope.get("root_path") or ""
    path = scope.get("path") or ""
    if not isinstance(root, str) or not isinstance(path, str):
        return "", ""
    if root and (path == root or path.startswith(root + "/")):
        path = path[len(root) :]
    if not path.isascii() or not root.isascii():
        root = root.encode("utf-8", "surrogateescape").decode("latin-1")
        path = path.encode("utf-8", "surrogateescape").decode("latin-1")
    return root, path


class JwtHeadersASGIMiddleware(AdapterSetup):
    """Authenticate every ``http`` and ``websocket`` request before the wrapped ASGI app sees
    it; ``lifespan`` and other scopes pass through untouched.

    :param app: the ASGI application to protect.
    :param config: a :class:`JwtHeadersConfig`; or give its options as keywords instead.
    :param clock: where validators read the time (tests freeze it).
    """

    def __init__(
        self,
        app: ASGIApp,
        config: JwtHeadersConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        **options: Any,
    ) -> None:
        super().__init__(config, clock, options)
        config = self.config
        self.app = app
        #: The environ keys the core reads; once the doctor's watch is over, only these
        #: headers are put in the view.
        self._wanted = frozenset(
            {"HTTP_AUTHORIZATION"}
            | {
                http_key(name)
                for source in config.source_configs
                for name in (source.user_name_header, source.roles_header_name)
                if name
            }
        )
        #: Header name -> environ key; and -> the key only when the core reads it, else "".
        self._keys: dict[bytes, str] = {}
        self._read: dict[bytes, str] = {}
        self._cached = self.authenticator.cached_answerer()
        self._paths = config.path_rules is not None and config.path_rules.has_paths

    def _view(self, scope: Scope, everything: bool) -> dict[str, Any]:
        """The WSGI-shaped mapping the core reads (see the module docstring)."""
        client = scope.get("client")
        view: dict[str, Any] = {
            # No client (a unix socket, a test harness): no address, so not trusted unless
            # trusted_proxies is ("*",).
            "REMOTE_ADDR": client[0] if client else None,
            "REQUEST_METHOD": "GET" if scope["type"] == "websocket" else scope.get("method"),
        }
        if self._paths:  # only path rules read the path
            view["SCRIPT_NAME"], view["PATH_INFO"] = _wsgi_path(scope)
        keys, key_of = (self._keys, self._key) if everything else (self._read, self._read_key)
        for name, value in scope.get("headers") or ():
            key = keys.get(name)
            if key is None:
                key = key_of(name)
            if key:  # "": a header the core never reads
                text = value.decode("latin-1")
                before = view.get(key)
                view[key] = text if before is None else f"{before}, {text}"
        return view

    def _key(self, name: bytes) -> str:
        """The environ key of header ``name``, remembered (a bounded number of names)."""
        key = _CGI_HEADERS.get(name.lower()) or http_key(name.decode("latin-1"))
        if len(self._keys) < _MAX_NAMES:
            self._keys[name] = key
        return key

    def _read_key(self, name: bytes) -> str:
        """As :meth:`_key` for a header the core reads, ``""`` for any other."""
        key = self._key(name)
        key = key if key in self._wanted else ""
        if len(self._read) < _MAX_NAMES:
            self._read[name] = key
        return key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        for key in SCOPE_KEYS:
            scope.pop(key, None)
        authenticator = self.authenticator
        try:
            watch = self._watch
            view = self._view(scope, everything=watch is not None)
            if watch is not None:
                view[MARKER_KEY] = scope.get(MARKER_KEY)
                if not watch.observe(view):
                    self._watch = None  # the first requests are seen: no cost from now on
            answer = self._cached(view)  # on the loop: caches only, no I/O
            if answer is MISS:  # identity-provider I/O ahead: a worker thread, never the loop
                answer = await asyncio.to_thread(authenticator.authenticate, view)
            principal, dropped = answer
        except Refusal as refusal:
            if type(refusal) is Unauthenticated:
                authenticator.log_unauthenticated(refusal)
            await self._refuse(kind, refusal, send)
            return
        except Exception as exc:  # fail closed: request input never makes a 500 (R37)
            logger.error(
                "internal_error exc=%s: request refused",
                type(exc).__name__,
                extra={"reason": "internal_error", "fingerprint": None},
            )
            authenticator.report_refusal("internal_error")
            await self._refuse(
                kind, InvalidToken("internal_error", "credentials could not be processed"), send
            )
            return
        if dropped:
            self._drop_headers(scope, frozenset(dropped))
        if principal is not None:
            scope[PRINCIPAL_KEY] = principal
            scope["user"] = AuthenticatedUser(principal)
            scope["auth"] = AuthCredentials(list(principal.roles))
        else:
            scope["user"] = _ANONYMOUS
            scope["auth"] = AuthCredentials()
        if self._watch is not None:  # a second middleware behind us watches the same requests
            scope[MARKER_KEY] = self._marker
        await self.app(scope, receive, send)

    def _drop_headers(self, scope: Scope, dropped: frozenset[str]) -> None:
        """Remove every spelling of an unbelieved header, as the WSGI adapter removes its
        environ key: the app must not read it from this peer."""
        keys = self._keys
        scope["headers"] = [
            (name, value)
            for name, value in scope.get("headers") or ()
            if (keys.get(name) or self._key(name)) not in dropped
        ]

    @staticmethod
    async def _refuse(kind: str, refusal: Refusal, send: Send) -> None:
        """The WSGI refusal, byte for byte, for ``http``; close 1008 before any accept for a
        WebSocket (the server then answers the handshake with 403)."""
        if kind == "websocket":
            await send({"type": "websocket.close", "code": WEBSOCKET_POLICY_VIOLATION})
            return
        status, headers, body = refusal_response(refusal)
        await send(
            {
                "type": "http.response.start",
                "status": int(status.split(" ", 1)[0]),
                "headers": [
                    (name.lower().encode("latin-1"), value.encode("latin-1"))
                    for name, value in headers
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


__all__ = [
    "SCOPE_KEYS",
    "AnonymousUser",
    "AuthCredentials",
    "AuthenticatedUser",
    "JwtHeadersASGIMiddleware",
]
