"""Path and method rules: which requests skip authentication, which may never be anonymous.

A health check must pass without a token, a CORS preflight (``OPTIONS``) never carries one, and an
admin area must not be anonymous even where the rest of the site is. The rules compare the path
the app will route on, ``SCRIPT_NAME + PATH_INFO``, after collapsing repeated slashes and
resolving ``.`` and ``..`` segments: ``//admin``, ``/static/../admin`` and ``/healthz/../admin``
are ``/admin`` to a router that normalises, so they are ``/admin`` here too and cannot ride an
exempt rule or slip past a protected one. A router that does not normalise routes the path as
sent, so both forms are judged and the stricter answer wins: a request is protected when either
form is, and exempt only when both are (``/admin/../healthz`` is not exempt: a router may serve
it from ``/admin/<path>``). The patterns are compiled once, at start-up.

A pattern is a prefix (``/healthz`` matches ``/healthz`` and ``/healthz/live``, never
``/healthzz``) or, when it holds ``*``, ``?`` or ``[``, a glob over the whole path in which ``*``
also crosses ``/`` (``/static/*`` matches ``/static/css/site.css``). ``protected_paths`` wins over
``exempt_paths``; ``exempt_methods`` applies to every path, so a preflight to a protected API
still passes (it reaches the app anonymously, which answers it without data).
"""

from __future__ import annotations

import enum
import fnmatch
import re
from collections.abc import Iterable

from .errors import ConfigError

_GLOB_CHARS = frozenset("*?[")
_METHOD = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")  # RFC 7230 tchar


class PathRule(enum.Enum):
    """What the rules say about one request."""

    DEFAULT = "default"  #: authenticate; anonymous if allow_anonymous
    EXEMPT = "exempt"  #: read no header, call no IdP: anonymous
    PROTECTED = "protected"  #: authenticate; never anonymous


def normalize_path(script_name: str, path_info: str) -> str:
    """The routed path with repeated slashes collapsed and dot segments resolved (RFC 3986
    5.2.4); always starts with ``/``; a trailing ``/`` is kept."""
    path = f"{script_name}/{path_info}" if script_name else path_info
    segments: list[str] = []
    parts = path.split("/")
    for part in parts:
        if part in ("", "."):
            continue
        if part == "..":
            if segments:
                segments.pop()
            continue
        segments.append(part)
    trailing = len(parts) > 1 and parts[-1] in ("", ".", "..") and bool(segments)
    return "/" + "/".join(segments) + ("/" if trailing else "")


def _compile(option: str, patterns: Iterable[str]) -> re.Pattern[str] | None:
    """One anchored regular expression for all of ``patterns``, or ``None`` for none."""
    alternatives: list[str] = []
    for pattern in patterns:
        if not isinstance(pattern, str) or not pattern.startswith("/"):
            raise ConfigError(
                f"{option}: {pattern!r} is not a path pattern; write an absolute path or glob, "
                "e.g. '/healthz' or '/static/*'"
            )
        # Written as UTF-8 text; WSGI hands PATH_INFO over as latin-1 text of the raw bytes.
        wsgi_form = pattern.encode("utf-8").decode("latin-1")
        if _GLOB_CHARS.intersection(pattern):
            alternatives.append(fnmatch.translate(normalize_path("", wsgi_form)))  # anchored
        else:
            prefix = normalize_path("", wsgi_form).rstrip("/")
            alternatives.append(f"(?s:{re.escape(prefix)}(?:/.*)?)\\Z")
    if not alternatives:
        return None
    return re.compile("|".join(alternatives))


def _methods(option: str, methods: Iterable[str]) -> frozenset[str]:
    checked = set()
    for method in methods:
        if not isinstance(method, str) or not _METHOD.fullmatch(method):
            raise ConfigError(
                f"{option}: {method!r} is not an HTTP method; write e.g. 'OPTIONS' or 'HEAD', "
                "or () for none"
            )
        checked.add(method.upper())
    return frozenset(checked)


_DEFAULT, _EXEMPT, _PROTECTED = PathRule.DEFAULT, PathRule.EXEMPT, PathRule.PROTECTED
#: How many path decisions are remembered, and up to which path length.
_REMEMBERED_PATHS = 4096
_MAX_REMEMBERED_PATH = 256


class PathRules:
    """The compiled ``exempt_paths``, ``exempt_methods`` and ``protected_paths``."""

    def __init__(
        self,
        exempt_paths: Iterable[str] = (),
        exempt_methods: Iterable[str] = (),
        protected_paths: Iterable[str] = (),
    ) -> None:
        exempt = _compile("exempt_paths", exempt_paths)
        protected = _compile("protected_paths", protected_paths)
        self.has_protected = protected is not None
        self.exempt_methods = _methods("exempt_methods", exempt_methods)
        # One regular expression for both lists, protected first: a path both lists match is
        # protected, and one match per path form tells which.
        groups = [
            f"(?P<{name}>{pattern.pattern})"
            for name, pattern in (("protected", protected), ("exempt", exempt))
            if pattern is not None
        ]
        self._paths = re.compile("|".join(groups)) if groups else None
        self.has_paths = self._paths is not None
        #: Decisions per path as sent: the same few paths come again and again, and a lookup
        #: is cheaper than a regular expression. Bounded; see :meth:`decide`.
        self._decided: dict[str, PathRule] = {}

    @property
    def empty(self) -> bool:
        """No rule at all: the adapters skip :meth:`decide` (zero cost per request)."""
        return self._paths is None and not self.exempt_methods

    def _match(self, path: str) -> str | None:
        assert self._paths is not None
        found = self._paths.match(path)
        return found.lastgroup if found is not None else None

    def decide(self, method: object, script_name: object, path_info: object) -> PathRule:
        """The rule for one request (values as the WSGI environ holds them)."""
        if self.exempt_methods and type(method) is str and method in self.exempt_methods:
            return _EXEMPT  # compared exactly: methods are case-sensitive (RFC 9110 9.1)
        if self._paths is None:
            return _DEFAULT
        script = script_name if isinstance(script_name, str) else ""
        info = path_info if isinstance(path_info, str) else ""
        raw = script + info
        decided = self._decided.get(raw)
        if decided is not None:
            return decided
        decided = self._decide_path(script, info, raw)
        if len(raw) <= _MAX_REMEMBERED_PATH:
            if len(self._decided) >= _REMEMBERED_PATHS:
                self._decided.clear()  # bounded: many distinct paths just start over
            self._decided[raw] = decided
        return decided

    def _decide_path(self, script: str, info: str, raw: str) -> PathRule:
        if raw[:1] == "/" and "//" not in raw and "/." not in raw:
            found = self._match(raw)  # already normal: the common case, one match
            if found is None:
                return _DEFAULT
            return _PROTECTED if found == "protected" else _EXEMPT
        normal, as_sent = self._match(normalize_path(script, info)), self._match(raw)
        if "protected" in (normal, as_sent):
            return _PROTECTED
        if normal == as_sent == "exempt":
            return _EXEMPT
        return _DEFAULT
