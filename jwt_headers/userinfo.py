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
from .shared import SharedCache, userinfo_key

logger = logging.getLogger("jwt_headers")

#: Seconds a worker's claim to ask outlives its longest call (a claim whose holder died ends).
CLAIM_MARGIN = 0.5

#: The provider's refusals a shared entry may carry, with the client's message for each;
#: another reason in an entry is not ours and is a miss.
_SHARED_REFUSALS = {
    "userinfo_rejected": "the identity provider rejected the token",
    "userinfo_no_subject": "the userinfo answer has no subject",
    "subject_mismatch": "the token's subject does not match the userinfo subject",
}


class UserinfoClient:
    """Calls one configured ``userinfo_endpoint``; with a :class:`SharedCache`, asks it first.

    A shared outcome is used only for a token that already passed every local check (this is
    the last one), so a planted entry can spare a call but never admit a forged or expired
    token. A shared "accepted" names the subject the provider answered; with
    ``validate_subject`` it must be the token's, or the entry is ignored.
    """

    def __init__(
        self,
        endpoint: str | Callable[[], str],
        *,
        http_settings: http.HttpSettings,
        validate_subject: bool,
        session: requests.Session | None = None,
        metrics: Metrics | None = None,
        shared: SharedCache | None = None,
        shared_scope: str = "",
        cache_ttl: float = 300,
        negative_ttl: float = 30,
        leeway: float = 0,
    ) -> None:
        self.endpoint = endpoint
        self._metrics = metrics
        self._http = http_settings
        self._validate_subject = validate_subject
        self._session = session or http.new_session()
        self.shared = shared
        # What decides the answer (the endpoint, validate_subject): part of every key (R23).
        self._scope = f"{shared_scope}\0validate_subject={validate_subject}"
        self._cache_ttl = cache_ttl
        self._negative_ttl = negative_ttl
        self._leeway = leeway
        # The longest one call may take: how long other workers wait for this one's answer.
        self._ask_timeout = http_settings.connect_timeout + http_settings.read_timeout
        self.calls = 0
        # Optional for an observer (added after the first release of the interface).
        self._shared_metric: Callable[[str], object] | None = getattr(metrics, "shared_cache", None)

    def check(self, token: str, claims: dict[str, Any], now: float | None = None) -> float:
        """Return how long (s) the acceptance holds; raise a :class:`Refusal` otherwise."""
        if self.shared is None:
            self._ask(token, claims)
            return self._cache_ttl
        now = time.time() if now is None else now
        key = userinfo_key(self._scope, token)
        claimed, result = False, "hit"
        try:  # a shared refusal is raised from here: still a hit (or waited)
            remaining = self._shared_outcome(self.shared.get(key), claims)
            if remaining is None:
                # Cross-worker single flight: one worker asks, the others wait for its answer
                # (at most as long as its call may take), then ask themselves if none came.
                result = "miss"
                claimed = self.shared.claim(key, self._ask_timeout + CLAIM_MARGIN)
                if not claimed:
                    result = "waited"
                    found = self.shared.wait_for(key, self._ask_timeout)
                    remaining = self._shared_outcome(found, claims)
                    if remaining is None:
                        result = "miss"
        finally:
            if self._shared_metric is not None:
                self._shared_metric(result if self.shared.available else "unavailable")
        if remaining is not None:
            return min(remaining, self._cache_ttl)
        try:
            try:
                subject = self._ask(token, claims)
            except InvalidToken as refusal:  # refused by the provider; 503s are never shared
                ttl = self._bounded(self._negative_ttl, claims, now)
                self.shared.set(key, {"v": 1, "ok": False, "reason": refusal.reason}, ttl)
                raise
            ttl = self._bounded(self._cache_ttl, claims, now)
            self.shared.set(key, {"v": 1, "ok": True, "sub": subject}, ttl)
        finally:
            if claimed:
                self.shared.release(key)
        return self._cache_ttl

    def _bounded(self, ttl: float, claims: dict[str, Any], now: float) -> float:
        """``ttl``, cut so the entry ends no later than the token (``exp`` + leeway, R24)."""
        exp = claims.get("exp")
        if isinstance(exp, int | float) and not isinstance(exp, bool):
            try:
                return min(ttl, float(exp) + self._leeway - now)
            except OverflowError:  # an exp beyond float range: refused by the expiry check
                return 0.0
        return ttl

    def _shared_outcome(
        self, found: tuple[dict[str, Any], float] | None, claims: dict[str, Any]
    ) -> float | None:
        """The shared entry's remaining life when it accepts; raise its refusal; ``None`` for a
        miss (absent, unusable, Redis down, or an accepted subject that is not the token's)."""
        if found is None:
            return None
        value, remaining = found
        if value.get("v") != 1:
            return None
        if value.get("ok") is True:
            subject = value.get("sub")
            if not isinstance(subject, str) or not subject:
                return None
            if self._validate_subject and claims.get("sub") != subject:
                return None  # not this token's subject: ask the provider
            return remaining
        reason = value.get("reason")
        if value.get("ok") is False and isinstance(reason, str) and reason in _SHARED_REFUSALS:
            raise InvalidToken(reason, _SHARED_REFUSALS[reason])
        return None

    def _ask(self, token: str, claims: dict[str, Any]) -> str:
        """Ask the provider; the subject it names, or raise."""
        if self._metrics is None:
            return self._check(token, claims)
        started, answered = time.monotonic(), False
        try:
            subject = self._check(token, claims)
            answered = True
            return subject
        except InvalidToken:
            answered = True  # the provider answered: it refuses the token
            raise
        finally:
            self._metrics.idp_call("userinfo", answered, time.monotonic() - started)

    def _check(self, token: str, claims: dict[str, Any]) -> str:
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
            raise InvalidToken("userinfo_no_subject", _SHARED_REFUSALS["userinfo_no_subject"])
        if self._validate_subject:
            token_subject = claims.get("sub")
            if not isinstance(token_subject, str) or token_subject != subject:
                raise InvalidToken("subject_mismatch", _SHARED_REFUSALS["subject_mismatch"])
        return subject

    @staticmethod
    def _unavailable(reason: str) -> IdpUnavailable:
        logger.warning("userinfo_failed reason=%s", reason)
        return IdpUnavailable(
            "userinfo_unavailable", "the identity provider's userinfo check failed"
        )
