"""The decoded-header memo (issue 15: the cold path): a token header is decoded and checked
once per distinct segment, and the memo changes no outcome. A header refused once is refused
every time (R12: never remembered as good); the memo is bounded in entries and in length (R25);
what it shares is read-only, so one request cannot change the next token's header."""

from __future__ import annotations

import pytest
from idp import compact_jws

from jwt_headers import decode
from jwt_headers.errors import InvalidToken

PAYLOAD = {"sub": "a", "preferred_username": "alice", "exp": 2_000_000_000}


@pytest.fixture(autouse=True)
def empty_memo():
    decode._KNOWN_HEADERS.clear()
    yield
    decode._KNOWN_HEADERS.clear()


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ({"alg": "none"}, "alg_not_allowed"),
        ({"alg": "RS256", "crit": ["exp"]}, "malformed"),
        ({"alg": "RS256", "b64": False}, "malformed"),
        ({"alg": "RS256", "cty": "JWT"}, "malformed"),
        ({"kid": "k"}, "malformed"),
        (b'{"alg":"RS256","alg":"none"}', "malformed"),
    ],
)
def test_r12_a_refused_header_is_refused_every_time(header, reason):
    token = compact_jws(header, PAYLOAD, b"sig")
    for _ in range(3):
        with pytest.raises(InvalidToken) as refused:
            decode.decode_jwt(token)
        assert refused.value.reason == reason
    assert decode._KNOWN_HEADERS == {}


def test_one_decode_per_header_and_the_same_result():
    first = decode.decode_jwt(compact_jws({"alg": "RS256", "kid": "k"}, PAYLOAD, b"one"))
    second = decode.decode_jwt(
        compact_jws({"alg": "RS256", "kid": "k"}, {**PAYLOAD, "sub": "b"}, b"two")
    )
    assert first.header is second.header  # decoded once, shared
    assert dict(first.header or {}) == {"alg": "RS256", "kid": "k"}
    assert (first.claims["sub"], second.claims["sub"]) == ("a", "b")
    assert len(decode._KNOWN_HEADERS) == 1


def test_a_shared_header_is_read_only():
    document = decode.decode_jwt(compact_jws({"alg": "RS256", "kid": "k"}, PAYLOAD, b"s"))
    with pytest.raises(TypeError):
        document.header["alg"] = "none"  # type: ignore[index]


def test_r25_the_memo_is_bounded_in_entries_and_length():
    for n in range(5 * decode.MAX_KNOWN_HEADERS):
        decode.decode_jwt(compact_jws({"alg": "RS256", "kid": f"k{n}"}, PAYLOAD, b"s"))
        assert len(decode._KNOWN_HEADERS) <= decode.MAX_KNOWN_HEADERS
    decode._KNOWN_HEADERS.clear()
    long_kid = "x" * decode.MAX_KNOWN_HEADER_LENGTH
    document = decode.decode_jwt(compact_jws({"alg": "RS256", "kid": long_kid}, PAYLOAD, b"s"))
    assert (document.header or {})["kid"] == long_kid
    assert decode._KNOWN_HEADERS == {}


def test_r26_principals_of_one_user_share_name_and_roles():
    """Two JSON headers of one user (another session id): two cached principals, but one name
    string and one roles tuple between them (bytes per cached token); the role-set memo is
    bounded (R25)."""
    import json

    from conftest import JSON, RecordingApp, call

    from jwt_headers import JwtHeadersMiddleware, core

    middleware = JwtHeadersMiddleware(
        RecordingApp(), **JSON, roles_source="json", roles_json_path="roles"
    )
    principals = []
    for session in ("s1", "s2"):
        value = json.dumps({"preferred_username": "alice", "sid": session, "roles": ["a", "b"]})
        middleware.app = RecordingApp()
        answer = call(middleware, {"OIDC_id_token_payload": value})
        principals.append(answer.principal)
    first, second = principals
    assert first is not second and first.roles == ("a", "b")
    assert first.name is second.name and first.roles is second.roles
    core._ROLE_SETS.clear()
    for n in range(3 * core.MAX_ROLE_SETS):
        core._shared_roles((f"role-{n}",))
        assert len(core._ROLE_SETS) <= core.MAX_ROLE_SETS
