"""From a header value to one decoded document: the only place request bytes are parsed.

Everything downstream (signature and claim checks, user name, roles, the app's ``claims``) reads
the :class:`Document` made here, so no check can pass on one parse while another parse feeds the
identity (R11). Parsing is strict where PyJWT and ``json`` are lenient (R12, R13): canonical
base64url only, no duplicate member names, no NaN/Infinity, bounded size and nesting depth.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from .errors import InvalidToken
from .logtools import safe

#: Deeper JSON than this is refused before ``json`` recurses into it (R13).
MAX_JSON_DEPTH = 32

_SCHEME = re.compile(r"([!#$%&'*+.^_`|~0-9A-Za-z-]+) +(.*)", re.DOTALL)
#: The base64url alphabet (RFC 4648 section 5), and the swap to the standard one.
_BASE64URL_BYTES = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
_TO_STANDARD = bytes.maketrans(b"-_", b"+/")
#: Printable ASCII: a Bearer token holds nothing else (RFC 6750 b64token is narrower still).
_PRINTABLE_ASCII = bytes(range(0x20, 0x7F))
_BRACKETS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')
_ANOTHER_BEARER = re.compile(r",\s*bearer\b", re.IGNORECASE)


@dataclass(slots=True)
class Document:
    """A decoded JSON document or JWT (made once per new header value, never cached: a plain
    slots class, as a frozen dataclass's ``__init__`` is a measurable part of a new token).

    ``text`` is the claims' JSON text (kept by cached principals instead of the parsed dict);
    for a JWT, ``header``, ``signing_input`` and ``signature`` feed the signature check.
    """

    claims: dict[str, Any]
    text: str
    header: Mapping[str, Any] | None = None
    signing_input: bytes = b""
    signature: bytes = b""
    token: str = ""


def media_type(value: str) -> str:
    """A ``typ`` or ``cty`` for comparison: media types compare case-insensitively, and
    RFC 7515 4.1.9/4.1.10 let ``application/`` be left out (``at+jwt`` is
    ``application/at+jwt``)."""
    return value.strip().lower().removeprefix("application/")


def header_text(value: str) -> str:
    """Undo WSGI's latin-1 decoding of header bytes when they are UTF-8 (R14).

    mod_auth_openidc 2.4.12 sends UTF-8 bytes; a WSGI server hands them over as latin-1 text, so
    ``josé`` arrives as ``josÃ©``. Values that are not UTF-8 (latin-1 senders) are kept as they
    came.
    """
    if value.isascii():
        return value
    try:
        return value.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return value


#: How the bytes of a header value become text (option ``header_encoding``).
HEADER_ENCODINGS = ("auto", "utf8", "latin1", "base64url")
_BASE64URL_PADDED = re.compile(r"[A-Za-z0-9_-]*={0,2}")


def _utf8_of(value: str) -> str:
    """The WSGI (latin-1) text's bytes read as UTF-8; text beyond latin-1 came from a server that
    decoded it already and is kept as it is."""
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        return value
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidToken("bad_encoding", "header value is not UTF-8") from None


def value_text(value: str, encoding: str, *, utf8_only: bool = False) -> str:
    """A header value as text under ``header_encoding`` (R14).

    ``auto``: UTF-8 when the bytes are UTF-8, else as received; ``utf8``: UTF-8 or refused;
    ``latin1``: as received; ``base64url``: decoded, then UTF-8 (mod_auth_openidc's
    ``OIDCPassClaimsAs ... base64url``). ``utf8_only`` (the ``json`` and ``jwt`` formats) refuses
    bytes that are not UTF-8 whatever the setting: JSON exchanged between systems is UTF-8
    (RFC 8259 8.1), and a guess could turn one user's bytes into another user's name.
    """
    if encoding == "base64url":
        text = value.strip()
        if not text.isascii() or not _BASE64URL_PADDED.fullmatch(text) or len(text) % 4 == 1:
            raise InvalidToken("bad_encoding", "header value is not base64url")
        try:
            raw = base64.urlsafe_b64decode(text.rstrip("=") + "=" * (-len(text.rstrip("=")) % 4))
            return raw.decode("utf-8")
        except (binascii.Error, ValueError):
            raise InvalidToken("bad_encoding", "header value is not base64url UTF-8") from None
    if value.isascii():
        return value
    if utf8_only or encoding == "utf8":
        return _utf8_of(value)
    if encoding == "latin1":
        return value
    return header_text(value)


def check_size(value: str, limit: int) -> None:
    if len(value) > limit:
        raise InvalidToken("oversized", f"header value longer than {limit} bytes")


def bearer_token(value: str) -> str | None:
    """The token in an ``Authorization``-style value, or ``None`` for another scheme.

    ``Bearer <token>`` (scheme case-insensitive, one or more spaces) and a bare token are ours;
    ``Basic ...``, ``Negotiate ...`` are not (absent). Look-alikes (``Bearer:x``, ``Bearer``
    alone, inner spaces, two values joined by a repeated header) are malformed (R19).
    """
    value = value.strip()
    if value[:7].lower() == "bearer " and not value[7:8].isspace():
        token = value[7:]  # the usual form, as the pattern below would read it
    elif (match := _SCHEME.fullmatch(value) if " " in value else None) is None:
        token = value
    else:
        scheme, rest = match.group(1), match.group(2).strip()
        if scheme.lower() == "bearer":
            token = rest
        elif "." in scheme or scheme.startswith("eyJ"):
            raise InvalidToken("malformed", "token contains white space")
        elif _ANOTHER_BEARER.search(rest):
            raise InvalidToken("repeated_header", "several credentials in one header")
        else:
            return None
    if "," in token:
        raise InvalidToken("repeated_header", "several values for the token header")
    if not token or " " in token or not _printable(token):
        raise InvalidToken("malformed", "malformed Bearer credentials")
    return token


def _printable(text: str) -> bool:
    """``str.isprintable`` for the common ASCII token at a fraction of its cost (deleting the
    printable bytes leaves nothing); other text takes the general check."""
    if text.isascii():
        return not text.encode("ascii").translate(None, _PRINTABLE_ASCII)
    return text.isprintable()


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise ValueError("duplicate member name")
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object_without_duplicates, parse_constant=_no_constants
)
# Canonical base64url: the last character of a segment carries no unused bits (RFC 7515 §2).
_CANONICAL_LAST = {2: frozenset("AQgw"), 3: frozenset("AEIMQUYcgkosw048")}


def _depth_ok(text: str) -> bool:
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH:
        return True
    depth = 0
    for match in _BRACKETS.finditer(text):
        char = match.group()
        if char in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                return False
        elif char in "]}":
            depth -= 1
    return True


def _parse_json(text: str, what: str) -> Any:
    if not _depth_ok(text):
        raise InvalidToken("malformed", f"{what} nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        return _DECODER.decode(text)
    except (ValueError, RecursionError):
        raise InvalidToken("malformed", f"{what} is not valid JSON") from None


def parse_json_object(text: str, what: str) -> dict[str, Any]:
    """Strictly parse a JSON object; :class:`InvalidToken` on anything else."""
    document = _parse_json(text, what)
    if not isinstance(document, dict):
        raise InvalidToken("malformed", f"{what} is not a JSON object")
    return document


def parse_json_array(text: str, what: str) -> list[Any]:
    """Strictly parse a JSON array; :class:`InvalidToken` on anything else."""
    document = _parse_json(text, what)
    if not isinstance(document, list):
        raise InvalidToken("malformed", f"{what} is not a JSON array")
    return document


def decode_json(value: str, encoding: str = "auto") -> Document:
    """A JSON header (``OIDC_id_token_payload``) to a :class:`Document`."""
    text = value_text(value, encoding, utf8_only=True).strip()
    return Document(parse_json_object(text, "JSON header"), text)


def _segment(segment: str, what: str) -> bytes:
    """One base64url segment of an ASCII token (``decode_jwt`` checked that), strictly: the
    alphabet alone, no padding, a canonical last character. Bytes' ``translate`` does the
    alphabet check and the alphabet swap in C, which is what makes a new token cheap."""
    raw = segment.encode("ascii")
    if raw.translate(None, _BASE64URL_BYTES) or len(raw) % 4 == 1:
        raise InvalidToken("malformed", f"token {what} is not base64url")
    last = _CANONICAL_LAST.get(len(raw) % 4)
    if last is not None and segment[-1] not in last:
        raise InvalidToken("malformed", f"token {what} is not canonical base64url")
    try:
        # The alphabet is checked and the padding is ours: nothing is left for a lenient
        # decoder to skip.
        return binascii.a2b_base64(raw.translate(_TO_STANDARD) + b"=" * (-len(raw) % 4))
    except (binascii.Error, ValueError):
        raise InvalidToken("malformed", f"token {what} is not base64url") from None


def _utf8(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidToken("malformed", f"token {what} is not UTF-8") from None


#: Headers already decoded and accepted, by their segment. Every token of a provider carries
#: one of a few headers (``alg``, ``kid``, ``typ``), so a new token's header costs a lookup; the
#: segment's text decides its content exactly, so this is the same decode, done once. Bounded
#: in entries and length (a flood of made-up headers only empties it now and then); the
#: headers are read-only views, shared by the tokens that carry them.
_KNOWN_HEADERS: dict[str, Mapping[str, Any]] = {}
MAX_KNOWN_HEADERS = 64
MAX_KNOWN_HEADER_LENGTH = 512


def _header(segment: str) -> Mapping[str, Any]:
    """Decode and check a token header (R12): an ``alg`` that is not ``none``, no ``crit``,
    no ``b64``, no nested token."""
    header = parse_json_object(_utf8(_segment(segment, "header"), "header"), "token header")
    alg = header.get("alg")
    if not isinstance(alg, str) or not alg:
        raise InvalidToken("malformed", "token header has no alg")
    if alg.lower() == "none":
        refusal = InvalidToken("alg_not_allowed", "unsigned tokens (alg none) are not accepted")
        refusal.detail = f"alg={safe(alg, 16)}"
        raise refusal
    if "crit" in header:
        raise InvalidToken("malformed", "token header has crit extensions we do not implement")
    if "b64" in header:
        raise InvalidToken("malformed", "unencoded payloads (b64) are not accepted")
    cty = header.get("cty")
    # "application/jwt" announces a nested token as "JWT" does (see media_type).
    if isinstance(cty, str) and media_type(cty) == "jwt":
        raise InvalidToken("malformed", "nested tokens (cty JWT) are not accepted")
    view = MappingProxyType(header)
    if len(segment) <= MAX_KNOWN_HEADER_LENGTH:
        if len(_KNOWN_HEADERS) >= MAX_KNOWN_HEADERS:
            _KNOWN_HEADERS.clear()
        _KNOWN_HEADERS[segment] = view
    return view


def decode_jwt(token: str) -> Document:
    """A compact JWS to a :class:`Document`; everything else is refused (R12).

    The signature is not checked here; that is ``verify``'s job, on this same document.
    """
    if not token.isascii():
        raise InvalidToken("malformed", "token is not ASCII")
    parts = token.split(".")
    if len(parts) == 5:
        raise InvalidToken("malformed", "encrypted tokens (JWE) are not accepted")
    if len(parts) != 3:
        raise InvalidToken("malformed", "token is not a compact JWS (three segments)")
    header_b64, payload_b64, signature_b64 = parts
    if not signature_b64:
        raise InvalidToken("malformed", "token has no signature")
    header = _KNOWN_HEADERS.get(header_b64)
    if header is None:
        header = _header(header_b64)
    payload_text = _utf8(_segment(payload_b64, "payload"), "payload")
    claims = parse_json_object(payload_text, "token payload")
    signature = _segment(signature_b64, "signature")
    return Document(
        claims=claims,
        text=payload_text,
        header=header,
        signing_input=f"{header_b64}.{payload_b64}".encode("ascii"),
        signature=signature,
        token=token,
    )
