"""Per-request cost of jwt-headers, side by side with a bare app and PyJWT-per-request.

Each case is a WSGI callable called in-process with a prebuilt environ. Cases are interleaved
in rounds (so machine drift hits all of them alike) and the median per-request cost over the
rounds is printed with its ratio to the bare app and to ``jwt.decode``.

    python benchmarks/bench.py            # default: 300 rounds x 200 calls
    python benchmarks/bench.py --quick    # a smoke run
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import cycle
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from jwt_headers import JwtHeadersMiddleware

ISSUER = "https://idp.example/realms/bench"
AUDIENCE = "bench-api"


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


class Idp:
    """A key set and userinfo endpoint on 127.0.0.1, counted."""

    def __init__(self, jwks: list[dict[str, Any]]) -> None:
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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
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


class _NullMetrics:
    """A metrics observer that does nothing: the cost of the hook itself."""

    def allowed(self) -> None: ...
    def anonymous(self) -> None: ...
    def exempt(self) -> None: ...
    def refused(self, reason: str) -> None: ...
    def untrusted_header(self) -> None: ...
    def token_cache(self, hit: bool) -> None: ...
    def idp_call(self, endpoint: str, ok: bool, seconds: float) -> None: ...


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--calls", type=int, default=200, help="calls per case per round")
    parser.add_argument("--quick", action="store_true", help="30 rounds x 50 calls")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls = 30, 50

    now = time.time()
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    rsa_jwk = RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True) | {
        "kid": "rsa",
        "alg": "RS256",
        "use": "sig",
    }
    ec_jwk = ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True) | {
        "kid": "ec",
        "alg": "ES256",
        "use": "sig",
    }
    idp = Idp([rsa_jwk, ec_jwk])

    def token(key: Any, alg: str, kid: str, n: int = 0) -> str:
        return jwt.encode(keycloak_claims(now, n), key, algorithm=alg, headers={"kid": kid})

    rs_token = token(rsa_key, "RS256", "rsa")
    es_token = token(ec_key, "ES256", "ec")
    miss_pool = [token(rsa_key, "RS256", "rsa", n) for n in range(512)]
    json_header = json.dumps(keycloak_claims(now), separators=(",", ":"))

    validated = {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "roles_source": "jwt",
        "roles_json_path": "resource_access.live-key2.roles",
        "role_converter": "GeoserverAdministrator=ROLE_ADMINISTRATOR",
        "validate_token": True,
        "jwks_uri": f"{idp.base}/jwks",
        "validate_issuer": True,
        "issuer": ISSUER,
        "validate_audience": True,
        "audience": AUDIENCE,
    }

    def mw(**options: Any) -> JwtHeadersMiddleware:
        return JwtHeadersMiddleware(bare_app, **options)

    def environ(**headers: str) -> dict[str, Any]:
        env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "127.0.0.1"}
        env.update(headers)
        return env

    def remote_user_middleware(env: dict[str, Any], sr: Callable[..., Any]) -> list[bytes]:
        """What Django's RemoteUserMiddleware does with a header: read it, set REMOTE_USER."""
        user = env.get("HTTP_X_REMOTE_USER")
        if user:
            env["REMOTE_USER"] = user
        return bare_app(env, sr)

    rs_public = rsa_key.public_key()

    def pyjwt_per_request(env: dict[str, Any], sr: Callable[..., Any]) -> list[bytes]:
        """How most Flask/Django JWT code works: jwt.decode on every request."""
        raw = env["HTTP_AUTHORIZATION"][7:]
        claims = jwt.decode(
            raw, rs_public, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER, leeway=30
        )
        env["REMOTE_USER"] = claims["preferred_username"]
        return bare_app(env, sr)

    rs_alg = RSAAlgorithm(RSAAlgorithm.SHA256)

    def floor(env: dict[str, Any], sr: Callable[..., Any]) -> list[bytes]:
        """Raw cryptography verify + base64url + json of the payload: the cost floor of a miss."""
        raw = env["HTTP_AUTHORIZATION"][7:]
        head, payload, sig = raw.split(".")
        rs_alg.verify(f"{head}.{payload}".encode(), rs_public, jwt.utils.base64url_decode(sig))
        env["REMOTE_USER"] = json.loads(jwt.utils.base64url_decode(payload))["preferred_username"]
        return bare_app(env, sr)

    miss_mw = mw(**validated, token_cache_size=64)
    miss_tokens = cycle(miss_pool)

    def miss_case(env: dict[str, Any], sr: Callable[..., Any]) -> Any:
        env["HTTP_AUTHORIZATION"] = "Bearer " + next(miss_tokens)
        return miss_mw(env, sr)

    bearer_rs = {"HTTP_AUTHORIZATION": "Bearer " + rs_token}
    bearer_es = {"HTTP_AUTHORIZATION": "Bearer " + es_token}
    cases: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [
        ("bare app", bare_app, environ()),
        (
            "RemoteUserMiddleware-style header read",
            remote_user_middleware,
            environ(HTTP_X_REMOTE_USER="alice"),
        ),
        ("PyJWT jwt.decode per request (RS256)", pyjwt_per_request, environ(**bearer_rs)),
        ("floor: raw RSA verify + b64 + json", floor, environ(**bearer_rs)),
        (
            "middleware: plain header",
            mw(user_name_header="X-Remote-User"),
            environ(HTTP_X_REMOTE_USER="alice"),
        ),
        (
            "middleware: JSON header",
            mw(
                user_name_header="OIDC_id_token_payload",
                user_name_format="json",
                user_name_json_path="preferred_username",
                roles_source="json",
                roles_json_path="resource_access.live-key2.roles",
            ),
            environ(HTTP_OIDC_ID_TOKEN_PAYLOAD=json_header),
        ),
        (
            "middleware: unvalidated JWT",
            mw(
                user_name_header="Authorization",
                user_name_format="jwt",
                user_name_json_path="preferred_username",
            ),
            environ(**bearer_rs),
        ),
        ("middleware: validated RS256, cache hit", mw(**validated), environ(**bearer_rs)),
        (
            "middleware: validated RS256, cache hit, no path rules",
            mw(**validated, exempt_methods=()),
            environ(**bearer_rs),
        ),
        (
            "middleware: validated RS256, cache hit, metrics hook",
            mw(**validated, metrics=_NullMetrics()),
            environ(**bearer_rs),
        ),
        (
            "middleware: validated RS256, cache hit, prometheus",
            mw(**validated, metrics="prometheus"),
            environ(**bearer_rs),
        ),
        (
            "middleware: validated RS256, cache hit, 3 path rules",
            mw(**validated, exempt_paths=["/healthz", "/static/*"], protected_paths=["/admin"]),
            environ(**bearer_rs),
        ),
        ("middleware: validated ES256, cache hit", mw(**validated), environ(**bearer_es)),
        (
            "middleware: validated + userinfo, cache hit",
            mw(**validated, validate_userinfo=True, userinfo_endpoint=f"{idp.base}/userinfo"),
            environ(**bearer_rs),
        ),
        ("middleware: validated RS256, cache miss", miss_case, environ(**bearer_rs)),
    ]
    for _name, app, env in cases:  # warm up: fetch keys, fill caches
        for _ in range(3):
            app(dict(env), start_response)
            if _name.startswith("middleware") and "miss" not in _name:
                assert app(env, start_response) == [b"ok"], _name

    samples: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(args.rounds):
        for name, app, env in cases:
            started = time.perf_counter()
            for _ in range(args.calls):
                app(env, start_response)
            samples[name].append((time.perf_counter() - started) / args.calls * 1e6)
    idp.stop()

    median = {name: statistics.median(values) for name, values in samples.items()}
    bare = median["bare app"]
    decode = median["PyJWT jwt.decode per request (RS256)"]
    print(
        f"jwt-headers benchmark: {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()}, "
        f"{args.rounds} rounds x {args.calls} calls, median us/request"
    )
    print(f"{'case':<46} {'us/req':>9} {'x bare':>8} {'added':>8} {'/decode':>8}")
    for name, _, _ in cases:
        value = median[name]
        print(
            f"{name:<46} {value:9.2f} {value / bare:8.2f} {value - bare:8.2f} {value / decode:8.3f}"
        )
    print(f"IdP requests during the run: {idp.requests}", file=sys.stderr)


if __name__ == "__main__":
    main()
