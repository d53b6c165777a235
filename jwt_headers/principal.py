"""The identity handed to the wrapped app.

A :class:`Principal` is immutable and may be shared by many requests (the token cache hands the
same object out on every hit), so its claims are a read-only, deeply frozen view: an app that
mutates what it was given could otherwise change the identity of the next request.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .decode import value_text


def freeze(value: Any) -> Any:
    """Return ``value`` with every dict made a read-only mapping and every list a tuple."""
    if isinstance(value, dict):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(freeze(v) for v in value)
    return value


class Claims(Mapping[str, Any]):
    """Read-only claims, decoded from the header value on first use.

    A cached principal holds only a reference to the header value it came from (which the
    cache holds as its key anyway), so a cached token costs no extra copy of its claims; apps
    that never read claims never pay for decoding them. The value was already checked by the
    strict decoder when the principal was made.
    """

    __slots__ = ("_encoding", "_is_jwt", "_parsed", "_raw")

    def __init__(self, raw: str, *, is_jwt: bool, encoding: str = "auto") -> None:
        self._raw = raw
        self._is_jwt = is_jwt
        self._encoding = encoding
        self._parsed: Mapping[str, Any] | None = None

    def _data(self) -> Mapping[str, Any]:
        parsed = self._parsed
        if parsed is None:  # two threads may both decode once; either result is the same
            parsed = self._parsed = freeze(json.loads(self._text()))
        return parsed

    def _text(self) -> str:
        if self._is_jwt:  # a checked compact JWS, perhaps after "Bearer ": segment 2 is ours
            segment = self._raw.split(".")[1]
            return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode("utf-8")
        return value_text(self._raw, self._encoding, utf8_only=True)

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
