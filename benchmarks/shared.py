"""What the benchmark scripts share: the token shape, a counted key-set server, the bare app.

Every script in ``benchmarks/`` is run as ``python benchmarks/<script>.py``. Python then puts
``benchmarks/`` first on ``sys.path``, not the current directory, so ``import jwt_headers``
would find whatever copy is installed in the virtualenv (the editable install of another
checkout) instead of the code beside these scripts. Each script therefore puts the repository
root first on ``sys.path`` before importing ``jwt_headers`` and prints :data:`MEASURED` so the
output says which code was measured.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jwt_headers

ROOT = Path(__file__).resolve().parent.parent

ISSUER = "https://idp.example/realms/bench"
AUDIENCE = "bench-api"
MIB = 1024 * 1024
MEASURED = f"jwt_headers from {Path(jwt_headers.__file__).parent}"


def keycloak_claims(now: float, n: int = 0) -> dict[str, Any]:
    """A Keycloak-like access token payload (~1 KB)."""
    return {
        "exp": int(now) + 3600 + n,
        "iat": int(now),
        "auth_time": int(now) - 30,
        "jti": f"43e2b50e-ab2d-469d-abc8-{n:012d}",
        "iss": ISSUER,
        "aud": [AUDIENCE, "account"],
        "sub": "98cfe060-f980-4a05-8612-6c609219ffe9",
        "typ": "Bearer",
        "azp": "live-key2",
        "session_state": "7712b364-339a-4053-ae0c-7d3adfca9005",
        "acr": "0",
        "realm_access": {"roles": ["default-roles-dave", "offline_access", "uma_authorization"]},
        "resource_access": {
            "live-key2": {"roles": ["GeonetworkAdministrator", "GeoserverAdministrator"]},
            "account": {"roles": ["manage-account", "manage-account-links", "view-profile"]},
        },
        "scope": "openid phone offline_access microprofile-jwt profile address email",
        "sid": "7712b364-339a-4053-ae0c-7d3adfca9005",
        "upn": "david.blasby@geocat.net",
        "email_verified": False,
        "name": "david blasby",
        "groups": ["default-roles-dave-test2", "offline_access", "uma_authorization"],
        "preferred_username": "david.blasby@geocat.net",
        "given_name": "david",
        "family_name": "blasby",
        "email": "david.blasby@geocat.net",
    }


def validated_options(jwks_uri: str) -> dict[str, Any]:
    """The validated-token configuration every script measures (signature, issuer, audience,
    roles from the token), so figures from different scripts describe the same middleware."""
    return {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "roles_source": "jwt",
        "roles_json_path": "resource_access.live-key2.roles",
        "role_converter": "GeoserverAdministrator=ROLE_ADMINISTRATOR",
        "validate_token": True,
        "jwks_uri": jwks_uri,
        "validate_issuer": True,
        "issuer": ISSUER,
        "validate_audience": True,
        "audience": AUDIENCE,
    }


class Idp:
    """A key set and userinfo endpoint on 127.0.0.1, counted."""

    def __init__(self, jwks: list[dict[str, Any]], port: int = 0) -> None:
        body_jwks = json.dumps({"keys": jwks}).encode()
        body_userinfo = json.dumps({"sub": "98cfe060-f980-4a05-8612-6c609219ffe9"}).encode()
        self.requests = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests += 1
                body = body_jwks if self.path == "/jwks" else body_userinfo
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def bare_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]


def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
    return None


def rss_bytes() -> int:
    """Resident set size of this process from ``/proc/self/status``, after a full collection so
    garbage the cycle collector would free is not counted (as ``tests/memory_probe.py``)."""
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def child_env() -> dict[str, str]:
    """The environment for a child script: the repository root first on ``PYTHONPATH``, so a
    child measures the same ``jwt_headers`` as its parent whatever its working directory."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env
