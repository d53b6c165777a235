"""The shared cache: userinfo outcomes kept in Redis, so a fleet asks the provider once per token.

Only the outcome of the *remote* check is shared (accepted with the subject the provider named,
or refused by the provider); signature, times, issuer and audience stay local on every worker.
A local check costs about one Redis round trip (see README "Running at scale"), and keeping it
local means nothing written to Redis can make a forged or expired token pass: an entry only
spares the userinfo call for a token that already passed every local check. An answer that is
not one (the provider down, 503) is never shared.

Keys are SHA-256 hashes of the configuration's scope and the token, never the token; values
are compact JSON, never pickle, and anything that does not parse into the expected shape is a
miss. Every key carries a TTL no later than the token's end (R24).

Concurrent misses for one token across workers share one call: the first worker claims the
asking (``SET NX PX``), the others poll for its answer while the claim lives, for at most the
HTTP timeouts, then ask themselves.

Redis is a helper, never a gate: any error is a miss (or a write not made), logged once per
outage, and Redis is left alone for :data:`RETRY_AFTER` seconds before it is tried again. The
client has short timeouts and no retries, so a frozen Redis costs a request at most
``cache_timeout`` seconds, once per :data:`RETRY_AFTER`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

logger = logging.getLogger("jwt_headers")

#: Seconds (by the injected clock) Redis is left alone after a failure.
RETRY_AFTER = 1.0
#: A value longer than this is not ours (ours are under 300 bytes): a miss, never parsed.
MAX_VALUE_BYTES = 4096
KEY_PREFIX = "jwt_headers:v1:userinfo:"
#: The claim of the worker asking the provider for a key (cross-worker single flight).
CLAIM_PREFIX = "jwt_headers:v1:asking:"
#: How often a worker waiting for another's answer looks again (real seconds).
POLL_SECONDS = 0.01


def userinfo_key(scope: str, token: str) -> str:
    """The key of a token's userinfo outcome: a hash, so Redis never holds token text, of the
    scope (what decides the answer) and the token, so entries never cross configurations (R23)."""
    digest = hashlib.sha256(f"{scope}\0{token}".encode("utf-8", "surrogatepass")).hexdigest()
    return KEY_PREFIX + digest


def claim_key(key: str) -> str:
    return CLAIM_PREFIX + key.removeprefix(KEY_PREFIX)


def _parse(raw: Any, pttl: Any) -> tuple[dict[str, Any], float] | None:
    """A stored value and its life in seconds, or ``None`` when it is not one of ours."""
    if not isinstance(raw, bytes | str) or len(raw) > MAX_VALUE_BYTES:
        return None
    if not isinstance(pttl, int) or isinstance(pttl, bool) or pttl <= 0:
        return None  # no TTL (-1) is not ours: every key we write ends (R24)
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    return value, pttl / 1000


class SharedCache:
    """A Redis client that never raises and never waits longer than its timeout.

    ``get`` gives the stored JSON object and its remaining life in seconds, or ``None`` (absent,
    not ours, or Redis unavailable); ``set`` stores one for ``ttl_seconds`` or does nothing.
    """

    def __init__(
        self,
        url: str,
        *,
        timeout: float,
        clock: Callable[[], float] = time.time,
        client: Any = None,
    ) -> None:
        if client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            client = redis.Redis.from_url(
                url,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
                # redis-py >= 6 retries 3 times with backoff by default: one call could then
                # take several timeouts. No retry: a failure is a miss, at once.
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                health_check_interval=0,
                single_connection_client=False,
            )
        self._client = client
        self._clock = clock
        self._lock = threading.Lock()
        self._skip_until = -float("inf")
        self._outage = False

    # ------------------------------------------------------------------ the two operations
    def get(self, key: str) -> tuple[dict[str, Any], float] | None:
        """The JSON object under ``key`` and its remaining life (s), or ``None``."""
        if self._clock() < self._skip_until:
            return None
        try:
            pipe = self._client.pipeline(transaction=False)
            pipe.get(key)
            pipe.pttl(key)
            raw, pttl = pipe.execute()
        except Exception as error:  # any failure of the helper is a miss, never a refusal
            self._failed(error)
            return None
        self._succeeded()
        return _parse(raw, pttl)

    def claim(self, key: str, ttl_seconds: float) -> bool:
        """Claim the asking for ``key`` (``SET NX PX`` on its own key): True when this worker
        should ask the provider (it holds the claim, or Redis cannot tell), False when another
        worker holds it."""
        ttl_ms = int(ttl_seconds * 1000) if math.isfinite(ttl_seconds) else 0
        if self._clock() < self._skip_until or ttl_ms < 1:  # paused: ask, claim nothing
            return True
        try:
            won = self._client.set(claim_key(key), b"1", nx=True, px=ttl_ms)
        except Exception as error:
            self._failed(error)
            return True
        self._succeeded()
        return bool(won)

    def release(self, key: str) -> None:
        """Drop this worker's claim on ``key``: waiting workers stop waiting."""
        if self._clock() < self._skip_until:
            return  # the claim ends by its own TTL
        try:
            self._client.delete(claim_key(key))
        except Exception as error:
            self._failed(error)
            return
        self._succeeded()

    def wait_for(self, key: str, timeout: float) -> tuple[dict[str, Any], float] | None:
        """Another worker's answer under ``key``, polled every :data:`POLL_SECONDS` while its
        claim lasts and for at most ``timeout`` real seconds; ``None`` when the claim ended
        without an answer (a 503 is not shared), the time is up or Redis fails."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
            if self._clock() < self._skip_until:
                return None
            try:
                pipe = self._client.pipeline(transaction=False)
                pipe.get(key)
                pipe.pttl(key)
                pipe.exists(claim_key(key))
                raw, pttl, claimed = pipe.execute()
            except Exception as error:
                self._failed(error)
                return None
            self._succeeded()
            found = _parse(raw, pttl)
            if found is not None or not claimed:
                return found
        return None

    def set(self, key: str, value: dict[str, Any], ttl_seconds: float) -> None:
        """Store ``value`` for ``ttl_seconds`` (rounded down to whole milliseconds, so an entry
        never outlives the bound it was given); shorter than a millisecond: not stored."""
        ttl_ms = int(ttl_seconds * 1000) if math.isfinite(ttl_seconds) else 0
        if ttl_ms < 1 or self._clock() < self._skip_until:
            return
        data = json.dumps(value, separators=(",", ":"), ensure_ascii=True)
        try:
            self._client.set(key, data, px=ttl_ms)
        except Exception as error:
            self._failed(error)
            return
        self._succeeded()

    # ------------------------------------------------------------------ outages
    @property
    def available(self) -> bool:
        """False from a failure until the next success."""
        return not self._outage

    def _failed(self, error: Exception) -> None:
        with self._lock:
            self._skip_until = self._clock() + RETRY_AFTER
            first = not self._outage
            self._outage = True
        if first:
            logger.warning(
                "shared_cache_unavailable reason=%s: using in-process caches",
                type(error).__name__,
            )

    def _succeeded(self) -> None:
        if not self._outage:
            return
        with self._lock:
            back, self._outage = self._outage, False
        if back:
            logger.info("shared_cache_back: sharing userinfo outcomes again")

    def close(self) -> None:
        """Close the client's connections (tests; a process simply exits)."""
        with contextlib.suppress(Exception):  # closing a broken connection
            self._client.close()
