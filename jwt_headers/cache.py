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

    def clear(self) -> None:
        """Forget every entry (a signing key was withdrawn, R41)."""


#: Entries are counted in units of this many bytes of key, so a cache of N entries holds N
#: typical tokens but only a fraction as many 16 KB ones: bounded in entries and in bytes (R25).
ENTRY_UNIT_BYTES = 4096


def _weight(key: Hashable) -> int:
    if isinstance(key, str):
        return 1 + len(key) // ENTRY_UNIT_BYTES
    if isinstance(key, tuple):
        return 1 + sum(len(part) for part in key if isinstance(part, str)) // ENTRY_UNIT_BYTES
    return 1


class LocalCache:
    """A thread-safe, bounded, in-process LRU with a deadline per entry.

    ``maxsize`` counts entries of up to :data:`ENTRY_UNIT_BYTES` of key; a longer key counts
    as several entries.
    """

    def __init__(self, maxsize: int, clock: Callable[[], float]) -> None:
        self._data: LRUCache[Hashable, tuple[Any, float | None, int]] = LRUCache(
            maxsize=max(1, maxsize), getsizeof=lambda entry: entry[2]
        )
        self._enabled = maxsize > 0
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            entry = self._data.get(key)
        if entry is None:
            return None
        value, deadline, _weight_units = entry
        if deadline is not None and deadline <= self._clock():
            with self._lock:
                self._data.pop(key, None)
            return None
        return value

    def set(self, key: Hashable, value: Any, ttl: float | None) -> None:
        if not self._enabled:
            return
        deadline = None if ttl is None else self._clock() + ttl
        weight = _weight(key)
        if weight > self._data.maxsize:
            return
        with self._lock:
            self._data[key] = (value, deadline, weight)

    def __len__(self) -> int:
        return len(self._data)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
