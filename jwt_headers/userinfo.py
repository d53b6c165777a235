"""The OIDC userinfo check: does the identity provider still accept this token, for this user?

Called last, after every local check, so a token we can refuse ourselves never reaches the
identity provider. The token goes in the ``Authorization`` header, never in a URL (R10). Only a
200 with a JSON object accepts; 4xx refuses the token (401); anything that is not an answer
(3xx, 5xx, timeout, garbage) means the check could not be made: 503, fail closed (R31).
The body is never used for the user name or roles.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import requests

from . import http
from .errors import IdpUnavailable, InvalidToken
from .metrics import Metrics

logger = logging.getLogger("jwt_headers")


class UserinfoClient:
    """Calls one configured ``userinfo_endpoint``."""

    def __init__(
        self,
        endpoint: str | Callable[[], str],
        *,
        http_settings: http.HttpSettings,
        validate_subject: bool,
        session: requests.Session | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.endpoint = endpoint
        self._metrics = metrics
        self._http = http_settings
        self._validate_subject = validate_subject
        self._session = session or http.new_session()
        self.calls = 0

    def check(self, token: str, claims: dict[str, Any]) -> None:
        """Return when the provider accepts ``token``; raise a :class:`Refusal` otherwise."""
        if self._metrics is None:
            self._check(token, claims)
            return
        started, answered = time.monotonic(), False
        try:
            self._check(token, claims)
            answered = True
        except InvalidToken:
            answered = True  # the provider answered: it refuses the token
            raise
        finally:
            self._metrics.idp_call("userinfo", answered, time.monotonic() - started)

    def _check(self, token: str, claims: dict[str, Any]) -> None:
        self.calls += 1
        try:
            endpoint = self.endpoint if isinstance(self.endpoint, str) else self.endpoint()
            answer = http.get(
                self._session,
                endpoint,
                self._http,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            )
        except http.FetchFailed as failure:
            raise self._unavailable(failure.reason) from None
        if 400 <= answer.status < 500:
            raise InvalidToken(
                "userinfo_rejected", f"the identity provider rejected the token ({answer.status})"
            )
        if answer.status != 200:
            raise self._unavailable(f"status_{answer.status}")
        try:
            body = json.loads(answer.body)
        except (ValueError, RecursionError):
            raise self._unavailable("not_json") from None
        if not isinstance(body, dict):
            raise self._unavailable("not_an_object")
        subject = body.get("sub")
        if not isinstance(subject, str) or not subject:
            raise InvalidToken("userinfo_no_subject", "the userinfo answer has no subject")
        if self._validate_subject:
            token_subject = claims.get("sub")
            if not isinstance(token_subject, str) or token_subject != subject:
                raise InvalidToken(
                    "subject_mismatch", "the token's subject does not match the userinfo subject"
                )

    @staticmethod
    def _unavailable(reason: str) -> IdpUnavailable:
        logger.warning("userinfo_failed reason=%s", reason)
        return IdpUnavailable(
            "userinfo_unavailable", "the identity provider's userinfo check failed"
        )
