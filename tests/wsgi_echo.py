"""A WSGI app for gunicorn in ``test_real_server.py``: ``jwt_headers`` configured from the
``JWT_HEADERS_*`` environment, in front of an app that answers 200 with JSON telling what it
received (the user, the roles, the claim names, the ``HTTP_OIDC*`` keys that reached it and the
peer address gunicorn saw).

Run as ``gunicorn --chdir tests wsgi_echo:app``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from jwt_headers import JwtHeadersConfig, JwtHeadersMiddleware

PRINCIPAL_KEY = "jwt_headers.principal"


def echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    principal = environ.get(PRINCIPAL_KEY)
    claims = principal.claims if principal is not None else None
    body = json.dumps(
        {
            "user": environ.get("REMOTE_USER"),
            "roles": list(principal.roles) if principal is not None else [],
            "claims_keys": sorted(claims) if claims is not None else None,
            "saw_headers": {k: v for k, v in environ.items() if k.startswith("HTTP_OIDC")},
            "peer": environ.get("REMOTE_ADDR"),
        }
    ).encode()
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


app = JwtHeadersMiddleware(echo, JwtHeadersConfig.from_env())
