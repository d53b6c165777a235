"""IdP calls of a fleet, with and without the shared cache, and what a Redis round trip costs.

Starts the fake IdP of the tests (``tests/idp.py``), a ``redis-server`` on a free loopback
port, and 4 worker processes (``tests/fleet_worker.py``) serving the middleware over HTTP.
Sends 1 000 requests (100 distinct valid tokens x 10 each, request *i* of token *j* to worker
``(i + j) % 4``, so every token visits every worker), once without ``cache_url`` and once
with it, and prints the userinfo calls and key-set fetches per 1 000 requests for both.
Then times, in this process, a redis-py GET (and the GET+PTTL pipeline the cache sends) on
loopback against one RS256 (2048-bit) and one ES256 signature check through PyJWT's algorithm
objects, as ``jwt_headers/verify.py`` calls them: what decides which checks are shared.

    python benchmarks/fleet.py
    python benchmarks/fleet.py --tokens 100 --repeat 10 --workers 4
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import jwt  # noqa: E402
from fleet_worker import Fleet  # noqa: E402
from idp import ISSUER, IdpServer, make_key, mint  # noqa: E402
from jwt.algorithms import ECAlgorithm, RSAAlgorithm  # noqa: E402
from redis_server import RedisServer  # noqa: E402


def options(idp: IdpServer, cache_url: str | None) -> dict[str, Any]:
    found: dict[str, Any] = {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "validate_token": True,
        "jwks_uri": idp.jwks_uri,
        "validate_issuer": True,
        "issuer": ISSUER,
        "validate_userinfo": True,
        "userinfo_endpoint": idp.userinfo_endpoint,
        "exempt_paths": ["/calls"],
    }
    if cache_url is not None:
        found["cache_url"] = cache_url
    return found


def run_fleet(
    idp: IdpServer, cache_url: str | None, tokens: list[str], repeat: int, workers: int
) -> tuple[int, int, int, float]:
    """(userinfo calls, key-set fetches, requests, median ms) for one fleet's run."""
    idp.reset()
    with tempfile.TemporaryDirectory() as logs:
        fleet = Fleet(options(idp, cache_url), workers, Path(logs))
        try:
            seconds: list[float] = []
            sent = 0
            for turn in range(repeat):
                for index, token in enumerate(tokens):
                    status, body, took = fleet.get((turn + index) % workers, token)
                    if status != 200:
                        raise SystemExit(f"request refused: {status} {body}")
                    seconds.append(took)
                    sent += 1
        finally:
            fleet.stop()
    return idp.userinfo_requests, idp.jwks_requests, sent, statistics.median(seconds) * 1000


def median_us(work: Any, rounds: int = 30, calls: int = 200) -> float:
    """The median over ``rounds`` of the mean time of ``calls`` calls, in microseconds."""
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(calls):
            work()
        times.append((time.perf_counter() - started) / calls)
    return statistics.median(times) * 1e6


def round_trip_versus_verify(redis_url: str, idp: IdpServer) -> dict[str, float]:
    import redis
    import requests

    client = redis.Redis.from_url(redis_url, socket_timeout=1)
    client.set("jwt_headers:v1:userinfo:bench", '{"v":1,"ok":true,"sub":"s"}', px=600_000)

    def pipelined() -> None:
        pipe = client.pipeline(transaction=False)
        pipe.get("jwt_headers:v1:userinfo:bench")
        pipe.pttl("jwt_headers:v1:userinfo:bench")
        pipe.execute()

    found = {
        "redis GET (loopback)": median_us(lambda: client.get("jwt_headers:v1:userinfo:bench")),
        "redis GET+PTTL pipeline (what the cache sends)": median_us(pipelined),
    }
    client.close()
    for alg, algorithm in (
        ("RS256", RSAAlgorithm(RSAAlgorithm.SHA256)),
        ("ES256", ECAlgorithm(ECAlgorithm.SHA256)),
    ):
        key = make_key(alg)
        token = jwt.encode({"sub": "s"}, key.private_key, algorithm=alg)
        head, body, signature = token.split(".")
        message = f"{head}.{body}".encode()
        raw = jwt.utils.base64url_decode(signature)
        public = algorithm.from_jwk(key.public_jwk())
        assert algorithm.verify(message, public, raw)
        label = f"{alg} verify ({'RSA 2048' if alg == 'RS256' else 'P-256'})"
        found[label] = median_us(lambda a=algorithm, m=message, p=public, r=raw: a.verify(m, p, r))
    session, token = requests.Session(), mint(None, idp.key)
    found["userinfo call to the fake IdP (loopback HTTP)"] = median_us(
        lambda: session.get(idp.userinfo_endpoint, headers={"Authorization": f"Bearer {token}"}),
        rounds=10,
        calls=20,
    )
    return found


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args(argv)
    print(
        f"jwt-headers fleet: CPython {platform.python_version()}, {platform.machine()}, "
        f"{args.workers} workers, {args.tokens} tokens x {args.repeat} requests"
    )
    with IdpServer([make_key("RS256")]) as idp:
        cache = RedisServer().start()
        try:
            tokens = [mint({"jti": f"fleet-{n}"}, idp.key) for n in range(args.tokens)]
            per = 1000 / (args.tokens * args.repeat)
            print(f"{'':24}{'userinfo/1000':>15}{'key set/1000':>14}{'median ms':>11}")
            for label, url in (("without cache_url", None), ("with cache_url", cache.url)):
                userinfo, jwks, _sent, median_ms = run_fleet(
                    idp, url, tokens, args.repeat, args.workers
                )
                print(f"{label:24}{userinfo * per:>15.0f}{jwks * per:>14.0f}{median_ms:>11.2f}")
            print("one operation, median us (in this process):")
            for label, micros in round_trip_versus_verify(cache.url, idp).items():
                print(f"  {label:48}{micros:>8.1f}")
        finally:
            cache.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
