"""Per-request cost of the ASGI adapter (issue 16, item 4), and uvicorn req/s with and without it.

In-process: each case is an ASGI app awaited with a prebuilt scope (a fresh copy per call, the
same for every case), interleaved in rounds as ``bench.py`` does; the median per-request cost is
printed with its ratio to the bare app and to the common FastAPI pattern, a dependency calling
``PyJWKClient.get_signing_key_from_jwt`` + ``jwt.decode`` on every request. Goal: a cache hit
costs <= 1/20 of that pattern.

Load (``--load``): uvicorn (one worker, on 127.0.0.1) serving the bare app, then the same app
behind the middleware with a validated RS256 token (a cache hit after the first request),
each measured by ``wrk`` in turn, twice. Goal: the middleware keeps >= 90% of the bare req/s.

    python benchmarks/asgi_bench.py                # in-process, 200 rounds x 200 calls
    python benchmarks/asgi_bench.py --quick        # a smoke run
    python benchmarks/asgi_bench.py --load         # uvicorn + wrk (apt-get install wrk)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from itertools import cycle
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from shared import AUDIENCE, ISSUER, Idp, keycloak_claims, validated_options

from jwt_headers.asgi import JwtHeadersASGIMiddleware

HERE = Path(__file__).resolve().parent
ASGIApp = Callable[[dict[str, Any], Any, Any], Awaitable[None]]


async def bare_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def scope_with(headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    """A scope as uvicorn builds it for ``GET /`` with a browser-like set of headers."""
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.1", 50000),
        "scheme": "http",
        "method": "GET",
        "root_path": "",
        "path": "/",
        "raw_path": b"/",
        "query_string": b"",
        "headers": [
            (b"host", b"127.0.0.1:8000"),
            (b"user-agent", b"bench/1.0"),
            (b"accept", b"*/*"),
            (b"accept-encoding", b"gzip, deflate"),
            *headers,
        ],
    }


def in_process(args: argparse.Namespace) -> None:
    now = time.time()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True) | {
        "kid": "rsa",
        "alg": "RS256",
        "use": "sig",
    }
    idp = Idp([jwk])
    jwks_uri = f"{idp.base}/jwks"

    def token(n: int = 0) -> str:
        return jwt.encode(keycloak_claims(now, n), key, algorithm="RS256", headers={"kid": "rsa"})

    rs_token = token()
    miss_pool = [token(n) for n in range(512)]
    jwk_client = jwt.PyJWKClient(jwks_uri, cache_keys=True)

    async def fastapi_pattern(scope: dict[str, Any], receive: Any, send: Any) -> None:
        """What most FastAPI code does in a dependency: PyJWKClient + jwt.decode per request."""
        raw = dict(scope["headers"])[b"authorization"].decode("latin-1")[7:]
        signing_key = jwk_client.get_signing_key_from_jwt(raw)
        claims = jwt.decode(
            raw,
            signing_key.key,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=ISSUER,
            leeway=30,
        )
        scope["user"] = claims["preferred_username"]
        await bare_app(scope, receive, send)

    public = key.public_key()

    async def pyjwt_decode(scope: dict[str, Any], receive: Any, send: Any) -> None:
        """jwt.decode alone, the key already at hand: the least any per-request check costs."""
        raw = dict(scope["headers"])[b"authorization"].decode("latin-1")[7:]
        claims = jwt.decode(
            raw, public, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER, leeway=30
        )
        scope["user"] = claims["preferred_username"]
        await bare_app(scope, receive, send)

    validated = validated_options(jwks_uri)
    miss_mw = JwtHeadersASGIMiddleware(bare_app, **validated, token_cache_size=64)
    miss_tokens = cycle([b"Bearer " + t.encode() for t in miss_pool])

    async def miss_case(scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["headers"] = [*scope["headers"][:-1], (b"authorization", next(miss_tokens))]
        await miss_mw(scope, receive, send)

    bearer = [(b"authorization", b"Bearer " + rs_token.encode())]
    cases: list[tuple[str, ASGIApp, dict[str, Any]]] = [
        ("bare ASGI app", bare_app, scope_with(bearer)),
        ("FastAPI pattern: PyJWKClient + jwt.decode", fastapi_pattern, scope_with(bearer)),
        ("PyJWT jwt.decode alone (key known)", pyjwt_decode, scope_with(bearer)),
        (
            "middleware: plain header",
            JwtHeadersASGIMiddleware(bare_app, user_name_header="X-User"),
            scope_with([(b"x-user", b"alice")]),
        ),
        (
            "middleware: validated RS256, cache hit",
            JwtHeadersASGIMiddleware(bare_app, **validated),
            scope_with(bearer),
        ),
        (
            "middleware: validated RS256, cache miss (thread)",
            miss_case,
            scope_with(bearer),
        ),
    ]

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b""}

    async def send(message: dict[str, Any]) -> None:
        pass

    async def run() -> dict[str, list[float]]:
        for _name, app, scope in cases:  # warm up: fetch keys, fill caches, end the watch
            for _ in range(120):
                await app(dict(scope), receive, send)
        samples: dict[str, list[float]] = {name: [] for name, _, _ in cases}
        for _ in range(args.rounds):
            for name, app, scope in cases:
                calls = args.calls if "miss" not in name else max(1, args.calls // 10)
                started = time.perf_counter()
                for _ in range(calls):
                    await app(dict(scope), receive, send)
                samples[name].append((time.perf_counter() - started) / calls * 1e6)
        return samples

    samples = asyncio.run(run())
    idp.stop()
    median = {name: statistics.median(values) for name, values in samples.items()}
    bare = median["bare ASGI app"]
    pattern = median["FastAPI pattern: PyJWKClient + jwt.decode"]
    print(
        f"jwt-headers ASGI benchmark: {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()}, "
        f"{args.rounds} rounds x {args.calls} calls, median us/request"
    )
    print(f"{'case':<50} {'us/req':>9} {'x bare':>8} {'added':>8} {'/pattern':>9}")
    for name, _, _ in cases:
        value = median[name]
        print(
            f"{name:<50} {value:9.2f} {value / bare:8.2f} {value - bare:8.2f} "
            f"{value / pattern:9.3f}"
        )
    hit = median["middleware: validated RS256, cache hit"]
    decode = median["PyJWT jwt.decode alone (key known)"]
    for label, reference in (("the FastAPI pattern", pattern), ("jwt.decode alone", decode)):
        verdict = "met" if hit <= reference / 20 else "NOT met"
        print(f"goal: cache hit <= 1/20 of {label}: {hit / reference:.3f} ({verdict})")


# ---------------------------------------------------------------------------- uvicorn + wrk
LOAD_APP = """
import os
from jwt_headers.asgi import JwtHeadersASGIMiddleware


async def bare(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            else:
                await send({"type": "lifespan.shutdown.complete"})
                return
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})


def protected():
    from jwt_headers import JwtHeadersConfig
    return JwtHeadersASGIMiddleware(bare, JwtHeadersConfig.from_env())


def plain():
    return bare
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wrk_rate(port: int, seconds: int, connections: int, header: str) -> float:
    out = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{connections}",
            f"-d{seconds}s",
            "-H",
            header,
            f"http://127.0.0.1:{port}/",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 30,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"wrk saw non-2xx answers:\n{out}")
    found = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if found is None:
        raise SystemExit(f"no Requests/sec in wrk's output:\n{out}")
    return float(found.group(1))


def load(args: argparse.Namespace) -> None:
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install -y wrk)")
    now = time.time()
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True) | {"kid": "rsa", "alg": "RS256"}
    idp = Idp([jwk])
    token = jwt.encode(keycloak_claims(now), key, algorithm="RS256", headers={"kid": "rsa"})
    header = f"Authorization: Bearer {token}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWT_HEADERS_")}
    for option, value in validated_options(f"{idp.base}/jwks").items():
        env[f"JWT_HEADERS_{option.upper()}"] = str(value).lower() if value is True else str(value)
    rates: dict[str, list[float]] = {"bare": [], "middleware": []}
    with tempfile.TemporaryDirectory(prefix="jwt-headers-asgi-load-") as tmp:
        (Path(tmp) / "load_app.py").write_text(LOAD_APP)
        env["PYTHONPATH"] = os.pathsep.join([str(HERE.parent), tmp])
        for _ in range(args.repeats):
            for name, factory in (("bare", "plain"), ("middleware", "protected")):
                port = free_port()
                process = subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "uvicorn",
                        "--factory",
                        "--no-access-log",
                        "--log-level",
                        "warning",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        f"load_app:{factory}",
                    ],
                    env=env,
                    cwd=tmp,
                )
                try:
                    deadline = time.monotonic() + 20
                    while True:
                        try:
                            socket.create_connection(("127.0.0.1", port), timeout=1).close()
                            break
                        except OSError:
                            if time.monotonic() > deadline:
                                raise SystemExit("uvicorn did not start") from None
                            time.sleep(0.1)
                    wrk_rate(port, 2, args.connections, header)  # warm-up, fills the cache
                    rates[name].append(wrk_rate(port, args.seconds, args.connections, header))
                finally:
                    process.terminate()
                    process.wait(timeout=10)
    idp.stop()
    import uvicorn

    print(
        f"uvicorn {uvicorn.__version__} (1 worker, {_loop_and_http()}), wrk -t1 "
        f"-c{args.connections} -d{args.seconds}s, {args.repeats} runs each, alternating; "
        f"{platform.python_implementation()} {platform.python_version()}, {os.cpu_count()} cores"
    )
    for name, values in rates.items():
        print(f"  {name:<38} req/s " + "  ".join(f"{v:9.0f}" for v in values))
    bare, protected = statistics.median(rates["bare"]), statistics.median(rates["middleware"])
    verdict = "met" if protected >= 0.9 * bare else "NOT met"
    print(
        f"goal: middleware (validated RS256, cache hit) >= 90% of bare: "
        f"{protected / bare:.1%} of median ({verdict})"
    )


def _loop_and_http() -> str:
    loop = "uvloop" if _has("uvloop") else "asyncio"
    http = "httptools" if _has("httptools") else "h11"
    return f"{loop} loop, {http}"


def _has(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=200)
    parser.add_argument("--calls", type=int, default=200, help="calls per case per round")
    parser.add_argument("--quick", action="store_true", help="20 rounds x 50 calls")
    parser.add_argument("--load", action="store_true", help="uvicorn + wrk instead")
    parser.add_argument("--seconds", type=int, default=10, help="wrk duration per run")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls = 20, 50
    if args.load:
        load(args)
    else:
        in_process(args)


if __name__ == "__main__":
    main()
