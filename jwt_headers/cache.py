"""The token cache: one small interface, so a shared backend can replace the in-process one.

Keys are exact request inputs (the header value itself, compared in full) within one
:class:`~jwt_headers.core.Authenticator`, so entries never cross configurations (R23). A value
lives until its own deadline (the token's ``exp`` plus leeway, the userinfo TTL...) or until
the LRU pushes it out (R24, R25). A shared backend must key by a hash of the value plus the
config's fingerprint, never by the token text.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Any, Protocol

from cachetools import LRUCache


class TokenCache(Protocol):
    """What the pipeline needs of a cache."""

    def get(self, key: Hashable) -> Any | None:
        """The live value for ``key``, or ``None``."""

    def set(self, key: Hashable, value: Any, ttl: float | None) -> None:
        """Keep ``value`` for ``ttl`` seconds (``None``: until evicted)."""


class LocalCache:
    """A thread-safe, bounded, in-process LRU with a deadline per entry."""

    def __init__(self, maxsize: int, clock: Callable[[], float]) -> None:
        self._data: LRUCache[Hashable, tuple[Any, float | None]] = LRUCache(maxsize=max(1, maxsize))
        self._enabled = maxsize > 0
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._data.get(key)
        if entry is None:
            return None
        value, deadline = entry
        if deadline is not None and deadline <= self._clock():
            with self._lock:
                self._data.pop(key, None)
            return None
        return value

    def set(self, key: Hashable, value: Any, ttl: float | None) -> None:
        if not self._enabled:
            return
        deadline = None if ttl is None else self._clock() + ttl
        with self._lock:
            self._data[key] = (value, deadline)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
