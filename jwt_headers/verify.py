"""Checking a decoded JWT: signature, then times, issuer, audience, and userinfo last.

The signature is checked with PyJWT's algorithm objects on keys PyJWT prepared once from the
key set, over the bytes :mod:`decode` already split out, so the token is parsed exactly once
(R11). The claim checks are written here rather than taken from ``jwt.decode`` because PyJWT
(2.15) can only run them by decoding the token a second time, and lets through what we must
refuse: no ``exp``, an ``exp`` given as a string, booleans as numbers, and audience claims other
than ``aud`` (R6-R9).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any

from .config import JwtHeadersConfig
from .decode import Document, media_type
from .errors import InvalidToken
from .jwks import JwksClient
from .logtools import safe
from .userinfo import UserinfoClient

logger = logging.getLogger("jwt_headers")

MAX_KID_LENGTH = 256


_ABSENT = object()
#: Time claims between these bounds are taken as they are (2**53: every integer below it is an
#: exact float); anything else goes through the full checks below.
_EXACT = 2**53


def _number(claims: dict[str, Any], name: str) -> float | None:
    """A time claim as a number; refuse strings, booleans, NaN, infinities and integers no
    float can hold, which no real clock reaches and which would otherwise escape as an
    ``OverflowError`` (R6, R7)."""
    value = claims.get(name, _ABSENT)
    if value is _ABSENT:
        return None
    kind = type(value)  # JSON gives exact types: int and float, never a subclass
    if kind is int and -_EXACT < value < _EXACT:  # the common case, decided without float()
        return value  # type: ignore[no-any-return]
    if kind is float and -_EXACT < value < _EXACT:  # also rules out NaN and infinities
        return value  # type: ignore[no-any-return]
    number = math.nan
    if isinstance(value, int | float) and not isinstance(value, bool):
        try:
            number = float(value)  # an integer beyond float range (10**400) raises here
        except OverflowError:
            number = math.nan
    if not math.isfinite(number):
        if name == "exp":
            raise InvalidToken("no_valid_exp", "token has no valid exp")
        raise InvalidToken(f"bad_{name}", f"token {name} is not a number")
    return number


def check_times(claims: dict[str, Any], now: float, leeway: float) -> float:
    """Check ``exp`` (required), ``nbf`` and ``iat``; return until when the token is good."""
    exp = _number(claims, "exp")
    if exp is None:
        raise InvalidToken("no_valid_exp", "token has no valid exp")
    if exp <= now - leeway:
        raise InvalidToken("expired", "token expired")
    nbf = _number(claims, "nbf")
    if nbf is not None and nbf > now + leeway:
        raise InvalidToken("not_yet_valid", "token is not valid yet (nbf)")
    iat = _number(claims, "iat")
    if iat is not None and iat > now + leeway:
        raise InvalidToken("issued_in_future", "token is issued in the future (iat)")
    return exp + leeway


def check_type(document: Document, types: frozenset[str]) -> None:
    """The header's ``typ`` is one of ``token_types`` (RFC 8725 3.11 explicit typing): an ID
    token (``JWT``) is then not taken where an access token (``at+jwt``, RFC 9068) is meant."""
    typ = (document.header or {}).get("typ")
    if not isinstance(typ, str) or media_type(typ) not in types:
        refusal = InvalidToken("wrong_type", "token type (typ) is not accepted")
        refusal.detail = f"typ={safe(typ, 24)}"
        raise refusal


def check_issuer(claims: dict[str, Any], issuers: tuple[str, ...]) -> None:
    """Exact string equality: no prefix, no trailing-slash or case folding (R9)."""
    issuer = claims.get("iss")
    if not isinstance(issuer, str) or issuer not in issuers:
        raise InvalidToken("wrong_issuer", "token issuer is not accepted")


def check_audience(claims: dict[str, Any], claim: str, audiences: frozenset[str]) -> None:
    """The claim is a string or a non-empty list of strings holding an accepted value (R8)."""
    value = claims.get(claim)
    if type(value) is str:  # JSON strings are exact str
        accepted = value in audiences
    elif type(value) is list and value:
        for item in value:
            if type(item) is not str:
                raise InvalidToken("wrong_audience", f"token has no valid {claim} claim")
        accepted = not audiences.isdisjoint(value)
    else:
        raise InvalidToken("wrong_audience", f"token has no valid {claim} claim")
    if not accepted:
        raise InvalidToken("wrong_audience", f"token {claim} is not accepted")


#: One check: the decoded token and the time in, until when it holds (``None``: no limit) out.
Check = Callable[[Document, float], "float | None"]


class TokenVerifier:
    """Runs the configured checks on a decoded JWT; returns until when the result holds.

    The checks are chosen once, here, in the order that keeps the identity provider out of
    the loop for tokens we can refuse ourselves; ``explain`` walks the same list.
    """

    def __init__(
        self,
        config: JwtHeadersConfig,
        *,
        clock: Callable[[], float],
        jwks: JwksClient | None,
        userinfo: UserinfoClient | None,
    ) -> None:
        self._config = config
        self._clock = clock
        self.jwks = jwks
        self.userinfo = userinfo
        self._algorithms = frozenset(config.algorithms)
        audiences, issuers = config.audience or (), config.issuer or ()
        #: The accepted ``iss`` values (a provider's one, with ``providers``).
        self.issuers: tuple[str, ...] = issuers
        leeway, claim = config.leeway, config.audience_claim
        audience_set = frozenset(audiences)
        checks: list[tuple[str, Check]] = []
        if config.token_types:
            types = frozenset(config.token_types)
            checks.append(("type", lambda doc, now: check_type(doc, types)))
        if jwks is not None:
            checks.append(("signature", self._signature))
        if config.validate_expiry:
            checks.append(("expiry", lambda doc, now: check_times(doc.claims, now, leeway)))
        if config.validate_issuer:
            checks.append(("issuer", lambda doc, now: check_issuer(doc.claims, issuers)))
        if config.validate_audience:
            checks.append(
                (
                    "audience",
                    lambda doc, now: check_audience(doc.claims, claim, audience_set),
                )
            )
        if userinfo is not None:
            checks.append(("userinfo", self._userinfo))
        self.checks: tuple[tuple[str, Check], ...] = tuple(checks)

    def __call__(self, document: Document) -> float | None:
        now = self._clock()
        deadline: float | None = None
        for _name, check in self.checks:
            until = check(document, now)
            if until is not None:
                deadline = until if deadline is None else min(deadline, until)
        return deadline

    def _userinfo(self, document: Document, now: float) -> float:
        assert self.userinfo is not None
        return now + self.userinfo.check(document.token, document.claims, now)

    def _signature(self, document: Document, now: float) -> None:
        assert document.header is not None and self.jwks is not None
        alg = document.header["alg"]
        if alg not in self._algorithms:
            refusal = InvalidToken("alg_not_allowed", "token algorithm is not allowed")
            refusal.detail = f"alg={safe(alg, 16)}"
            raise refusal
        kid = document.header.get("kid")
        if "kid" in document.header and (
            not isinstance(kid, str) or not kid or len(kid) > MAX_KID_LENGTH
        ):  # R4: present means a usable string; null is not "no kid"
            raise InvalidToken("bad_kid", "token kid is not a usable key id")
        tried = False
        for key in self.jwks.keys_for(kid, alg):
            if key.algorithm_name != alg:
                continue  # each key verifies only its own algorithm (R2)
            tried = True
            try:
                verified = key.Algorithm.verify(document.signing_input, key.key, document.signature)
            except Exception:  # a malformed signature is a bad signature, never a pass
                verified = False
            if verified:
                return
        if not tried:
            refusal = InvalidToken("alg_key_mismatch", "token algorithm does not match its key")
            refusal.detail = f"alg={safe(alg, 16)}"
            raise refusal
        raise InvalidToken("bad_signature", "token signature is not valid")
