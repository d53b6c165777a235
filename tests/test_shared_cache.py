"""The shared cache on Redis (issue 14): userinfo outcomes shared across workers and hosts.

Everything runs against a real ``redis-server`` on 127.0.0.1 (``tests/redis_server.py``) and
the fake IdP (``tests/idp.py``). The first half runs middlewares in this process on a
:class:`FrozenClock` (TTL math, the one-second pause after a failure, planted values); the
second half runs four real worker processes (``tests/fleet_worker.py``) serving the middleware
over HTTP, sharing one Redis, which is then killed (SIGKILL), frozen (SIGSTOP) and brought back.

Requirements: R23 keys are hashes of the token and the config's scope (the userinfo endpoint,
validate_subject), so entries never cross configurations and Redis holds no token text (nor,
as R35 asks of logs, any of its segments); R24 every key ends no later than the token; R30
concurrent misses across workers make one call; R31 never fail open (Redis down is a miss,
never an acceptance) and never wait past the timeouts; R32 a shared acceptance lives no longer
than userinfo_cache_ttl in all; R35 a cache_url password is never printed.
"""

from __future__ import annotations

import json
import logging
import pickle
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import idp
import pytest
import redis_server
from conftest import (
    NOW,
    Answer,
    FrozenClock,
    RecordingApp,
    assert_accepted,
    assert_invalid_token,
    call,
)
from fleet_worker import Fleet
from idp import ISSUER, SUBJECT, USER_NAME, mint
from redis_server import RedisServer

from jwt_headers import ConfigError, JwtHeadersConfig, JwtHeadersMiddleware
from jwt_headers.doctor import static_findings
from jwt_headers.shared import KEY_PREFIX, RETRY_AFTER, claim_key, userinfo_key

idp_server = idp.idp_server  # the pytest fixtures, bound here so pytest finds them
redis = redis_server.redis

ROOT = Path(__file__).resolve().parent.parent
USERINFO_TTL = 120
LEEWAY = 30
CACHE_TIMEOUT = 0.1


def options(server: idp.IdpServer, cache: RedisServer | None, **extra: Any) -> dict[str, Any]:
    """Bearer JWT checked by signature, issuer and userinfo; ``cache_url`` at ``cache``."""
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
        "leeway": LEEWAY,
        "http_connect_timeout": 0.5,
        "http_read_timeout": 0.5,
        "cache_timeout": CACHE_TIMEOUT,
    }
    if cache is not None:
        opts["cache_url"] = cache.url
    opts.update(extra)
    return opts


def worker(
    server: idp.IdpServer, cache: RedisServer, clock: FrozenClock, **extra: Any
) -> JwtHeadersMiddleware:
    """One in-process "worker": its own middleware and caches, the shared Redis."""
    return JwtHeadersMiddleware(RecordingApp(), clock=clock, **options(server, cache, **extra))


def send(middleware: JwtHeadersMiddleware, token: str) -> Answer:
    middleware.app = RecordingApp()
    return call(middleware, {"Authorization": f"Bearer {token}"})


def key_of(server: idp.IdpServer, token: str, validate_subject: bool = True) -> str:
    """The key the middleware uses for ``token`` (the scope as core.build_verifier writes it)."""
    scope = f"userinfo={server.userinfo_endpoint}\0validate_subject={validate_subject}"
    return userinfo_key(scope, token)


def shared_lines(caplog: pytest.LogCaptureFixture, word: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith(word)]


# --------------------------------------------------------------------------- in one process


def test_two_workers_share_one_userinfo_call(idp_server, redis):
    """The second worker takes the first one's userinfo outcome from Redis: one IdP call."""
    clock = FrozenClock()
    token = mint(None, idp_server.key, NOW)
    first, second = worker(idp_server, redis, clock), worker(idp_server, redis, clock)
    assert_accepted(send(first, token))
    assert_accepted(send(second, token))
    assert idp_server.userinfo_requests == 1


def test_a_refusal_is_shared_too(idp_server, redis):
    """The provider's 401 is stored; another worker refuses the token without asking."""
    clock = FrozenClock()
    token = mint(None, idp_server.key, NOW)
    idp_server.userinfo_mode = "401"
    assert_invalid_token(send(worker(idp_server, redis, clock), token), "userinfo_rejected")
    idp_server.userinfo_mode = "ok"  # the shared refusal answers, not the provider
    assert_invalid_token(send(worker(idp_server, redis, clock), token), "userinfo_rejected")
    assert idp_server.userinfo_requests == 1


def test_an_idp_outage_is_never_shared(idp_server, redis):
    """R31: a 503 (provider down) stores nothing; the next worker asks the provider again."""
    clock = FrozenClock()
    token = mint(None, idp_server.key, NOW)
    idp_server.userinfo_mode = "500"
    assert send(worker(idp_server, redis, clock), token).status == 503
    assert redis.client().dbsize() == 0
    idp_server.userinfo_mode = "ok"
    assert_accepted(send(worker(idp_server, redis, clock), token))
    assert idp_server.userinfo_requests == 2


def test_keys_are_hashes_with_a_ttl_bounded_by_the_token_r23_r24(idp_server, redis):
    """No token text (nor any of its segments) in Redis; the accepted entry ends at
    min(userinfo_cache_ttl, exp + leeway - now), the refusal at min(negative TTL, the same)."""
    clock = FrozenClock()
    good = mint({"exp": NOW + 60}, idp_server.key, NOW)  # ends before userinfo_cache_ttl
    long_lived = mint({"exp": NOW + 3600}, idp_server.key, NOW)
    assert_accepted(send(worker(idp_server, redis, clock), good))
    assert_accepted(send(worker(idp_server, redis, clock), long_lived))
    idp_server.userinfo_mode = "403"
    bad = mint({"exp": NOW - 20}, idp_server.key, NOW)  # within leeway: 10 s of life left
    assert_invalid_token(send(worker(idp_server, redis, clock), bad), "userinfo_rejected")
    client = redis.client()
    keys = sorted(client.scan_iter("*"))
    assert len(keys) == 3
    for key in keys:
        value = client.get(key)
        for token in (good, long_lived, bad):
            for part in (token, *token.split(".")):
                assert part.encode() not in key and part.encode() not in value
        assert key.decode().startswith(KEY_PREFIX)
    ttl = {name: client.pttl(key_of(idp_server, t)) for name, t in (
        ("good", good), ("long", long_lived), ("bad", bad))}  # fmt: skip
    assert 0 < ttl["good"] <= (60 + LEEWAY) * 1000
    assert ttl["good"] > (60 + LEEWAY - 5) * 1000
    assert USERINFO_TTL * 1000 - 5000 < ttl["long"] <= USERINFO_TTL * 1000
    assert 0 < ttl["bad"] <= 10 * 1000
    assert json.loads(client.get(key_of(idp_server, good))) == {"v": 1, "ok": True, "sub": SUBJECT}
    assert json.loads(client.get(key_of(idp_server, bad))) == {
        "v": 1,
        "ok": False,
        "reason": "userinfo_rejected",
    }


def test_a_shared_acceptance_lives_no_longer_locally_than_in_redis_r32(idp_server, redis):
    """A worker that takes an entry with 10 s left keeps it 10 s, not userinfo_cache_ttl more:
    a revoked token stops working within userinfo_cache_ttl of the provider's answer."""
    clock = FrozenClock()
    token = mint({"exp": NOW + 3600}, idp_server.key, NOW)
    redis.client().set(key_of(idp_server, token), OK_ENTRY, px=10_000)
    late = worker(idp_server, redis, clock)
    assert_accepted(send(late, token))
    assert idp_server.userinfo_requests == 0
    redis.client().delete(key_of(idp_server, token))
    clock.advance(11)
    assert_accepted(send(late, token))
    assert idp_server.userinfo_requests == 1  # asked again after the shared entry's life


def test_entries_never_cross_configurations_r23(idp_server, redis):
    """Another validate_subject (or endpoint) is another key: no entry is reused across them."""
    clock = FrozenClock()
    token = mint(None, idp_server.key, NOW)
    assert_accepted(send(worker(idp_server, redis, clock), token))
    assert_accepted(send(worker(idp_server, redis, clock, validate_subject=False), token))
    assert idp_server.userinfo_requests == 2
    assert redis.client().exists(key_of(idp_server, token, validate_subject=False))


# --------------------------------------------------------------------------- planted values


def plant(cache: RedisServer, key: str, value: bytes | str, ttl_ms: int = 60_000) -> None:
    cache.client().set(key, value, px=ttl_ms)


OK_ENTRY = json.dumps({"v": 1, "ok": True, "sub": SUBJECT})


@pytest.mark.parametrize(
    ("claims", "forge", "reason"),
    [
        (None, True, "bad_signature"),
        ({"exp": NOW - 3600}, False, "expired"),
        ({"iss": "https://evil.example"}, False, "wrong_issuer"),
    ],
)
def test_a_planted_acceptance_cannot_pass_local_checks(idp_server, redis, claims, forge, reason):
    """R31: an "ok" entry under the key of a forged, expired or foreign token changes nothing:
    the local checks run first, on every worker, and refuse it with their own reason."""
    token = mint(claims, idp_server.key, NOW)
    if forge:
        head, body, signature = token.split(".")
        token = f"{head}.{body}.{signature[:-4]}AAAA"
    plant(redis, key_of(idp_server, token), OK_ENTRY)
    assert_invalid_token(send(worker(idp_server, redis, FrozenClock()), token), reason)
    assert idp_server.userinfo_requests == 0


@pytest.mark.parametrize(
    "value",
    [
        b"{not json",
        pickle.dumps({"v": 1, "ok": True, "sub": SUBJECT}),
        b"[1, 2]",
        b'{"v": 2, "ok": true, "sub": "x"}',
        b'{"v": 1, "ok": "true", "sub": "' + SUBJECT.encode() + b'"}',
        b'{"v": 1, "ok": true}',
        b'{"v": 1, "ok": false, "reason": "made_up"}',
        b"\xff\xfe",
        b'{"v": 1, "ok": true, "sub": "' + SUBJECT.encode() + b'", "pad": "' + b"x" * 5000 + b'"}',
    ],
    ids=[
        "garbage",
        "pickle",
        "list",
        "v2",
        "ok-string",
        "no-sub",
        "unknown-reason",
        "bytes",
        "big",
    ],
)
def test_an_unusable_value_is_a_miss(idp_server, redis, value):
    """Garbage, pickle, a wrong shape: a miss (the provider is asked), never a crash."""
    token = mint(None, idp_server.key, NOW)
    plant(redis, key_of(idp_server, token), value)
    assert_accepted(send(worker(idp_server, redis, FrozenClock()), token))
    assert idp_server.userinfo_requests == 1


def test_a_planted_entry_without_ttl_is_a_miss_r24(idp_server, redis):
    """Every key we write ends; one that does not is not ours."""
    token = mint(None, idp_server.key, NOW)
    redis.client().set(key_of(idp_server, token), OK_ENTRY)
    assert_accepted(send(worker(idp_server, redis, FrozenClock()), token))
    assert idp_server.userinfo_requests == 1


def test_an_acceptance_naming_another_subject_is_not_used(idp_server, redis):
    """With validate_subject, a shared "ok" counts only for the token's own subject."""
    token = mint(None, idp_server.key, NOW)
    plant(redis, key_of(idp_server, token), json.dumps({"v": 1, "ok": True, "sub": "mallory"}))
    assert_accepted(send(worker(idp_server, redis, FrozenClock()), token))
    assert idp_server.userinfo_requests == 1


def test_a_shared_refusal_is_a_refusal(idp_server, redis):
    """An entry saying the provider refused the token refuses it here too (the app never
    runs), without a call."""
    token = mint(None, idp_server.key, NOW)
    plant(redis, key_of(idp_server, token), b'{"v":1,"ok":false,"reason":"subject_mismatch"}')
    assert_invalid_token(send(worker(idp_server, redis, FrozenClock()), token), "subject_mismatch")
    assert idp_server.userinfo_requests == 0


# --------------------------------------------------------------------------- single flight


def test_a_claim_left_by_a_dead_worker_delays_no_longer_than_its_life(idp_server, redis):
    """R30: another worker claimed the asking and died: this one waits while the claim lives (here
    0.2 s, at most the HTTP timeouts), then asks the provider itself."""
    token = mint(None, idp_server.key, NOW)
    redis.client().set(claim_key(key_of(idp_server, token)), b"1", px=200)
    started = time.monotonic()
    assert_accepted(send(worker(idp_server, redis, FrozenClock()), token))
    assert 0.15 < time.monotonic() - started < 0.9
    assert idp_server.userinfo_requests == 1
    assert redis.client().exists(key_of(idp_server, token))


def test_an_unanswered_ask_releases_its_claim(idp_server, redis):
    """A worker whose call ends in a 503 (nothing to share) drops its claim: the next worker
    asks at once instead of waiting out the first one's timeouts."""
    token = mint(None, idp_server.key, NOW)
    idp_server.userinfo_mode = "500"
    assert send(worker(idp_server, redis, FrozenClock()), token).status == 503
    assert redis.client().dbsize() == 0
    idp_server.userinfo_mode = "ok"
    started = time.monotonic()
    assert_accepted(send(worker(idp_server, redis, FrozenClock()), token))
    assert time.monotonic() - started < 0.5  # the HTTP timeouts are 0.5 + 0.5 s
    assert idp_server.userinfo_requests == 2


def test_a_waiting_worker_takes_the_answer_that_arrives(idp_server, redis):
    """While another worker's claim lives, an answer it stores is used: no call."""
    token = mint(None, idp_server.key, NOW)
    key = key_of(idp_server, token)
    client = redis.client()
    client.set(claim_key(key), b"1", px=5000)
    answer = threading.Timer(0.1, lambda: client.set(key, OK_ENTRY, px=60_000))
    answer.start()
    try:
        started = time.monotonic()
        assert_accepted(send(worker(idp_server, redis, FrozenClock()), token))
        assert time.monotonic() - started < 0.9
    finally:
        answer.join()
    assert idp_server.userinfo_requests == 0


class SharedCacheObserver:
    """A metrics observer that keeps what ``shared_cache`` reports (the other methods: no-ops)."""

    def __init__(self) -> None:
        self.shared: list[str] = []

    def shared_cache(self, result: str) -> None:
        self.shared.append(result)

    def allowed(self) -> None: ...
    def anonymous(self) -> None: ...
    def exempt(self) -> None: ...
    def refused(self, reason: str) -> None: ...
    def untrusted_header(self) -> None: ...
    def token_cache(self, hit: bool) -> None: ...
    def idp_call(self, endpoint: str, ok: bool, seconds: float) -> None: ...


def test_shared_cache_results_are_reported_to_the_metrics_observer(idp_server, redis):
    """Operators see what Redis saves (issue 14, noticed): one report per userinfo check with
    ``cache_url``: ``miss`` when this worker asked the provider, ``hit`` when Redis had the
    outcome (a shared refusal too), ``waited`` when another worker's call answered, and
    ``unavailable`` while Redis is down. A cached token is not checked again: no report."""
    clock = FrozenClock()
    seen = SharedCacheObserver()
    first = worker(idp_server, redis, clock, metrics=seen)
    second = worker(idp_server, redis, clock, metrics=seen)
    token = mint(None, idp_server.key, NOW)
    assert_accepted(send(first, token))
    assert_accepted(send(second, token))
    assert_accepted(send(second, token))  # the token cache answers: no userinfo check
    assert seen.shared == ["miss", "hit"]

    idp_server.userinfo_mode = "401"
    rejected = mint(None, idp_server.key, NOW)
    assert_invalid_token(send(first, rejected), "userinfo_rejected")
    assert_invalid_token(send(second, rejected), "userinfo_rejected")
    assert seen.shared[2:] == ["miss", "hit"]
    idp_server.userinfo_mode = "ok"

    waited = mint(None, idp_server.key, NOW)
    key = key_of(idp_server, waited)
    client = redis.client()
    client.set(claim_key(key), b"1", px=5000)  # another worker is asking
    answer = threading.Timer(0.05, lambda: client.set(key, OK_ENTRY, px=60_000))
    answer.start()
    try:
        assert_accepted(send(first, waited))
    finally:
        answer.join()
    assert seen.shared[4:] == ["waited"]

    redis.kill()
    assert_accepted(send(first, mint(None, idp_server.key, NOW)))
    assert seen.shared[5:] == ["unavailable"]
    assert idp_server.userinfo_requests == 3


def test_an_observer_without_shared_cache_still_works(idp_server, redis):
    """``shared_cache`` is optional: an observer written before it existed is accepted and
    the check runs as usual."""

    class Older(SharedCacheObserver):
        shared_cache = None  # type: ignore[assignment]

    clock = FrozenClock()
    token = mint(None, idp_server.key, NOW)
    assert_accepted(send(worker(idp_server, redis, clock, metrics=Older()), token))
    assert_accepted(send(worker(idp_server, redis, clock, metrics=Older()), token))
    assert idp_server.userinfo_requests == 1


# --------------------------------------------------------------------------- outages


def test_redis_down_falls_back_logs_once_and_resumes(idp_server, redis, caplog):
    """R31: Redis killed: tokens are still judged (good 200, refused 401) by the provider,
    one warning per outage; Redis is left alone for RETRY_AFTER s by the clock, then used
    again, with one ``shared_cache_back``."""
    caplog.set_level(logging.INFO, logger="jwt_headers")
    clock = FrozenClock()
    one = worker(idp_server, redis, clock)
    redis.kill()
    for _ in range(3):
        started = time.monotonic()
        assert_accepted(send(one, mint(None, idp_server.key, NOW)))
        assert time.monotonic() - started < 1
    idp_server.userinfo_mode = "401"
    assert_invalid_token(send(one, mint(None, idp_server.key, NOW)), "userinfo_rejected")
    idp_server.userinfo_mode = "ok"
    clock.advance(RETRY_AFTER + 0.1)  # tried again: still down, still one warning
    assert_accepted(send(one, mint(None, idp_server.key, NOW)))
    warnings = shared_lines(caplog, "shared_cache_unavailable")
    assert warnings == ["shared_cache_unavailable reason=ConnectionError: using in-process caches"]
    assert idp_server.userinfo_requests == 5

    redis.start()  # same port
    paused = mint(None, idp_server.key, NOW)
    refused = b'{"v":1,"ok":false,"reason":"userinfo_rejected"}'
    plant(redis, key_of(idp_server, paused), refused)
    assert_accepted(send(one, paused))  # inside the pause: Redis neither read nor written
    assert redis.client().get(key_of(idp_server, paused)) == refused
    assert redis.client().dbsize() == 1
    clock.advance(RETRY_AFTER + 0.1)
    fresh = mint(None, idp_server.key, NOW)
    assert_accepted(send(one, fresh))
    assert redis.client().exists(key_of(idp_server, fresh))
    assert shared_lines(caplog, "shared_cache_back")
    assert_accepted(send(worker(idp_server, redis, clock), fresh))
    assert idp_server.userinfo_requests == 7  # the second worker took the shared outcome
    assert len(shared_lines(caplog, "shared_cache_unavailable")) == 1


def test_redis_frozen_costs_one_timeout_then_is_skipped(idp_server, redis, caplog):
    """SIGSTOP: the port accepts, nothing answers. A request waits at most cache_timeout for
    Redis (no retries), the next ones not at all until RETRY_AFTER has passed."""
    caplog.set_level(logging.INFO, logger="jwt_headers")
    clock = FrozenClock()
    one = worker(idp_server, redis, clock)
    assert_accepted(send(one, mint(None, idp_server.key, NOW)))  # a pooled connection
    redis.freeze()
    try:
        for _ in range(3):
            started = time.monotonic()
            assert_accepted(send(one, mint(None, idp_server.key, NOW)))
            assert time.monotonic() - started < CACHE_TIMEOUT + 0.4
        clock.advance(RETRY_AFTER + 0.1)
        started = time.monotonic()
        assert_accepted(send(one, mint(None, idp_server.key, NOW)))
        assert time.monotonic() - started < CACHE_TIMEOUT + 0.4
        assert shared_lines(caplog, "shared_cache_unavailable") == [
            "shared_cache_unavailable reason=TimeoutError: using in-process caches"
        ]
    finally:
        redis.thaw()
    clock.advance(RETRY_AFTER + 0.1)
    token = mint(None, idp_server.key, NOW)
    assert_accepted(send(one, token))
    assert_accepted(send(worker(idp_server, redis, clock), token))
    assert idp_server.userinfo_requests == 5 + 1
    # the answer the frozen server owed the old connection never reaches a later request
    assert json.loads(redis.client().get(key_of(idp_server, token)))["ok"] is True


# --------------------------------------------------------------------------- config


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:6379/0",
        "memcached://127.0.0.1:11211",
        "redis+sentinel://127.0.0.1:26379/mymaster",
        "redis://",
        "127.0.0.1:6379",
    ],
)
def test_cache_url_must_be_a_redis_url(idp_server, url):
    with pytest.raises(ConfigError, match=r"cache_url=.*is not a Redis URL.*redis://127\.0\.0\.1"):
        JwtHeadersConfig(**options(idp_server, None, cache_url=url))


def test_cache_url_password_never_printed(idp_server):
    """R35: the password of a cache_url shows neither in a config error nor in repr/explain."""
    with pytest.raises(ConfigError) as error:
        JwtHeadersConfig(**options(idp_server, None, cache_url="redix://u:s3cret@host:6379/0"))
    assert "s3cret" not in str(error.value)
    config = JwtHeadersConfig(**options(idp_server, None, cache_url="redis://u:s3cret@h:6379/0"))
    assert "s3cret" not in repr(config)
    assert "cache_url='redis://***@h:6379/0'" in repr(config)


@pytest.mark.parametrize("timeout", [0, 5, 1.5])
def test_cache_timeout_is_short(idp_server, redis, timeout):
    with pytest.raises(ConfigError, match=r"cache_timeout=.*at most\s+1"):
        JwtHeadersConfig(**options(idp_server, redis, cache_timeout=timeout))


def test_options_from_env_text(idp_server, redis):
    config = JwtHeadersConfig.from_env(
        environ={
            f"JWT_HEADERS_{k.upper()}": ",".join(v) if isinstance(v, tuple | list) else str(v)
            for k, v in options(idp_server, redis, cache_timeout="0.25").items()
        }
    )
    assert config.cache_url == redis.url
    assert config.cache_timeout == 0.25


def test_missing_redis_py_names_the_extra(idp_server, redis, monkeypatch):
    monkeypatch.setitem(sys.modules, "redis", None)  # import redis now raises ImportError
    with pytest.raises(ConfigError, match=r"cache_url=.*pip install 'jwt-headers\[redis\]'"):
        JwtHeadersConfig(**options(idp_server, redis))


def test_doctor_warns_when_nothing_would_be_shared(idp_server, redis):
    without = options(idp_server, redis, validate_userinfo=False)
    found = [
        f for f in static_findings(JwtHeadersConfig(**without)) if f.code == "cache_url_unused"
    ]
    assert len(found) == 1 and "cache_url" in found[0].message
    with_userinfo = JwtHeadersConfig(**options(idp_server, redis))
    assert "cache_url_unused" not in [f.code for f in static_findings(with_userinfo)]


# --------------------------------------------------------------------------- a real fleet

WORKERS = 4


@pytest.fixture
def fleet(idp_server, redis, tmp_path) -> Iterator[Fleet]:
    config = options(idp_server, redis, exempt_paths=["/calls"], jwks_prefetch=True)
    running = Fleet(config, WORKERS, tmp_path)
    try:
        yield running
    finally:
        running.stop()


def all_accept(fleet: Fleet, token: str, bound: float = 5.0) -> None:
    for index in range(WORKERS):
        status, body, seconds = fleet.get(index, token)
        assert status == 200, (index, body, fleet.log(index))
        assert body["user"] == USER_NAME
        assert seconds < bound, (index, seconds)


def all_refuse(fleet: Fleet, token: str, reason: str, bound: float = 5.0) -> None:
    """Every worker answers 401 invalid_token for ``token`` and logs ``reason``."""
    before = [len(fleet.lines(i, reason)) for i in range(WORKERS)]
    calls = fleet.app_calls()
    for index in range(WORKERS):
        status, body, seconds = fleet.get(index, token)
        assert status == 401, (index, body)
        assert body["error"]["code"] == "INVALID_TOKEN"
        assert seconds < bound, (index, seconds)
    assert fleet.app_calls() == calls  # the app never ran for it
    deadline = time.monotonic() + 5
    while [len(fleet.lines(i, reason)) for i in range(WORKERS)] != [b + 1 for b in before]:
        assert time.monotonic() < deadline, [fleet.lines(i, reason) for i in range(WORKERS)]
        time.sleep(0.02)  # the worker's log line may trail its answer by a moment


def test_fleet_one_userinfo_call_per_token_across_workers(fleet, idp_server):
    """Four processes, one token each in turn: all 200 as the same user, one userinfo call;
    a token the provider rejects: one call, four 401 userinfo_rejected, the app never ran."""
    all_accept(fleet, mint(None, idp_server.key))
    assert idp_server.userinfo_requests == 1
    idp_server.userinfo_mode = "401"
    all_refuse(fleet, mint(None, idp_server.key), "userinfo_rejected")
    assert idp_server.userinfo_requests == 2


def test_fleet_redis_killed_then_restarted(fleet, idp_server, redis):
    """SIGKILL mid-test: every answer still right and prompt (the provider is asked by each
    worker), one ``shared_cache_unavailable`` per worker; restarted on the same port: once the
    one-second pause is over, a new token costs one userinfo call across the fleet again."""
    all_accept(fleet, mint(None, idp_server.key))
    redis.kill()
    for _ in range(2):
        all_accept(fleet, mint(None, idp_server.key), bound=1.0)
    idp_server.userinfo_mode = "401"
    all_refuse(fleet, mint(None, idp_server.key), "userinfo_rejected", bound=1.0)
    idp_server.userinfo_mode = "ok"
    for index in range(WORKERS):
        assert len(fleet.lines(index, "shared_cache_unavailable")) == 1, fleet.log(index)
    assert idp_server.userinfo_requests == 1 + 3 * WORKERS

    redis.start()
    time.sleep(RETRY_AFTER + 0.2)  # the workers' own clocks: their pause must pass
    idp_server.reset()
    all_accept(fleet, mint(None, idp_server.key))
    assert idp_server.userinfo_requests == 1
    for index in range(WORKERS):
        assert len(fleet.lines(index, "shared_cache_back")) == 1, fleet.log(index)


def test_fleet_redis_frozen_then_thawed(fleet, idp_server, redis):
    """SIGSTOP: answers right and within cache_timeout plus a margin (Redis is waited for once
    per pause, never retried); SIGCONT: sharing resumes."""
    all_accept(fleet, mint(None, idp_server.key))
    redis.freeze()
    try:
        for _ in range(2):
            all_accept(fleet, mint(None, idp_server.key), bound=CACHE_TIMEOUT + 0.4)
        idp_server.userinfo_mode = "401"
        all_refuse(fleet, mint(None, idp_server.key), "userinfo_rejected", CACHE_TIMEOUT + 0.4)
        idp_server.userinfo_mode = "ok"
    finally:
        redis.thaw()
    for index in range(WORKERS):
        assert len(fleet.lines(index, "shared_cache_unavailable")) == 1, fleet.log(index)
    time.sleep(RETRY_AFTER + 0.2)
    idp_server.reset()
    all_accept(fleet, mint(None, idp_server.key))
    assert idp_server.userinfo_requests == 1


def test_fleet_concurrent_first_requests_make_one_call(fleet, idp_server):
    """R30: the same new token at all four workers at once, the provider slow (0.3 s): one worker
    asks, the others wait for its answer; all 200, one userinfo call."""
    idp_server.delay = 0.3
    idp_server.userinfo_mode = "slow"
    token = mint(None, idp_server.key)
    start = threading.Barrier(WORKERS)
    answers: list[Any] = [None] * WORKERS

    def ask(index: int) -> None:
        start.wait()
        answers[index] = fleet.get(index, token)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for status, body, seconds in answers:
        assert status == 200 and body["user"] == USER_NAME
        assert seconds < 0.3 + 0.7
    assert idp_server.userinfo_requests == 1
