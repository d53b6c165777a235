"""Error values shared by every stage.

Configuration mistakes are found once, at start-up, and raised as :class:`ConfigError` so a
deployment fails before it serves a single request. Request problems are :class:`Refusal`
values: a stable reason code (used in logs, metrics and ``explain``), a message safe to show a
client (it never carries token data), and the HTTP status the adapter renders.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration option is missing, unknown or has a bad value.

    The message always names the option and says what would fix it.
    """


class Refusal(Exception):
    """The request may not reach the wrapped app.

    ``reason`` is a stable machine code (``expired``, ``bad_signature``, ``untrusted_source``...);
    ``message`` is for the client and the log and holds no token data.
    """

    status: int = 401
    error_code: str = "INVALID_TOKEN"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(reason, message)
        self.reason = reason
        self.message = message
        #: Set by the pipeline for the log line: which header, and the value's fingerprint.
        self.header: str | None = None
        self.fingerprint: str | None = None
        #: Log-safe particulars (e.g. ``alg=HS256``), already truncated and escaped.
        self.detail: str | None = None

    def __str__(self) -> str:
        return f"{self.reason}: {self.message}"


class InvalidToken(Refusal):
    """A header is present but unusable: answered 401 ``invalid_token`` (RFC 6750)."""


class Unauthenticated(Refusal):
    """No identity at all while ``allow_anonymous`` is off: 401 without an error attribute."""

    error_code = "UNAUTHENTICATED"

    def __init__(self) -> None:
        super().__init__("unauthenticated", "authentication required")


class IdpUnavailable(Refusal):
    """A required check could not be made (key set or userinfo unreachable): fail closed, 503."""

    status = 503
    error_code = "IDP_UNAVAILABLE"

    def __init__(self, reason: str, message: str, retry_after: int = 5) -> None:
        super().__init__(reason, message)
        self.retry_after = max(1, int(retry_after))
