"""A coverage-guided fuzz target for the whole middleware, for long runs with atheris.

CI runs the hypothesis fuzzers (``tests/test_fuzz.py``, ``tests/test_fuzz_tokens.py``) with
fixed budgets; atheris adds coverage feedback and runs for hours outside CI. ``test_one_input``
needs nothing but jwt_headers (and PyJWT, its dependency), so ``tests/test_fuzz_target.py`` runs
it in CI on the corpus and on random bytes: the target and its invariants cannot rot between
long runs.

An input is read as: byte 0 picks the configuration, byte 1 the peer and extra environ keys,
byte 2 how the rest becomes the header value:

* ``0``: the rest as the value itself (latin-1, as a WSGI server decodes header bytes);
* ``1``: a token built from the rest: three ``\\x00``-separated parts, base64url-encoded as
  header, payload and signature (so the fuzzer writes the JSON, not base64);
* ``2``: a real token from the in-process identity provider with byte edits taken from the
  rest (pairs of position and new byte), ``Bearer``-prefixed when the rest has even length.

The invariants (an ``AssertionError`` is a finding): the status is 200, 401 or 503; the app
runs exactly when it is 200; a 401/503 body is the contract's JSON; nothing is logged at ERROR
(the middleware's catch-all for a bug); no log line and no body holds a token segment; and the
identity oracle (:func:`check_identity`) holds: an accepted request's user is the one an
independent model of the contract (:func:`predict`) derives from the header value, with no role
the model does not derive, and nothing the model rules out is ever accepted.
"""

from __future__ import annotations

import atexit
import base64
import functools
import ipaddress
import json
import logging
import math
import re
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm

from jwt_headers import JwtHeadersMiddleware
from jwt_headers.devidp import DevIdp

AUDIENCE = "fuzz-api"
_IDP = DevIdp(audience=AUDIENCE).start()
atexit.register(_IDP.stop)
_GOOD = _IDP.mint({"sub": "u1", "preferred_username": "alice", "roles": ["r1"]}, 86400)


class _Log(logging.Handler):
    """Keeps the messages of one call, to check them for token text and errors."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_LOG = _Log()
_LOGGER = logging.getLogger("jwt_headers")
_LOGGER.addHandler(_LOG)
_LOGGER.setLevel(logging.DEBUG)
_LOGGER.propagate = False


class _App:
    """The wrapped app: records whether it ran and the identity it was handed."""

    called = False
    user: object = None
    principal: object = None

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.called = True
        self.user = environ.get("REMOTE_USER")
        self.principal = environ.get("jwt_headers.principal")
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


_ROLES = {"roles_json_path": "roles", "role_converter": "r1=ADMIN;r1=USER;r2=READER"}
_CONFIGS: list[dict[str, Any]] = [
    {"user_name_header": "X-User", "roles_source": "header", "roles_header": "X-Roles"},
    {
        "user_name_header": "OIDC_id_token_payload",
        "user_name_format": "json",
        "user_name_json_path": "preferred_username",
        "roles_source": "json",
        **_ROLES,
    },
    {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "$.preferred_username",
        "roles_source": "jwt",
        **_ROLES,
    },
    {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "roles_source": "jwt",
        "validate_token": True,
        "validate_signature": False,
        "validate_issuer": True,
        "issuer": _IDP.issuer,
        "validate_audience": True,
        "audience": AUDIENCE,
        **_ROLES,
    },
    {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "roles_source": "jwt",
        "validate_token": True,
        "jwks_uri": _IDP.jwks_uri,
        "validate_issuer": True,
        "issuer": _IDP.issuer,
        "validate_audience": True,
        "audience": AUDIENCE,
        "allow_anonymous": True,
        **_ROLES,
    },
]
_APP = _App()
_MIDDLEWARES = [JwtHeadersMiddleware(_APP, **options) for options in _CONFIGS]
_PEERS: list[object] = [
    "127.0.0.1",
    "203.0.113.9",
    "::1",
    None,
    ["127.0.0.1"],
    "",
    "::ffff:1.2.3.4",
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _value(mode: int, rest: bytes) -> str:
    if mode == 1:
        header, _, tail = rest.partition(b"\x00")
        payload, _, signature = tail.partition(b"\x00")
        return f"Bearer {_b64(header)}.{_b64(payload)}.{_b64(signature)}"
    if mode == 2:
        token = bytearray(_GOOD.encode("ascii"))
        for index in range(0, len(rest) - 1, 2):
            position = rest[index] * 7 % (len(token) + 1)
            if position == len(token):
                token.append(rest[index + 1])
            else:
                token[position] = rest[index + 1]
        prefix = "Bearer " if len(rest) % 2 == 0 else ""
        return prefix + token.decode("latin-1")
    return rest.decode("latin-1")


def _secrets_in(value: str) -> list[str]:
    """The parts of ``value`` that are token text: what must never be echoed or logged."""
    token = value.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    return [part for part in token.split(".") if len(part) >= 16]


# ---------------------------------------------------------------------------- identity oracle
# An independent model of contract.md and security.md: who may be authenticated by a request.
# It imports nothing from jwt_headers but the identity provider's public key set; where the
# contract's parsing is stricter than this model (duplicate JSON members, NaN, nesting depth),
# the model is more lenient, so it only constrains what is accepted ("accepted implies the
# model predicts exactly this user"). Where the outcome is certain (an ignored or blank header,
# a simple name, the minted token), it also says the request MUST get exactly that identity.

LEEWAY = 30  # the config default
MAX_HEADER = 16384  # max_header_bytes' default
#: The role map r1=ADMIN;r1=USER;r2=READER of configs 1-4, written out (config 0 has none);
#: unlisted roles pass through as they are.
ROLE_MAP = {"r1": ("ADMIN", "USER"), "r2": ("READER",)}
_ASCII_WHITE = " \t\r\n\f\v"
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_SIMPLE_NAME = re.compile(r"[A-Za-z0-9._@-]{1,64}")
_SIMPLE_ROLES = re.compile(r"[A-Za-z0-9._@, -]{0,256}")


@dataclass(frozen=True)
class Outcome:
    """What a request came to: the status, and the identity the app was handed if it ran."""

    status: int
    app_called: bool
    user: object = None  # environ["REMOTE_USER"] as the app saw it; None: absent
    principal: object = None  # environ["jwt_headers.principal"] as the app saw it


@dataclass(frozen=True)
class Prediction:
    """The model's answer: the only user a request may be accepted as (``None``: nobody), the
    only roles its principal may hold, and whether that outcome is certain (the request MUST
    reach the app with exactly this user and roles; with ``name=None``: anonymously)."""

    name: str | None
    roles: tuple[str, ...] = ()
    certain: bool = False


def _published_key() -> RSAPublicKey:
    """The dev identity provider's public key, from the key set it publishes."""
    key = RSAAlgorithm.from_jwk(_IDP.jwks()["keys"][0])
    if not isinstance(key, RSAPublicKey):
        raise TypeError("the key set must publish an RSA public key")
    return key


_PUBLIC_KEY = _published_key()
_NOBODY = Prediction(None)
_ANONYMOUS = Prediction(None, certain=True)


def _present(value: object) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _peer_trusted(peer: object) -> bool:
    """trusted_proxies' default: a str REMOTE_ADDR in 127.0.0.0/8 or equal to ::1."""
    return isinstance(peer, str) and _loopback(peer)


@functools.lru_cache(maxsize=64)
def _loopback(peer: str) -> bool:
    try:
        address = ipaddress.ip_address(peer)
    except ValueError:
        return False
    if address.version == 4:
        return address in ipaddress.ip_network("127.0.0.0/8")
    return address == ipaddress.ip_address("::1")


def _believed(environ: dict[str, Any], name: str) -> str | None:
    """A header that proves nothing by itself: its server-set (plain key) value whatever the
    peer, else its ``HTTP_`` value from a trusted peer, else nothing."""
    plain = environ.get(name)
    if _present(plain):
        return plain
    value = environ.get("HTTP_" + name.upper().replace("-", "_"))
    return value if _present(value) and _peer_trusted(environ.get("REMOTE_ADDR")) else None


def _text(value: str) -> str:
    """The header bytes (latin-1 text in WSGI) as UTF-8 when they are UTF-8, else as they came."""
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


def _usable_name(name: object) -> bool:
    """R14: exactly one non-empty string, no control characters, at most 256 characters, no
    white space around it."""
    return (
        isinstance(name, str)
        and 0 < len(name) <= 256
        and name == name.strip()
        and not _CONTROL.search(name)
    )


def _convert(roles: Iterable[str], role_map: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    converted: dict[str, None] = {}
    for role in roles:
        for internal in role_map.get(role, (role,)):
            converted[internal] = None
    return tuple(converted)


def _claim_roles(claims: dict[str, Any]) -> list[str]:
    roles = claims.get("roles")
    if isinstance(roles, str):
        roles = [roles]
    if not isinstance(roles, list):
        return []
    return [role for role in roles if isinstance(role, str) and role]


def _from_claims(claims: dict[str, Any], certain: bool) -> Prediction:
    name = claims.get("preferred_username")
    if not _usable_name(name):
        return _NOBODY
    return Prediction(name, _convert(_claim_roles(claims), ROLE_MAP), certain)


def _bearer(value: str) -> str:
    """The token: ``Bearer <token>`` (scheme in any case) or the value itself."""
    text = value.strip()
    scheme, space, rest = text.partition(" ")
    return rest.strip() if space and scheme.lower() == "bearer" else text


def _unb64(segment: str) -> bytes:
    """Canonical base64url (RFC 7515 section 2), or ``ValueError``."""
    if not _BASE64URL.fullmatch(segment):
        raise ValueError("not base64url")
    raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    if _b64(raw) != segment:
        raise ValueError("not canonical base64url")
    return raw


def _jws_claims(token: str) -> dict[str, Any] | None:
    """R12: the payload of a compact JWS (three canonical base64url segments, a non-empty
    signature, a header object with a string alg other than none and no crit or b64, an
    object payload), else ``None``."""
    parts = token.split(".")
    if len(parts) != 3 or not parts[2]:
        return None
    try:
        header = json.loads(_unb64(parts[0]).decode("utf-8"))
        claims = json.loads(_unb64(parts[1]).decode("utf-8"))
        _unb64(parts[2])
    except (ValueError, RecursionError):
        return None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        return None
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg or alg.lower() == "none":
        return None
    if "crit" in header or "b64" in header:
        return None
    return claims


def _number(value: object) -> float | None:
    """A JSON number a float can hold (R6): not a bool, a string, NaN, an infinity."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def _claims_valid(claims: dict[str, Any], now: tuple[float, float]) -> bool:
    """R6-R9 for the IdP's issuer and AUDIENCE. ``now`` is (before, after) the request: a
    correct middleware checked at a time between them, so ``exp`` is judged against the
    earliest and ``nbf``/``iat`` against the latest time it can have used."""
    before, after = now
    audience = claims.get("aud")
    if isinstance(audience, str):
        audience = [audience]
    if not isinstance(audience, list) or not all(isinstance(a, str) for a in audience):
        return False
    if claims.get("iss") != _IDP.issuer or AUDIENCE not in audience:
        return False
    exp = _number(claims.get("exp"))
    if exp is None or exp <= before - LEEWAY:
        return False
    for name in ("nbf", "iat"):
        if name in claims:
            moment = _number(claims[name])
            if moment is None or moment > after + LEEWAY:
                return False
    return True


@functools.lru_cache(maxsize=1024)  # an RSA check per repeated token is what costs here
def _verified_claims(token: str) -> dict[str, Any] | None:
    """The payload if PyJWT verifies the RS256 signature with the IdP's published key (and
    its issuer and audience); the times are judged by ``_claims_valid``."""
    try:
        claims = jwt.decode(
            token,
            key=_PUBLIC_KEY,
            algorithms=["RS256"],
            audience=AUDIENCE,
            issuer=_IDP.issuer,
            options={
                "verify_exp": False,
                "verify_nbf": False,
                "verify_iat": False,
                "verify_sub": False,
                "verify_jti": False,
            },
        )
    except Exception:  # whatever PyJWT refuses is not verified
        return None
    return claims if isinstance(claims, dict) else None


def _plain_json(document: dict[str, Any], text: str) -> bool:
    """A JSON header the contract must accept: written as ``json.dumps`` writes it (so no
    duplicate members, no NaN, ASCII), flat, with a simple name and roles a list of strings."""
    flat = all(
        isinstance(v, str) or (isinstance(v, list) and all(isinstance(i, str) for i in v))
        for v in document.values()
    )
    name = document.get("preferred_username")
    return (
        flat
        and json.dumps(document) == text
        and isinstance(name, str)
        and bool(_SIMPLE_NAME.fullmatch(name))
        and isinstance(document.get("roles", []), list)
    )


def predict(
    index: int, environ: dict[str, Any], value: str, now: tuple[float, float]
) -> Prediction:
    """Who a request may be authenticated as, by the contract alone.

    ``index`` is the config (``_CONFIGS``), ``environ`` the request as it was sent (before the
    middleware touched it), ``value`` the user-name header's value in it (under the ``HTTP_``
    key and, when the server set it, the plain key), ``now`` the clock before and after.
    """
    if not value.strip(_ASCII_WHITE):
        return _ANONYMOUS  # an empty header is an absent one
    if not value.strip() or len(value) > MAX_HEADER:
        return _NOBODY
    header = _CONFIGS[index]["user_name_header"]
    if index < 4 and _believed(environ, header) is None:
        return _ANONYMOUS  # proves nothing, from a stranger: ignored as if absent
    if index == 0:
        name = _text(value).strip()
        if not _usable_name(name):
            return _NOBODY
        roles_value = _believed(environ, "X-Roles")
        roles: list[str] = []
        if roles_value is not None:
            if len(roles_value) > MAX_HEADER:
                return _NOBODY
            roles = [r.strip() for r in _text(roles_value).split(",") if r.strip()]
        certain = bool(_SIMPLE_NAME.fullmatch(value)) and (
            roles_value is None or bool(_SIMPLE_ROLES.fullmatch(roles_value))
        )
        return Prediction(name, _convert(roles, {}), certain)
    if index == 1:
        text = _text(value).strip()
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            return _NOBODY
        if not isinstance(document, dict):
            return _NOBODY
        return _from_claims(document, _plain_json(document, text))
    token = _bearer(value)
    claims = _jws_claims(token)
    if claims is not None and index == 4:
        claims = _verified_claims(token)
    if claims is None or (index >= 3 and not _claims_valid(claims, now)):
        return _NOBODY
    return _from_claims(claims, token == _GOOD and value in (_GOOD, "Bearer " + _GOOD))


def check_identity(
    index: int,
    environ: dict[str, Any],
    value: str,
    outcome: Outcome,
    now: tuple[float, float] | None = None,
) -> None:
    """The identity oracle: ``AssertionError`` when ``outcome`` is not what :func:`predict`
    allows (an acceptance the model does not predict, another name, a role from nowhere, the
    upstream ``REMOTE_USER``) or not what it makes certain."""
    expected = predict(index, environ, value, now or (time.time(), time.time()))
    user, principal = outcome.user, outcome.principal
    where = f"config {index}, value {value[:80]!r}, peer {environ.get('REMOTE_ADDR')!r}"
    if outcome.app_called and (user is not None or principal is not None):
        assert user != "mallory" or expected.name == "mallory", f"upstream REMOTE_USER: {where}"
        assert expected.name is not None, f"accepted {user!r}, the model predicts nobody: {where}"
        assert user == expected.name, (
            f"accepted {user!r}, the model says {expected.name!r}: {where}"
        )
        name, roles = getattr(principal, "name", None), getattr(principal, "roles", None)
        assert name == expected.name, f"principal {name!r}, model {expected.name!r}: {where}"
        assert isinstance(roles, tuple), f"principal roles {roles!r}: {where}"
        extra = set(roles) - set(expected.roles)
        assert not extra, f"roles {sorted(extra)} from nowhere (model {expected.roles}): {where}"
    if expected.certain:
        assert outcome.status == 200 and outcome.app_called, (
            f"status {outcome.status}, the model says {expected.name or 'anonymous'}: {where}"
        )
        assert user == expected.name, f"app saw {user!r}, model {expected.name!r}: {where}"
        if expected.name is None:
            assert principal is None, f"anonymous request with a principal: {where}"
        else:
            roles = getattr(principal, "roles", None)
            assert roles == expected.roles, f"roles {roles!r}, model {expected.roles}: {where}"


# ---------------------------------------------------------------------------- the target
def request(index: int, extras: int, value: str) -> dict[str, Any]:
    """The environ for one input: the peer and extra keys from ``extras``."""
    header = _CONFIGS[index]["user_name_header"]
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "REMOTE_ADDR": _PEERS[extras % len(_PEERS)],
        "HTTP_" + header.upper().replace("-", "_"): value,
    }
    if extras & 0x08:
        environ["REMOTE_USER"] = "mallory"
    if extras & 0x10:
        environ["HTTP_X_ROLES"] = value[:64]
    if extras & 0x20 and header != "Authorization":
        environ["HTTP_AUTHORIZATION"] = "Bearer " + _GOOD
    if extras & 0x40:
        environ[header] = value  # the server-set spelling too, as mod_wsgi passes it
    return environ


def run_one(data: bytes, middlewares: Sequence[Callable[..., Any]]) -> None:
    """One request through ``middlewares[config]`` (each wrapping ``_APP``); raises
    ``AssertionError`` on a broken invariant."""
    if len(data) < 3:
        return
    index = data[0] % len(middlewares)
    extras, mode, rest = data[1], data[2] % 3, data[3:]
    value = _value(mode, rest)
    environ = request(index, extras, value)
    sent = dict(environ)  # the middleware edits environ in place
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    _APP.called, _APP.user, _APP.principal = False, None, None
    _LOG.records.clear()
    before = time.time()
    body = b"".join(middlewares[index](environ, start_response))
    after = time.time()
    status = int(seen["status"].split()[0])
    assert status in (200, 401, 503), (status, body)
    assert _APP.called == (status == 200), (status, _APP.called)
    if status != 200:
        error = json.loads(body)["error"]
        assert error["code"] in ("INVALID_TOKEN", "UNAUTHENTICATED", "IDP_UNAVAILABLE"), error
    messages = [record.getMessage() for record in _LOG.records]
    assert not [r for r in _LOG.records if r.levelno >= logging.ERROR], messages
    text = body.decode("latin-1") + "\n".join(messages)
    for part in _secrets_in(value):
        assert part not in text, "a token segment was echoed or logged"
    outcome = Outcome(status, _APP.called, _APP.user, _APP.principal)
    check_identity(index, sent, value, outcome, (before, after))


def test_one_input(data: bytes) -> None:
    """One request through one of the five middlewares; ``AssertionError`` is a finding."""
    run_one(data, _MIDDLEWARES)


def main() -> None:
    import atheris  # only for long runs: pip install atheris

    atheris.instrument_all()  # coverage feedback from every module loaded, jwt_headers included
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
