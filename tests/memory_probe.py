"""Memory scenarios for ``test_memory.py``, each run in a fresh interpreter.

A resident-set figure (``VmRSS``) is only worth quoting when nothing else lives in the process:
pytest, hypothesis and the other test modules would put their own allocations (and their
garbage) into it. So ``test_memory.py`` runs this script with ``python tests/memory_probe.py
<scenario>``; the script starts its own fake identity provider on 127.0.0.1 (``idp.IdpServer``),
builds a middleware with full signature validation against it, drives requests straight through
the WSGI callable, and prints one JSON object of measured figures as its last line of output.
The test asserts on those figures, so a failure message shows the numbers.

Scenarios:

``flood``
    R25: 100 000 distinct bogus tokens, then 100 000 distinct valid ones, a steady legitimate
    token every 100 requests; RSS before and after each phase, cache sizes, steady-token hits.
``per-token``
    R26: bytes per cached token (tracemalloc) for a Keycloak-like RS256 access token.
``padded``
    R25 "bounded in bytes": bogus tokens whose requests carry large other headers (as any
    client may send), or which are themselves as large as ``max_header_bytes`` allows.

Tokens are made here, one at a time, and dropped once sent: whatever memory stays was kept by
the middleware, not by the test. Minting 100 000 signed tokens must be quick, so the valid ones
are Ed25519 (one ``sign`` is ~40 us; RSA-2048 would be ~1 ms) over a Keycloak-like payload whose
``jti`` varies; the bogus ones with a known ``kid`` carry random RSA-sized signatures against
the RSA key (an RSA verify is the cheap one, ~30 us).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import secrets
import sys
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import idp  # the path above makes the test helpers importable

from jwt_headers import JwtHeadersMiddleware

PEER = "203.0.113.9"  # a robot on the internet: only a signature-checked token counts
MIB = 1024 * 1024
STEADY_EVERY = 100
SAMPLE_EVERY = 1000
JTI = "@@JTI@@"


def rss_bytes() -> int:
    """Resident set size of this process, from ``/proc/self/status`` (after a full collection,
    so garbage the cycle collector would free is not counted)."""
    gc.collect()
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


class LastPrincipal:
    """A WSGI app remembering only the principal of the last call (a list of every call would
    itself grow with the request count and spoil the measurement)."""

    def __init__(self) -> None:
        self.principal: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.principal = environ.get("jwt_headers.principal")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


def robot(app: LastPrincipal, server: idp.IdpServer, **extra: Any) -> JwtHeadersMiddleware:
    """D2: a Bearer JWT from any peer, signature via the fake IdP's JWKS, issuer checked; both
    caches at their defaults unless ``extra`` says otherwise."""
    options: dict[str, Any] = {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "validate_token": True,
        "jwks_uri": server.jwks_uri,
        "validate_issuer": True,
        "issuer": idp.ISSUER,
    }
    options.update(extra)
    return JwtHeadersMiddleware(app, **options)


def send(middleware: JwtHeadersMiddleware, value: str, extra: dict[str, str] | None = None) -> int:
    """One request with ``Authorization: <value>``; its status code."""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "REMOTE_ADDR": PEER,
        "HTTP_AUTHORIZATION": value,
    }
    if extra:
        environ.update(extra)
    seen: list[str] = []

    def start_response(status: str, headers: Any, exc_info: Any = None) -> None:
        seen.append(status)

    b"".join(middleware(environ, start_response))
    return int(seen[0][:3])


class Minter:
    """Distinct tokens fast: the header segment is encoded once, the Keycloak-like payload is a
    template whose ``jti`` changes, and only the signature is computed per token."""

    def __init__(self, now: int) -> None:
        claims = idp.access_claims({"jti": JTI, "exp": now + 3600, "iat": now}, now=now)
        self.template = json.dumps(claims, separators=(",", ":"))
        self.count = 0

    def payload(self) -> str:
        self.count += 1
        jti = f"{self.count:08x}-{secrets.token_hex(12)}"  # distinct by the counter, random too
        return idp.b64url(self.template.replace(JTI, jti))

    def signed(self, key: idp.TestKey) -> str:
        """A valid token of ``key`` (Ed25519 here: the fast signer)."""
        header = idp.b64url(json.dumps({"alg": key.alg, "typ": "JWT", "kid": key.kid}))
        signing_input = f"{header}.{self.payload()}"
        signature = key.private_key.sign(signing_input.encode("ascii"))
        return f"{signing_input}.{idp.b64url(signature)}"

    def bogus(self, index: int, rsa_key: idp.TestKey) -> tuple[str, str]:
        """(kind, token): well-formed JWS shapes that must all be refused, in four kinds."""
        kind = ("unknown_kid",) * 4 + ("bad_signature",) * 3 + ("not_json",) * 2 + ("hmac",)
        chosen = kind[index % 10]
        random_signature = idp.b64url(os.urandom(256))
        if chosen == "unknown_kid":  # refused at the key lookup; not negatively cached (R29)
            header = {"alg": "RS256", "typ": "JWT", "kid": secrets.token_urlsafe(16)}
        elif chosen == "bad_signature":  # a real RSA verify, then negatively cached
            header = {"alg": "RS256", "typ": "JWT", "kid": rsa_key.kid}
        elif chosen == "hmac":  # algorithm confusion attempt: refused before any key is used
            header = {"alg": "HS256", "typ": "JWT", "kid": rsa_key.kid}
        else:  # three random base64url segments: refused by the decoder
            segments = (idp.b64url(os.urandom(n)) for n in (24, 700, 256))
            return chosen, ".".join(segments)
        return chosen, f"{idp.b64url(json.dumps(header))}.{self.payload()}.{random_signature}"


# --------------------------------------------------------------------------- scenarios
def flood(bogus_count: int, valid_count: int) -> dict[str, Any]:
    rsa_key, ed_key = idp.make_key("RS256"), idp.make_key("EdDSA")
    with idp.IdpServer([rsa_key, ed_key]) as server:
        app = LastPrincipal()
        middleware = robot(app, server)
        authenticator = middleware.authenticator
        config = middleware.config
        now = int(time.time())
        minter = Minter(now)
        steady = "Bearer " + idp.mint({"exp": now + 3600}, rsa_key, now=now)

        assert send(middleware, steady) == 200
        principal = app.principal
        # Warm every code path (lazy imports, logging, the LRU's first resize) before measuring.
        for index in range(20):
            send(middleware, "Bearer " + minter.bogus(index, rsa_key)[1])
            send(middleware, "Bearer " + minter.signed(ed_key))
        authenticator._cache.clear()
        authenticator._refused.clear()
        assert send(middleware, steady) == 200
        principal = app.principal

        figures: dict[str, Any] = {
            "token_cache_size": config.token_cache_size,
            "negative_cache_size": config.negative_cache_size,
            "steady_token_bytes": len(steady),
            "valid_token_bytes": len(minter.signed(ed_key)),
        }
        steady_sent = 0
        steady_misses = 0
        max_cache = max_refused = 0

        def steady_check() -> None:
            nonlocal steady_sent, steady_misses, max_cache, max_refused
            status = send(middleware, steady)
            steady_sent += 1
            if status != 200 or app.principal is not principal:
                steady_misses += 1
            max_cache = max(max_cache, len(authenticator._cache))
            max_refused = max(max_refused, len(authenticator._refused))

        # ---- phase 1: bogus tokens
        fetches_before = server.jwks_requests
        rss_start = rss_bytes()
        started = time.monotonic()
        outcomes: Counter[str] = Counter()
        for index in range(bogus_count):
            kind, token = minter.bogus(index, rsa_key)
            outcomes[f"{kind}:{send(middleware, 'Bearer ' + token)}"] += 1
            if index % STEADY_EVERY == STEADY_EVERY - 1:
                steady_check()
        bogus_seconds = time.monotonic() - started
        rss_after_bogus = rss_bytes()
        figures.update(
            bogus_sent=bogus_count,
            bogus_outcomes=dict(outcomes),
            bogus_seconds=round(bogus_seconds, 2),
            rss_start_mib=round(rss_start / MIB, 2),
            rss_after_bogus_mib=round(rss_after_bogus / MIB, 2),
            bogus_rss_growth_mib=round((rss_after_bogus - rss_start) / MIB, 2),
            refused_len_after_bogus=len(authenticator._refused),
            cache_len_after_bogus=len(authenticator._cache),
            jwks_fetches_during_bogus=server.jwks_requests - fetches_before,
        )

        # ---- phase 2: valid tokens
        fetches_before = server.jwks_requests
        started = time.monotonic()
        outcomes = Counter()
        rss_half = rss_after_bogus
        for index in range(valid_count):
            status = send(middleware, "Bearer " + minter.signed(ed_key))
            named = app.principal is not None and app.principal.name == idp.USER_NAME
            outcomes[f"{status}:{'named' if named else 'anonymous'}"] += 1
            if index % STEADY_EVERY == STEADY_EVERY - 1:
                steady_check()
            if index == valid_count // 2 - 1:
                rss_half = rss_bytes()
        valid_seconds = time.monotonic() - started
        rss_after_valid = rss_bytes()
        figures.update(
            valid_sent=valid_count,
            valid_outcomes=dict(outcomes),
            valid_seconds=round(valid_seconds, 2),
            rss_after_valid_mib=round(rss_after_valid / MIB, 2),
            valid_rss_growth_mib=round((rss_after_valid - rss_after_bogus) / MIB, 2),
            valid_second_half_rss_growth_mib=round((rss_after_valid - rss_half) / MIB, 2),
            cache_len_after_valid=len(authenticator._cache),
            refused_len_after_valid=len(authenticator._refused),
            jwks_fetches_during_valid=server.jwks_requests - fetches_before,
            steady_sent=steady_sent,
            steady_misses=steady_misses,
            max_cache_len=max_cache,
            max_refused_len=max_refused,
        )
    figures["fake_idp_errors"] = [repr(error) for error in server.errors]
    return figures


def per_token(count: int) -> dict[str, Any]:
    key = idp.make_key("RS256")  # Keycloak's default algorithm and token shape
    with idp.IdpServer([key]) as server:
        app = LastPrincipal()
        middleware = robot(app, server)
        now = int(time.time())
        tokens = [idp.mint({"exp": now + 3600}, key, now=now) for _ in range(count + 1)]
        assert send(middleware, "Bearer " + tokens.pop()) == 200  # key set fetched, code warm
        principals: list[Any] = [None] * count  # allocated before the measurement
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for index, token in enumerate(tokens):
                # The header value is made here, as a server makes it per request: the cache
                # keeps it as its key, so its bytes belong to the cached entry.
                assert send(middleware, "Bearer " + token) == 200
                principals[index] = app.principal
            gc.collect()
            after = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
        hits = 0
        for index in range(0, count, 50):
            send(middleware, "Bearer " + tokens[index])
            hits += app.principal is principals[index]
        value_bytes = sys.getsizeof("Bearer " + tokens[0])
    return {
        "tokens": count,
        "token_bytes": len(tokens[0]),
        "header_value_object_bytes": value_bytes,
        "bytes_per_cached_token": round((after - before) / count, 1),
        "overhead_beyond_header_value": round((after - before) / count - value_bytes, 1),
        "cache_len": len(middleware.authenticator._cache),
        "rechecked": len(range(0, count, 50)),
        "rechecked_hits": hits,
        "fake_idp_errors": [repr(error) for error in server.errors],
    }


def padded(count: int, pad_headers: int, pad_bytes: int, big_tokens: bool) -> dict[str, Any]:
    """Distinct bad-signature tokens (known kid: each is negatively cached) sent with
    ``pad_headers`` other request headers of ``pad_bytes`` each, or as tokens as long as
    ``max_header_bytes`` allows (a payload of many small claims)."""
    rsa_key = idp.make_key("RS256")
    with idp.IdpServer([rsa_key]) as server:
        app = LastPrincipal()
        middleware = robot(app, server)
        config = middleware.config
        now = int(time.time())
        steady = "Bearer " + idp.mint({"exp": now + 3600}, rsa_key, now=now)
        assert send(middleware, steady) == 200
        header = idp.b64url(json.dumps({"alg": "RS256", "typ": "JWT", "kid": rsa_key.kid}))
        minter = Minter(now)
        # Room left for the payload in a value of max_header_bytes: "Bearer ", the header and
        # signature segments, two dots; base64url makes 4 characters of 3 bytes.
        room = (config.max_header_bytes - len(header) - 342 - 9) * 3 // 4 - 40
        big_claims: dict[str, Any] = {"iss": idp.ISSUER, "exp": now + 3600}
        while len(json.dumps(big_claims, separators=(",", ":"))) < room - 16:
            big_claims[f"c{len(big_claims)}"] = len(big_claims)

        def token(index: int) -> str:
            if not big_tokens:
                payload = minter.payload()
            else:  # fill the header value up to max_header_bytes with small claims
                claims = dict(big_claims, jti=f"{index:07d}-{os.urandom(8).hex()}")
                payload = idp.b64url(json.dumps(claims, separators=(",", ":")))
            return f"Bearer {header}.{payload}.{idp.b64url(os.urandom(256))}"

        def others(index: int) -> dict[str, str]:
            # Fresh strings per request, as a server reads them: shared objects would hide
            # what a kept environ costs.
            return {
                f"HTTP_X_PAD_{n}": f"{index:07d}{n:03d};".ljust(pad_bytes, "p")
                for n in range(pad_headers)
            }

        sample = token(0)
        rss_start = rss_bytes()
        statuses: Counter[int] = Counter()
        for index in range(count):
            statuses[send(middleware, token(index), others(index))] += 1
        rss_end = rss_bytes()
        assert send(middleware, steady) == 200
    return {
        "requests": count,
        "token_bytes": len(sample),
        "other_header_bytes_per_request": pad_headers * pad_bytes,
        "statuses": {str(k): v for k, v in statuses.items()},
        "negative_cache_size": config.negative_cache_size,
        "refused_len": len(middleware.authenticator._refused),
        "rss_growth_mib": round((rss_end - rss_start) / MIB, 2),
        "fake_idp_errors": [repr(error) for error in server.errors],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    sub = parser.add_subparsers(dest="scenario", required=True)
    p = sub.add_parser("flood")
    p.add_argument("--bogus", type=int, default=100_000)
    p.add_argument("--valid", type=int, default=100_000)
    p = sub.add_parser("per-token")
    p.add_argument("--count", type=int, default=2000)
    p = sub.add_parser("padded")
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--pad-headers", type=int, default=0)
    p.add_argument("--pad-bytes", type=int, default=8000)
    p.add_argument("--big-tokens", action="store_true")
    args = parser.parse_args()
    if args.scenario == "flood":
        figures = flood(args.bogus, args.valid)
    elif args.scenario == "per-token":
        figures = per_token(args.count)
    else:
        figures = padded(args.count, args.pad_headers, args.pad_bytes, args.big_tokens)
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
