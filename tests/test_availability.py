"""Availability under concurrency: many threads, one identity provider, a cold or rotating key set.

Requirements covered (security.md): R29 refetch cooldown and key rotation under live traffic,
R30 single flight (50 threads on a cold cache cause one JWKS fetch and one userinfo call per
distinct token), R31 fail closed (503 ``IDP_UNAVAILABLE`` with ``Retry-After``, within the
configured timeouts, one outbound attempt per cooldown even when 50 threads need it), R35 no
token text in any log record or response body.

All validation times run on a :class:`FrozenClock` that the test advances. The test side never
sleeps: the fake IdP's "hold" mode keeps the first outbound call in flight until the test has
seen every thread arrive, and the only waits are bounded checks (``wait_for`` with a timeout,
and the same 0.3 s "nobody is answered while the call is held" check as ``test_keyset``).
Request durations are measured with ``time.monotonic`` against the configured timeouts (a
bound, not a sleep).
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Any

import idp
import pytest
from conftest import NOW, STRANGER, FrozenClock, RecordingApp
from idp import AUDIENCE, ISSUER, USER_NAME, make_key, mint
from werkzeug.test import Client

from jwt_headers import JwtHeadersMiddleware

idp_server = idp.idp_server  # the pytest fixture, bound here so pytest finds it

LOGGER = "jwt_headers"
CONNECT_TIMEOUT = 0.5
READ_TIMEOUT = 0.5
#: Requirement 4: every answer within connect + read timeout, plus one second of scheduling.
TIME_BOUND = CONNECT_TIMEOUT + READ_TIMEOUT + 1.0
HELD_READ_TIMEOUT = 10  # while the test holds the IdP on purpose
SLOW_DELAY = 2.0  # the fake IdP's "slow"/"trickle" time: well beyond the timeouts
COOLDOWN = 30  # jwks_refresh_cooldown default
TTL = 300  # jwks_cache_ttl default
LONG_EXP = NOW + 10 * 86400  # tokens that stay valid across every clock jump below
THREADS = 50


# --------------------------------------------------------------------------- helpers


def validating(
    server: idp.IdpServer, clock: FrozenClock, *, userinfo: bool = True, **extra: Any
) -> JwtHeadersMiddleware:
    """Full validation of a Bearer JWT: signature (the fake IdP's JWKS), expiry, issuer,
    audience and, by default, userinfo with validate_subject. A brand-new (cold) middleware."""
    options: dict[str, Any] = {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "validate_token": True,
        "validate_expiry": True,
        "validate_signature": True,
        "jwks_uri": server.jwks_uri,
        "validate_issuer": True,
        "issuer": ISSUER,
        "validate_audience": True,
        "audience": AUDIENCE,
        "http_connect_timeout": CONNECT_TIMEOUT,
        "http_read_timeout": READ_TIMEOUT,
    }
    if userinfo:
        options.update(
            validate_userinfo=True,
            userinfo_endpoint=server.userinfo_endpoint,
            validate_subject=True,
        )
    options.update(extra)
    return JwtHeadersMiddleware(RecordingApp(), clock=clock, **options)


def fresh(key: idp.TestKey, clock: FrozenClock) -> str:
    """A new, distinct (random jti) token by ``key``, valid at the clock's time."""
    return mint({"exp": LONG_EXP}, key, now=int(clock.now))


def forged(real_key: idp.TestKey, clock: FrozenClock) -> str:
    """A token naming ``real_key``'s kid but signed by another key: a bad signature."""
    return mint({"exp": LONG_EXP}, _impostor(), now=int(clock.now), headers={"kid": real_key.kid})


@functools.cache
def _impostor() -> idp.TestKey:
    return make_key("RS256")


@dataclass
class Reply:
    """One answer, with the request id the app sees and how long it took."""

    rid: int
    token: str = field(repr=False)
    status: int
    headers: Any
    body: bytes
    elapsed: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


def send(middleware: JwtHeadersMiddleware, token: str, rid: int) -> Reply:
    """One request with ``Authorization: Bearer <token>`` from a peer outside trusted_proxies
    (a signature-checked token is accepted from anyone); ``X-Request-Id`` lets the test match
    the app's calls to the answers. Thread-safe: the middleware's app is shared."""
    started = time.monotonic()
    response = Client(middleware).get(
        "/",
        headers={"Authorization": f"Bearer {token}", "X-Request-Id": str(rid)},
        environ_base={"REMOTE_ADDR": STRANGER},
    )
    body = response.get_data()
    elapsed = time.monotonic() - started
    return Reply(rid, token, response.status_code, response.headers, body, elapsed)


def assert_ok(reply: Reply) -> None:
    assert reply.status == 200, (reply.status, reply.body)
    assert reply.body == b"ok"  # the RecordingApp's own answer


def assert_refused(reply: Reply, fragment: str) -> None:
    """R34: 401, RFC 6750 challenge, JSON INVALID_TOKEN naming the reason."""
    assert reply.status == 401, (reply.status, reply.body)
    assert reply.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert reply.headers["Content-Type"] == "application/json"
    assert "Retry-After" not in reply.headers
    error = reply.json["error"]
    assert error["code"] == "INVALID_TOKEN"
    assert fragment in error["message"], error


def assert_unavailable(reply: Reply) -> int:
    """R31: 503, whole-number Retry-After >= 1, JSON IDP_UNAVAILABLE."""
    assert reply.status == 503, (reply.status, reply.body)
    assert reply.headers["Content-Type"] == "application/json"
    assert "WWW-Authenticate" not in reply.headers
    retry_after = reply.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit(), retry_after
    assert int(retry_after) >= 1
    assert reply.json["error"]["code"] == "IDP_UNAVAILABLE"
    return int(retry_after)


def app_request_ids(middleware: JwtHeadersMiddleware) -> list[int]:
    """The request ids the wrapped app was called for, each checked to carry the principal."""
    app = middleware.app
    assert isinstance(app, RecordingApp)
    for environ in app.calls:
        assert environ["REMOTE_USER"] == USER_NAME
        assert environ["jwt_headers.principal"].name == USER_NAME
    return sorted(int(environ["HTTP_X_REQUEST_ID"]) for environ in app.calls)


def assert_app_called_exactly_for_200s(middleware: JwtHeadersMiddleware, replies: list[Reply]):
    assert app_request_ids(middleware) == sorted(r.rid for r in replies if r.status == 200)


def assert_no_token_text(
    tokens: list[str], replies: list[Reply], caplog: pytest.LogCaptureFixture
) -> None:
    """R35: no log record of "jwt_headers" and no response body holds a token or one of its
    segments; and the middleware never logged an internal error."""
    pieces = set()
    for token in tokens:
        pieces.add(token)
        pieces.update(segment for segment in token.split(".") if segment)
    records = [r for r in caplog.records if r.name.startswith(LOGGER)]
    logged = "\n".join(r.getMessage() for r in records) + "\n" + caplog.text
    bodies = b"\n".join(r.body for r in replies).decode("utf-8", "replace")
    for piece in pieces:
        assert piece not in logged, "token text in a log record"
        assert piece not in bodies, "token text in a response body"
    assert not [r for r in records if r.levelno >= logging.ERROR], [r.getMessage() for r in records]
    assert "internal_error" not in logged


class Arrivals:
    """Counts requests that have entered the middleware (thread-safe, waitable)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self.count = 0

    def arrive(self) -> None:
        with self._cond:
            self.count += 1
            self._cond.notify_all()

    def wait_for(self, count: int, timeout: float = 10) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: self.count >= count, timeout)


def run_together(
    middleware: JwtHeadersMiddleware,
    tokens: list[str],
    *,
    held: tuple[idp.IdpServer, str] | None = None,
) -> list[Reply]:
    """One request per token, one thread each, all released at once by a Barrier.

    With ``held=(server, path)`` (the server's mode for ``path`` set to "hold"): wait until the
    first call to ``path`` is in flight and every thread has entered the middleware, check (for
    a bounded 0.3 s, as test_keyset does) that nobody has been answered while the call is held,
    then release the IdP."""
    count = len(tokens)
    barrier = threading.Barrier(count)
    arrivals = Arrivals()

    def one(rid: int) -> Reply:
        barrier.wait(timeout=10)
        arrivals.arrive()
        return send(middleware, tokens[rid], rid)

    pool = ThreadPoolExecutor(count)
    try:
        futures = [pool.submit(one, rid) for rid in range(count)]
        if held is not None:
            server, path = held
            try:
                assert server.wait_for(path, 1, timeout=10), f"no call to {path} arrived"
                assert arrivals.wait_for(count), f"only {arrivals.count} of {count} arrived"
                done, _ = wait(futures, timeout=0.3, return_when=FIRST_COMPLETED)
                assert not done, [f.result().status for f in done]
                assert server.hits(path) == 1  # every thread arrived during the one call
            finally:
                server.release()
    finally:
        pool.shutdown(wait=True)
    return [future.result() for future in futures]


# --------------------------------------------------------------------------- R30: cold cache
@pytest.mark.parametrize("population", ["same_token", "distinct_tokens", "half_forged"])
def test_r30_50_concurrent_requests_on_a_cold_cache_one_jwks_fetch_one_userinfo_call_per_token(
    idp_server, caplog, population
):
    """R30 (R31): a brand-new middleware with full validation (signature via the JWKS, expiry,
    issuer, audience, userinfo with validate_subject); 50 threads released together while the
    IdP holds the one JWKS fetch in flight:

    * same_token: 50 x the same token -> 50 x 200, 1 JWKS fetch, 1 userinfo call;
    * distinct_tokens: 50 tokens by the same key -> 50 x 200, 1 JWKS fetch, 50 userinfo calls
      (exactly one per token);
    * half_forged: 25 good + 25 signed by another key under the known kid -> 25 x 200,
      25 x 401 (bad signature), 1 JWKS fetch, userinfo called once for each good token only.

    The app is called exactly for the 200s; no log record or body holds token text."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = FrozenClock()
    key = idp_server.key
    if population == "same_token":
        tokens = [fresh(key, clock)] * THREADS
    elif population == "distinct_tokens":
        tokens = [fresh(key, clock) for _ in range(THREADS)]
    else:
        tokens = [fresh(key, clock) if i % 2 == 0 else forged(key, clock) for i in range(THREADS)]
    good = {t for i, t in enumerate(tokens) if population != "half_forged" or i % 2 == 0}

    middleware = validating(idp_server, clock, http_read_timeout=HELD_READ_TIMEOUT)
    idp_server.jwks_mode = "hold"
    replies = run_together(middleware, tokens, held=(idp_server, "/jwks"))

    for reply in replies:
        if reply.token in good:
            assert_ok(reply)
        else:
            assert_refused(reply, "signature")
    statuses = Counter(r.status for r in replies)
    userinfo = Counter(r.authorization for r in idp_server.userinfo_calls)
    print(
        f"\ncold x{THREADS} {population}: {dict(statuses)}, "
        f"{idp_server.jwks_requests} JWKS fetch(es), {sum(userinfo.values())} userinfo call(s)"
    )
    assert idp_server.jwks_requests == 1
    assert userinfo == Counter(f"Bearer {t}" for t in good)  # one call per good token, no other
    if population == "half_forged":
        assert statuses == {200: THREADS // 2, 401: THREADS // 2}
    else:
        assert statuses == {200: THREADS}
    assert_app_called_exactly_for_200s(middleware, replies)
    assert set(r.path for r in idp_server.requests) <= {"/jwks", "/userinfo"}
    assert_no_token_text(tokens, replies, caplog)


# --------------------------------------------------------------------------- R30/R31: outage
@pytest.mark.parametrize("mode", ["500", "garbage", "slow", "trickle"])
def test_r30_50_concurrent_requests_during_jwks_outage_on_cold_cache_all_503_one_attempt(
    idp_server, caplog, mode
):
    """R29/R30/R31: the JWKS endpoint fails (500, non-JSON garbage, slower than the read
    timeout, trickling beyond the total deadline) on a cold cache; 50 concurrent distinct
    tokens -> all 503 IDP_UNAVAILABLE with Retry-After, the app never called, exactly one
    outbound JWKS attempt between them (the failure starts the back-off: the threads that
    waited for it do not retry), each answer within connect + read timeout + 1 s (R31
    requirement 4: the waiting threads do not queue up one timeout each). With no key set ever
    fetched the next attempt is one second later (Retry-After 1: issue 14, a provider that
    comes back is used at once, not after the whole cooldown); at that second, with the IdP
    answering again, the same token is accepted."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = FrozenClock()
    idp_server.delay = SLOW_DELAY
    idp_server.jwks_mode = mode
    middleware = validating(idp_server, clock)
    tokens = [fresh(idp_server.key, clock) for _ in range(THREADS)]

    replies = run_together(middleware, tokens)

    retry_afters = Counter(assert_unavailable(reply) for reply in replies)
    slowest = max(r.elapsed for r in replies)
    print(
        f"\nJWKS {mode} x{THREADS} cold: {idp_server.jwks_requests} attempt(s), "
        f"slowest answer {slowest:.2f}s (bound {TIME_BOUND}s)"
    )
    assert retry_afters == {1: THREADS}  # frozen clock: the first back-off step is 1 s
    assert slowest < TIME_BOUND, f"{mode}: an answer took {slowest:.2f}s"
    assert idp_server.jwks_requests == 1
    assert idp_server.userinfo_requests == 0
    assert app_request_ids(middleware) == []

    clock.advance(0.5)
    late = send(middleware, tokens[0], THREADS)  # within the back-off: no new attempt
    assert assert_unavailable(late) == 1
    assert late.elapsed < TIME_BOUND
    assert idp_server.jwks_requests == 1

    idp_server.jwks_mode = "ok"
    clock.advance(0.5)
    recovered = send(middleware, tokens[0], THREADS + 1)
    assert_ok(recovered)
    assert idp_server.jwks_requests == 2
    assert app_request_ids(middleware) == [THREADS + 1]
    assert_no_token_text(tokens, [*replies, late, recovered], caplog)


@pytest.mark.parametrize("mode", ["slow", "trickle"])
@pytest.mark.parametrize("population", ["same_token", "distinct_tokens"])
def test_r31_50_concurrent_requests_with_slow_userinfo_all_503_within_timeout(
    idp_server, caplog, mode, population
):
    """R31 requirement 4 (R30, R32): the key set is cached, userinfo is slower than the read
    timeout (or trickles past the total deadline); 50 concurrent requests -> all 503
    IDP_UNAVAILABLE, each within connect + read timeout + 1 s, app never called; one userinfo
    call per distinct token (1 for the same token, 50 for 50 tokens), none retried."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = FrozenClock()
    middleware = validating(idp_server, clock)
    warm = send(middleware, fresh(idp_server.key, clock), 10_000)
    assert_ok(warm)
    idp_server.reset()
    middleware.app = RecordingApp()

    idp_server.delay = SLOW_DELAY
    idp_server.userinfo_mode = mode
    if population == "same_token":
        tokens = [fresh(idp_server.key, clock)] * THREADS
    else:
        tokens = [fresh(idp_server.key, clock) for _ in range(THREADS)]
    replies = run_together(middleware, tokens)

    for reply in replies:
        assert_unavailable(reply)
    slowest = max(r.elapsed for r in replies)
    calls = Counter(r.authorization for r in idp_server.userinfo_calls)
    print(
        f"\nuserinfo {mode} x{THREADS} {population}: {sum(calls.values())} userinfo call(s), "
        f"slowest answer {slowest:.2f}s (bound {TIME_BOUND}s)"
    )
    assert slowest < TIME_BOUND, f"{mode}: an answer took {slowest:.2f}s"
    assert calls == Counter(f"Bearer {t}" for t in set(tokens))
    assert idp_server.jwks_requests == 0
    assert app_request_ids(middleware) == []
    assert_no_token_text(tokens, [warm, *replies], caplog)


# --------------------------------------------------------------------------- R29: rotation
WORKERS = 8


@dataclass(frozen=True)
class Sent:
    at: float  # frozen clock time of the round, relative to NOW
    worker: int
    kind: str  # "old" (fresh old-key token), "cached" (old-key token accepted before), "new"
    reply: Reply


def test_r29_key_rotation_mid_traffic(idp_server, caplog):
    """R29 (R24, R30): 8 threads keep sending tokens through one middleware while the IdP
    rotates its key, in rounds on a frozen clock the test advances (no sleeps):

    * t=0: the IdP publishes [old]; cold start, old-key tokens accepted (fetch 1);
    * t=10: the IdP publishes [old, new]; new-key tokens appear. Until one cooldown after the
      last fetch (t < 30) they are refused 401 "no key" without any refetch; old-key ones pass;
    * t=30 (<= one cooldown after they first appeared): one refetch, after which new-key tokens
      are accepted. The IdP holds that refetch until every worker waits for it, so this round
      is deterministic; the interleaving where a worker's lookup straddles the end of the
      refetch is pinned down by the gated test below;
    * t=60: the IdP publishes [new] only. Old-key tokens stay accepted while the old key is in
      the cached set (until the TTL, t=330);
    * t>=330: the TTL refetch drops the old key: old-key tokens are refused 401 "no key",
      including one accepted earlier: the withdrawal makes the cache forget it (R41). In the
      round of the refetch itself such a cached token may still be served by a worker that
      got there first; new-key tokens are accepted throughout.

    No 500, no internal_error log, the app called exactly for the 200s, and the JWKS fetches
    stay within (elapsed frozen time / cooldown) + 2."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = FrozenClock()
    old = idp_server.key
    new = make_key("RS256")
    keys = {"old": old, "new": new}
    middleware = validating(idp_server, clock, userinfo=False, http_read_timeout=HELD_READ_TIMEOUT)
    request_ids = itertools.count()
    cached: dict[int, str] = {}  # worker -> an old-key token accepted in the first round
    sent: list[Sent] = []

    def expected(at: float, kind: str) -> int | None:
        if kind == "cached":  # R41: forgotten once the refetch drops its key
            if at == TTL + COOLDOWN:
                return None  # the round of the refetch: before or after it, either is right
            return 200 if at < TTL + COOLDOWN else 401
        if kind == "old":
            return 200 if at < TTL + COOLDOWN else 401  # the old key leaves at the TTL refetch
        return 200 if at >= COOLDOWN else 401  # one cooldown after the fetch at t=0

    def round_of(at: float, plan: list[str], *, hold: bool = False) -> list[Sent]:
        clock.now = NOW + at
        barrier = threading.Barrier(WORKERS)
        arrivals = Arrivals()

        def worker(w: int) -> list[Sent]:
            barrier.wait(timeout=10)
            out = []
            for i, kind in enumerate(plan):
                token = cached[w] if kind == "cached" else fresh(keys[kind], clock)
                if i == 0:
                    arrivals.arrive()
                out.append(Sent(at, w, kind, send(middleware, token, next(request_ids))))
            return out

        futures = [pool.submit(worker, w) for w in range(WORKERS)]
        if hold:
            # Every worker starts with a new-key token: all of them must wait for the one
            # refetch in flight (R30) rather than be refused "no key" or start their own.
            try:
                assert idp_server.wait_for("/jwks", 2, timeout=10)
                assert arrivals.wait_for(WORKERS)
                done, _ = wait(futures, timeout=0.3, return_when=FIRST_COMPLETED)
                assert not done
                assert idp_server.jwks_requests == 2
            finally:
                idp_server.release()
        results = [s for f in futures for s in f.result()]
        sent.extend(results)
        return results

    with ThreadPoolExecutor(WORKERS) as pool:
        first = round_of(0, ["old"] * 6)
        for s in first:
            cached.setdefault(s.worker, s.reply.token)
        assert sorted(cached) == list(range(WORKERS))
        assert idp_server.jwks_requests == 1

        idp_server.keys = [old, new]  # rotation starts: both published
        mixed = ["new", "old", "cached", "new", "old", "new"]
        for at in (10, 20, COOLDOWN - 1):
            round_of(at, mixed)
        assert idp_server.jwks_requests == 1  # unknown kid within the cooldown: no refetch

        idp_server.jwks_mode = "hold"
        round_of(COOLDOWN, mixed, hold=True)
        idp_server.jwks_mode = "ok"
        assert idp_server.jwks_requests == 2

        round_of(45, mixed)
        idp_server.keys = [new]  # rotation ends: the old key is withdrawn
        for at in (60, 120, TTL + COOLDOWN - 1):
            round_of(at, mixed)
        assert idp_server.jwks_requests == 2  # the cached set (with the old key) still serves

        for at in (TTL + COOLDOWN, TTL + COOLDOWN + 10):
            round_of(at, mixed)
        assert idp_server.jwks_requests == 3  # the TTL refetch, once
        round_of(400, mixed)

    elapsed = clock.now - NOW
    fetches = idp_server.jwks_requests
    bound = elapsed / COOLDOWN + 2
    outcomes = Counter((s.kind, s.reply.status) for s in sent)
    print(f"\nrotation: {len(sent)} requests, {dict(outcomes)}, {fetches} JWKS fetches")
    for s in sent:
        want = expected(s.at, s.kind)
        if want is None:
            want = s.reply.status
            assert want in (200, 401), (s.at, s.kind, s.reply.status, s.reply.body)
        assert s.reply.status == want, (s.at, s.kind, s.reply.status, s.reply.body)
        if want == 200:
            assert_ok(s.reply)
        else:
            assert_refused(s.reply, "no key")
    assert 500 not in {s.reply.status for s in sent}
    assert fetches <= bound, f"{fetches} fetches in {elapsed:g}s (bound {bound:g})"
    # The last round (t=400, past the cooldown) refetched once for the withdrawn old kid.
    assert fetches == 4
    replies = [s.reply for s in sent]
    assert_app_called_exactly_for_200s(middleware, replies)
    assert set(r.path for r in idp_server.requests) == {"/jwks"}
    assert any("unknown_key" in r.getMessage() for r in caplog.records)  # capture works
    assert_no_token_text([s.reply.token for s in sent], replies, caplog)


def test_r29_r30_new_kid_token_not_refused_when_the_refetch_completes_just_before_it_asks(
    idp_server, monkeypatch, caplog
):
    """R29/R30, the interleaving the rotation round above avoids by holding the refetch: past
    the cooldown, thread B reads the cached key set, finds no key for the new kid and is
    descheduled just before it asks for a refresh; meanwhile thread A refetches and loads the
    new key (A accepted). B then resumes: a fetch has just happened (not due again) and none is
    in flight. B's token, signed by the key now in the cache, must be accepted, without a
    third fetch. The pause is made deterministic by gating B's thread at the entry of the key
    set's refresh step."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    clock = FrozenClock()
    middleware = validating(idp_server, clock, userinfo=False)
    assert_ok(send(middleware, fresh(idp_server.key, clock), 0))
    new = make_key("RS256")
    idp_server.keys.append(new)
    clock.advance(COOLDOWN)

    jwks = middleware.authenticator.verifier.jwks
    refresh = jwks._refresh
    parked, resume = threading.Event(), threading.Event()
    gated: dict[str, threading.Thread] = {}

    def gate(force: bool) -> Any:
        if threading.current_thread() is gated.get("thread") and not parked.is_set():
            parked.set()
            resume.wait(timeout=10)
        return refresh(force)

    monkeypatch.setattr(jwks, "_refresh", gate)
    token_a, token_b = fresh(new, clock), fresh(new, clock)
    result: dict[str, Reply] = {}
    thread_b = threading.Thread(target=lambda: result.update(b=send(middleware, token_b, 2)))
    gated["thread"] = thread_b
    thread_b.start()
    try:
        if not parked.wait(timeout=10):  # not an AssertionError: a broken setup, not a finding
            raise RuntimeError("thread B never reached the key set's refresh step")
        reply_a = send(middleware, token_a, 1)
    finally:
        resume.set()
        thread_b.join(timeout=10)
    assert_ok(reply_a)
    assert idp_server.jwks_requests == 2
    reply_b = result["b"]
    assert idp_server.jwks_requests == 2
    assert_no_token_text([token_a, token_b], [reply_a, reply_b], caplog)
    assert_ok(reply_b)  # was 401 "no key of the identity provider matches the token" (b017a5b)
