"""A Starlette app behind jwt-headers (the README's example), for ``test_asgi_uvicorn.py``:
``request.user``, ``request.auth.scopes`` and ``@requires`` as Starlette documents them, with
jwt-headers in place of Starlette's ``AuthenticationMiddleware``. Configured from the
``JWT_HEADERS_*`` environment; run as ``uvicorn --factory asgi_starlette_app:create_app``."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.authentication import requires
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from jwt_headers import JwtHeadersConfig
from jwt_headers.asgi import JwtHeadersASGIMiddleware


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "user": request.user.display_name if request.user.is_authenticated else None,
            "scopes": request.auth.scopes,
            "headers": sorted(request.headers.keys()),
        }
    )


@requires("ROLE_ADMINISTRATOR")
async def admin(request: Request) -> JSONResponse:
    return JSONResponse({"admin": request.user.display_name})


async def socket(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text(websocket.user.display_name or "anonymous")
    await websocket.close()


def create_app() -> JwtHeadersASGIMiddleware:
    app = Starlette(
        routes=[
            Route("/whoami", whoami),
            Route("/admin", admin),
            WebSocketRoute("/ws", socket),
        ]
    )
    return JwtHeadersASGIMiddleware(app, JwtHeadersConfig.from_env())
