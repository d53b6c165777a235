"""A FastAPI app behind jwt-headers, configured from ``JWT_HEADERS_*`` environment variables.

The same env files as the Flask sample work here (``robot.env`` for Bearer tokens checked
against the identity provider, ``flask.env`` behind Apache); only the server differs::

    set -a; . samples/robot.env; set +a
    uvicorn --factory --app-dir samples fastapi_app:create_app --host 127.0.0.1 --port 8000

The middleware wraps the whole app (``app = JwtHeadersASGIMiddleware(api, config)``), so every
route, FastAPI's own 404s and WebSocket handshakes pass through authentication first. A
cached token is decided on the event loop in microseconds; a new one is checked against the
identity provider in a worker thread, so a slow provider never stalls other requests.

Two ways to use the identity in a route:

- ``Depends(principal)``: the :class:`~jwt_headers.Principal` (name, roles, claims), or a 401
  when the request is anonymous;
- Starlette's ``@requires("ROLE_ADMINISTRATOR")`` (``request.auth.scopes`` are the roles), or
  ``Depends(role("ROLE_ADMINISTRATOR"))`` below, which answers 403 without the role.

Do not put ``uvicorn --proxy-headers`` / ``--forwarded-allow-ips`` wider than the proxy's own
address: jwt-headers decides whether to believe an unsigned header from the client address
(``trusted_proxies``), and those options let ``X-Forwarded-For`` choose that address.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import Depends, FastAPI, HTTPException, Request

from jwt_headers import PRINCIPAL_KEY, JwtHeadersConfig, Principal
from jwt_headers.asgi import JwtHeadersASGIMiddleware

logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def principal(request: Request) -> Principal:
    """The caller's :class:`Principal`; 401 when anonymous (``allow_anonymous`` is on)."""
    found = request.scope.get(PRINCIPAL_KEY)
    if not isinstance(found, Principal):
        raise HTTPException(status_code=401, detail="authentication required")
    return found


def role(name: str) -> Callable[[Principal], Principal]:
    """A dependency that lets through only callers with role ``name`` (403 otherwise)."""

    def check(caller: Principal = Depends(principal)) -> Principal:  # noqa: B008
        if name not in caller.roles:
            raise HTTPException(status_code=403, detail=f"{name} required")
        return caller

    return check


def create_api() -> FastAPI:
    """The routes, unprotected (for tests that wrap them themselves)."""
    api = FastAPI(title="jwt-headers FastAPI sample")

    @api.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @api.get("/whoami")
    def whoami(request: Request) -> dict[str, object]:
        """Who the middleware says is calling (anonymous allowed)."""
        user = request.user
        return {
            "user": user.display_name if user.is_authenticated else None,
            "roles": list(request.auth.scopes),
            "anonymous": not user.is_authenticated,
        }

    @api.get("/me")
    def me(caller: Principal = Depends(principal)) -> dict[str, object]:  # noqa: B008
        """The principal through a dependency: 401 when anonymous."""
        return {"user": caller.name, "roles": list(caller.roles)}

    @api.get("/admin")
    def admin(
        caller: Principal = Depends(role("ROLE_ADMINISTRATOR")),  # noqa: B008
    ) -> dict[str, str]:
        """Only for ROLE_ADMINISTRATOR (403 for others, 401 when anonymous)."""
        return {"admin": caller.name}

    return api


def create_app(config: JwtHeadersConfig | None = None) -> JwtHeadersASGIMiddleware:
    """The app, protected by jwt-headers (``config`` defaults to the ``JWT_HEADERS_*`` env)."""
    if config is None:
        config = JwtHeadersConfig.from_env()
    return JwtHeadersASGIMiddleware(create_api(), config)
