"""Log hygiene: what may be written about a request (R34-R36).

Tokens, their segments, JSON header values and claim sets never reach a log. What does reach it
is a reason code, a fingerprint (the first 8 hex digits of the value's SHA-256, enough to match a
complaint to a log line, useless to an attacker) and, where it helps, a short user-controlled
string (an ``alg``, a peer address) with control characters escaped so it cannot forge lines.
"""

from __future__ import annotations

import hashlib

_MAX_SHOWN = 64


def fingerprint(value: str) -> str:
    """First 8 hex digits of SHA-256 of ``value``."""
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def safe(value: object, limit: int = _MAX_SHOWN) -> str:
    """``value`` as text fit for a log line: truncated, control characters escaped."""
    text = value if isinstance(value, str) else repr(value)
    if len(text) > limit:
        text = text[:limit] + "..."
    if text.isprintable():
        return text
    return text.encode("unicode_escape").decode("ascii")
