"""JSON paths, compiled once at start-up.

Users write GeoServer-style dotted paths (``resource_access.live-key2.roles``) and, now and then,
real JSONPath (``$.groups[0]``). jsonpath-ng's parser costs a fraction of a millisecond per call,
so every path is compiled when the config is built; plain dotted paths skip jsonpath-ng entirely
and walk the dicts directly (tests prove both give the same answers).

Where jsonpath-ng cannot read a dotted name as a key, the walk takes the name as written, as
GeoServer does: ``a.2fa`` and ``a.where`` (which jsonpath-ng's lexer refuses) and ``a.01``
(which it reads as the number 1, so the key ``"1"``) look up the keys ``"2fa"``, ``"where"``
and ``"01"``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import ConfigError

_PLAIN_SEGMENT = r"[A-Za-z0-9_@][A-Za-z0-9_@-]*"
_PLAIN_PATH = re.compile(rf"(?:\$\.)?({_PLAIN_SEGMENT}(?:\.{_PLAIN_SEGMENT})*)")


class JsonPath:
    """A compiled path: the document in, every matching value out (in document order).

    It keeps the path as the user wrote it (``text``) so a refusal or a log line can name the
    path that matched nothing: the path is configuration, never a claim value (R35)."""

    __slots__ = ("_find", "text")

    def __init__(self, text: str, find: Callable[[Any], list[Any]]) -> None:
        self.text = text
        self._find = find

    def __call__(self, document: Any) -> list[Any]:
        return self._find(document)

    def __repr__(self) -> str:
        return f"JsonPath({self.text!r})"


def _dotted(keys: tuple[str, ...]) -> Callable[[Any], list[Any]]:
    def find(document: Any) -> list[Any]:
        for key in keys:
            if not isinstance(document, dict) or key not in document:
                return []
            document = document[key]
        return [document]

    return find


def compile_path(option: str, text: str) -> JsonPath:
    """Compile ``text`` or raise :class:`ConfigError` naming ``option``."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{option}: a JSON path is required, e.g. 'preferred_username'")
    text = text.strip()
    plain = _PLAIN_PATH.fullmatch(text)
    if plain:
        return JsonPath(text, _dotted(tuple(plain.group(1).split("."))))
    from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
    from jsonpath_ng.parser import parse  # imported here: only real JSONPath needs the parser

    try:
        expression = parse(text)
    except (JsonPathLexerError, JsonPathParserError, Exception) as exc:
        raise ConfigError(
            f"{option}={text!r} is not a valid JSON path ({exc}); write a dotted path such as "
            "'realm_access.roles' or JSONPath such as '$.groups[0]'"
        ) from None

    def find(document: Any) -> list[Any]:
        return [match.value for match in expression.find(document)]

    return JsonPath(text, find)
