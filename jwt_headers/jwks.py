"""The key set at ``jwks_uri``: fetched rarely, kept through outages, refetched on a new ``kid``.

What the peers' users keep asking for, and what this client does (R27-R30):

* the keys are cached for ``jwks_cache_ttl`` seconds; an unknown ``kid`` triggers a refetch at
  most once per ``jwks_refresh_cooldown`` across all threads, so a flood of made-up ``kid``\\s
  costs the identity provider one request per cooldown and a rotated key is accepted within one;
* one fetch is in flight at a time: concurrent requests wait for it instead of starting theirs;
* a failed or garbage fetch never drops the last good keys (stale-if-error, up to
  ``jwks_max_stale`` seconds); only when no key set was ever fetched is the request refused
  with 503 (fail closed);
* PyJWT's :class:`~jwt.PyJWKSet` reads the keys; keys that are not for signatures, symmetric
  (``oct``) keys and keys for algorithms outside the allow-list are dropped when the set is
  loaded, so they can never verify anything.

A ``file:`` ``jwks_uri`` (an internal signer's keys on this machine) is read instead of fetched:
each key lookup (a token-cache miss, never a cache hit) stats the file and reads it again only
when its device, inode, size, mtime or ctime changed, or when it was modified within
:data:`RACY_SECONDS` of the last read (a rewrite in the same timestamp tick would otherwise go
unseen). There is no provider to protect, so no cooldown: a rotated file is used at once, and a
``kid`` gone from it is revoked (R41) as after an HTTP refresh. A missing, unreadable or garbage
file keeps the last good keys; while none was ever loaded the request gets 503.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import stat
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import requests
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt import PyJWK, PyJWKSet
from jwt.exceptions import PyJWKSetError, PyJWTError

from . import http
from .config import file_url_path
from .errors import IdpUnavailable, InvalidToken
from .logtools import safe
from .metrics import Metrics

logger = logging.getLogger("jwt_headers")


#: The most keys a token without ``kid`` is checked against: each costs a signature check,
#: so a kid-less token (cheap to make up) cannot cost one per key of a large key set.
MAX_KIDLESS_KEYS = 4


@dataclass(frozen=True)
class KeySet:
    """An immutable snapshot of the usable keys, indexed for exact ``kid`` lookup."""

    by_kid: dict[str, tuple[PyJWK, ...]]
    all_keys: tuple[PyJWK, ...]
    fetched_at: float
    #: Seconds this copy is used before a refetch: the response's max-age, within bounds, or
    #: ``jwks_cache_ttl``.
    ttl: float = 300.0

    def find(self, kid: str | None, alg: str) -> tuple[PyJWK, ...]:
        """The keys that may have signed a token: the exact ``kid``'s, or for a kid-less token
        at most :data:`MAX_KIDLESS_KEYS` of the token's algorithm, keys without a ``kid`` first
        (the ones such a token is meant for), then the others in key-set order."""
        if kid is not None:
            return self.by_kid.get(kid, ())
        matching = [key for key in self.all_keys if key.algorithm_name == alg]
        matching.sort(key=lambda key: key.key_id is not None)  # stable: set order kept
        return tuple(matching[:MAX_KIDLESS_KEYS])


def usable_keys(jwks: list[object], algorithms: frozenset[str]) -> list[PyJWK]:
    """The keys that may verify a signature (R2): for signing, asymmetric, allowed algorithm.

    Raises :class:`http.FetchFailed` when none is left.
    """
    candidates = []
    for jwk in jwks:
        if not isinstance(jwk, dict) or jwk.get("kty") == "oct":
            continue
        use, ops, kid = jwk.get("use"), jwk.get("key_ops"), jwk.get("kid")
        if use is not None and use != "sig":
            continue
        if ops is not None and (not isinstance(ops, list) or "verify" not in ops):
            continue
        if kid is not None and not isinstance(kid, str):
            continue
        candidates.append(jwk)
    try:
        loaded = PyJWKSet(candidates).keys if candidates else []
    except (PyJWKSetError, PyJWTError):
        loaded = []
    keys = [key for key in loaded if key.algorithm_name in algorithms and not _weak(key)]
    if not keys:
        raise http.FetchFailed("no_usable_keys")
    return keys


#: The longest a key set is used on the provider's word (``Cache-Control: max-age``).
MAX_KEY_SET_AGE = 86400
_MAX_AGE = re.compile(r"(?:^|[,\s])max-age\s*=\s*\"?(\d{1,12})", re.IGNORECASE)

#: Curves a key set may use (R42): NIST P-256/P-384/P-521; Ed25519/Ed448 are OKP keys.
STRONG_CURVES = frozenset({"secp256r1", "secp384r1", "secp521r1"})
MIN_RSA_BITS = 2048


def _weak(key: PyJWK) -> bool:
    """R42: an RSA key under 2048 bits or an EC key on another curve is never used; the
    warning names its ``kid`` so the provider's operator can find it."""
    public = key.key
    weakness = None
    if isinstance(public, rsa.RSAPublicKey | rsa.RSAPrivateKey) and public.key_size < MIN_RSA_BITS:
        weakness = f"RSA {public.key_size} bits < {MIN_RSA_BITS}"
    elif (
        isinstance(public, ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey)
        and public.curve.name not in STRONG_CURVES
    ):
        weakness = f"curve {public.curve.name}"
    if weakness is None:
        return False
    logger.warning("jwks_weak_key_skipped kid=%s: %s", safe(key.key_id, 64), weakness)
    return True


@dataclass
class _State:
    keys: KeySet | None = None
    last_attempt: float | None = None
    fetches: int = 0
    failures: int = 0
    #: Failed fetches since the last good one: while no key set was ever fetched, the wait
    #: before the next attempt doubles from one second up to the cooldown.
    failures_in_row: int = 0
    fetch_lock: threading.Lock = field(default_factory=threading.Lock)
    #: A ``file:`` key set: the stamp of the file as last read (``()``: it was missing), whether
    #: it was then freshly modified (re-read on the next lookup), the digest of the last good
    #: content (an identical re-read is not parsed again).
    file_stamp: tuple[int, ...] | None = None
    file_racy: bool = False
    file_digest: bytes = b""


#: A file modified this recently when read is read again on the next lookup: a second write in
#: the same timestamp tick, of the same size, would leave its stamp unchanged.
RACY_SECONDS = 2.0


def _stamp(path: str) -> tuple[int, ...]:
    """What tells that a file changed (``()`` when it cannot be stat'ed): an in-place rewrite
    changes size, mtime or ctime, a rename over it (the atomic way) the inode."""
    try:
        found = os.stat(path)
    except (OSError, ValueError):
        return ()
    return _stamp_of(found)


def _stamp_of(found: os.stat_result) -> tuple[int, ...]:
    return (found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns)


def _is_racy(stamp: tuple[int, ...]) -> bool:
    """Modified about now (either side: a clock step): a same-tick rewrite could go unseen.
    A stamp far in the future is not racy: a real rewrite gives it the present time, which
    changes it, so it need not be read on every lookup."""
    if not stamp:
        return False
    now, racy = time.time_ns(), int(RACY_SECONDS * 1e9)
    return now - racy <= max(stamp[3], stamp[4]) <= now + racy


def _read_file(path: str, max_bytes: int) -> tuple[bytes, tuple[int, ...]]:
    """The file's bytes (at most ``max_bytes``) and the stamp of what was read; a FIFO or device
    is refused without blocking on it."""
    try:
        handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | os.O_CLOEXEC)
    except FileNotFoundError:
        raise http.FetchFailed("file_missing") from None
    except (OSError, ValueError):
        raise http.FetchFailed("file_unreadable") from None
    with os.fdopen(handle, "rb") as file:
        try:
            found = os.fstat(file.fileno())
            if not stat.S_ISREG(found.st_mode):
                raise http.FetchFailed("not_a_regular_file")
            body = file.read(max_bytes + 1)
        except OSError:
            raise http.FetchFailed("file_unreadable") from None
    if len(body) > max_bytes:
        raise http.FetchFailed("response_too_large")
    return body, _stamp_of(found)


class JwksClient:
    """Keys from one ``jwks_uri``, shared by all threads of one middleware."""

    def __init__(
        self,
        uri: str | Callable[[bool], str],
        *,
        algorithms: Iterable[str],
        http_settings: http.HttpSettings,
        cache_ttl: float = 300,
        refresh_cooldown: float = 30,
        max_stale: float = 86400,
        clock: Callable[[], float],
        session: requests.Session | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.uri = uri
        self._metrics = metrics
        #: Called with the ``kid``\s a refreshed key set no longer holds (R41): results cached
        #: for tokens signed with them must not be used any more.
        self.on_revoked: Callable[[frozenset[str]], None] | None = None
        self._algorithms = frozenset(algorithms)
        self._http = http_settings
        self._ttl = cache_ttl
        self._cooldown = refresh_cooldown
        self._max_stale = max_stale
        self._clock = clock
        self._session = session or http.new_session()
        self._state = _State()
        #: The local file of a ``file:`` jwks_uri, read instead of fetched.
        self._path = file_url_path(uri) if isinstance(uri, str) else None

    def prefetch(self) -> bool:
        """Fetch the key set now (start-up), so the first token does not wait for it; a failure
        is logged and the requests get 503 until a later attempt succeeds. True on success."""
        try:
            self._current() if self._path is None else self._from_file()
        except IdpUnavailable:
            return False
        return True

    @property
    def fetch_count(self) -> int:
        """How many times the key set was requested from the identity provider (or, for a
        ``file:`` key set, read from the file)."""
        return self._state.fetches

    def keys_for(self, kid: str | None, alg: str) -> tuple[PyJWK, ...]:
        """Candidate keys for a token header; refuses with 503 when none could ever be fetched."""
        if self._path is not None:
            found = self._from_file().find(kid, alg)  # just checked: nothing newer to look for
            if not found:
                raise InvalidToken(
                    "unknown_key", "no key of the identity provider matches the token"
                )
            return found
        keys = self._current()
        found = keys.find(kid, alg)
        if not found:
            # A kid we have not seen: perhaps the IdP rotated. Refetch, at most once per cooldown.
            # Another thread's refetch may have finished since we read ``keys`` (then none is
            # due and ``_refresh`` loads nothing): search the newest set, not our old copy.
            latest = self._refresh(force=True) or self._state.keys
            if latest is not None and latest is not keys:
                found = latest.find(kid, alg)
        if not found:
            raise InvalidToken("unknown_key", "no key of the identity provider matches the token")
        return found

    def _current(self) -> KeySet:
        keys = self._state.keys
        if keys is not None and self._clock() - keys.fetched_at < keys.ttl:
            return keys
        refreshed = self._refresh(force=False)
        if refreshed is not None:
            return refreshed
        keys = self._state.keys
        if keys is not None and self._clock() - keys.fetched_at < self._max_stale:
            return keys  # stale-if-error: the IdP is down or answered garbage (R28)
        raise IdpUnavailable(
            "jwks_unavailable",
            "the identity provider's key set cannot be fetched",
            retry_after=int(self._retry_after()),
        )

    def _wait(self) -> float:
        """How long after an attempt the next may start: the cooldown, except while no key set
        was ever fetched, when it backs off 1, 2, 4... seconds up to the cooldown, so a provider
        that was down for the first request is used within about a second of coming back."""
        state = self._state
        if state.keys is None and state.failures_in_row > 0:
            return float(min(self._cooldown, 2 ** min(state.failures_in_row - 1, 16)))
        return self._cooldown

    def _retry_after(self) -> float:
        last = self._state.last_attempt
        if last is None:
            return 1
        return max(1.0, self._wait() - (self._clock() - last))

    def _due(self, force: bool) -> bool:
        state = self._state
        now = self._clock()
        if state.last_attempt is not None and now - state.last_attempt < self._wait():
            return False  # somebody fetched (or failed to) a moment ago
        if force or state.keys is None:
            return True
        return now - state.keys.fetched_at >= state.keys.ttl

    def _refresh(self, force: bool) -> KeySet | None:
        """Fetch if due; the new key set, or ``None`` when nothing new was loaded."""
        state = self._state
        before = state.keys
        if not self._due(force):
            if not state.fetch_lock.locked():
                return None
            with state.fetch_lock:  # a fetch is under way: wait for it and use what it got
                pass
            return state.keys if state.keys is not before else None
        with state.fetch_lock:  # single flight: the others wait here, then see the new keys
            if state.keys is not before:
                return state.keys
            if not self._due(force):
                return None
            state.last_attempt = self._clock()
            state.fetches += 1
            started = time.monotonic()
            try:
                self._install(self._fetch())
            except http.FetchFailed as failure:
                if self._metrics is not None:
                    self._metrics.idp_call("jwks", False, time.monotonic() - started)
                state.failures += 1
                state.failures_in_row += 1
                logger.warning(
                    "jwks_fetch_failed reason=%s: keeping %s",
                    failure.reason,
                    "the last good keys" if state.keys else "no keys (requests get 503)",
                )
                return None
            state.failures_in_row = 0
            if self._metrics is not None:
                self._metrics.idp_call("jwks", True, time.monotonic() - started)
            return state.keys

    def _install(self, keys: KeySet) -> None:
        """Use ``keys`` from now on; R41: tell ``on_revoked`` which kids are gone."""
        before = self._state.keys
        self._state.keys = keys
        if before is not None and self.on_revoked is not None:
            gone = frozenset(before.by_kid) - frozenset(keys.by_kid)
            if gone:
                logger.info("jwks_keys_revoked count=%d", len(gone))
                self.on_revoked(gone)

    def _from_file(self) -> KeySet:
        """The keys of a ``file:`` key set, read again if the file changed since the last read;
        the last good keys when it is now missing or garbage; 503 when none was ever loaded."""
        assert self._path is not None
        state = self._state
        stamp = _stamp(self._path)
        if stamp != state.file_stamp or state.file_racy:
            with state.fetch_lock:  # one reader; the others wait and use what it loaded
                if stamp != state.file_stamp or state.file_racy:
                    self._read_key_file(stamp)
        if state.keys is None:
            raise IdpUnavailable(
                "jwks_unavailable", "the key-set file cannot be read", retry_after=1
            )
        return state.keys

    def _read_key_file(self, stamp: tuple[int, ...]) -> None:
        assert self._path is not None
        state = self._state
        state.last_attempt = self._clock()
        state.fetches += 1
        started = time.monotonic()
        try:
            if not stamp:
                raise http.FetchFailed("file_missing")
            body, stamp = _read_file(self._path, self._http.max_bytes)
            digest = hashlib.sha256(body).digest()
            if state.keys is None or digest != state.file_digest:
                self._install(self._parse(body, self._ttl))
                state.file_digest = digest
        except http.FetchFailed as failure:
            state.failures += 1
            logger.warning(
                "jwks_file_failed reason=%s path=%s: keeping %s",
                failure.reason,
                safe(self._path, 200),
                "the last good keys" if state.keys else "no keys (requests get 503)",
            )
            ok = False
        else:
            ok = True
        finally:
            # An unchanged file is not read again (not even a bad one); a fresh one is.
            state.file_stamp, state.file_racy = stamp, _is_racy(stamp)
        if self._metrics is not None:
            self._metrics.idp_call("jwks", ok, time.monotonic() - started)

    def _fetch(self) -> KeySet:
        # A callable finds the URL (discovery), told whether this is a re-fetch (then it reads
        # the provider's document again, so moved keys are followed).
        uri = self.uri if isinstance(self.uri, str) else self.uri(self._state.keys is not None)
        answer = http.get(self._session, uri, self._http)
        if answer.status != 200:
            raise http.FetchFailed(f"status_{answer.status}")
        return self._parse(answer.body, self._ttl_of(answer.cache_control))

    def _parse(self, body: bytes, ttl: float) -> KeySet:
        """A key-set document (HTTP answer or file) as a :class:`KeySet`, the same checks for
        both; :class:`http.FetchFailed` when it is not one."""
        try:
            document = json.loads(body)
        except (ValueError, RecursionError):
            raise http.FetchFailed("not_json") from None
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise http.FetchFailed("not_a_key_set")
        keys = usable_keys(document["keys"], self._algorithms)
        by_kid: dict[str, tuple[PyJWK, ...]] = {}
        for key in keys:
            if key.key_id is not None:
                by_kid[key.key_id] = (*by_kid.get(key.key_id, ()), key)
        logger.info("jwks_loaded keys=%d", len(keys))
        return KeySet(
            by_kid=by_kid,
            all_keys=tuple(keys),
            fetched_at=self._clock(),
            ttl=ttl,
        )

    def _ttl_of(self, cache_control: str | None) -> float:
        """``Cache-Control: max-age`` replaces ``jwks_cache_ttl`` for this copy, clamped to
        [refresh cooldown, one day]: ``max-age=1200`` keeps the keys 20 minutes, ``max-age=0``
        never means a fetch per request, and a year is not trusted for a year. Other
        directives (``no-cache``, ``no-store``) leave ``jwks_cache_ttl`` in force. (The lower
        bound is also what the refresh cooldown enforces on its own; stated here for whoever
        reads ``KeySet.ttl``.)"""
        found = _MAX_AGE.search(cache_control or "")
        if found is None:
            return self._ttl
        return float(min(max(int(found.group(1)), self._cooldown), MAX_KEY_SET_AGE))
