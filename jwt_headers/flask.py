"""Flask helpers: wire the middleware from ``app.config``, read the principal, guard views.

The middleware stays the only place that authenticates; these helpers only read what it left in
the environ, so a Flask view sees exactly the identity a plain WSGI app would. Nothing here keeps
a principal beyond the request it came with: ``current_principal`` looks it up again on every
access (GeoServer re-reads the header on every request too).

Example::

    from flask import Flask
    from jwt_headers.flask import current_principal, init_app, roles_required

    app = Flask(__name__)
    app.config["JWT_HEADERS_USER_NAME_HEADER"] = "X-User"
    init_app(app)

    @app.get("/admin")
    @roles_required("ROLE_ADMINISTRATOR")
    def admin():
        return {"user": current_principal.name}
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from flask import Flask, Response, current_app, request
from werkzeug.local import LocalProxy

from .config import JwtHeadersConfig
from .errors import ConfigError, Unauthenticated
from .middleware import (
    PRINCIPAL_KEY,
    JwtHeadersMiddleware,
    insufficient_role_body,
    refusal_response,
)
from .principal import Principal

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = ["CONFIG_PREFIX", "current_principal", "init_app", "roles_required"]

#: ``app.config`` keys ``JWT_HEADERS_<OPTION>`` hold the middleware's options.
CONFIG_PREFIX = "JWT_HEADERS_"
_EXTENSION = "jwt_headers"

P = ParamSpec("P")
R = TypeVar("R")


def init_app(app: Flask, config: JwtHeadersConfig | None = None) -> JwtHeadersMiddleware:
    """Put the middleware in front of ``app.wsgi_app`` and return it.

    Without ``config`` the options come from ``app.config`` (``JWT_HEADERS_USER_NAME_HEADER``
    ...), text or typed values alike, so the same settings file can configure Flask and us. A
    second call is refused: two middlewares would authenticate every request twice.
    """
    if _EXTENSION in app.extensions:
        raise RuntimeError(f"jwt_headers.flask.init_app was already called for {app.name!r}")
    if config is None:
        config = config_from_app(app)
    inner: WSGIApplication = app.wsgi_app
    middleware = JwtHeadersMiddleware(inner, config)
    app.wsgi_app = middleware  # type: ignore[method-assign]
    app.extensions[_EXTENSION] = middleware
    return middleware


def config_from_app(app: Flask) -> JwtHeadersConfig:
    """The config given by the ``JWT_HEADERS_*`` keys of ``app.config``.

    A Flask app with no such key at all is almost surely missing its settings file; saying so
    beats the generic "user_name_header is required".
    """
    found = {
        key[len(CONFIG_PREFIX) :]: value
        for key, value in app.config.items()
        if key.startswith(CONFIG_PREFIX)
    }
    if not found:
        raise ConfigError(
            f"no {CONFIG_PREFIX}* key in app.config of {app.name!r}: set at least "
            f"{CONFIG_PREFIX}USER_NAME_HEADER (e.g. 'X-User'), or pass a JwtHeadersConfig to "
            "init_app"
        )
    return JwtHeadersConfig.from_mapping(found)


def _principal() -> Principal | None:
    found = request.environ.get(PRINCIPAL_KEY)
    return found if isinstance(found, Principal) else None


#: The request's :class:`Principal`, or ``None`` when it is anonymous. A proxy is never ``None``
#: itself: test it with ``if current_principal:``, or get the object with
#: ``current_principal._get_current_object()``. Outside a request it is falsy and reading it
#: raises ``RuntimeError``.
current_principal: LocalProxy[Principal | None] = LocalProxy(_principal)


def roles_required(*roles: str) -> Callable[[Callable[P, R]], Callable[P, R | Response]]:
    """Let a view run only for a principal holding every one of ``roles``.

    Anonymous requests get ``401`` exactly as the middleware's ``allow_anonymous=False`` answers
    them, so a client sees one format whichever layer refused it; a principal lacking a role gets
    ``403`` naming what was required and what it holds. With no roles, any principal passes.
    """
    for role in roles:
        if not isinstance(role, str):  # @roles_required without parentheses gives the view here
            raise TypeError(
                f"roles_required takes role names, got {role!r}; write "
                "@roles_required('ROLE_X') with parentheses"
            )
    required = tuple(dict.fromkeys(roles))

    def decorate(view: Callable[P, R]) -> Callable[P, R | Response]:
        @functools.wraps(view)
        def guarded(*args: P.args, **kwargs: P.kwargs) -> R | Response:
            principal = _principal()
            if principal is None:
                return _unauthenticated()
            missing = [role for role in required if role not in principal.roles]
            if missing:
                return _insufficient_role(required, principal)
            result: R = current_app.ensure_sync(view)(*args, **kwargs)
            return result

        return guarded

    return decorate


def _unauthenticated() -> Response:
    status, headers, body = refusal_response(Unauthenticated())
    return Response(body, status=status, headers=headers)


def _insufficient_role(required: tuple[str, ...], principal: Principal) -> Response:
    return Response(
        insufficient_role_body(required, principal.roles),
        status=403,
        headers={"Cache-Control": "no-store"},
        content_type="application/json",
    )
