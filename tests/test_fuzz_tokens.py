"""Structured token fuzzing (R11-R14, R33-R37): real tokens, taken apart and put back wrong.

``test_fuzz.py`` throws arbitrary text at the three formats without checking signatures. This
module starts from what an attacker actually holds, valid tokens of the identity provider
(RS256, ES256 and EdDSA, minted by ``idp``), and feeds a validating middleware (signature via
the JWKS of a real fake IdP on 127.0.0.1, issuer and audience checked) what can be made of them:
segments recombined across tokens, characters flipped, inserted and deleted, headers re-encoded
with hostile ``alg``/``kid``/``crit``/``b64``/``cty``/``jku`` values, payloads from a JSON
strategy (duplicate members, huge numbers, deep nesting, non-string claims), and white space,
padding and ``Bearer`` variants around them.

The oracle is exact: a request is answered 200 if and only if the token it presents (the value
with its ``Bearer`` scheme and surrounding white space taken off) is byte-identical to a token
the IdP minted, and then the app sees that token's own user. Anything else is 401 (or 503)
with the contract's body, never another status, never an exception, never the catch-all
``internal_error`` log record, never a token segment in a log line or body, and never an
outbound request but to the configured ``jwks_uri``. One more test signs fuzzed headers and
claims with the IdP's real keys, where 200 must imply that every rule of R6-R14 holds.

One middleware serves a whole module run, as in production: its caches see every example, so
a mutation of a token cached a moment before must not ride on that entry (R23). The clock is
frozen, so the verdicts do not depend on how fast the machine is.

Budgets are fixed (``derandomize=True``): the module runs in well under a minute in CI.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import re
import string
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import idp
import jwt
import pytest
from conftest import FrozenClock
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from idp import AUDIENCE, ISSUER, TestKey, b64url, make_key

from jwt_headers import JwtHeadersMiddleware

LEEWAY = 30
STRANGER = "203.0.113.9"  # a robot's peer: only the signature can make its token count
BAIT_PATH = "/attacker-keys"  # jku/x5u point here: any hit on it is an R33 violation
MIN_LEAK = 16  # a token segment this long in a log line or a body is a leak (R35)


def budget(examples: int) -> settings:
    """Fixed, reproducible budgets; the shared module fixture is meant to outlive examples."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


# --------------------------------------------------------------------------- the world


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@dataclass
class LastCall:
    """The wrapped app: remembers the environ of the last call only."""

    environ: dict[str, Any] | None = None

    def __call__(self, environ, start_response):
        self.environ = dict(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


@dataclass(repr=False)
class World:
    """The fake IdP, its keys, the tokens it minted and the middleware under test."""

    server: idp.IdpServer
    keys: list[TestKey]
    middleware: JwtHeadersMiddleware
    app: LastCall
    logs: _Collect
    now: int
    #: token -> the user name in its payload, for every token the IdP minted
    minted: dict[str, str] = field(default_factory=dict)

    @property
    def tokens(self) -> list[str]:
        return list(self.minted)

    @property
    def kids(self) -> list[str]:
        return [key.kid for key in self.keys]

    def __repr__(self) -> str:  # hypothesis shows strategy arguments: keep it short
        return f"World({len(self.minted)} tokens)"


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    """One IdP and one validating middleware for the whole module (hypothesis examples share
    them, as the requests of a real deployment do).

    Not ``idp.idp_server``: that fixture is per test function, and hypothesis runs hundreds of
    examples inside one function call; a fresh key set per example would also hide exactly the
    cross-request cache effects this module wants to provoke.
    """
    now = int(time.time())
    keys = [make_key("RS256"), make_key("ES256"), make_key("EdDSA")]
    logger = logging.getLogger("jwt_headers")
    handler = _Collect()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    with idp.IdpServer(keys) as server:
        app = LastCall()
        middleware = JwtHeadersMiddleware(
            app,
            clock=FrozenClock(now),
            user_name_header="Authorization",
            user_name_format="jwt",
            user_name_json_path="preferred_username",
            validate_token=True,
            jwks_uri=server.jwks_uri,
            validate_issuer=True,
            issuer=ISSUER,
            validate_audience=True,
            audience=AUDIENCE,
            allow_anonymous=False,  # so 200 always means "authenticated"
            leeway=LEEWAY,
        )
        world = World(server, keys, middleware, app, handler, now)
        for key in keys:
            for n in range(3):
                name = f"user-{key.alg.lower()}-{n}@example.test"
                claims = {"preferred_username": name, "exp": now + 3600}
                world.minted[idp.mint(claims, key, now=now)] = name
        for token, name in world.minted.items():  # the oracle's premise: all of them pass
            outcome = judge(world, "Bearer " + token)
            assert outcome.status == 200 and outcome.user == name
        try:
            yield world
        finally:
            logger.removeHandler(handler)
            logger.setLevel(old_level)
    assert not server.errors, f"fake IdP errors: {server.errors!r}"


# --------------------------------------------------------------------------- the oracle
_BEARER = re.compile(r"bearer +(.*)", re.IGNORECASE | re.DOTALL)


def presented_token(value: str) -> str:
    """What the header value presents as a token per the contract: ``Bearer <token>`` (scheme
    case-insensitive, one or more spaces) or the bare token, white space around ignored."""
    value = value.strip()
    match = _BEARER.fullmatch(value)
    return match.group(1).strip() if match else value


@dataclass
class Outcome:
    status: int
    user: str | None
    body: bytes


def leak_pieces(value: str) -> set[str]:
    """Substrings of a header value that must never appear in a log line or body (R35)."""
    pieces = set()
    for word in value.split():
        pieces.update(part for part in word.split(".") if len(part) >= MIN_LEAK)
    return pieces


def judge(world: World, value: str) -> Outcome:
    """Send ``Authorization: <value>`` from an internet peer and assert every invariant that
    holds whatever the value (R33-R37); the status and user are returned for the oracle."""
    return judge_from(world, value, STRANGER)


def judge_from(world: World, value: str, peer: str) -> Outcome:
    """:func:`judge` from the given ``REMOTE_ADDR``."""
    world.app.environ = None
    world.logs.records.clear()
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "REMOTE_ADDR": peer,
        "HTTP_AUTHORIZATION": value,
    }
    seen: dict[str, Any] = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    body = b"".join(world.middleware(environ, start_response))  # an exception fails the test
    status = int(seen["status"].split()[0])
    headers = seen["headers"]
    messages = [record.getMessage() for record in world.logs.records]

    assert status in (200, 401, 503), (status, body)
    assert not any("internal_error" in message for message in messages), messages
    assert not any(record.levelno >= logging.ERROR for record in world.logs.records), messages
    assert not any("\n" in message or "\r" in message for message in messages), messages  # R36
    for piece in leak_pieces(value):
        assert not any(piece in message for message in messages), "token data logged (R35)"
        assert piece.encode("utf-8", "surrogatepass") not in body, "token data in the body (R35)"
    assert world.server.hits(BAIT_PATH) == 0, "a request was made to a URL from a token (R33)"
    assert world.server.total_requests == world.server.jwks_requests, "outbound beyond jwks_uri"

    if status == 200:
        environ_seen = world.app.environ
        assert environ_seen is not None, "200 without the app"
        principal = environ_seen.get("jwt_headers.principal")
        assert principal is not None, "200 without a principal despite allow_anonymous=False"
        assert environ_seen["REMOTE_USER"] == principal.name
        return Outcome(status, principal.name, body)

    assert world.app.environ is None, "the app ran for a refused request"
    assert "Set-Cookie" not in headers
    assert headers["Content-Type"] == "application/json"
    error = json.loads(body)["error"]
    assert set(error) == {"code", "message"} and isinstance(error["message"], str)
    if status == 401:
        if error["code"] == "INVALID_TOKEN":
            assert headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
        else:  # not a credential of ours at all (another scheme, blank): no error attribute
            assert error["code"] == "UNAUTHENTICATED"
            assert headers["WWW-Authenticate"] == "Bearer"
    else:
        assert error["code"] == "IDP_UNAVAILABLE"
        assert headers["Retry-After"].isdigit() and int(headers["Retry-After"]) >= 1
    return Outcome(status, None, body)


def check_exact(world: World, value: str) -> Outcome:
    """The oracle for unsigned changes: 200 exactly when the presented token is one the IdP
    minted, unmodified, and then with that token's own user."""
    outcome = judge(world, value)
    token = presented_token(value)
    event(f"status {outcome.status}")  # --hypothesis-show-statistics: how often each verdict
    if token in world.minted:
        assert outcome.status == 200, (outcome.status, outcome.body)
        assert outcome.user == world.minted[token]
    else:
        assert outcome.status != 200, f"accepted a token the IdP never minted: {value!r}"
    return outcome


# --------------------------------------------------------------------------- strategies
def b64decode(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


class Raw:
    """A JSON value written verbatim: literals ``json.dumps`` will not make (``1e400``, a
    5000-digit number, ``NaN``, ``-0``...)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return f"Raw({self.text[:40]!r})"


def encode(value: Any) -> str:
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(encode(v) for v in value) + "]"
    return json.dumps(value, allow_nan=True)


def encode_members(members: list[tuple[str, Any]]) -> str:
    """A JSON object member by member: names may repeat (R12's duplicate members)."""
    return "{" + ",".join(f"{json.dumps(k)}:{encode(v)}" for k, v in members) + "}"


raw_literals = st.sampled_from(
    [
        "1e400",
        "-1e400",
        "1" + "0" * 400,
        "9" * 5000,  # over CPython's int-from-text digit limit
        "NaN",
        "Infinity",
        "-Infinity",
        "-0",
        "1.0e+10",
        "0.0000001e20",
        "01",
        "0x10",
        "true",
        "null",
        '"2000000000"',
        '"\\ud800"',  # a lone surrogate escape
        '"\\u0000"',
        "[]",
        "{}",
    ]
).map(Raw)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
    | raw_literals
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
claim_names = st.sampled_from(
    ["exp", "nbf", "iat", "iss", "aud", "sub", "preferred_username", "azp", "typ", "jti"]
) | st.text(max_size=8)


@st.composite
def nested(draw) -> Raw:
    """A value nested up to twice the decoder's depth cap (R13)."""
    depth = draw(st.integers(1, 70))
    opener = draw(st.sampled_from(["[", '{"a":']))
    closer = "]" if opener == "[" else "}"
    inner = draw(st.sampled_from(["1", '"x"', "[]", "{}"]))
    return Raw(opener * depth + inner + closer * depth)


@st.composite
def payload_texts(draw, base: dict[str, Any]) -> bytes:
    """Payload bytes: the minted claims with members replaced, repeated, added or removed, or
    something that is not a claims object at all."""
    shape = draw(st.integers(0, 9))
    if shape == 0:  # not a JSON object, or not UTF-8, or not JSON
        return draw(
            st.sampled_from(
                [b"[]", b"null", b'"claims"', b"1", b"", b"\xff\xfe{}", b"{", b"\xef\xbb\xbf{}"]
            )
            | st.binary(max_size=64)
        )
    members = list(base.items())
    for _ in range(draw(st.integers(1, 4))):
        name = draw(claim_names)
        value = draw(json_values | nested() | raw_literals)
        how = draw(st.sampled_from(["replace", "repeat", "add", "remove"]))
        if how == "replace":
            members = [(k, value if k == name else v) for k, v in members]
        elif how == "repeat" or how == "add":  # "repeat": a second member of the same name
            members.insert(draw(st.integers(0, len(members))), (name, value))
        else:
            members = [(k, v) for k, v in members if k != name]
    text = encode_members(members)
    if draw(st.booleans()):
        text = draw(st.sampled_from(["", " ", "\n", "\ufeff"])) + text
        text += draw(st.sampled_from(["", " ", "\t", " x", ",", "}"]))
    return text.encode("utf-8", "surrogatepass")


@st.composite
def header_values(draw, base: dict[str, Any], kids: list[str], bait: str) -> bytes:
    """A re-encoded JOSE header: the minted one with hostile members (``kids``: the IdP's
    real key ids; ``bait``: a URL no request may go to), or repeated names."""
    members = list(base.items())
    hostile = {
        "alg": st.sampled_from(
            [
                *("none", "None", "nOnE", "HS256", "HS512", "RS256", "RS512", "PS256"),
                *("ES256", "ES512", "ES256K", "EdDSA", "Ed25519", "rs256", "", " RS256"),
                "RS256\x00",
            ]
        )
        | json_values,
        "kid": st.sampled_from([*kids, "", "x" * 256, "x" * 257, "../../etc/passwd"]) | json_values,
        "crit": st.sampled_from([[], ["exp"], ["b64"], "b64", None, [1], ["kid"]]),
        "b64": st.sampled_from([False, True, "false", 0, None]),
        "cty": st.sampled_from(["JWT", "jwt", "Jwt", "JOSE", "application/jwt", 1, None]),
        "jku": st.just(bait),
        "x5u": st.just(bait),
        "jwk": st.just({"kty": "oct", "k": b64url(b"secret")}),
        "x5c": st.just(["MIIBfake"]),
        "typ": st.sampled_from(["JWT", "at+jwt", "JWE", 1, None]),
        "zip": st.just("DEF"),
        "enc": st.just("A256GCM"),
    }
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(sorted(hostile)))
        value = draw(hostile[name])
        how = draw(st.sampled_from(["set", "repeat", "remove"]))
        if how == "set":
            members = [(k, v) for k, v in members if k != name] + [(name, value)]
        elif how == "repeat":
            members.insert(draw(st.integers(0, len(members))), (name, value))
        else:
            members = [(k, v) for k, v in members if k != name]
    text = encode_members(members)
    if draw(st.booleans()):  # the same JSON, spaced another way (as some IdPs write it)
        text = text.replace('":', '" : ').replace(",", ", ")
    return text.encode("utf-8", "surrogatepass")


mutation_chars = (
    st.sampled_from(string.ascii_letters + string.digits + "-_")
    | st.sampled_from(list('.=+/ \t,;:"\\\x00\x7f\x85\xa0\xe9'))
    | st.characters()
)


@st.composite
def char_mutated(draw, token: str) -> str:
    """1-4 edits: replace, insert, delete, swap neighbours, truncate, duplicate a slice."""
    for _ in range(draw(st.integers(1, 4))):
        size = len(token)
        at = draw(st.integers(0, max(0, size - 1)))
        how = draw(st.sampled_from(["replace", "insert", "delete", "swap", "truncate", "dup"]))
        if how == "replace" and size:
            token = token[:at] + draw(mutation_chars) + token[at + 1 :]
        elif how == "insert":
            token = token[:at] + draw(mutation_chars) + token[at:]
        elif how == "delete" and size:
            token = token[:at] + token[at + 1 :]
        elif how == "swap" and size > at + 1:
            token = token[:at] + token[at + 1] + token[at] + token[at + 2 :]
        elif how == "truncate":
            token = token[:at]
        elif how == "dup":
            end = draw(st.integers(at, min(size, at + 64)))
            token = token[:end] + token[at:end] + token[end:]
    return token


def wrappers(base: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """A token in the header value as clients and proxies send it, right and wrong."""
    schemes = st.sampled_from(
        [
            *("", "Bearer ", "bearer ", "BEARER ", "bEaReR   ", "Bearer\t", "Bearer"),
            *("Bearer:", "Bearer: ", "Bearer ,", "Basic ", "Token ", "Bearer Bearer "),
            *("Bearer =", "JWT "),
        ]
    )
    around = st.sampled_from(["", " ", "  ", "\t", "\r\n", "\x85", "\xa0", ",", ";", '"'])
    padding = st.sampled_from(["", "=", "==", "===", ".", "..", ", Bearer x.y.z"])
    return st.builds(
        lambda lead, scheme, token, pad, trail: lead + scheme + token + pad + trail,
        around,
        schemes,
        base,
        padding,
        around,
    )


# --------------------------------------------------------------------------- the tests
@budget(800)
@given(data=st.data())
def test_segments_recombined_across_tokens(world, data):
    """Header, payload and signature of different minted tokens (other keys, algorithms,
    users), segments dropped, repeated or added: accepted only when the result is one of the
    minted tokens byte for byte (R11, R12)."""
    tokens = [token.split(".") for token in world.tokens]
    pick = st.sampled_from(range(len(tokens)))
    header, payload, signature = data.draw(pick), data.draw(pick), data.draw(pick)
    segments = [tokens[header][0], tokens[payload][1], tokens[signature][2]]
    layout = data.draw(st.sampled_from(["hps", "hp", "hpsh", "hpsps", "hhs", "pps", "hps."]))
    pieces = {"h": segments[0], "p": segments[1], "s": segments[2], ".": ""}
    token = ".".join(pieces[c] for c in layout)
    check_exact(world, data.draw(st.sampled_from(["", "Bearer "])) + token)


@budget(1500)
@given(data=st.data())
def test_character_mutations_of_minted_tokens(world, data):
    """Flipped, inserted, deleted, swapped, truncated and duplicated characters, any Unicode
    among them (a WSGI server gives latin-1 text, a plain environ key anything): refused
    unless the edits cancel out to a minted token (R5, R12, R37)."""
    token = data.draw(st.sampled_from(world.tokens))
    mutated = data.draw(char_mutated(token))
    check_exact(world, data.draw(st.sampled_from(["", "Bearer "])) + mutated)


@budget(1000)
@given(data=st.data())
def test_reencoded_headers_keep_the_original_signature(world, data):
    """The header of a minted token re-encoded with hostile alg/kid/crit/b64/cty/jku/jwk
    members or repeated names, payload and signature kept: the signature covers the header
    bytes, so only a byte-identical header may pass; no hostile member may cause a fetch
    (R1-R4, R12, R33)."""
    token = data.draw(st.sampled_from(world.tokens))
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(b64decode(header_b64))
    new_header = data.draw(header_values(header, world.kids, world.server.url(BAIT_PATH)))
    check_exact(world, f"{b64url(new_header)}.{payload_b64}.{signature_b64}")


@budget(1000)
@given(data=st.data())
def test_foreign_payloads_under_a_minted_signature(world, data):
    """The claims of a minted token replaced by fuzzed JSON (repeated members, huge and
    non-finite numbers, deep nesting, non-string claims, non-objects, bad UTF-8) under the
    original header and signature: never accepted, never a crash (R5, R11-R13, R37)."""
    token = data.draw(st.sampled_from(world.tokens))
    header_b64, payload_b64, signature_b64 = token.split(".")
    payload = data.draw(payload_texts(json.loads(b64decode(payload_b64))))
    check_exact(world, f"{header_b64}.{b64url(payload)}.{signature_b64}")


@budget(800)
@given(data=st.data())
def test_bearer_whitespace_and_padding_variants(world, data):
    """Scheme spellings, white space, quotes, base64 ``=`` padding, trailing dots and a second
    credential around minted tokens (intact or mutated): the contract's forms give the token,
    every other form is refused; nothing is read as "the first of several" (R12, R19)."""
    token = data.draw(st.sampled_from(world.tokens))
    if data.draw(st.booleans()):
        token = data.draw(char_mutated(token))
    check_exact(world, data.draw(wrappers(st.just(token))))


# --------------------------------------------------------------------------- signed fuzz
def _strict_object(text: bytes) -> dict[str, Any] | None:
    """The reference parse of R12: UTF-8, JSON, an object, no repeated names, no NaN."""

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        if len({k for k, _ in items}) != len(items):
            raise ValueError("duplicate")
        return dict(items)

    def constant(name: str) -> Any:
        raise ValueError(name)

    try:
        value = json.loads(text.decode("utf-8"), object_pairs_hook=pairs, parse_constant=constant)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _time_ok(claims: dict[str, Any], name: str, now: float, *, required: bool) -> bool:
    if name not in claims:
        return not required
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    if isinstance(value, float) and not math.isfinite(value):
        return False  # an int is always finite, however many digits it has
    return value > now - LEEWAY if name == "exp" else value <= now + LEEWAY


def rules_hold(world: World, key: TestKey, header: bytes, payload: bytes) -> str | None:
    """The user a correctly signed token with these header and payload bytes may be accepted
    as under R1-R14 and this module's config, or ``None`` when some rule refuses it."""
    head = _strict_object(header)
    claims = _strict_object(payload)
    if head is None or claims is None:
        return None
    if head.get("alg") != key.alg or head.get("kid", key.kid) != key.kid:
        return None
    if "crit" in head or "b64" in head:
        return None
    if isinstance(head.get("cty"), str) and head["cty"].upper() == "JWT":
        return None
    now = world.now
    if not (
        _time_ok(claims, "exp", now, required=True)
        and _time_ok(claims, "nbf", now, required=False)
        and _time_ok(claims, "iat", now, required=False)
    ):
        return None
    if claims.get("iss") != ISSUER:
        return None
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or not all(isinstance(a, str) for a in audiences):
        return None
    if AUDIENCE not in audiences:
        return None
    name = claims.get("preferred_username")
    if not isinstance(name, str) or not name or len(name) > 256 or name != name.strip():
        return None
    if re.search(r"[\x00-\x1f\x7f]", name):
        return None
    return name


def sign(key: TestKey, header: bytes, payload: bytes) -> str:
    """A real signature of ``key`` over exactly these header and payload bytes."""
    algorithm = jwt.get_algorithm_by_name(key.alg)
    signing_input = f"{b64url(header)}.{b64url(payload)}"
    signature = algorithm.sign(
        signing_input.encode("ascii"), algorithm.prepare_key(key.private_key)
    )
    return f"{signing_input}.{b64url(signature)}"


good_names = st.text(
    alphabet=string.ascii_letters + string.digits + "@._-", min_size=1, max_size=40
)


@budget(1000)
@given(data=st.data())
def test_correctly_signed_fuzz_is_accepted_only_when_every_rule_holds(world, data):
    """Headers and claims fuzzed as above but signed with the IdP's real key, so the signature
    is no longer what refuses them: 200 must mean every rule holds (the header's alg is the
    key's, no crit/b64/nested cty, no repeated names or NaN, exp a finite number in the future,
    nbf/iat not in the future, exact issuer and audience, a clean one-string user name) and the
    app sees exactly that name (R6-R9, R11-R14). A benign variant (the genuine header, a new
    user name and jti) must be accepted, or the oracle would be vacuous."""
    key = data.draw(st.sampled_from(world.keys))
    header = {"alg": key.alg, "typ": "JWT", "kid": key.kid}
    claims = idp.access_claims({"exp": world.now + 3600}, now=world.now)
    benign = data.draw(st.booleans())
    if benign:
        claims["preferred_username"] = data.draw(good_names)
        claims["jti"] = data.draw(st.uuids()).hex
        header_bytes = json.dumps(header).encode()
        payload_bytes = json.dumps(claims).encode()
    else:
        header_bytes = (
            data.draw(header_values(header, world.kids, world.server.url(BAIT_PATH)))
            if data.draw(st.booleans())
            else json.dumps(header).encode()
        )
        payload_bytes = data.draw(payload_texts(claims))
    token = sign(key, header_bytes, payload_bytes)
    outcome = judge(world, "Bearer " + token)
    expected = rules_hold(world, key, header_bytes, payload_bytes)
    event(f"status {outcome.status}, {'benign' if benign else 'fuzzed'}")
    if outcome.status == 200:
        assert expected is not None, f"accepted though a rule refuses it: {token!r}"
        assert outcome.user == expected
    if benign:
        assert expected is not None
        assert outcome.status == 200, outcome.body


# --------------------------------------------------------------------------- found by the above
HUGE = "1" + "0" * 400  # a JSON number: an int Python holds exactly, beyond any float


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("signed", [True, False], ids=["signed-by-idp", "expiry-only"])
def test_time_claim_beyond_float_range_gets_a_verdict_not_an_internal_error(world, claim, signed):
    """R6/R7/R37, found by the signed fuzz above: a time claim that is a JSON integer too
    large for a float (``"exp": 1000...0``, 401 digits) must get a deliberate verdict, never
    the catch-all ``internal_error`` (logged at ERROR: a request-driven way to flood the error
    log and page an operator). ``nbf``/``iat`` that far ahead are in the future: 401 (R7);
    such an ``exp`` is either accepted (a number in the future) or refused as not valid (R6),
    but answered on purpose.

    Reachable without any key: with expiry-only validation (``validate_signature=False``, a D1
    set-up) the token needs no signature at all; with signatures checked, a token from the IdP
    (or any IdP sharing the key set) carrying such a claim.
    """
    key = world.keys[2]  # EdDSA: fast
    claims = idp.access_claims({"exp": world.now + 3600}, now=world.now)
    claims[claim] = Raw(HUGE)
    payload = encode(claims).encode()
    header = json.dumps({"alg": key.alg, "typ": "JWT", "kid": key.kid}).encode()
    if signed:
        outcome = judge(world, "Bearer " + sign(key, header, payload))
    else:
        app = LastCall()
        middleware = JwtHeadersMiddleware(
            app,
            clock=FrozenClock(world.now),
            user_name_header="Authorization",
            user_name_format="jwt",
            user_name_json_path="preferred_username",
            validate_token=True,
            validate_signature=False,
        )
        local = World(world.server, world.keys, middleware, app, world.logs, world.now)
        token = f"{b64url(header)}.{b64url(payload)}.{b64url(b'no signature needed')}"
        environ_peer = "127.0.0.1"  # an unsigned token is believed from a trusted proxy only
        outcome = judge_from(local, "Bearer " + token, environ_peer)
    if claim != "exp":
        assert outcome.status == 401
