"""Property tests (R12-R14, R37) against an oracle.

Every answer is compared with :func:`expected`, a model of the contract written here from
contract.md and security.md (it imports nothing from jwt_headers): for one header value it
predicts "accepted as user NAME", "anonymous" (200, no user) or "refused" (401), and the
middleware must give exactly that, in both directions. A middleware that refuses everything,
lets through something extra or names another user fails (``test_the_oracle_has_teeth``).
Every answer must also keep the harness invariants of :func:`run` (200 or 401, never a crash).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import string
from collections.abc import Callable

import pytest
from conftest import LOOPBACK, RecordingApp
from hypothesis import HealthCheck, Phase, example, find, given, settings
from hypothesis import strategies as st

from jwt_headers import JwtHeadersMiddleware, Principal

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

STRING = {"user_name_header": "X-User"}
JSON = {
    "user_name_header": "X-Json",
    "user_name_format": "json",
    "user_name_json_path": "preferred_username",
}
JWT = {
    "user_name_header": "Authorization",
    "user_name_format": "jwt",
    "user_name_json_path": "preferred_username",
}
FORMATS = {"string": STRING, "json": JSON, "jwt": JWT}


# --------------------------------------------------------------------------- the oracle
# What the contract promises for one header value, per format, with validate_token=False (the
# configs above), denied_user_names=() and the peer trusted. Written from contract.md and
# security.md R12-R14; the comments name the rule each step implements.

Outcome = tuple  # ("user", name) | ANONYMOUS | REFUSED
ANONYMOUS: Outcome = ("anonymous",)  # 200, the app runs without REMOTE_USER
REFUSED: Outcome = ("refused",)  # 401 invalid_token, the app does not run


def user(name: str) -> Outcome:
    return ("user", name)


MAX_HEADER_BYTES = 16384  # contract: max_header_bytes default
MAX_NAME = 256  # R14
MAX_DEPTH = 32  # R13 says "bounded"; 32 is the bound the package documents (decode.py)
#: RFC 7230 tchar: what an auth-scheme is made of.
TCHAR = frozenset("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits)
BASE64URL = frozenset(string.ascii_letters + string.digits + "-_")


def header_text(raw: str) -> str:
    """R14: WSGI hands header bytes over as latin-1 text; read them as UTF-8 when they are
    UTF-8, else keep them as they came (a latin-1 sender; or, in a plain environ key, text that
    is not latin-1 at all)."""
    try:
        return raw.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return raw


def is_blank(text: str) -> bool:
    """Contract "Empty header": empty or only white space. White space is what ``str.strip``
    removes (it also trims every value); the contract does not define it more narrowly, and a
    value of, say, ``\\x85`` or ``\\x1f`` names nobody either way."""
    return not text.strip()


def name_outcome(name: object) -> Outcome:
    """R14: the user name is one non-empty string of at most 256 characters, without control
    characters (U+0000-U+001F, U+007F) or white space at either end."""
    if not isinstance(name, str) or not name or len(name) > MAX_NAME:
        return REFUSED
    if any(ord(char) < 0x20 or char == "\x7f" for char in name) or name != name.strip():
        return REFUSED
    return user(name)


class NotStrictJson(Exception):
    pass


def nesting_depth(value: object) -> int:
    """How many arrays/objects deep ``value`` is: ``1`` for ``{"a": 1}``, ``0`` for ``1``."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children = list(item.values())
        elif isinstance(item, list):
            children = item
        else:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children)
    return deepest


def strict_json_object(text: str) -> dict:
    """R12/R13: RFC 8259 JSON (Python's parser is that, less NaN/Infinity, refused here),
    no member name twice in any object (compared after unescaping, as RFC 8259 compares them),
    at most MAX_DEPTH levels, and an object at the top. Else :class:`NotStrictJson`.

    Ambiguous: an integer of more than 4300 digits is valid JSON that Python refuses to
    convert; refusing it is what the package does and R6/R13 allow (no strategy here makes one).
    """

    def members(pairs: list[tuple[str, object]]) -> dict:
        if len({name for name, _ in pairs}) != len(pairs):
            raise NotStrictJson("duplicate member name")
        return dict(pairs)

    def no_constant(literal: str) -> object:
        raise NotStrictJson(f"{literal} is not JSON")

    decoder = json.JSONDecoder(object_pairs_hook=members, parse_constant=no_constant)
    try:
        document = decoder.decode(text)
    except (ValueError, RecursionError):  # RecursionError: far deeper than MAX_DEPTH anyway
        raise NotStrictJson("not JSON") from None
    if not isinstance(document, dict) or nesting_depth(document) > MAX_DEPTH:
        raise NotStrictJson("not an object, or too deep")
    return document


def expect_string(raw: str, limit: int) -> Outcome:
    """``string`` format: the whole value, as text, trimmed, is the name."""
    if is_blank(raw):
        return ANONYMOUS
    if len(raw) > limit:  # R13: capped before anything else is done with it
        return REFUSED
    name = header_text(raw).strip()
    if not name:
        # e.g. b"\xc2\xa0" (a UTF-8 no-break space): blank once read as UTF-8, the same as absent.
        return ANONYMOUS
    return name_outcome(name)  # a repeated header ("a, b") is one name (contract)


def expect_json(raw: str, limit: int) -> Outcome:
    """``json`` format: a JSON object whose ``preferred_username`` is the name."""
    if is_blank(raw):
        return ANONYMOUS
    if len(raw) > limit:  # R13
        return REFUSED
    # Ambiguous: a value that is blank only once read as UTF-8 (b"\xc2\xa0") is refused here
    # (it is not a JSON object), while the string format passes it anonymously. The contract
    # does not say which white space makes a header "empty"; refusing fails closed, so the
    # model keeps the package's answer (reported, for a decision).
    try:  # RFC 8259 8.1: JSON exchanged between systems is UTF-8; other bytes are refused
        text = raw.encode("latin-1").decode("utf-8")
    except UnicodeEncodeError:
        text = raw  # a plain environ key holding text beyond latin-1: already text
    except UnicodeDecodeError:
        return REFUSED
    try:
        document = strict_json_object(text.strip())
    except NotStrictJson:
        return REFUSED
    return name_outcome(document.get("preferred_username"))  # R14: absent, null... refused


def names_another_bearer(credentials: str) -> bool:
    """Whether credentials of another scheme hide a second, joined ``Authorization`` value that
    is a Bearer one: a comma, optional white space, then the word ``bearer`` (any case)."""
    for comma, char in enumerate(credentials):
        if char != ",":
            continue
        rest = credentials[comma + 1 :].lstrip()
        after = rest[6:7]
        if rest[:6].lower() == "bearer" and not (after.isalnum() or after == "_"):
            return True
    return False


def base64url_segment(segment: str) -> bytes | None:
    """R12: canonical base64url without padding (re-encoding gives the same text), or None."""
    if not set(segment) <= BASE64URL:
        return None
    try:
        data = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        return None
    return data if b64url(data) == segment else None


def expect_token(token: str) -> Outcome:
    """R12: a compact JWS (unvalidated: the configs here set no validate_token), then R14."""
    segments = token.split(".")
    if len(segments) != 3 or not segments[2]:  # JWE (5), nested dots, no signature
        return REFUSED
    decoded = [base64url_segment(segment) for segment in segments]
    if None in decoded:  # also refuses anything not ASCII, white space, commas...
        return REFUSED
    try:
        header = strict_json_object(decoded[0].decode("utf-8"))
        claims = strict_json_object(decoded[1].decode("utf-8"))
    except (UnicodeDecodeError, NotStrictJson):
        return REFUSED
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg or alg.lower() == "none":  # R1, R12
        return REFUSED
    if "crit" in header or "b64" in header:  # R12: we implement no extension
        return REFUSED
    # R12 nested tokens. Ambiguous, as the package does: a non-string cty names no JWT and
    # passes; a cty with white space around ("JWT ") is still JWT.
    cty = header.get("cty")
    if isinstance(cty, str) and cty.strip().lower() in {"jwt", "application/jwt"}:
        return REFUSED
    return name_outcome(claims.get("preferred_username"))


def expect_jwt(raw: str, limit: int) -> Outcome:
    """``jwt`` format: the ``Authorization`` value (contract "Schemes", "Repeated values")."""
    if is_blank(raw):
        return ANONYMOUS
    if len(raw) > limit:  # R13
        return REFUSED
    value = raw.strip()
    scheme, space, credentials = value.partition(" ")
    if not space:
        return expect_token(value)  # no scheme: the value is the token ("Bearer" alone too)
    if not set(scheme) <= TCHAR:  # "Bearer: x", "a,b c": not a scheme, a token with a space
        return REFUSED
    if scheme.lower() == "bearer":
        # "Bearer", one or more spaces, the token. Ambiguous: other white space after the
        # spaces ("Bearer \tTOKEN") is trimmed like white space around the whole value; RFC 6750
        # allows spaces only (1*SP). The contract says "one or more spaces" and that white space
        # around a value is ignored; the model keeps the package's reading (reported).
        return expect_token(credentials.strip())
    if "." in scheme or scheme.startswith("eyJ"):
        return REFUSED  # a token followed by more text ("eyJ... x"), not another scheme
    if names_another_bearer(credentials):
        return REFUSED  # R19: "Basic x, Bearer y" is a repeated Authorization header
    # Another scheme ("Basic ...", "Negotiate ...", also "BearerX ..."): not ours, as if absent.
    # Ambiguous: two joined values of other schemes ("Basic a, Basic b") cannot be told from
    # one scheme's auth-params ("Digest a=1, b=2"); neither names a user of ours: anonymous.
    return ANONYMOUS


EXPECT = {"string": expect_string, "json": expect_json, "jwt": expect_jwt}


def expected(fmt: str, value: str, *, limit: int = MAX_HEADER_BYTES) -> Outcome:
    """The contract's answer to ``value`` in the user-name header of format ``fmt``."""
    return EXPECT[fmt](value, limit)


# --------------------------------------------------------------------------- harness
class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def captured_logs():
    logger = logging.getLogger("jwt_headers")
    handler = _Collect()
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


class Result:
    def __init__(self, status: int, headers: dict, body: bytes, app: RecordingApp) -> None:
        self.status, self.headers, self.body, self.app = status, headers, body, app

    @property
    def user(self):
        return self.app.environ.get("REMOTE_USER") if self.app.called else None

    @property
    def outcome(self) -> Outcome:
        if self.status == 401:
            return REFUSED
        return ANONYMOUS if self.user is None else user(self.user)


def run(
    options: dict,
    value: str,
    *,
    http: bool = True,
    middleware: type[JwtHeadersMiddleware] = JwtHeadersMiddleware,
) -> Result:
    """One request, the value as the HTTP_ key (or the plain key), from loopback.

    Also asserts the invariants every answer must satisfy (R34, R37)."""
    app = RecordingApp()
    wrapped = middleware(app, **options)
    name = options["user_name_header"]
    key = "HTTP_" + name.upper().replace("-", "_") if http else name
    environ = {"REQUEST_METHOD": "GET", "REMOTE_ADDR": LOOPBACK, key: value}
    seen: dict = {}

    def start_response(status, headers, exc_info=None):
        seen["status"], seen["headers"] = status, dict(headers)

    with captured_logs() as records:
        body = b"".join(wrapped(environ, start_response))
    status = int(seen["status"].split()[0])
    result = Result(status, seen["headers"], body, app)
    assert status in (200, 401), (status, body)
    # the catch-all "internal_error" refusal would hide a crash: it must never be needed
    assert not any("internal_error" in record.getMessage() for record in records)
    assert not any(record.levelno >= logging.ERROR for record in records)
    if status == 401:
        assert not app.called
        assert seen["headers"]["Content-Type"] == "application/json"
        assert seen["headers"]["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
        assert json.loads(body)["error"]["code"] == "INVALID_TOKEN"
    else:
        assert app.called
        if result.user is not None:
            assert app.environ["jwt_headers.principal"].name == result.user
    return result


def check(
    fmt: str,
    value: str,
    *,
    http: bool = True,
    options: dict | None = None,
    middleware: type[JwtHeadersMiddleware] = JwtHeadersMiddleware,
) -> Outcome:
    """:func:`run` ``value`` in format ``fmt`` and assert the answer is the oracle's."""
    options = {**FORMATS[fmt], **(options or {})}
    got = run(options, value, http=http, middleware=middleware).outcome
    want = expected(fmt, value, limit=options.get("max_header_bytes", MAX_HEADER_BYTES))
    assert got == want, f"{fmt} header {value!r}: the middleware says {got}, the contract {want}"
    return got


def wsgi_text(text: str) -> str:
    """What a WSGI server hands over for ``text`` sent as UTF-8 header bytes."""
    return text.encode("utf-8").decode("latin-1")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def utf8_or_latin1(value: str) -> str:
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


RS256_HEADER = b64url(b'{"alg":"RS256"}')


def make_jwt(payload: object = None, header: object = None, signature: str = "c2ln") -> str:
    """An unsigned-for-our-purposes compact JWS (nothing here checks signatures)."""
    header = {"alg": "RS256", "typ": "JWT"} if header is None else header
    payload = {"preferred_username": "alice"} if payload is None else payload
    parts = [h if isinstance(h, str) else json.dumps(h) for h in (header, payload)]
    return ".".join([b64url(parts[0].encode()), b64url(parts[1].encode()), signature])


# --------------------------------------------------------------------------- strategies
latin1_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=255), max_size=300)
any_text = st.text(max_size=300)
token_chars = st.text(alphabet=string.ascii_letters + string.digits + "-_.=+/ ,:\t", max_size=300)
schemes = st.sampled_from(["", "Bearer ", "bearer  ", "BEARER ", "Basic ", "Bearer", "Bearer:"])

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=40)
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=10), children, max_size=5)
    ),
    max_leaves=30,
)
names = st.one_of(
    st.text(max_size=40),
    st.text(alphabet=string.ascii_letters + string.digits + "@.-_", min_size=1, max_size=40),
    json_values,
)
keys = st.sampled_from(["preferred_username", "sub", "roles", "x"]) | st.text(max_size=10)
good_names = st.text(
    alphabet=string.ascii_letters + string.digits + "@.-_ éß", min_size=1, max_size=40
)
named_documents = st.builds(
    lambda name, rest: {**rest, "preferred_username": name},
    good_names | names,
    st.dictionaries(keys, json_values, max_size=4),
)
documents = st.one_of(
    named_documents,
    st.dictionaries(keys, json_values, max_size=6),
    st.builds(
        lambda name, rest: {**rest, "preferred_username": name},
        names,
        st.dictionaries(keys, json_values, max_size=4),
    ),
    json_values,
)


@st.composite
def json_texts(draw) -> str:
    """A JSON document as text, the way a proxy might format it."""
    document = draw(documents)
    return json.dumps(
        document,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.sampled_from([None, 0, 2])),
        allow_nan=True,
    )


@st.composite
def pair_objects(draw) -> tuple[str, list[tuple[str, object]]]:
    """An object written member by member: names may repeat."""
    pairs = draw(
        st.lists(
            st.tuples(st.sampled_from(["preferred_username", "sub", "a"]), names),
            min_size=1,
            max_size=5,
        )
    )
    text = (
        "{" + ",".join(f"{json.dumps(k)}:{json.dumps(v, allow_nan=True)}" for k, v in pairs) + "}"
    )
    return text, pairs


@st.composite
def jwts(draw) -> tuple[str, str]:
    """(header value, payload JSON text) for a mostly well-formed, unchecked JWT."""
    if draw(st.booleans()):
        payload = json.dumps(draw(named_documents), ensure_ascii=draw(st.booleans()))
    else:
        payload = draw(json_texts())
    header = draw(
        st.one_of(
            st.just({"alg": "RS256", "typ": "JWT"}),
            st.just({"alg": "ES256", "kid": "k1"}),
            st.dictionaries(
                st.sampled_from(["alg", "typ", "kid", "crit", "b64", "cty"]), json_values
            ),
        )
    )
    segments = [
        b64url(json.dumps(header, allow_nan=True).encode()),
        b64url(payload.encode("utf-8")),
        draw(st.sampled_from([b64url(b"s" * 32), "", "AAAA", "sig"])),
    ]
    if draw(st.integers(0, 3)) == 0:  # perturb one segment
        index = draw(st.integers(0, 2))
        segments[index] = draw(token_chars) if draw(st.booleans()) else segments[index] + "A"
    token = ".".join(segments)
    return draw(schemes) + token, payload


#: White space of every kind Python trims: at the ends of a name or around a credential.
white_space = st.sampled_from(
    ["", " ", "\t", "\n", "\x0b", "\x1f", "\x85", "\xa0", "\u2028", "\u3000"]
)
edged_names = st.builds(lambda a, name, b: a + name + b, white_space, good_names, white_space)
#: Header members and values that the JWS rules (R1, R12) single out.
jws_headers = st.builds(
    lambda alg, members: {**alg, **members},
    st.sampled_from([{}, {"alg": "RS256"}, {"alg": "ES256"}, {"alg": "HS256"}]),
    st.dictionaries(
        st.sampled_from(["alg", "typ", "kid", "crit", "b64", "cty", "jku"]),
        st.sampled_from(
            [
                *("RS256", "HS256", "none", "NONE", "nOnE", "", "JWT", "jwt", " JWT"),
                *("application/jwt", "Application/JWT", "at+jwt", "JWT; x=1"),
                *(True, False, None, 0, [], ["b64"]),
            ]
        )
        | json_values,
        max_size=3,
    ),
)


@st.composite
def framed_tokens(draw) -> str:
    """An ``Authorization`` value built the ways clients, proxies and attackers frame one:
    schemes right and wrong, white space, a second credential joined by a repeated header."""
    token = draw(
        st.sampled_from([make_jwt(), make_jwt(payload={"preferred_username": "bob"}), "x.y.z"])
        | jwts().map(lambda case: case[0].rpartition(" ")[2])
    )
    scheme = draw(
        st.sampled_from(
            [
                *("", "Bearer ", "bearer   ", "BEARER ", "Bearer \t", "Bearer \x85", "Bearer\t"),
                *("Bearer", "Bearer:", "Bearer: ", "BearerX ", "Basic ", "Token ", "Basic a, "),
                *(
                    "Basic a,bearer ",
                    "Basic a, Bearerx ",
                    "eyJ ",
                    "a.b ",
                    "B@sic ",
                    "Bearer Bearer ",
                ),
            ]
        )
    )
    tail = draw(
        st.sampled_from(["", " ", " x", ",", ", ", ", Bearer x.y.z", ", Basic a", "=", ".", "\t"])
    )
    return draw(white_space) + scheme + token + tail + draw(white_space)


@st.composite
def respelled_tokens(draw) -> str:
    """A well-formed token with one segment re-spelled: its last character changed (canonical
    base64url or not), padding or other characters appended, or the segment emptied."""
    segments = make_jwt(
        payload={"preferred_username": draw(good_names)},
        signature=draw(st.sampled_from(["c2ln", "c2k", "AA", b64url(b"s" * 32)])),
    ).split(".")
    index = draw(st.integers(0, 2))
    segment = segments[index]
    edit = draw(st.sampled_from(["last", "append", "empty"]))
    if edit == "last":
        segment = segment[:-1] + draw(st.sampled_from([*sorted(BASE64URL), "=", "+", "/"]))
    elif edit == "append":
        segment += draw(st.text(alphabet=[*sorted(BASE64URL), "=", "+", "/", "."], max_size=4))
    else:
        segment = ""
    segments[index] = segment
    return ".".join(segments)


# --------------------------------------------------------------------------- the oracle, by hand
GOOD = make_jwt()

#: (format, header value, the contract's answer), each worked out by hand from contract.md and
#: security.md: the oracle must agree with them before it judges the middleware.
CONTRACT_CASES = [
    # string (contract "What the app receives", R14)
    ("string", "alice", user("alice")),
    ("string", " \talice  ", user("alice")),
    ("string", "", ANONYMOUS),
    ("string", " \t ", ANONYMOUS),
    ("string", "\x85", ANONYMOUS),
    ("string", wsgi_text("josé"), user("josé")),
    ("string", wsgi_text("\xa0"), ANONYMOUS),
    ("string", "jos\xe9", user("josé")),  # latin-1 bytes, not UTF-8: kept as they came
    ("json", '{"preferred_username":"\xff"}', REFUSED),  # not UTF-8: refused (RFC 8259 8.1)
    ("json", wsgi_text('{"preferred_username":"\xff"}'), user("\xff")),  # the same as UTF-8
    ("string", "alice, bob", user("alice, bob")),  # a repeated header is one name
    ("string", "a\x00b", REFUSED),
    ("string", "a\tb", REFUSED),
    ("string", "a\x7fb", REFUSED),
    ("string", "x" * 256, user("x" * 256)),
    ("string", "x" * 257, REFUSED),
    ("string", "x" * 16385, REFUSED),
    ("string", " " * 16385, ANONYMOUS),
    # json (R12-R14)
    ("json", '{"preferred_username": "alice"}', user("alice")),
    ("json", ' {"preferred_username":"alice","sub":"1"}\n', user("alice")),
    ("json", wsgi_text('{"preferred_username": "josé"}'), user("josé")),
    ("json", '{"preferred_username": "jos\\u00e9"}', user("josé")),
    ("json", "   ", ANONYMOUS),
    ("json", '{"preferred_username": "alice", "preferred_username": "bob"}', REFUSED),
    ("json", '{"preferred_username": "alice", "p\\u0072eferred_username": "b"}', REFUSED),
    ("json", '{"preferred_username": "alice", "a": {"b": 1, "b": 2}}', REFUSED),
    ("json", '{"preferred_username": "alice", "a": [{"b": 1, "b": 1}]}', REFUSED),
    ("json", '{"preferred_username": "alice", "n": NaN}', REFUSED),
    ("json", '{"preferred_username": "alice", "n": -Infinity}', REFUSED),
    ("json", '{"preferred_username": "alice", "n": 1e400}', user("alice")),  # a number
    ("json", '{"preferred_username": "alice"} {}', REFUSED),
    ("json", "{'preferred_username': 'alice'}", REFUSED),
    ("json", '["alice"]', REFUSED),
    ("json", '"alice"', REFUSED),
    ("json", "{}", REFUSED),
    ("json", '{"preferred_username": ""}', REFUSED),
    ("json", '{"preferred_username": null}', REFUSED),
    ("json", '{"preferred_username": 7}', REFUSED),
    ("json", '{"preferred_username": ["alice"]}', REFUSED),
    ("json", '{"preferred_username": " alice"}', REFUSED),
    ("json", '{"preferred_username": "al\\u0000ice"}', REFUSED),
    ("json", '{"preferred_username": "al\\u007fice"}', REFUSED),
    ("json", '{"preferred_username": "%s"}' % ("x" * 257), REFUSED),
    ("json", '{"preferred_username": "alice", "d": %s}' % ("[" * 31 + "]" * 31), user("alice")),
    ("json", '{"preferred_username": "alice", "d": %s}' % ("[" * 32 + "]" * 32), REFUSED),
    ("json", '{"preferred_username": "alice", "d": "%s"}' % ("[" * 40), user("alice")),
    # jwt: schemes (contract "Schemes", "Repeated values")
    ("jwt", f"Bearer {GOOD}", user("alice")),
    ("jwt", f"bearer   {GOOD}", user("alice")),
    ("jwt", f"BeArEr {GOOD}", user("alice")),
    ("jwt", GOOD, user("alice")),
    ("jwt", f" \t{GOOD} ", user("alice")),
    ("jwt", "", ANONYMOUS),
    ("jwt", "  ", ANONYMOUS),
    ("jwt", "Basic dXNlcjpwdw==", ANONYMOUS),
    ("jwt", 'Digest username="a", realm="b"', ANONYMOUS),
    ("jwt", f"BearerX {GOOD}", ANONYMOUS),  # another RFC 7230 scheme
    ("jwt", f"Basic dXNlcjpwdw==, Bearer {GOOD}", REFUSED),
    ("jwt", f"Basic dXNlcjpwdw==,bearer {GOOD}", REFUSED),
    ("jwt", "Basic dXNlcjpwdw==, Bearerish x", ANONYMOUS),
    ("jwt", f"Bearer {GOOD}, Bearer {GOOD}", REFUSED),
    ("jwt", f"{GOOD},{GOOD}", REFUSED),
    ("jwt", f"Bearer {GOOD},", REFUSED),
    ("jwt", f"Bearer:{GOOD}", REFUSED),
    ("jwt", f"Bearer: {GOOD}", REFUSED),
    ("jwt", f"Bearer{GOOD}", REFUSED),
    ("jwt", f"BearerX{GOOD}", REFUSED),
    ("jwt", f"Bearer\t{GOOD}", REFUSED),
    ("jwt", "Bearer", REFUSED),
    ("jwt", "Bearer   ", REFUSED),
    ("jwt", f"Bearer {GOOD} x", REFUSED),
    ("jwt", f"{GOOD} x", REFUSED),
    ("jwt", "eyJhbGciOiJSUzI1NiJ9 x", REFUSED),
    ("jwt", f"Bearer {GOOD[:20]} {GOOD[20:]}", REFUSED),
    ("jwt", f"Bearer {'A' * 16384}", REFUSED),
    ("jwt", f"Bearer {GOOD}" + " " * 16384, REFUSED),  # the raw value is capped, not the token
    # jwt: the compact JWS (R12)
    ("jwt", GOOD + ".e30.e30", REFUSED),  # JWE-like: five segments
    ("jwt", GOOD.rsplit(".", 1)[0], REFUSED),  # two segments
    ("jwt", make_jwt(signature=""), REFUSED),
    ("jwt", make_jwt(signature="c2ln="), REFUSED),  # padding
    ("jwt", make_jwt(signature="c2k"), user("alice")),
    ("jwt", make_jwt(signature="c2l"), REFUSED),  # not canonical: unused bits set
    ("jwt", make_jwt(signature="AA"), user("alice")),
    ("jwt", make_jwt(signature="AB"), REFUSED),
    ("jwt", make_jwt(signature="A"), REFUSED),
    ("jwt", make_jwt(signature="c2l+"), REFUSED),  # base64, not base64url
    ("jwt", GOOD.replace(".", "=.", 1), REFUSED),
    ("jwt", make_jwt(header={"alg": "none"}), REFUSED),
    ("jwt", make_jwt(header={"alg": "nOnE"}), REFUSED),
    ("jwt", make_jwt(header={"typ": "JWT"}), REFUSED),
    ("jwt", make_jwt(header={"alg": ""}), REFUSED),
    ("jwt", make_jwt(header={"alg": ["RS256"]}), REFUSED),
    ("jwt", make_jwt(header={"alg": "HS256"}), user("alice")),  # nothing is validated here
    ("jwt", make_jwt(header={"alg": "RS256", "crit": []}), REFUSED),
    ("jwt", make_jwt(header={"alg": "RS256", "b64": False}), REFUSED),
    # Ambiguous: R12 names b64:false; b64:true is the default, meaningful only listed in crit
    # (RFC 7797), which is refused anyway: refusing any b64, as the package does, is allowed.
    ("jwt", make_jwt(header={"alg": "RS256", "b64": True}), REFUSED),
    ("jwt", make_jwt(header={"alg": "RS256", "cty": "JWT"}), REFUSED),
    ("jwt", make_jwt(header={"alg": "RS256", "cty": "Application/JWT"}), REFUSED),
    ("jwt", make_jwt(header={"alg": "RS256", "cty": "json"}), user("alice")),
    ("jwt", make_jwt(header='{"alg":"RS256","alg":"RS256"}'), REFUSED),
    ("jwt", make_jwt(header='["RS256"]'), REFUSED),
    ("jwt", make_jwt(payload='{"preferred_username":"a","preferred_username":"b"}'), REFUSED),
    ("jwt", make_jwt(payload='{"preferred_username":"alice","n":NaN}'), REFUSED),
    ("jwt", make_jwt(payload='["alice"]'), REFUSED),
    ("jwt", make_jwt(payload={"sub": "alice"}), REFUSED),
    ("jwt", make_jwt(payload={"preferred_username": "alice\n"}), REFUSED),
    ("jwt", make_jwt(payload={"preferred_username": "josé"}), user("josé")),
    ("jwt", "eyJhbGciOiJSUzI1NiJ9.gA.c2ln", REFUSED),  # payload not UTF-8
    ("jwt", f"Bearer {make_jwt(payload={'preferred_username': 'bob'})}", user("bob")),
]


@pytest.mark.parametrize(("fmt", "value", "answer"), CONTRACT_CASES)
def test_contract_cases(fmt, value, answer):
    """The oracle gives the hand-made answers, and so does the middleware."""
    assert expected(fmt, value) == answer
    assert check(fmt, value) == answer


# --------------------------------------------------------------------------- the oracle has teeth
class RefuseEverything(JwtHeadersMiddleware):
    """Keeps every harness invariant of a 401 and never lets anyone in."""

    def __call__(self, environ, start_response):
        body = json.dumps({"error": {"code": "INVALID_TOKEN", "message": "no"}}).encode()
        start_response(
            "401 Unauthorized",
            [
                ("Content-Type", "application/json"),
                ("WWW-Authenticate", 'Bearer error="invalid_token"'),
            ],
        )
        return [body]


class EveryoneIsMallory(JwtHeadersMiddleware):
    """Lets every request in, as ``mallory``."""

    def __call__(self, environ, start_response):
        environ["REMOTE_USER"] = "mallory"
        environ["jwt_headers.principal"] = Principal(name="mallory")
        return self.app(environ, start_response)


class RefusalsPassAnonymously(JwtHeadersMiddleware):
    """The real middleware, except that a header it refuses is treated as absent."""

    def __call__(self, environ, start_response):
        answer: dict = {}

        def record(status, headers, exc_info=None):
            answer["status"], answer["headers"] = status, headers

        body = super().__call__(environ, record)
        if answer["status"].startswith("401"):
            environ.pop("REMOTE_USER", None)
            return self.app(environ, start_response)
        start_response(answer["status"], answer["headers"])
        return body


class NamesAnotherUser(JwtHeadersMiddleware):
    """The real middleware, except that the app is told a slightly different name."""

    def __call__(self, environ, start_response):
        def app(inner, start):
            if "REMOTE_USER" in inner:
                inner["REMOTE_USER"] = inner["REMOTE_USER"].upper() + "x"
                inner["jwt_headers.principal"] = Principal(name=inner["REMOTE_USER"])
            return self.app(inner, start)

        return JwtHeadersMiddleware(app, self.config)(environ, start_response)


GOOD_VALUES = {
    "string": "alice",
    "json": '{"preferred_username": "alice"}',
    "jwt": f"Bearer {GOOD}",
}
BAD_VALUES = {
    "string": "al\x00ice",
    "json": '{"preferred_username": "alice", "preferred_username": "bob"}',
    "jwt": make_jwt(header={"alg": "none"}),
}


def fails(probe: Callable[[], object]) -> bool:
    """Whether ``probe`` fails the oracle's assertion (not merely a harness invariant)."""
    try:
        probe()
    except AssertionError as error:
        return "the contract" in str(error)
    return False


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize(
    ("broken", "values"),
    [
        (RefuseEverything, GOOD_VALUES),
        (EveryoneIsMallory, GOOD_VALUES),
        (EveryoneIsMallory, BAD_VALUES),
        (EveryoneIsMallory, dict.fromkeys(FORMATS, "   ")),
        (RefusalsPassAnonymously, BAD_VALUES),
        (NamesAnotherUser, GOOD_VALUES),
    ],
)
def test_the_oracle_has_teeth(fmt, broken, values):
    """A broken middleware that keeps every harness invariant still fails the check, while the
    real one passes it on the same value."""
    check(fmt, values[fmt])
    with pytest.raises(AssertionError, match="the contract"):
        check(fmt, values[fmt], middleware=broken)


#: No shrinking: one counterexample is proof enough, and shrinking costs seconds.
TEETH = settings(max_examples=500, database=None, deadline=None, phases=[Phase.generate])


@pytest.mark.parametrize("broken", [RefuseEverything, RefusalsPassAnonymously])
def test_the_properties_find_a_broken_middleware(broken):
    """The strategies below reach inputs on which each broken middleware differs from the
    oracle: the properties would fail against it, not only the fixed values above."""
    find(
        jwts(),
        lambda case: fails(lambda: check("jwt", case[0], middleware=broken)),
        settings=TEETH,
    )
    find(
        json_texts(),
        lambda text: fails(lambda: check("json", wsgi_text(text), middleware=broken)),
        settings=TEETH,
    )
    find(
        latin1_text,
        lambda value: fails(lambda: check("string", value, middleware=broken)),
        settings=TEETH,
    )


# --------------------------------------------------------------------------- any value
@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(value=latin1_text)
def test_any_latin1_header_value_gets_the_contract_answer(fmt, value):
    """R37: WSGI header values (latin-1 text) never make the middleware raise or 500; and the
    answer is the contract's."""
    check(fmt, value)


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(value=any_text)
def test_any_unicode_value_in_plain_environ_key_gets_the_contract_answer(fmt, value):
    check(fmt, value, http=False)


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(value=st.builds(lambda s, t: s + t, schemes, token_chars))
def test_token_like_values_get_the_contract_answer(fmt, value):
    check(fmt, value)


@pytest.mark.parametrize("fmt", FORMATS)
@SETTINGS
@given(
    value=st.one_of(
        latin1_text,
        st.builds(lambda s, t: s + t, schemes, token_chars),
        jwts().map(lambda case: case[0]),
        json_texts().map(wsgi_text),
    ),
    limit=st.integers(1, 400),
)
def test_size_cap_gets_the_contract_answer(fmt, value, limit):
    """R13: a value longer than max_header_bytes is refused (a blank one is still absent)."""
    check(fmt, value, options={"max_header_bytes": limit})


@pytest.mark.parametrize("fmt", ["json", "jwt"])
@SETTINGS
@given(value=latin1_text, depth=st.integers(0, 3000), opener=st.sampled_from(["[", '{"a":']))
def test_nesting_gets_the_contract_answer(fmt, value, depth, opener):
    closer = "]" if opener == "[" else "}"
    text = opener * depth + value + closer * depth
    if fmt == "jwt":
        text = f"{RS256_HEADER}.{b64url(text.encode())}.c2ln"
    check(fmt, text, options={"max_header_bytes": 1_000_000})


@pytest.mark.parametrize("fmt", ["json", "jwt"])
@SETTINGS
@given(depth=st.integers(0, 40), name=good_names | names)
def test_nested_named_documents_get_the_contract_answer(fmt, depth, name):
    """R13 around the depth bound: a named document with a member ``depth`` levels deep."""
    nested = "[" * depth + "0" + "]" * depth
    text = f'{{"preferred_username": {json.dumps(name, allow_nan=True)}, "d": {nested}}}'
    if fmt == "jwt":
        text = f"{RS256_HEADER}.{b64url(text.encode())}.c2ln"
    check(fmt, text if fmt == "jwt" else wsgi_text(text))


# --------------------------------------------------------------------------- jwt framing and JWS
@SETTINGS
@given(value=framed_tokens())
def test_framed_tokens_get_the_contract_answer(value):
    """Contract "Schemes" and "Repeated values", R19."""
    check("jwt", value)


@SETTINGS
@given(header=jws_headers, name=good_names)
def test_jws_header_rules_get_the_contract_answer(header, name):
    """R1/R12: a string alg that is not none, no crit, no b64, no cty naming a JWT."""
    token = make_jwt(payload={"preferred_username": name}, header=header)
    check("jwt", f"Bearer {token}")


@SETTINGS
@given(token=respelled_tokens())
def test_base64url_spellings_get_the_contract_answer(token):
    """R12: canonical base64url only, non-empty signature."""
    check("jwt", token)


@pytest.mark.parametrize("fmt", ["json", "jwt"])
@SETTINGS
@given(name=edged_names | names)
def test_user_name_rules_get_the_contract_answer(fmt, name):
    """R14: white space at either end, control characters, empty or over-long names."""
    document = json.dumps({"preferred_username": name}, allow_nan=True)
    check(fmt, make_jwt(payload=document) if fmt == "jwt" else wsgi_text(document))


# --------------------------------------------------------------------------- names
@SETTINGS
@given(value=latin1_text.filter(lambda v: v.strip() == v.strip(" \t")))
def test_string_user_is_the_trimmed_value(value):
    """Values without str-only white space (U+0085, U+00A0...) at their ends."""
    check("string", value)


@SETTINGS
@given(value=latin1_text)
@example(value="\xe1\x80\x80\x85")  # found by hypothesis: the package answers "\u1000"
@example(value="voil\xc3\xa0")  # "voil\u00e0" as UTF-8 bytes: the package answers "voil\xc3"
@example(value="\xc2\x85")  # U+0085 as UTF-8: blank once decoded
def test_string_user_is_the_trimmed_value_any_latin1(value):
    check("string", value)


@SETTINGS
@given(name=st.text(max_size=60))
@example(name="voilà")
def test_string_utf8_user_is_the_trimmed_name(name):
    """R14: a UTF-8 name arrives as the name the client sent (trimmed)."""
    outcome = check("string", wsgi_text(name))
    if name.strip() and name_outcome(name.strip()) != REFUSED:
        assert outcome == user(name.strip())


@SETTINGS
@given(
    case=st.one_of(
        json_texts().map(lambda text: (text, wsgi_text(text))),
        latin1_text.map(lambda raw: (utf8_or_latin1(raw), raw)),
    )
)
def test_json_user_occurs_in_the_decoded_json(case):
    _, header = case
    check("json", header)


@SETTINGS
@given(case=jwts())
@example(case=(f"Bearer \t{GOOD}", ""))  # see expect_jwt: white space after "Bearer "
@example(case=(f"Bearer \x85{GOOD}", ""))
@example(case=(f"BEARER  {GOOD}\xa0", ""))
@example(case=(f"Basic abc, BEARER {GOOD}", ""))
def test_jwt_user_occurs_in_the_decoded_payload(case):
    value, _ = case
    check("jwt", value)


def from_document(document: object) -> Outcome:
    """The answer for a JSON header made from ``document`` by json.dumps, read off the Python
    value (no JSON parsing): a cross-check of the oracle's parser."""

    def finite(value: object) -> bool:
        if isinstance(value, float):
            return value == value and abs(value) != float("inf")
        if isinstance(value, dict):
            return all(finite(item) for item in value.values())
        if isinstance(value, list):
            return all(finite(item) for item in value)
        return True

    if not isinstance(document, dict) or not finite(document):
        return REFUSED
    if nesting_depth(document) > MAX_DEPTH:
        return REFUSED
    return name_outcome(document.get("preferred_username"))


@SETTINGS
@given(document=documents, ascii_only=st.booleans(), indent=st.sampled_from([None, 1]))
def test_json_documents_give_401_or_the_preferred_username(document, ascii_only, indent):
    """Arbitrary JSON documents: 401, or exactly json.loads(doc)["preferred_username"]."""
    doc = json.dumps(document, ensure_ascii=ascii_only, indent=indent, allow_nan=True)
    assert expected("json", wsgi_text(doc)) == from_document(document)
    check("json", wsgi_text(doc))


@SETTINGS
@given(document=named_documents)
def test_json_documents_sent_in_latin1_bytes(document):
    """A proxy that writes JSON in latin-1: refused as soon as a byte is not UTF-8 (RFC 8259
    8.1), never read as another name; all-ASCII documents are unaffected."""
    doc = json.dumps(document, ensure_ascii=False, allow_nan=True)
    try:
        value = doc.encode("latin-1").decode("latin-1")  # the bytes a latin-1 writer sends
    except UnicodeEncodeError:
        return  # not writable in latin-1 at all
    outcome = check("json", value)  # the model's answer, whatever the bytes
    try:
        value.encode("latin-1").decode("utf-8")
    except UnicodeDecodeError:
        assert outcome == REFUSED  # bytes that are not UTF-8: never read as a name


@SETTINGS
@given(case=pair_objects())
def test_duplicate_member_names_are_refused(case):
    text, pairs = case
    outcome = check("json", wsgi_text(text))
    member_names = [name for name, _ in pairs]
    if len(set(member_names)) != len(member_names):
        assert outcome == REFUSED  # R12: never "last one wins"
