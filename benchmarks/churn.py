"""Memory per cached token, and cache churn and floods, each in a fresh interpreter.

``bench.py`` runs this script once per scenario (``python benchmarks/churn.py <scenario>``) and
reads the JSON object printed as the last line. A fresh process per scenario keeps the resident
set (``VmRSS``) free of what the other cases allocated; the approach is the one of
``tests/memory_probe.py``, copied here so the benchmarks run without pytest.

Scenarios (all against the validated RS256 configuration of ``bench.py``, from a peer on the
internet, with a key-set server on 127.0.0.1):

``per-token``
    bytes per cached token (tracemalloc), the ``Bearer <token>`` header value included, for
    ``--count`` distinct Keycloak-like RS256 tokens.
``churn``
    (a) ``--tokens`` distinct valid RS256 tokens cycling ``--passes`` times through a token
    cache of ``--cache`` entries: every request is a miss that verifies and evicts.
``forged``
    (b) ``--tokens`` distinct forged tokens (known ``kid``, random signature): each costs an
    RSA verify and a negative-cache entry.
``repeated``
    (c) one forged token sent ``--tokens`` times: after the first, a negative-cache hit.

Per-request cost is the time spent inside the middleware only (tokens are made in batches of
100 outside the timed loop); the first batch is a warm-up, untimed; RSS growth is from just
before the first timed request to the end.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from shared import (
    MEASURED,
    MIB,
    Idp,
    bare_app,
    keycloak_claims,
    rss_bytes,
    validated_options,
)

from jwt_headers import JwtHeadersMiddleware

PEER = "203.0.113.9"  # a client on the internet: only a signature-checked token counts
BATCH = 100  # header values made per timed batch: small, so the harness's own memory is too
WARM = 1000  # requests before measuring: fills a cache of 1000 (the default negative cache)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


class Setup:
    """An RSA key, its key set served on 127.0.0.1, and a middleware validating against it."""

    def __init__(self, **extra: Any) -> None:
        self.now = time.time()
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
        self.idp = Idp([jwk | {"kid": "rsa", "alg": "RS256", "use": "sig"}])
        self.middleware = JwtHeadersMiddleware(
            bare_app, **validated_options(f"{self.idp.base}/jwks"), **extra
        )
        self.statuses: Counter[str] = Counter()
        self.header = b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": "rsa"}).encode())
        template = json.dumps(keycloak_claims(self.now), separators=(",", ":"))
        self.template = template.replace("43e2b50e-ab2d-469d-abc8-000000000000", "@@JTI@@")

    def token(self, n: int) -> str:
        return jwt.encode(
            keycloak_claims(self.now, n), self.key, algorithm="RS256", headers={"kid": "rsa"}
        )

    def forged(self, n: int) -> str:
        """A well-formed token naming the real key, with a random signature."""
        payload = b64url(self.template.replace("@@JTI@@", f"forged-{n:012d}").encode())
        return f"{self.header}.{payload}.{b64url(os.urandom(256))}"

    def start_response(self, status: str, headers: Any, exc_info: Any = None, /) -> Any:
        self.statuses[status[:3]] += 1
        return None

    def send(self, value: str) -> dict[str, Any]:
        environ: dict[str, Any] = {
            "REQUEST_METHOD": "GET",
            "PATH_INFO": "/",
            "REMOTE_ADDR": PEER,
            "HTTP_AUTHORIZATION": value,
        }
        self.middleware(environ, self.start_response)
        return environ

    def timed(self, batches: Iterator[list[str]]) -> tuple[int, float]:
        """(requests, seconds inside the middleware) over header values made batch by batch."""
        count, seconds = 0, 0.0
        call, respond = self.middleware, self.start_response
        for values in batches:
            environs = [
                {
                    "REQUEST_METHOD": "GET",
                    "PATH_INFO": "/",
                    "REMOTE_ADDR": PEER,
                    "HTTP_AUTHORIZATION": value,
                }
                for value in values
            ]
            started = time.perf_counter()
            for environ in environs:
                call(environ, respond)
            seconds += time.perf_counter() - started
            count += len(environs)
            del environs, values  # one batch alive at a time, as in the warm-up batch
        return count, seconds


def cache_lengths(middleware: JwtHeadersMiddleware) -> dict[str, Any]:
    """The token and negative cache lengths, where the middleware still exposes them (private
    attributes: another version may name them otherwise)."""
    authenticator = getattr(middleware, "authenticator", None)
    figures: dict[str, Any] = {}
    for name, attribute in (("token_cache_len", "_cache"), ("negative_cache_len", "_refused")):
        try:
            figures[name] = len(getattr(authenticator, attribute))
        except (AttributeError, TypeError):
            figures[name] = None
    return figures


def per_token(count: int) -> dict[str, Any]:
    setup = Setup()
    tokens = [setup.token(n) for n in range(count + 1)]
    environ = setup.send("Bearer " + tokens.pop())  # key set fetched, code warm
    assert environ.get("REMOTE_USER"), "the warm-up token was not accepted"
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for token in tokens:
            # The header value is made here, as a server makes it per request: the cache may
            # keep it (or the token in it), so its bytes belong to the cached entry.
            setup.send("Bearer " + token)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    setup.idp.stop()
    return {
        "scenario": "per-token",
        "tokens": count,
        "token_chars": len(tokens[0]),
        "header_value_object_bytes": sys.getsizeof("Bearer " + tokens[0]),
        "bytes_per_cached_token": round((after - before) / count, 1),
        "statuses": dict(setup.statuses),
        **cache_lengths(setup.middleware),
        "idp_requests": setup.idp.requests,
    }


def run(setup: Setup, name: str, batches: Iterator[list[str]], **figures: Any) -> dict[str, Any]:
    # The first batch runs untimed before the first RSS reading: the allocator then already
    # holds a batch of environs, so the growth measured is what the middleware keeps.
    setup.timed(iter([next(batches)]))
    setup.statuses.clear()
    rss_start = rss_bytes()
    count, seconds = setup.timed(batches)
    rss_end = rss_bytes()
    setup.idp.stop()
    return {
        "scenario": name,
        "requests": count,
        "us_per_request": round(seconds / count * 1e6, 2),
        "rss_start_mib": round(rss_start / MIB, 2),
        "rss_growth_mib": round((rss_end - rss_start) / MIB, 2),
        "statuses": dict(setup.statuses),
        **cache_lengths(setup.middleware),
        "idp_requests": setup.idp.requests,
        **figures,
    }


def churn(tokens: int, cache: int, passes: int) -> dict[str, Any]:
    setup = Setup(token_cache_size=cache)
    pool = ["Bearer " + setup.token(n) for n in range(tokens)]
    for value in pool[:WARM]:  # warm: key set fetched, the cache full, code paths taken
        setup.send(value)
    setup.statuses.clear()

    def batches() -> Iterator[list[str]]:
        for _ in range(passes):
            for start in range(0, tokens, BATCH):
                yield pool[start : start + BATCH]

    return run(setup, "churn", batches(), tokens=tokens, cache=cache, passes=passes)


def forged(tokens: int) -> dict[str, Any]:
    setup = Setup()
    for n in range(WARM):  # warm, and fill the negative cache to its bound
        setup.send("Bearer " + setup.forged(-n - 1))
    setup.statuses.clear()

    def batches() -> Iterator[list[str]]:
        for start in range(0, tokens, BATCH):
            stop = min(start + BATCH, tokens)
            yield ["Bearer " + setup.forged(n) for n in range(start, stop)]

    return run(setup, "forged", batches(), tokens=tokens)


def repeated(requests: int) -> dict[str, Any]:
    setup = Setup()
    value = "Bearer " + setup.forged(0)
    for _ in range(10):
        setup.send(value)
    setup.statuses.clear()

    def batches() -> Iterator[list[str]]:
        for start in range(0, requests, BATCH):
            # Fresh strings per request, as a server reads them from the socket.
            yield [value[:-1] + value[-1] for _ in range(start, min(start + BATCH, requests))]

    return run(setup, "repeated", batches())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="scenario", required=True)
    p = sub.add_parser("per-token")
    p.add_argument("--count", type=int, default=2000)
    p = sub.add_parser("churn")
    p.add_argument("--tokens", type=int, default=10_000)
    p.add_argument("--cache", type=int, default=1000)
    p.add_argument("--passes", type=int, default=2)
    p = sub.add_parser("forged")
    p.add_argument("--tokens", type=int, default=100_000)
    p = sub.add_parser("repeated")
    p.add_argument("--tokens", type=int, default=100_000)
    args = parser.parse_args()
    scenarios: dict[str, Callable[[], dict[str, Any]]] = {
        "per-token": lambda: per_token(args.count),
        "churn": lambda: churn(args.tokens, args.cache, args.passes),
        "forged": lambda: forged(args.tokens),
        "repeated": lambda: repeated(args.tokens),
    }
    figures = scenarios[args.scenario]()
    figures["measured"] = MEASURED
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
