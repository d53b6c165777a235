"""Per-request cost of jwt-headers, side by side with a bare app, PyJWT and Authlib.

Each case is a WSGI callable called in-process with a prebuilt environ. Cases are interleaved
in rounds (so machine drift hits all of them alike) and the median per-request cost over the
rounds is printed with its ratio to the bare app and to ``jwt.decode`` (RS256).

After the table come issue 15's targets, one line each: the measured ratio, the goal, MET or
MISSED. Memory per cached token and the churn and flood scenarios run in fresh processes
(``benchmarks/churn.py``); the gunicorn + wrk ratio comes from ``benchmarks/wrk.py`` when
``--wrk`` is given.

    python benchmarks/bench.py               # default: 300 rounds x 200 calls, churn too
    python benchmarks/bench.py --quick       # a smoke run: 30 x 50, small churn runs
    python benchmarks/bench.py --no-churn    # skip the churn and flood scenarios
    python benchmarks/bench.py --wrk         # also run benchmarks/wrk.py (about 1 minute)
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from itertools import cycle
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from shared import (
    AUDIENCE,
    ISSUER,
    MEASURED,
    Idp,
    bare_app,
    child_env,
    keycloak_claims,
    start_response,
    validated_options,
)

from jwt_headers import JwtHeadersMiddleware

with warnings.catch_warnings():
    # Authlib 1.6+ marks authlib.jose deprecated in favour of joserfc; it is what the issue
    # names and what deployed Flask/Django code uses today. authlib.deprecate adds an "always"
    # filter when imported, so it is imported first and the "ignore" below goes in front of it.
    import authlib.deprecate  # type: ignore[import-untyped]  # noqa: F401

    warnings.simplefilter("ignore")
    from authlib.jose import JsonWebKey, JsonWebToken  # type: ignore[import-untyped]

HERE = Path(__file__).resolve().parent
PER_TOKEN_GOAL = 2048


class _NullMetrics:
    """A metrics observer that does nothing: the cost of the hook itself."""

    def allowed(self) -> None: ...
    def anonymous(self) -> None: ...
    def exempt(self) -> None: ...
    def refused(self, reason: str) -> None: ...
    def untrusted_header(self) -> None: ...
    def token_cache(self, hit: bool) -> None: ...
    def idp_call(self, endpoint: str, ok: bool, seconds: float) -> None: ...


# Case names used by the targets (the table prints every case).
BARE = "bare app"
REMOTE_USER = "RemoteUserMiddleware-style header read"
DECODE = {alg: f"PyJWT jwt.decode per request ({alg})" for alg in ("RS256", "ES256", "EdDSA")}
AUTHLIB = {alg: f"Authlib decode + validate ({alg})" for alg in ("RS256", "ES256")}
JWKCLIENT = "PyJWKClient + jwt.decode (RS256)"
FLOOR = {alg: f"floor: raw {alg} verify + b64 + json" for alg in ("RS256", "ES256", "EdDSA")}
PLAIN = "middleware: plain header"
JSON_HEADER = "middleware: JSON header"
HIT = "middleware: validated RS256, cache hit"
MISS = {alg: f"middleware: validated {alg}, cache miss" for alg in ("RS256", "ES256", "EdDSA")}


def build_cases(now: float) -> tuple[list[tuple[str, Callable[..., Any], dict[str, Any]]], Idp]:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    ed_key = ed25519.Ed25519PrivateKey.generate()
    jwks = {
        "RS256": RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True) | {"kid": "rsa"},
        "ES256": ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True) | {"kid": "ec"},
        "EdDSA": OKPAlgorithm.to_jwk(ed_key.public_key(), as_dict=True) | {"kid": "ed"},
    }
    for alg, jwk in jwks.items():
        jwk.update(alg=alg, use="sig")
    idp = Idp(list(jwks.values()))
    private: dict[str, Any] = {"RS256": rsa_key, "ES256": ec_key, "EdDSA": ed_key}
    public: dict[str, Any] = {alg: key.public_key() for alg, key in private.items()}

    def token(alg: str, n: int = 0) -> str:
        kid = jwks[alg]["kid"]
        return jwt.encode(
            keycloak_claims(now, n), private[alg], algorithm=alg, headers={"kid": kid}
        )

    bearer = {alg: {"HTTP_AUTHORIZATION": "Bearer " + token(alg)} for alg in private}
    json_header = json.dumps(keycloak_claims(now), separators=(",", ":"))
    validated = validated_options(f"{idp.base}/jwks")

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

    def pyjwt_per_request(alg: str) -> Callable[..., Any]:
        """How most Flask/Django JWT code works: jwt.decode on every request, key prepared."""
        key, algorithms = public[alg], [alg]

        def app(env: dict[str, Any], sr: Callable[..., Any]) -> list[bytes]:
            raw = env["HTTP_AUTHORIZATION"][7:]
            claims = jwt.decode(
                raw, key, algorithms=algorithms, audience=AUDIENCE, issuer=ISSUER, leeway=30
            )
            env["REMOTE_USER"] = claims["preferred_username"]
            return bare_app(env, sr)

        return app

    jwk_client = jwt.PyJWKClient(f"{idp.base}/jwks")  # its defaults: the key set cached 300 s

    def pyjwk_client(env: dict[str, Any], sr: Callable[..., Any]) -> list[bytes]:
        """PyJWT's documented JWKS flow: find the signing key by kid (cached), then decode."""
        raw = env["HTTP_AUTHORIZATION"][7:]
        key = jwk_client.get_signing_key_from_jwt(raw).key
        claims = jwt.decode(
            raw, key, algorithms=["RS256"], audience=AUDIENCE, issuer=ISSUER, leeway=30
        )
        env["REMOTE_USER"] = claims["preferred_username"]
        return bare_app(env, sr)

    def authlib_per_request(alg: str) -> Callable[..., Any]:
        """Authlib's jose: decode (signature) then validate (exp, iss, aud), key prepared once."""
        decoder, key = JsonWebToken([alg]), JsonWebKey.import_key(jwks[alg])
        options = {
            "iss": {"essential": True, "value": ISSUER},
            "aud": {"essential": True, "value": AUDIENCE},
        }

        def app(env: dict[str, Any], sr: Callable[..., Any]) -> list[bytes]:
            raw = env["HTTP_AUTHORIZATION"][7:]
            claims = decoder.decode(raw, key, claims_options=options)
            claims.validate(leeway=30)
            env["REMOTE_USER"] = claims["preferred_username"]
            return bare_app(env, sr)

        return app

    verifiers: dict[str, Any] = {
        "RS256": RSAAlgorithm(RSAAlgorithm.SHA256),
        "ES256": ECAlgorithm(ECAlgorithm.SHA256),
        "EdDSA": OKPAlgorithm(),
    }

    def floor(alg: str) -> Callable[..., Any]:
        """Raw cryptography verify (PyJWT's algorithm object on a prepared key: for ES256 it
        turns the JOSE r||s signature into DER) + base64url + json of the payload: the cost
        floor of a new token in Python."""
        verify, key, b64 = verifiers[alg].verify, public[alg], jwt.utils.base64url_decode

        def app(env: dict[str, Any], sr: Callable[..., Any]) -> list[bytes]:
            raw = env["HTTP_AUTHORIZATION"][7:]
            head, payload, sig = raw.split(".")
            if not verify(f"{head}.{payload}".encode(), key, b64(sig)):
                raise AssertionError("bad signature in the floor case")
            env["REMOTE_USER"] = json.loads(b64(payload))["preferred_username"]
            return bare_app(env, sr)

        return app

    def miss(alg: str) -> Callable[..., Any]:
        """A new token every request: a pool of distinct tokens 8x the token cache."""
        middleware = mw(**validated, token_cache_size=64)
        tokens = cycle(["Bearer " + token(alg, n) for n in range(512)])

        def app(env: dict[str, Any], sr: Callable[..., Any]) -> Any:
            env["HTTP_AUTHORIZATION"] = next(tokens)
            return middleware(env, sr)

        return app

    rs, es, ed = (environ(**bearer[alg]) for alg in ("RS256", "ES256", "EdDSA"))
    cases: list[tuple[str, Callable[..., Any], dict[str, Any]]] = [
        (BARE, bare_app, environ()),
        (REMOTE_USER, remote_user_middleware, environ(HTTP_X_REMOTE_USER="alice")),
        (DECODE["RS256"], pyjwt_per_request("RS256"), rs),
        (DECODE["ES256"], pyjwt_per_request("ES256"), es),
        (DECODE["EdDSA"], pyjwt_per_request("EdDSA"), ed),
        (JWKCLIENT, pyjwk_client, rs),
        (AUTHLIB["RS256"], authlib_per_request("RS256"), rs),
        (AUTHLIB["ES256"], authlib_per_request("ES256"), es),
        (FLOOR["RS256"], floor("RS256"), rs),
        (FLOOR["ES256"], floor("ES256"), es),
        (FLOOR["EdDSA"], floor("EdDSA"), ed),
        (PLAIN, mw(user_name_header="X-Remote-User"), environ(HTTP_X_REMOTE_USER="alice")),
        (
            JSON_HEADER,
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
            rs,
        ),
        (HIT, mw(**validated), rs),
        (
            "middleware: validated RS256, cache hit, no path rules",
            mw(**validated, exempt_methods=()),
            rs,
        ),
        (
            "middleware: validated RS256, cache hit, metrics hook",
            mw(**validated, metrics=_NullMetrics()),
            rs,
        ),
        (
            "middleware: validated RS256, cache hit, prometheus",
            mw(**validated, metrics="prometheus"),
            rs,
        ),
        (
            "middleware: validated RS256, cache hit, 3 path rules",
            mw(**validated, exempt_paths=["/healthz", "/static/*"], protected_paths=["/admin"]),
            rs,
        ),
        ("middleware: validated ES256, cache hit", mw(**validated), es),
        ("middleware: validated EdDSA, cache hit", mw(**validated), ed),
        (
            "middleware: validated + userinfo, cache hit",
            mw(**validated, validate_userinfo=True, userinfo_endpoint=f"{idp.base}/userinfo"),
            rs,
        ),
        (MISS["RS256"], miss("RS256"), dict(rs)),
        (MISS["ES256"], miss("ES256"), dict(es)),
        (MISS["EdDSA"], miss("EdDSA"), dict(ed)),
    ]
    # Every case must accept its token (a refusal would be cheap and flatter the figures).
    for name, app, env in cases:
        for _ in range(3):  # warm up: fetch keys, fill caches
            probe = dict(env)
            assert app(probe, start_response) == [b"ok"], name
        if name not in (BARE, "middleware: unvalidated JWT"):
            assert probe.get("REMOTE_USER"), f"{name}: no REMOTE_USER: the token was refused"
    return cases, idp


def child(script: str, *arguments: str) -> dict[str, Any]:
    """Run ``benchmarks/<script>`` in a fresh interpreter; its last output line is JSON."""
    done = subprocess.run(
        [sys.executable, str(HERE / script), *arguments],
        capture_output=True,
        text=True,
        env=child_env(),
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"{script} {' '.join(arguments)} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def target(label: str, value: float, goal: float, *, at_most: bool = True, digits: int = 3) -> str:
    """One target line: the measured value, the goal and MET or MISSED."""
    met = value <= goal if at_most else value >= goal
    sign = "<=" if at_most else ">="
    verdict = "MET" if met else "MISSED"
    return f"{label:<50} {value:8.{digits}f}  goal {sign} {goal:.{digits}f}  {verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=300)
    parser.add_argument("--calls", type=int, default=200, help="calls per case per round")
    parser.add_argument("--quick", action="store_true", help="30 rounds x 50 calls, small churn")
    parser.add_argument("--no-churn", action="store_true", help="skip the churn/flood scenarios")
    parser.add_argument("--wrk", action="store_true", help="also run benchmarks/wrk.py")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.calls = 30, 50

    cases, idp = build_cases(time.time())
    samples: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(args.rounds):
        for name, app, env in cases:
            started = time.perf_counter()
            for _ in range(args.calls):
                app(env, start_response)
            samples[name].append((time.perf_counter() - started) / args.calls * 1e6)
    idp.stop()

    median = {name: statistics.median(values) for name, values in samples.items()}
    bare = median[BARE]
    decode = median[DECODE["RS256"]]
    print(
        f"jwt-headers benchmark: {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.machine()}, "
        f"{args.rounds} rounds x {args.calls} calls, median us/request; {MEASURED}"
    )
    print(f"{'case':<56} {'us/req':>9} {'x bare':>8} {'added':>8} {'/decode':>8}")
    for name, _, _ in cases:
        value = median[name]
        print(
            f"{name:<56} {value:9.2f} {value / bare:8.2f} {value - bare:8.2f} {value / decode:8.3f}"
        )
    print(f"IdP requests during the run: {idp.requests}", file=sys.stderr)
    sys.stdout.flush()

    print("\ntargets (issue 15)")
    lines = [
        target("new token RS256 / jwt.decode RS256", median[MISS["RS256"]] / decode, 0.45),
        target(
            "new token RS256 / Authlib RS256", median[MISS["RS256"]] / median[AUTHLIB["RS256"]], 1.0
        ),
        target(
            "new token ES256 / jwt.decode ES256",
            median[MISS["ES256"]] / median[DECODE["ES256"]],
            0.70,
        ),
        target("cache hit added / bare app", (median[HIT] - bare) / bare, 2.0),
        target("cache hit / jwt.decode RS256", median[HIT] / decode, 1 / 20),
        target("plain header / RemoteUser-style read", median[PLAIN] / median[REMOTE_USER], 2.0),
        target(
            "JSON header / RemoteUser-style read", median[JSON_HEADER] / median[REMOTE_USER], 2.0
        ),
    ]
    print("\n".join(lines))
    print(
        f"{'(no goal) new token EdDSA / jwt.decode EdDSA':<50} "
        f"{median[MISS['EdDSA']] / median[DECODE['EdDSA']]:8.3f}"
    )
    for alg in ("RS256", "ES256", "EdDSA"):
        print(
            f"{f'(no goal) new token {alg} / raw {alg} floor':<50} "
            f"{median[MISS[alg]] / median[FLOOR[alg]]:8.3f}"
        )
    sys.stdout.flush()

    memory = child("churn.py", "per-token", "--count", "500" if args.quick else "2000")
    print(
        target(
            f"bytes per cached token ({memory['token_chars']}-char token incl.)",
            memory["bytes_per_cached_token"],
            PER_TOKEN_GOAL,
            digits=0,
        )
    )
    sys.stdout.flush()

    if args.wrk:
        quick = ["--duration", "3"] if args.quick else []
        measured = child("wrk.py", "--json", "--no-fleet", *quick)
        print(
            target(
                "gunicorn gthread + wrk: cache hit / bare req/s",
                measured["ratio"],
                0.90,
                at_most=False,
            )
        )
    else:
        print(f"{'gunicorn gthread + wrk: cache hit / bare req/s':<50} not run (--wrk or wrk.py)")

    if args.no_churn:
        return
    tokens, cache, flood = (2000, 200, 10_000) if args.quick else (10_000, 1000, 100_000)
    print("\nchurn and floods (fresh process each; time inside the middleware only)")
    scenarios = [
        (f"(a) {tokens:,} valid tokens through a cache of {cache:,}", "churn", "--cache", cache),
        (f"(b) {flood:,} distinct forged tokens", "forged", "--tokens", flood),
        ("(c) one forged token repeated (negative cache)", "repeated", "--tokens", flood),
    ]
    for label, scenario, option, value in scenarios:
        extra = ["--tokens", str(tokens), option, str(value)] if scenario == "churn" else []
        figures = child("churn.py", scenario, *(extra or [option, str(value)]))
        print(
            f"{label:<50} {figures['us_per_request']:8.2f} us/req  "
            f"RSS +{figures['rss_growth_mib']:.2f} MiB over {figures['requests']} requests  "
            f"statuses {figures['statuses']}"
        )
        sys.stdout.flush()


if __name__ == "__main__":
    main()
