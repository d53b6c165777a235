"""The OIDC userinfo check (``validate_userinfo``), against a real HTTP fake IdP.

Requirements covered (security.md): R10 how userinfo is called and what its answer means,
R16 a token checked by userinfo alone still obeys ``trusted_proxies``, R24/R32 the userinfo
result cache (TTL, 401 cached briefly, 5xx never cached as success), R30 single flight,
R31 fail closed (503 within the timeout). Contract: "Userinfo answers", "Outbound calls".

Time-dependent steps run on a frozen clock the test advances; real network waits are bounded by
small timeout options and checked with ``time.monotonic`` (a bound, not a sleep).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any

import idp
import pytest
from conftest import (
    LOOPBACK,
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
from idp import ISSUER, SUBJECT, USER_NAME, compact_jws, dead_url, make_key, mint

from jwt_headers import JwtHeadersMiddleware

idp_server = idp.idp_server  # the pytest fixture, bound here so pytest finds it

CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 0.5
TIME_BOUND = CONNECT_TIMEOUT + READ_TIMEOUT + 0.6
SLOW_DELAY = 2.0
USERINFO_TTL = 60


# --------------------------------------------------------------------------- helpers


def options(server: idp.IdpServer, **extra: Any) -> dict[str, Any]:
    """Bearer JWT checked by signature (the fake IdP's JWKS), issuer, and userinfo."""
    opts: dict[str, Any] = {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "validate_token": True,
        "jwks_uri": server.jwks_uri,
        "validate_issuer": True,
        "issuer": ISSUER,
        "validate_userinfo": True,
        "userinfo_endpoint": server.userinfo_endpoint,
        "userinfo_cache_ttl": USERINFO_TTL,
        "http_connect_timeout": CONNECT_TIMEOUT,
        "http_read_timeout": READ_TIMEOUT,
    }
    opts.update(extra)
    return opts


def robot(
    server: idp.IdpServer, clock: FrozenClock | None = None, **extra: Any
) -> JwtHeadersMiddleware:
    return JwtHeadersMiddleware(
        RecordingApp(), clock=clock or FrozenClock(), **options(server, **extra)
    )


def send(middleware: JwtHeadersMiddleware, token: str, *, peer: str = STRANGER) -> Answer:
    """One request with ``Authorization: Bearer <token>`` and a fresh recording app."""
    middleware.app = RecordingApp()
    return call(middleware, {"Authorization": f"Bearer {token}"}, peer=peer)


def token_for(server: idp.IdpServer, **overrides: Any) -> str:
    return mint(overrides or None, server.key, now=NOW)


# --------------------------------------------------------------------------- R10: the call
def test_r10_accepted_token_sent_as_bearer_never_in_query(idp_server):
    """R10: userinfo ok -> 200; the one call went to the configured endpoint with
    ``Authorization: Bearer <token>``, no query string, the token nowhere in the request
    target, no redirect involved."""
    token = token_for(idp_server)
    assert_accepted(send(robot(idp_server), token))
    calls = idp_server.userinfo_calls
    assert len(calls) == 1
    (request,) = calls
    assert request.authorization == f"Bearer {token}"
    assert request.query == ""
    assert request.raw_path == "/userinfo"
    for segment in token.split("."):
        assert segment not in request.raw_path
    assert idp_server.hits("/userinfo/moved") == 0


def test_r10_user_name_comes_from_the_token_not_the_userinfo_body(idp_server):
    """R10: the user name still comes from the configured header/path; a userinfo body naming
    someone else (same ``sub``) changes nothing."""
    idp_server.userinfo_body = {"sub": SUBJECT, "preferred_username": "mallory", "roles": ["x"]}
    principal = assert_accepted(send(robot(idp_server), token_for(idp_server)))
    assert principal.name == USER_NAME
    assert principal.roles == ()


@pytest.mark.parametrize("status", ["401", "403", "404", "400"])
def test_r10_userinfo_4xx_refuses_token(idp_server, status):
    """R10 / contract "Userinfo answers": 401, 403 and any other 4xx from userinfo -> 401
    INVALID_TOKEN, app not called."""
    idp_server.userinfo_mode = status
    answer = send(robot(idp_server), token_for(idp_server))
    assert_invalid_token(answer, "userinfo_rejected")
    assert idp_server.userinfo_requests == 1


# --------------------------------------------------------------------------- R31: cannot check
@pytest.mark.parametrize(
    "mode",
    [
        "500",
        "502",
        "503",
        "slow",
        "trickle",
        "garbage",
        "not_object",
        "huge",
        "redirect",
        "302",
        "as_201",
        "as_203",
        "as_206",
        "as_302",
        "as_307",
        "down",
        "dead_url",
    ],
)
def test_r31_userinfo_unavailable_gives_503_within_timeout(idp_server, mode):
    """R10/R31: 5xx, slow beyond the read timeout, trickling beyond the total timeout, non-JSON,
    a JSON non-object, an oversized answer, a redirect (never followed), a dropped connection,
    nothing listening: 503 with Retry-After and IDP_UNAVAILABLE, app not called, answered
    within the configured timeouts.

    ``redirect`` and the ``as_NNN`` modes carry a good userinfo body (the token's ``sub``):
    only the status says it is not an answer, so a client that took any status below 500 as
    success (or read a redirect's body) would accept the token here."""
    extra: dict[str, Any] = {}
    if mode == "dead_url":
        extra["userinfo_endpoint"] = dead_url("/userinfo")
    else:
        idp_server.delay = SLOW_DELAY
        idp_server.userinfo_mode = mode
    middleware = robot(idp_server, **extra)
    warm = _warm(middleware, idp_server)
    if mode == "dead_url":
        assert_unavailable(warm)
    else:
        assert_accepted(warm)
    token = token_for(idp_server)

    started = time.monotonic()
    answer = send(middleware, token)
    elapsed = time.monotonic() - started

    assert_unavailable(answer)
    assert elapsed < TIME_BOUND, f"{mode}: answered after {elapsed:.2f}s (bound {TIME_BOUND}s)"
    assert idp_server.hits("/userinfo/moved") == 0
    if mode != "dead_url":
        assert idp_server.userinfo_requests == 1


def _warm(middleware: JwtHeadersMiddleware, server: idp.IdpServer) -> Answer:
    """Fetch the key set first (with userinfo answering ok), so the timing below is userinfo's
    alone; then restore the failure mode and forget the warm-up's requests."""
    saved = server.userinfo_mode
    server.userinfo_mode = "ok"
    answer = send(middleware, token_for(server))
    server.userinfo_mode = saved
    server.reset()
    return answer


@pytest.mark.parametrize(
    "body",
    [{}, {"sub": ""}, {"sub": None}, {"email": "x@example.test"}, {"sub": ["98cf"]}],
    ids=["empty", "empty_sub", "null_sub", "no_sub_member", "list_sub"],
)
def test_r10_userinfo_without_subject_refuses(idp_server, body):
    """R10: a userinfo answer without a usable ``sub`` -> 401."""
    idp_server.userinfo_body = body
    assert_invalid_token(send(robot(idp_server), token_for(idp_server)), "userinfo_no_subject")


def test_r10_no_sub_mode_refuses(idp_server):
    """R10: the fake IdP's ``no_sub`` answer (200 ``{}``) -> 401."""
    idp_server.userinfo_mode = "no_sub"
    assert_invalid_token(send(robot(idp_server), token_for(idp_server)), "userinfo_no_subject")
    assert idp_server.userinfo_requests == 1


def test_r10_subject_mismatch_refused_with_validate_subject(idp_server):
    """R10 (OIDC Core 5.3.2): userinfo ``sub`` != token ``sub`` -> 401 with validate_subject."""
    idp_server.userinfo_sub = "someone-else"
    assert_invalid_token(
        send(robot(idp_server), token_for(idp_server)), "subject_mismatch", "subject"
    )


def test_r10_subject_mismatch_accepted_without_validate_subject(idp_server):
    """R10: with validate_subject=False a different userinfo ``sub`` is accepted (the answer
    still has to carry one)."""
    idp_server.userinfo_sub = "someone-else"
    assert_accepted(send(robot(idp_server, validate_subject=False), token_for(idp_server)))


@pytest.mark.parametrize(
    ("userinfo_sub", "token_sub"),
    [(123, "123"), ("123", 123), ("98CFE060-F980-4A05-8612-6C609219FFE9", SUBJECT)],
    ids=["number_vs_string", "string_vs_number", "case"],
)
def test_r10_subject_compared_exactly_and_type_sensitive(idp_server, userinfo_sub, token_sub):
    """R10: the comparison is exact and type-sensitive: 123 is not "123", case matters (a
    non-string userinfo ``sub`` is no subject at all)."""
    idp_server.userinfo_sub = userinfo_sub
    token = token_for(idp_server, sub=token_sub)
    reason = "userinfo_no_subject" if not isinstance(userinfo_sub, str) else "subject_mismatch"
    assert_invalid_token(send(robot(idp_server), token), reason)


@pytest.mark.parametrize(
    "case",
    ["expired", "bad_signature", "wrong_audience", "wrong_issuer", "unknown_key", "malformed"],
)
def test_r10_userinfo_never_consulted_for_locally_refused_token(idp_server, case):
    """R10: a token the middleware can refuse itself never reaches the identity provider."""
    key = idp_server.key
    if case == "expired":
        token = mint({"exp": NOW - 3600}, key, now=NOW - 4000)
    elif case == "bad_signature":
        good = token_for(idp_server)
        token = ".".join((*good.split(".")[:2], compact_jws({}, {}, os.urandom(256)).split(".")[2]))
    elif case == "wrong_audience":
        token = token_for(idp_server, aud="another-api")
    elif case == "wrong_issuer":
        token = token_for(idp_server, iss="https://evil.example.test/realms/dave-test2")
    elif case == "unknown_key":
        token = mint(None, make_key("RS256"), now=NOW)
    else:
        token = "not-a-token"
    middleware = robot(idp_server, validate_audience=True, audience="live-key2")
    assert_invalid_token(send(middleware, token), case)
    assert idp_server.userinfo_requests == 0


# --------------------------------------------------------------------------- R32 / R24: caching
def test_r32_positive_result_cached_until_userinfo_ttl(idp_server):
    """R32/R24: the same token 5 times -> 1 userinfo call; once userinfo_cache_ttl has passed the
    next request asks again."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock)
    token = token_for(idp_server)
    principal = assert_accepted(send(middleware, token))
    for _ in range(4):
        assert assert_accepted(send(middleware, token)) is principal
    assert idp_server.userinfo_requests == 1

    clock.advance(USERINFO_TTL - 1)
    assert_accepted(send(middleware, token))
    assert idp_server.userinfo_requests == 1

    clock.advance(1)
    assert_accepted(send(middleware, token))
    assert idp_server.userinfo_requests == 2
    assert_accepted(send(middleware, token))
    assert idp_server.userinfo_requests == 2


def test_r24_userinfo_ttl_rechecks_a_token_the_idp_revoked(idp_server):
    """R24/R32: the cached acceptance does not outlive the userinfo TTL: a token the IdP has
    since revoked (userinfo 401) is refused after the TTL."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock)
    token = token_for(idp_server)
    assert_accepted(send(middleware, token))
    idp_server.userinfo_mode = "401"
    clock.advance(USERINFO_TTL)
    assert_invalid_token(send(middleware, token), "userinfo_rejected")
    assert idp_server.userinfo_requests == 2


def test_r32_userinfo_401_negatively_cached_briefly(idp_server):
    """R32: a 401 from userinfo is remembered briefly: replays cost no call."""
    clock = FrozenClock()
    middleware = robot(idp_server, clock)
    token = token_for(idp_server)
    idp_server.userinfo_mode = "401"
    for _ in range(5):
        assert_invalid_token(send(middleware, token), "userinfo_rejected")
    assert idp_server.userinfo_requests == 1


@pytest.mark.parametrize("failure", ["500", "503", "garbage", "down", "slow"])
def test_r32_unavailable_never_cached_as_success_nor_refusal(idp_server, failure):
    """R32/R31: a failed userinfo call is not cached: after a 503, the IdP answering ok makes the
    very next request with the same token 200 (no clock change)."""
    idp_server.delay = SLOW_DELAY
    middleware = robot(idp_server)
    token = token_for(idp_server)
    idp_server.userinfo_mode = failure
    assert_unavailable(send(middleware, token))
    assert_unavailable(send(middleware, token))
    assert idp_server.userinfo_requests == 2  # retried, not answered from a cache

    idp_server.userinfo_mode = "ok"
    assert_accepted(send(middleware, token))
    assert idp_server.userinfo_requests == 3


# --------------------------------------------------------------------------- R30: single flight
def test_r30_concurrent_same_token_single_userinfo_call(idp_server):
    """R30: 20 threads bring the same new token while the IdP holds the userinfo answer: exactly
    one userinfo call, nobody answered before the release, all 20 accepted after it."""
    middleware = robot(idp_server, http_read_timeout=10)
    assert_accepted(send(middleware, token_for(idp_server)))  # the key set is fetched
    idp_server.reset()
    idp_server.userinfo_mode = "hold"
    token = token_for(idp_server)
    barrier = threading.Barrier(20)

    def one(_: int) -> Answer:
        barrier.wait(timeout=10)
        return call(middleware, {"Authorization": f"Bearer {token}"}, peer=STRANGER)

    middleware.app = RecordingApp()
    pool = ThreadPoolExecutor(20)
    try:
        futures = [pool.submit(one, i) for i in range(20)]
        assert idp_server.wait_for("/userinfo", 1, timeout=10)
        # Bounded check, not a sleep: nobody may be answered while the one call is held.
        done, _ = wait(futures, timeout=0.3, return_when=FIRST_COMPLETED)
        early = [f.result().status for f in done]
    finally:
        idp_server.release()
        pool.shutdown(wait=True)
    answers = [f.result() for f in futures]
    assert early == []
    assert idp_server.userinfo_requests == 1
    assert [a.status for a in answers] == [200] * 20
    assert len(middleware.app.calls) == 20
    assert idp_server.jwks_requests == 0


# --------------------------------------------------------------------------- R16
def userinfo_only(server: idp.IdpServer) -> JwtHeadersMiddleware:
    return JwtHeadersMiddleware(
        RecordingApp(),
        clock=FrozenClock(),
        user_name_header="Authorization",
        user_name_format="jwt",
        user_name_json_path="preferred_username",
        validate_token=True,
        validate_signature=False,
        validate_userinfo=True,
        userinfo_endpoint=server.userinfo_endpoint,
        http_connect_timeout=CONNECT_TIMEOUT,
        http_read_timeout=READ_TIMEOUT,
    )


def test_r16_userinfo_only_token_ignored_from_untrusted_peer(idp_server):
    """R16: a JWT checked by userinfo alone proves nothing by itself: from a peer outside
    trusted_proxies the Authorization header is ignored (anonymous: app called without
    REMOTE_USER or principal, header removed) and userinfo is never called."""
    middleware = userinfo_only(idp_server)
    answer = send(middleware, token_for(idp_server), peer=STRANGER)
    assert answer.status == 200
    assert answer.app.called
    assert "REMOTE_USER" not in answer.app.environ
    assert "jwt_headers.principal" not in answer.app.environ
    assert "HTTP_AUTHORIZATION" not in answer.app.environ
    assert idp_server.userinfo_requests == 0
    assert idp_server.total_requests == 0


def test_r16_userinfo_only_token_checked_from_trusted_peer(idp_server):
    """R16 (the other side): from a trusted proxy the same token is checked by userinfo and
    accepted; a userinfo 401 refuses it."""
    middleware = userinfo_only(idp_server)
    assert_accepted(send(middleware, token_for(idp_server), peer=LOOPBACK))
    assert idp_server.userinfo_requests == 1
    idp_server.userinfo_mode = "401"
    assert_invalid_token(
        send(middleware, token_for(idp_server), peer=LOOPBACK), "userinfo_rejected"
    )
    assert idp_server.userinfo_requests == 2
    assert idp_server.jwks_requests == 0
