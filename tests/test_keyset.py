"""The key set (JWKS) client and the token caches, against a real HTTP fake IdP.

Requirements covered (security.md): R24 a cached principal never outlives exp+leeway, R25
bounded caches and negative-cache expiry, R27 failed/garbage/oversized/redirected fetches,
R28 stale-if-error up to ``jwks_max_stale``, R29 refetch cooldown (rotation, unknown-kid
floods), R30 single flight, R31 fail closed within the timeout, R33 no outbound request
derived from token content.

Every time-dependent step runs on a frozen clock that the test advances; real network waits are
bounded by small ``http_connect_timeout``/``http_read_timeout`` options and checked with
``time.monotonic`` (a bound, not a sleep).
"""

from __future__ import annotations

import json
import logging
import math
import os
import secrets
import threading
import time
import warnings
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from pathlib import Path
from typing import Any

import idp
import pytest
from conftest import (
    NOW,
    STRANGER,
    Answer,
    FrozenClock,
    RecordingApp,
    assert_accepted,
    assert_invalid_token,
    assert_unavailable,
    call,
)
from idp import ISSUER, USER_NAME, access_claims, b64url, compact_jws, dead_url, make_key, mint

from jwt_headers import JwtHeadersMiddleware
from jwt_headers import jwks as jwks_module

idp_server = idp.idp_server  # the pytest fixture, bound here so pytest finds it

CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 0.5
#: How long a refused fetch may take at most: the configured timeouts plus scheduling margin.
TIME_BOUND = CONNECT_TIMEOUT + READ_TIMEOUT + 0.6
SLOW_DELAY = 2.0  # the fake IdP's "slow"/"trickle" time: well beyond the timeouts
COOLDOWN = 30  # jwks_refresh_cooldown default
TTL = 300  # jwks_cache_ttl default
LONG_EXP = NOW + 10 * 86400  # tokens that stay valid across the clock jumps below


# --------------------------------------------------------------------------- helpers


def robot(
    server: idp.IdpServer, clock: FrozenClock, *, jwks_uri: str | None = None, **extra: Any
) -> JwtHeadersMiddleware:
    """A D2 robot: Bearer JWT in Authorization, signature via the fake IdP's JWKS."""
    options: dict[str, Any] = {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "validate_token": True,
        "jwks_uri": jwks_uri or server.jwks_uri,
        "validate_issuer": True,
        "issuer": ISSUER,
        "http_connect_timeout": CONNECT_TIMEOUT,
        "http_read_timeout": READ_TIMEOUT,
    }
    options.update(extra)
    return JwtHeadersMiddleware(RecordingApp(), clock=clock, **options)


def send(middleware: JwtHeadersMiddleware, token: str, *, peer: str = STRANGER) -> Answer:
    """One request with ``Authorization: Bearer <token>``; a fresh recording app each time, so
    ``app.called`` is about this request only (single-threaded use)."""
    middleware.app = RecordingApp()
    return call(middleware, {"Authorization": f"Bearer {token}"}, peer=peer)


def fresh(key: idp.TestKey, clock: FrozenClock, **overrides: Any) -> str:
    """A new (distinct: random jti) token valid at the clock's time, long-lived by default."""
    claims = {"exp": LONG_EXP, **overrides}
    return mint(claims, key, now=int(clock.now))


def unsigned_token(kid: str, clock: FrozenClock, alg: str = "RS256") -> str:
    """A well-formed RS256 token whose signature is random bytes (never valid)."""
    header = {"alg": alg, "typ": "JWT", "kid": kid}
    claims = access_claims({"exp": LONG_EXP}, now=int(clock.now))
    return compact_jws(header, claims, os.urandom(256))


def set_failure(server: idp.IdpServer, mode: str) -> None:
    server.delay = SLOW_DELAY
    server.jwks_mode = mode


# Every way the key-set fetch can fail while the URL is the configured one.
OUTAGE_MODES = [
    "500",
    "503",
    "garbage",
    "not_object",
    "empty",
    "huge",
    "huge_unsized",
    "redirect",
    "as_201",
    "as_302",
    "down",
    "slow",
    "trickle",
]


# --------------------------------------------------------------------------- R27 / R31: cold start
@pytest.mark.parametrize("mode", [*OUTAGE_MODES, "dead_url"])
def test_r27_r31_first_fetch_failing_gives_503_within_timeout(idp_server, mode):
    """R27/R31: the key set was never fetched and the fetch fails (status, non-JSON, non-object,
    no keys, > 1 MiB with or without Content-Length, redirect, connection dropped, slow beyond
    the read timeout, trickling beyond the total timeout, nothing listening): 503 with
    Retry-After and IDP_UNAVAILABLE, the app is not called, and the answer comes within the
    configured timeouts. A redirect is never followed."""
    clock = FrozenClock()
    if mode == "dead_url":
        middleware = robot(idp_server, clock, jwks_uri=dead_url())
    else:
        set_failure(idp_server, mode)
        middleware = robot(idp_server, clock)
    token = fresh(idp_server.key, clock)

    started = time.monotonic()
    answer = send(middleware, token)
    elapsed = time.monotonic() - started

    assert_unavailable(answer)
    assert elapsed < TIME_BOUND, f"{mode}: answered after {elapsed:.2f}s (bound {TIME_BOUND}s)"
    assert idp_server.hits("/jwks/moved") == 0
    assert idp_server.hits("/userinfo") == 0
    if mode != "dead_url":
        assert idp_server.jwks_requests == 1


@pytest.mark.parametrize("mode", ["500", "garbage", "redirect", "down", "dead_url"])
def test_r29_r31_failed_first_fetch_retries_back_off_then_recover(idp_server, mode):
    """R29/R31 and issue 14: after a failed first fetch, requests get 503 at once without
    hammering the IdP: while no key set was ever fetched the attempts back off 1, 2, 4, 8, 16
    seconds, then once per cooldown (30 s), and Retry-After says how long is left. A 503 is not
    remembered as a refusal: the first attempt after the IdP answers again accepts the same
    token, so a provider down for the first request is used within seconds of coming back."""
    clock = FrozenClock()
    if mode == "dead_url":
        middleware = robot(idp_server, clock, jwks_uri=dead_url())
    else:
        set_failure(idp_server, mode)
        middleware = robot(idp_server, clock)
    token = fresh(idp_server.key, clock)

    assert assert_unavailable(send(middleware, token)) == 1
    attempts_at = [0.0]
    for step in (1, 2, 4, 8, 16, 30, 30):  # the wait before each next attempt
        clock.advance(step - 0.5)
        assert assert_unavailable(send(middleware, token)) == 1  # half a second still to wait
        clock.advance(0.5)
        assert_unavailable(send(middleware, fresh(idp_server.key, clock)))
        attempts_at.append(attempts_at[-1] + step)
    if mode == "dead_url":
        return
    assert idp_server.jwks_requests == len(attempts_at) == 8
    assert idp_server.hits("/jwks/moved") == 0

    idp_server.jwks_mode = "ok"
    clock.advance(COOLDOWN)
    assert_accepted(send(middleware, token))
    assert idp_server.jwks_requests == 9


def test_first_fetch_back_off_restarts_after_a_success(idp_server):
    """The back-off is for a key set never fetched: once one was, a failed refresh waits the
    cooldown as before (stale-if-error serves the known keys meanwhile)."""
    clock = FrozenClock()
    idp_server.jwks_mode = "500"
    middleware = robot(idp_server, clock)
    assert_unavailable(send(middleware, fresh(idp_server.key, clock)))
    idp_server.jwks_mode = "ok"
    clock.advance(1)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    assert idp_server.jwks_requests == 2
    idp_server.jwks_mode = "500"
    clock.advance(400)  # past the key-set TTL: a refresh, which fails
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))  # the known keys serve
    clock.advance(2)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    assert idp_server.jwks_requests == 3  # no back-off retries: the cooldown holds


# --------------------------------------------------------------------------- R28: stale-if-error
@pytest.mark.parametrize("mode", [*OUTAGE_MODES, "dead_url"])
def test_r28_outage_keeps_known_keys_until_max_stale(idp_server, mode):
    """R28: after one good fetch, an outage or garbage answer never drops the known keys: tokens
    with a known kid keep verifying after jwks_cache_ttl (the refetch is tried and fails) up to
    jwks_max_stale; past it the check cannot be made: 503."""
    clock = FrozenClock()
    max_stale = 3600
    if mode == "dead_url":
        # The same outage as "nothing listens any more": the IdP's port is closed.
        server = idp.IdpServer(keys=list(idp_server.keys)).start()
        middleware = robot(server, clock, jwks_max_stale=max_stale)
        assert_accepted(send(middleware, fresh(server.key, clock)))
        server.stop()
        key = server.key
    else:
        middleware = robot(idp_server, clock, jwks_max_stale=max_stale)
        key = idp_server.key
        assert_accepted(send(middleware, fresh(key, clock)))
        assert idp_server.jwks_requests == 1
        set_failure(idp_server, mode)

    clock.advance(TTL + 1)  # the key set is due for a refetch, which fails
    assert_accepted(send(middleware, fresh(key, clock)))
    clock.advance(1)
    assert_accepted(send(middleware, fresh(key, clock)))
    if mode != "dead_url":
        assert idp_server.jwks_requests == 2  # tried once, not on every request
        assert idp_server.hits("/jwks/moved") == 0

    clock.now = NOW + max_stale - 1
    assert_accepted(send(middleware, fresh(key, clock)))

    clock.now = NOW + max_stale + 1
    assert_unavailable(send(middleware, fresh(key, clock)))


def test_r28_default_max_stale_is_at_least_a_day(idp_server):
    """R28: the default max staleness is >= 24 h: a day minus a second after the last good
    fetch, with the IdP answering 500 since, a known kid still verifies."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    idp_server.jwks_mode = "500"
    clock.advance(86400 - 1)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))


def test_r28_garbage_after_rotation_does_not_replace_keys(idp_server):
    """R27/R28: a refetch that answers garbage after the TTL keeps the previous key set; a good
    refetch later replaces it (the old key removed by the IdP is then unknown)."""
    clock = FrozenClock()
    old_key = idp_server.key
    middleware = robot(idp_server, clock)
    assert_accepted(send(middleware, fresh(old_key, clock)))

    idp_server.jwks_mode = "garbage"
    clock.advance(TTL)
    assert_accepted(send(middleware, fresh(old_key, clock)))
    assert idp_server.jwks_requests == 2

    new_key = make_key("RS256")
    idp_server.keys = [new_key]
    idp_server.jwks_mode = "ok"
    clock.advance(COOLDOWN)
    assert_accepted(send(middleware, fresh(new_key, clock)))
    assert idp_server.jwks_requests == 3
    assert_invalid_token(send(middleware, fresh(old_key, clock)), "unknown_key", "no key")


# --------------------------------------------------------------------------- R29: rotation
def test_r29_rotated_kid_refused_within_cooldown_accepted_after(idp_server):
    """R29: a kid published after the first fetch is refused (401 unknown key) within the
    cooldown without another fetch, and accepted once the cooldown has passed (one refetch)."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    assert idp_server.jwks_requests == 1

    new_key = make_key("RS256")
    idp_server.keys.append(new_key)
    token = fresh(new_key, clock)
    clock.advance(1)
    assert_invalid_token(send(middleware, token), "unknown_key", "no key")
    clock.advance(COOLDOWN - 2)
    assert_invalid_token(send(middleware, fresh(new_key, clock)), "unknown_key", "no key")
    assert idp_server.jwks_requests == 1

    clock.advance(COOLDOWN)
    principal = assert_accepted(send(middleware, token))
    assert idp_server.jwks_requests == 2
    assert assert_accepted(send(middleware, token)) is principal
    assert_accepted(send(middleware, fresh(new_key, clock)))
    assert_accepted(send(middleware, fresh(idp_server.keys[0], clock)))
    assert idp_server.jwks_requests == 2


def test_r29_rotated_kid_accepted_at_exactly_one_cooldown(idp_server):
    """R29: a new kid is accepted no later than one cooldown after the last fetch (a token that
    never came before: no negative-cache entry involved)."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    new_key = make_key("ES256")
    idp_server.keys.append(new_key)
    clock.advance(COOLDOWN)
    assert_accepted(send(middleware, fresh(new_key, clock)))
    assert idp_server.jwks_requests == 2


@pytest.mark.parametrize("cooldown", [5, 10])
def test_r29_same_token_refused_for_new_kid_accepted_after_one_cooldown(idp_server, cooldown):
    """R29 ("a newly published kid is accepted after <= one cooldown"), with a cooldown shorter
    than negative_cache_ttl (30 s default): the client retries the very token that was refused
    as "unknown key" while the refetch was cooling down; one cooldown later it must be
    accepted, not still refused from the negative cache."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock, jwks_refresh_cooldown=cooldown)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))

    new_key = make_key("RS256")
    idp_server.keys.append(new_key)
    token = fresh(new_key, clock)
    clock.advance(1)
    assert_invalid_token(send(middleware, token), "unknown_key", "no key")
    assert idp_server.jwks_requests == 1

    clock.advance(cooldown)
    assert_accepted(send(middleware, token))
    assert idp_server.jwks_requests == 2


# --------------------------------------------------------------------------- R29: floods
@pytest.mark.parametrize(("span", "cooldown"), [(300, 30), (120, 7), (45, 30)])
def test_r29_unknown_kid_flood_bounded_by_cooldown(idp_server, span, cooldown):
    """R29: 200 requests with random kids spread over a simulated T seconds cause at most
    ceil(T/cooldown)+1 JWKS fetches, every one of them refused 401, while a legitimate token
    interleaved with the flood keeps being accepted."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock, jwks_refresh_cooldown=cooldown)
    good = fresh(idp_server.key, clock)
    principal = assert_accepted(send(middleware, good))  # the cold fetch: counted below
    requests = 200
    step = span / requests
    start = clock.now
    for i in range(requests):
        answer = send(middleware, unsigned_token(secrets.token_urlsafe(12), clock))
        assert_invalid_token(answer, "unknown_key", "no key")
        if i % 20 == 0:
            assert assert_accepted(send(middleware, good)) is principal
        clock.advance(step)
    elapsed = clock.now - start
    fetches = idp_server.jwks_requests
    print(f"\nunknown-kid flood: T={elapsed:g}s cooldown={cooldown}s -> {fetches} JWKS fetches")
    assert fetches <= math.ceil(elapsed / cooldown) + 1
    assert set(r.path for r in idp_server.requests) == {"/jwks"}


def test_r29_r30_unknown_kid_flood_from_threads_one_fetch_per_cooldown(idp_server):
    """R29/R30: at one instant, 40 threads with 40 random kids (past the cooldown) cause at most
    one refetch between them, and all are refused 401."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    clock.advance(COOLDOWN)
    tokens = [unsigned_token(secrets.token_urlsafe(12), clock) for _ in range(40)]
    answers = run_together(middleware, tokens)
    assert [a.status for a in answers] == [401] * 40
    assert all(a.json["error"]["code"] == "INVALID_TOKEN" for a in answers)
    assert not middleware.app.called
    assert idp_server.jwks_requests <= 2
    print(f"\nthreaded unknown-kid flood: {idp_server.jwks_requests - 1} refetch(es)")


# --------------------------------------------------------------------------- TTL
def test_jwks_cache_ttl_refetches_exactly_once(idp_server):
    """R29 (jwks_cache_ttl): within the TTL no refetch; at the TTL the next request refetches
    exactly once and the requests after it use the new set."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    clock.advance(TTL - 1)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    assert idp_server.jwks_requests == 1
    clock.advance(1)
    for _ in range(5):
        assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    assert idp_server.jwks_requests == 2
    clock.advance(TTL - 1)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    assert idp_server.jwks_requests == 2


def test_jwks_cache_ttl_option(idp_server):
    """The jwks_cache_ttl option is honoured (here 3600 s)."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock, jwks_cache_ttl=3600)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    clock.advance(3599)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    assert idp_server.jwks_requests == 1
    clock.advance(1)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    assert idp_server.jwks_requests == 2


# --------------------------------------------------------------------------- R30: single flight
def run_together(middleware: JwtHeadersMiddleware, tokens: list[str]) -> list[Answer]:
    """Send one request per token, all threads released at once by a barrier."""
    barrier = threading.Barrier(len(tokens))

    def one(token: str) -> Answer:
        barrier.wait(timeout=10)
        return call(middleware, {"Authorization": f"Bearer {token}"}, peer=STRANGER)

    middleware.app = RecordingApp()
    with ThreadPoolExecutor(len(tokens)) as pool:
        return list(pool.map(one, tokens))


def run_while_held(
    server: idp.IdpServer, path: str, middleware: JwtHeadersMiddleware, tokens: list[str]
) -> tuple[list[int], list[Answer]]:
    """Start one request per token (barrier), wait until the IdP holds the first call to
    ``path``, check for a short bounded moment which requests got answered while it was held,
    then release the IdP. Returns (statuses answered before the release, all answers)."""
    barrier = threading.Barrier(len(tokens))

    def one(token: str) -> Answer:
        barrier.wait(timeout=10)
        return call(middleware, {"Authorization": f"Bearer {token}"}, peer=STRANGER)

    middleware.app = RecordingApp()
    pool = ThreadPoolExecutor(len(tokens))
    try:
        futures = [pool.submit(one, token) for token in tokens]
        assert server.wait_for(path, 1, timeout=10)
        # A bounded check, not a sleep: no request may be answered while the call is held
        # (each one needs its result); give them 0.3 s to show up if they are not waiting.
        done, _ = wait(futures, timeout=0.3, return_when=FIRST_COMPLETED)
        early = [f.result().status for f in done]
    finally:
        server.release()
        pool.shutdown(wait=True)
    return early, [f.result() for f in futures]


def test_r30_same_token_cold_single_jwks_fetch(idp_server):
    """R30: 20 threads bring the same token to a cold middleware while the IdP holds the key set:
    exactly one JWKS fetch; after release all 20 are accepted."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock, http_read_timeout=10)
    token = fresh(idp_server.key, clock)
    idp_server.jwks_mode = "hold"
    early, answers = run_while_held(idp_server, "/jwks", middleware, [token] * 20)
    assert early == []
    assert idp_server.jwks_requests == 1
    assert [a.status for a in answers] == [200] * 20
    assert len(middleware.app.calls) == 20
    assert {c["REMOTE_USER"] for c in middleware.app.calls} == {USER_NAME}


def test_r30_distinct_tokens_cold_single_jwks_fetch(idp_server):
    """R30: 20 threads with 20 distinct tokens on a cold cache while the IdP holds the key set:
    one JWKS fetch between them."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock, http_read_timeout=10)
    tokens = [fresh(idp_server.key, clock) for _ in range(20)]
    idp_server.jwks_mode = "hold"
    run_while_held(idp_server, "/jwks", middleware, tokens)
    assert idp_server.jwks_requests == 1


def test_r30_r31_distinct_tokens_cold_all_wait_for_the_one_fetch(idp_server):
    """R30/R31: the same 20 distinct tokens must all be accepted once the one fetch in flight
    completes; none may be refused 503 "cannot be fetched" while a fetch is actually under way
    and then succeeds (the IdP is up: failing closed here refuses valid users for a cooldown)."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock, http_read_timeout=10)
    tokens = [fresh(idp_server.key, clock) for _ in range(20)]
    idp_server.jwks_mode = "hold"
    early, answers = run_while_held(idp_server, "/jwks", middleware, tokens)
    statuses = [a.status for a in answers]
    assert idp_server.jwks_requests == 1
    assert statuses == [200] * 20, f"answered while held: {early}; all: {statuses}"
    assert early == []


def test_r29_r30_new_kid_tokens_wait_for_the_refetch_in_flight(idp_server):
    """R29/R30: after rotation (past the cooldown), 20 distinct tokens signed with the newly
    published key arrive while the one refetch is held: one fetch, and all 20 accepted (none
    refused "unknown key" because another thread had already started the refetch)."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock, http_read_timeout=10)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    new_key = make_key("RS256")
    idp_server.keys.append(new_key)
    clock.advance(COOLDOWN)
    tokens = [fresh(new_key, clock) for _ in range(20)]
    idp_server.jwks_mode = "hold"
    early, answers = run_while_held(idp_server, "/jwks", middleware, tokens)
    statuses = [a.status for a in answers]
    assert idp_server.jwks_requests == 2
    assert statuses == [200] * 20, f"answered while held: {early}; all: {statuses}"


# --------------------------------------------------------------------------- R25: bounded caches
def test_r25_caches_bounded_and_good_token_stays_a_hit(idp_server):
    """R25: 2000 distinct bogus tokens (bad signature, unknown kid, undecodable) plus 200
    distinct valid ones through a middleware with negative_cache_size=100 and
    token_cache_size=50 leave both caches at their bounds, and a good token sent steadily in
    between stays a cache hit (the very same principal object)."""
    clock = FrozenClock()
    es_key = make_key("ES256")  # fast to sign: the 200 valid distinct tokens
    idp_server.keys.append(es_key)
    middleware = robot(idp_server, clock, negative_cache_size=100, token_cache_size=50)
    good = fresh(idp_server.key, clock)
    principal = assert_accepted(send(middleware, good))
    authenticator = middleware.authenticator

    for i in range(2000):
        kind = i % 3
        if kind == 0:
            token = unsigned_token(idp_server.key.kid, clock)  # known kid, bad signature
            reason, fragment = "bad_signature", "signature"
        elif kind == 1:
            token = unsigned_token(secrets.token_urlsafe(12), clock)  # unknown kid
            reason, fragment = "unknown_key", "no key"
        else:
            token = ".".join(b64url(os.urandom(12)) for _ in range(3))  # not JSON
            reason, fragment = "malformed", None
        assert_invalid_token(send(middleware, token), reason, fragment)
        if i % 10 == 0:
            assert_accepted(send(middleware, fresh(es_key, clock)))
            assert assert_accepted(send(middleware, good)) is principal
        assert len(authenticator._refused) <= 100
        assert len(authenticator._cache) <= 50

    assert len(authenticator._refused) == 100
    assert len(authenticator._cache) == 50
    assert assert_accepted(send(middleware, good)) is principal
    assert idp_server.jwks_requests == 1


def test_r25_refusals_never_evict_a_cached_principal(idp_server):
    """R25: negative entries are bounded separately and cannot evict positive ones: with
    token_cache_size=5, 1000 distinct refused tokens sent after a good token leave that token
    cached (same principal object, no new verification needed)."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock, negative_cache_size=10, token_cache_size=5)
    good = fresh(idp_server.key, clock)
    principal = assert_accepted(send(middleware, good))
    for i in range(1000):
        kid = idp_server.key.kid if i % 2 else secrets.token_urlsafe(8)
        reason = "bad_signature" if i % 2 else "unknown_key"
        assert_invalid_token(send(middleware, unsigned_token(kid, clock)), reason)
    assert len(middleware.authenticator._refused) <= 10
    assert assert_accepted(send(middleware, good)) is principal


def test_r25_foreign_scheme_values_never_evict_a_cached_principal(idp_server):
    """R25: values of another scheme (``Basic ...``: not ours, the request goes on anonymously)
    are neither a principal nor worth keeping: 1000 distinct ones sent after a good token, with
    token_cache_size=5, must not push the good token's principal out of the token cache."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock, negative_cache_size=10, token_cache_size=5)
    good = fresh(idp_server.key, clock)
    principal = assert_accepted(send(middleware, good))
    for _ in range(1000):
        middleware.app = RecordingApp()
        value = f"Basic {b64url(os.urandom(12))}"
        answer = call(middleware, {"Authorization": value}, peer=STRANGER)
        assert answer.status == 200
        assert answer.user is None
    assert len(middleware.authenticator._cache) <= 5
    assert assert_accepted(send(middleware, good)) is principal


def test_r25_negative_entry_expires_after_negative_cache_ttl(idp_server):
    """R25/R32: a token refused because userinfo answered 401 is refused again from the negative
    cache (no new userinfo call) until negative_cache_ttl has passed; then, userinfo now
    accepting it, it is accepted."""
    clock = FrozenClock()
    negative_ttl = 20
    middleware = robot(
        idp_server,
        clock,
        validate_userinfo=True,
        userinfo_endpoint=idp_server.userinfo_endpoint,
        negative_cache_ttl=negative_ttl,
    )
    token = fresh(idp_server.key, clock)
    idp_server.userinfo_mode = "401"
    assert_invalid_token(send(middleware, token), "userinfo_rejected")
    assert idp_server.userinfo_requests == 1

    idp_server.userinfo_mode = "ok"
    assert_invalid_token(send(middleware, token), "userinfo_rejected")
    clock.advance(negative_ttl - 1)
    assert_invalid_token(send(middleware, token), "userinfo_rejected")
    assert idp_server.userinfo_requests == 1

    clock.advance(1)
    assert_accepted(send(middleware, token))
    assert idp_server.userinfo_requests == 2


# --------------------------------------------------------------------------- R24
@pytest.mark.parametrize("leeway", [30, 0, 5])
def test_r24_cached_principal_never_outlives_exp_plus_leeway(idp_server, leeway):
    """R24: a cached principal is served up to exp+leeway and never after: at exp+leeway the same
    token is refused 401 expired."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock, leeway=leeway)
    exp = NOW + 60
    token = mint({"exp": exp}, idp_server.key, now=NOW)
    principal = assert_accepted(send(middleware, token))
    clock.now = exp + leeway - 1
    assert assert_accepted(send(middleware, token)) is principal
    clock.now = exp + leeway
    assert_invalid_token(send(middleware, token), "expired", "expired")
    assert idp_server.jwks_requests == 1
    clock.now = exp + leeway + 3600
    assert_invalid_token(send(middleware, token), "expired", "expired")


# --------------------------------------------------------------------------- R33 / R3
def test_r33_token_header_urls_and_keys_never_fetched(idp_server):
    """R3/R33: ``jku``, ``x5u``, an embedded ``jwk``, ``x5c``, a kid that is a URL and an ``iss``
    pointing at the IdP's discovery document never cause an outbound request: the only path the
    IdP ever sees is the configured /jwks."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock, validate_issuer=False)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    attacker = make_key("RS256")
    bait = {
        "jku": idp_server.url("/attacker/jwks"),
        "x5u": idp_server.url("/attacker/cert.pem"),
        "jwk": attacker.public_jwk(),
        "x5c": ["MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA"],
    }
    issuer_bait = {"iss": idp_server.url("/realms/evil")}

    clock.advance(COOLDOWN)
    # Signed by the attacker, with the attacker's own kid: unknown key.
    token = mint({"exp": LONG_EXP, **issuer_bait}, attacker, now=int(clock.now), headers=bait)
    assert_invalid_token(send(middleware, token), "unknown_key", "no key")
    # Signed by the attacker, claiming the real kid: bad signature.
    token = mint(
        {"exp": LONG_EXP},
        attacker,
        now=int(clock.now),
        headers={**bait, "kid": idp_server.key.kid},
    )
    assert_invalid_token(send(middleware, token), "bad_signature", "signature")
    # A kid that is a URL.
    clock.advance(COOLDOWN)
    token = mint(
        {"exp": LONG_EXP},
        attacker,
        now=int(clock.now),
        headers={"kid": idp_server.url("/attacker/kid")},
    )
    assert_invalid_token(send(middleware, token), "unknown_key", "no key")
    # The real key, with the bait in the header and the issuer: whether accepted (the members
    # are ignored) or refused, nothing is fetched.
    clock.advance(COOLDOWN)
    token = mint({"exp": LONG_EXP, **issuer_bait}, idp_server.key, now=int(clock.now), headers=bait)
    answer = send(middleware, token)
    assert answer.status in (200, 401), answer.body
    if answer.status == 401:
        assert_invalid_token(answer, "wrong_issuer")

    paths = [r.path for r in idp_server.requests]
    assert set(paths) == {"/jwks"}, paths
    assert idp_server.hits("/.well-known/openid-configuration") == 0


# --------------------------------------------------------------------------- R4: key-set kids
@pytest.mark.parametrize("bad_kid", [["a"], 7, {"k": "v"}, 1.5])
def test_r4_a_key_with_a_non_string_kid_is_skipped_not_fatal(idp_server, bad_kid):
    """R4: a ``kid`` is an opaque string. A fetched key whose ``kid`` is a list, number, object
    or float is skipped; the other keys of the set keep verifying (a key set is not
    thrown away, and no token becomes an ``internal_error``, because of one odd entry)."""
    clock = FrozenClock()
    odd = make_key("RS256", kid="odd").public_jwk()
    odd["kid"] = bad_kid
    idp_server.keys = [odd, idp_server.key]
    middleware = robot(idp_server, clock)
    answer = send(middleware, fresh(idp_server.key, clock))
    assert_accepted(answer)


# --------------------------------------------------------------------------- R41 / R42
def test_r41_withdrawn_key_stops_cached_tokens(idp_server):
    """R41: a token accepted (and cached) while its key was published is refused once a
    refreshed key set no longer holds that kid; tokens of the keys still published keep
    working (checked again once)."""
    clock = FrozenClock()
    old, new = idp_server.key, make_key("RS256")
    idp_server.keys = [old, new]
    middleware = robot(idp_server, clock)
    by_old, by_new = fresh(old, clock), fresh(new, clock)
    assert_accepted(send(middleware, by_old))
    assert_accepted(send(middleware, by_new))
    idp_server.keys = [new]  # the provider withdraws the old key
    clock.advance(301)  # past the key-set TTL (300 s): the next token not cached refreshes it
    assert_accepted(send(middleware, by_new))  # a cache hit: the key set is not consulted
    assert idp_server.jwks_requests == 1
    assert_accepted(send(middleware, fresh(new, clock)))
    assert idp_server.jwks_requests == 2
    assert_invalid_token(send(middleware, by_old), "unknown_key")
    assert_accepted(send(middleware, by_new))


def test_r41_a_refresh_with_the_same_keys_keeps_the_cache(idp_server):
    clock = FrozenClock()
    middleware = robot(idp_server, clock)
    token = fresh(idp_server.key, clock)
    principal = assert_accepted(send(middleware, token))
    clock.advance(301)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))  # refreshes the key set
    assert idp_server.jwks_requests == 2
    assert assert_accepted(send(middleware, token)) is principal  # still the cached one


def _weak_rsa(kid: str) -> dict[str, Any]:
    from cryptography.hazmat.primitives.asymmetric import rsa as rsa_keys
    from jwt.algorithms import RSAAlgorithm

    private = rsa_keys.generate_private_key(public_exponent=65537, key_size=1024)
    jwk = dict(RSAAlgorithm.to_jwk(private.public_key(), as_dict=True))
    jwk.update(kid=kid, alg="RS256", use="sig")
    return {"jwk": jwk, "private": private}


def test_r42_weak_rsa_key_is_skipped_with_a_warning(idp_server, caplog):
    """R42: a 1024-bit RSA key in the set is never used, even for a token it really signed;
    the warning names its kid; the other keys keep working."""
    import jwt as pyjwt

    caplog.set_level(logging.WARNING, logger="jwt_headers")
    weak = _weak_rsa("weak-1024")
    idp_server.keys = [weak["jwk"], idp_server.key]
    clock = FrozenClock()
    middleware = robot(idp_server, clock)
    claims = access_claims({"exp": LONG_EXP}, now=int(clock.now))
    with warnings.catch_warnings():  # PyJWT warns about the short key it is asked to use
        warnings.simplefilter("ignore")
        signed_by_weak = pyjwt.encode(
            claims, weak["private"], algorithm="RS256", headers={"kid": "weak-1024"}
        )
    assert_invalid_token(send(middleware, signed_by_weak), "unknown_key")
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    lines = [r.getMessage() for r in caplog.records if "jwks_weak_key_skipped" in r.getMessage()]
    assert lines and "kid=weak-1024" in lines[0] and "1024 bits" in lines[0]


def test_r42_ec_key_on_another_curve_is_skipped(idp_server, caplog):
    from cryptography.hazmat.primitives.asymmetric import ec as ec_keys
    from jwt.algorithms import ECAlgorithm

    caplog.set_level(logging.WARNING, logger="jwt_headers")
    private = ec_keys.generate_private_key(ec_keys.SECP256K1())
    jwk = dict(ECAlgorithm.to_jwk(private.public_key(), as_dict=True))
    jwk.update(kid="k1-curve", alg="ES256K", use="sig")
    idp_server.keys = [jwk, idp_server.key]
    clock = FrozenClock()
    middleware = robot(idp_server, clock, algorithms=["RS256", "ES256K"])
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    assert any("kid=k1-curve: curve secp256k1" in r.getMessage() for r in caplog.records)


# --------------------------------------------------------------------------- Cache-Control, prefetch
@pytest.mark.parametrize(
    ("cache_control", "kept"),
    [
        ("max-age=1200", 1200),  # the provider's word, within bounds
        ("public, max-age=600, must-revalidate", 600),
        ('max-age="900"', 900),
        ("max-age=0", COOLDOWN),  # never a fetch per request: at least the cooldown
        ("max-age=5", COOLDOWN),
        ("max-age=31536000", 86400),  # a year is not trusted for a year
        ("no-cache", 300),  # no max-age: jwks_cache_ttl
        ("no-store", 300),
        ("s-maxage=50", 300),  # for shared caches, not us
    ],
)
def test_key_set_max_age_replaces_the_ttl_within_bounds(idp_server, cache_control, kept):
    """Issue 14: ``Cache-Control: max-age`` on the key-set response sets how long that copy is
    used, clamped to [refresh cooldown, one day]; without one, ``jwks_cache_ttl`` (300 s)."""
    idp_server.cache_control = cache_control
    clock = FrozenClock()
    middleware = robot(idp_server, clock)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    clock.advance(kept - 1)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    assert idp_server.jwks_requests == 1
    clock.advance(1)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    assert idp_server.jwks_requests == 2


def test_jwks_prefetch_fetches_at_start_up(idp_server):
    clock = FrozenClock()
    middleware = robot(idp_server, clock, jwks_prefetch=True)
    assert idp_server.jwks_requests == 1  # before any request
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))
    assert idp_server.jwks_requests == 1
    assert robot(idp_server, clock).authenticator.verifier.jwks.fetch_count == 0  # default off


def test_jwks_prefetch_failure_does_not_stop_the_app(idp_server):
    """A provider down at start-up: the middleware is built all the same, requests get 503,
    and the back-off lets the first attempt after it comes back succeed."""
    idp_server.jwks_mode = "500"
    clock = FrozenClock()
    middleware = robot(idp_server, clock, jwks_prefetch=True)
    assert idp_server.jwks_requests == 1
    assert_unavailable(send(middleware, fresh(idp_server.key, clock)))
    idp_server.jwks_mode = "ok"
    clock.advance(1)
    assert_accepted(send(middleware, fresh(idp_server.key, clock)))


# --------------------------------------------------------------------------- kid-less tokens
@pytest.fixture(scope="module")
def ten_keys() -> list[idp.TestKey]:
    """Ten RS256 keys (made once: RSA generation is the slow part)."""
    return [make_key("RS256", kid=f"k{n}") for n in range(1, 11)]


def test_kidless_token_checked_against_at_most_max_kidless_keys(idp_server, ten_keys):
    """Issue 14: a token without ``kid`` is checked against at most ``MAX_KIDLESS_KEYS`` (4) keys
    of its algorithm, in key-set order: signed by the first key it is accepted, by the tenth it
    is refused ``bad_signature`` (app not called), so a made-up kid-less token costs at most
    four signature checks however large the key set."""
    from jwt_headers.jwks import MAX_KIDLESS_KEYS

    assert MAX_KIDLESS_KEYS == 4
    idp_server.keys = list(ten_keys)
    clock = FrozenClock()
    middleware = robot(idp_server, clock)
    first = mint({"exp": LONG_EXP}, ten_keys[0], now=int(clock.now), headers={"kid": None})
    last = mint({"exp": LONG_EXP}, ten_keys[9], now=int(clock.now), headers={"kid": None})
    assert "kid" not in idp.decode_parts(first)[0]
    assert_accepted(send(middleware, first))
    assert_invalid_token(send(middleware, last), "bad_signature")
    assert_accepted(send(middleware, fresh(ten_keys[9], clock)))  # with its kid it is fine
    assert idp_server.jwks_requests == 1


def test_kidless_token_tries_keys_without_kid_first(idp_server, ten_keys):
    """A key published without ``kid`` (after ten that have one) verifies a kid-less token:
    keys without a kid are tried first, so the bound never hides the key such tokens need."""
    plain = make_key("RS256")
    jwk = plain.public_jwk()
    del jwk["kid"]
    idp_server.keys = [*ten_keys, jwk]
    clock = FrozenClock()
    middleware = robot(idp_server, clock)
    token = mint({"exp": LONG_EXP}, plain, now=int(clock.now), headers={"kid": None})
    assert_accepted(send(middleware, token))


# --------------------------------------------------------------------------- file: key sets
def write_key_set(path: Path, keys: list[Any], *, atomic: bool = False) -> None:
    """Publish ``keys`` (TestKeys or JWK dicts) in the file, rewritten in place or, with
    ``atomic``, written beside it and renamed over it (a new inode), as a signer would."""
    body = json.dumps({"keys": [k.public_jwk() if isinstance(k, idp.TestKey) else k for k in keys]})
    if atomic:
        spare = path.with_suffix(".new")
        spare.write_text(body)
        os.replace(spare, path)
    else:
        path.write_text(body)


def file_robot(path: Path, clock: FrozenClock, **extra: Any) -> JwtHeadersMiddleware:
    options: dict[str, Any] = {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "validate_token": True,
        "jwks_uri": path.as_uri(),
        "validate_issuer": True,
        "issuer": ISSUER,
        **extra,
    }
    return JwtHeadersMiddleware(RecordingApp(), clock=clock, **options)


def file_reads(middleware: JwtHeadersMiddleware) -> int:
    return middleware.authenticator.verifier.jwks.fetch_count


def test_file_key_set_accepts_and_is_not_read_again_while_unchanged(tmp_path, monkeypatch):
    """Issue 14: ``jwks_uri=file:///...`` reads an internal signer's key set from disk. An
    unchanged file (stamp: device, inode, size, mtime, ctime) is not read again, not even for an
    unknown kid (no provider to protect, but no reason to read either)."""
    monkeypatch.setattr(jwks_module, "RACY_SECONDS", 0.0)  # the file's age does not matter here
    path = tmp_path / "jwks.json"
    key = make_key("RS256")
    write_key_set(path, [key])
    clock = FrozenClock()
    middleware = file_robot(path, clock)
    assert_accepted(send(middleware, fresh(key, clock)))
    assert_accepted(send(middleware, fresh(key, clock)))
    assert_invalid_token(send(middleware, unsigned_token("made-up", clock)), "unknown_key")
    clock.advance(TTL + 1)  # the HTTP TTL means nothing for a file
    assert_accepted(send(middleware, fresh(key, clock)))
    assert file_reads(middleware) == 1


@pytest.mark.parametrize("atomic", [False, True], ids=["in-place", "renamed-over"])
def test_file_key_set_rotation_r41(tmp_path, atomic):
    """Rewriting the file rotates the keys at the next lookup, with no cooldown: the new kid is
    accepted at once, the old kid is refused ``unknown_key``, and a token of the old key that was
    cached is refused too (R41, as after an HTTP refresh)."""
    path = tmp_path / "jwks.json"
    old, new = make_key("RS256", kid="k-old"), make_key("RS256", kid="k-new")
    write_key_set(path, [old])
    clock = FrozenClock()
    middleware = file_robot(path, clock)
    cached = fresh(old, clock)
    assert_accepted(send(middleware, cached))
    write_key_set(path, [new], atomic=atomic)  # same size as before: only the stamp tells
    assert_accepted(send(middleware, fresh(new, clock)))
    assert_invalid_token(send(middleware, fresh(old, clock)), "unknown_key")
    assert_invalid_token(send(middleware, cached), "unknown_key")


def test_file_key_set_rewritten_in_the_same_tick_is_still_seen(tmp_path):
    """A rewrite of the same size whose mtime is put back (``cp -p``, a fast second write in
    one timestamp tick) leaves size and mtime equal; a file modified within ``RACY_SECONDS``
    of its read is read again at the next lookup, so the rotation is not missed."""
    path = tmp_path / "jwks.json"
    old, new = make_key("RS256", kid="k-old"), make_key("RS256", kid="k-new")
    write_key_set(path, [old])
    os.utime(path, ns=(NOW * 10**9, NOW * 10**9))
    clock = FrozenClock()
    middleware = file_robot(path, clock)
    assert_accepted(send(middleware, fresh(old, clock)))
    write_key_set(path, [new])
    os.utime(path, ns=(NOW * 10**9, NOW * 10**9))
    assert_accepted(send(middleware, fresh(new, clock)))
    assert_invalid_token(send(middleware, fresh(old, clock)), "unknown_key")


def test_file_key_set_freshly_modified_is_read_again_not_parsed_again(tmp_path, caplog):
    """A file modified within ``RACY_SECONDS`` of its read may be rewritten again in the same
    timestamp tick with the same size (its stamp would not change): it is read again at the
    next lookup until it is older than that. Identical content is not parsed again (one
    ``jwks_loaded``, no revocation)."""
    caplog.set_level(logging.INFO, logger="jwt_headers")
    path = tmp_path / "jwks.json"
    key = make_key("RS256")
    write_key_set(path, [key])  # just now: racy
    clock = FrozenClock()
    middleware = file_robot(path, clock)
    cached = fresh(key, clock)
    principal = assert_accepted(send(middleware, cached))
    assert_accepted(send(middleware, fresh(key, clock)))
    assert file_reads(middleware) == 2
    assert sum("jwks_loaded" in r.getMessage() for r in caplog.records) == 1
    assert assert_accepted(send(middleware, cached)) is principal  # the cache was kept


def test_file_key_set_with_a_future_mtime_is_not_read_on_every_lookup(tmp_path):
    """A file stamped in the future (a skewed clock where it was written, ``touch -d``) is not
    "modified just now": it is read once, not again at every cache miss; a real rewrite gives
    it the present time, so the next lookup still sees it."""
    path = tmp_path / "jwks.json"
    old, new = make_key("RS256", kid="k-old"), make_key("RS256", kid="k-new")
    write_key_set(path, [old])
    future = (int(time.time()) + 86400) * 10**9
    os.utime(path, ns=(future, future))
    clock = FrozenClock()
    middleware = file_robot(path, clock)
    for _ in range(3):
        assert_accepted(send(middleware, fresh(old, clock)))  # new tokens: cache misses
    assert file_reads(middleware) == 1
    write_key_set(path, [new])
    assert_accepted(send(middleware, fresh(new, clock)))
    assert file_reads(middleware) == 2


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"{not json", "not_json"),
        (b'{"keys": []}', "no_usable_keys"),
        (b"[]", "not_a_key_set"),
        (b'{"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}', "no_usable_keys"),
        (None, "file_missing"),
    ],
    ids=["garbage", "empty", "not-object", "only-hmac", "deleted"],
)
def test_file_key_set_bad_rewrite_keeps_the_last_good_keys(tmp_path, caplog, content, reason):
    """R28 for files: a garbage, empty or deleted file keeps the last good keys (tokens of a
    known key keep working, new ones included), with a warning naming the reason; a good file
    afterwards is used at once."""
    caplog.set_level(logging.WARNING, logger="jwt_headers")
    path = tmp_path / "jwks.json"
    key, next_key = make_key("RS256"), make_key("RS256")
    write_key_set(path, [key])
    clock = FrozenClock()
    middleware = file_robot(path, clock)
    assert_accepted(send(middleware, fresh(key, clock)))
    if content is None:
        path.unlink()
    else:
        path.write_bytes(content)
    assert_accepted(send(middleware, fresh(key, clock)))
    assert_invalid_token(send(middleware, fresh(next_key, clock)), "unknown_key")
    warned = [r.getMessage() for r in caplog.records if "jwks_file_failed" in r.getMessage()]
    assert warned and f"reason={reason}" in warned[0] and "the last good keys" in warned[0]
    write_key_set(path, [next_key])
    assert_accepted(send(middleware, fresh(next_key, clock)))
    assert_invalid_token(send(middleware, fresh(key, clock)), "unknown_key")


def test_file_key_set_missing_at_start_gives_503_then_works(tmp_path, monkeypatch):
    """R31 for files: no key set was ever loaded (the file does not exist yet), so the request
    gets 503 ``jwks_unavailable`` with Retry-After, the app not called; the missing file is not
    looked for again until it appears, and then it is used at the next request (no back-off,
    no clock advance)."""
    monkeypatch.setattr(jwks_module, "RACY_SECONDS", 0.0)
    path = tmp_path / "jwks.json"
    key = make_key("RS256")
    clock = FrozenClock()
    middleware = file_robot(path, clock, jwks_prefetch=True)  # a failure does not stop the app
    answer = send(middleware, fresh(key, clock))
    assert_unavailable(answer)
    assert answer.reasons[-1] == "jwks_unavailable"
    assert_unavailable(send(middleware, fresh(key, clock)))
    assert file_reads(middleware) == 1  # a stat per lookup; one attempt for the missing file
    path.write_text("{garbage")
    assert_unavailable(send(middleware, fresh(key, clock)))  # garbage: still none loaded
    write_key_set(path, [key])
    assert_accepted(send(middleware, fresh(key, clock)))


def test_file_key_set_size_capped_by_max_response_bytes(tmp_path, caplog):
    """R27 for files: a key-set file larger than ``max_response_bytes`` is refused like an
    oversized answer (503 while none was ever loaded), read no further than the cap."""
    caplog.set_level(logging.WARNING, logger="jwt_headers")
    path = tmp_path / "jwks.json"
    key = make_key("RS256")
    write_key_set(path, [key])
    clock = FrozenClock()
    middleware = file_robot(path, clock, max_response_bytes=path.stat().st_size - 1)
    assert_unavailable(send(middleware, fresh(key, clock)))
    assert any("reason=response_too_large" in r.getMessage() for r in caplog.records)
    assert_accepted(send(file_robot(path, clock), fresh(key, clock)))


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_file_key_set_fifo_refused_without_blocking(tmp_path):
    """A FIFO (or device) at the path is refused at once, not read (it would block or never
    end)."""
    path = tmp_path / "jwks.json"
    os.mkfifo(path)
    clock = FrozenClock()
    started = time.monotonic()
    assert_unavailable(send(file_robot(path, clock), fresh(make_key("RS256"), clock)))
    assert time.monotonic() - started < 2
