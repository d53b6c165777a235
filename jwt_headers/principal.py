"""The identity handed to the wrapped app.

A :class:`Principal` is immutable and may be shared by many requests (the token cache hands the
same object out on every hit), so its claims are a read-only, deeply frozen view: an app that
mutates what it was given could otherwise change the identity of the next request.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any


def freeze(value: Any) -> Any:
    """Return ``value`` with every dict made a read-only mapping and every list a tuple."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


class Claims(Mapping[str, Any]):
    """Read-only claims, parsed from their JSON text on first use.

    Cached principals keep only the compact JSON text (about a third of the memory of a parsed
    dict); apps that never read claims never pay for parsing them again.
    """

    __slots__ = ("_lock", "_parsed", "_text")

    def __init__(self, text: str, parsed: Mapping[str, Any] | None = None) -> None:
        self._text = text
        self._parsed: Mapping[str, Any] | None = parsed
        self._lock = threading.Lock()

    def _data(self) -> Mapping[str, Any]:
        parsed = self._parsed
        if parsed is None:
            with self._lock:
                parsed = self._parsed
                if parsed is None:
                    # The text was validated by the strict decoder before it got here.
                    parsed = self._parsed = freeze(json.loads(self._text))
        return parsed

    def __getitem__(self, key: str) -> Any:
        return self._data()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data())

    def __len__(self) -> int:
        return len(self._data())

    def __repr__(self) -> str:
        # Claims are personal data: never in a repr that might end up in a log.
        return f"<Claims: {len(self)} claims>"


@dataclass(frozen=True, slots=True)
class Principal:
    """Who the request is from.

    ``roles`` are the converted roles in first-seen order without duplicates; ``claims`` is the
    JSON document or JWT payload the name came from, or ``None`` for a plain string header.
    """

    name: str
    roles: tuple[str, ...] = ()
    claims: Mapping[str, Any] | None = None

    def __repr__(self) -> str:
        return f"Principal(name={self.name!r}, roles={self.roles!r})"
