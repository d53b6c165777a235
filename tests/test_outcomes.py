"""The contract's "Outcomes" table and "Details that tests rely on", for non-validated tokens.

Tokens are minted here from hand-built base64url segments (HS256-signed or not at all):
validation is off, so signatures are never checked, only the token's shape.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
from collections.abc import Mapping

import pytest
from conftest import JSON, JWT, STRANGER, STRING, RecordingApp, assert_invalid_token, call

from jwt_headers import JwtHeadersConfig, JwtHeadersMiddleware, Principal

FULLWIDTH_ROOT = "\uff52\uff4f\uff4f\uff54"  # NFKC: "root"
FULLWIDTH_ADMIN = "\uff21\uff24\uff2d\uff29\uff2e"  # NFKC: "ADMIN"
FORMATS = {"string": STRING, "json": JSON, "jwt": JWT}
ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


# --------------------------------------------------------------------------- helpers
def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def segment(part: object) -> str:
    """A JSON object (dict) or raw JSON text (str) or raw bytes, base64url-encoded."""
    if isinstance(part, bytes):
        return b64url(part)
    text = part if isinstance(part, str) else json.dumps(part, separators=(",", ":"))
    return b64url(text.encode("utf-8"))


def make_token(
    claims: object = None,
    header: object = None,
    *,
    key: bytes = b"not-checked-anyway",
    signature: str | None = None,
) -> str:
    """A compact JWS: HS256 over our own segments unless ``signature`` is given."""
    if claims is None:
        claims = {"preferred_username": "alice", "sub": "1"}
    if header is None:
        header = {"alg": "HS256", "typ": "JWT"}
    signing_input = f"{segment(header)}.{segment(claims)}"
    if signature is None:
        signature = b64url(hmac.new(key, signing_input.encode(), hashlib.sha256).digest())
    return f"{signing_input}.{signature}"


def http_key(name: str) -> str:
    return "HTTP_" + name.upper().replace("-", "_")


def send(options: Mapping[str, object], value: str, **kwargs):
    """Send ``value`` as the configured user-name header (the HTTP_ key) from loopback."""
    return call(environ={http_key(options["user_name_header"]): value}, **options, **kwargs)


def json_doc(name: object = "alice", **extra: object) -> str:
    return json.dumps({"preferred_username": name, **extra})


def assert_anonymous(answer) -> None:
    assert answer.status == 200, answer.body
    assert answer.app.called
    assert "REMOTE_USER" not in answer.app.environ
    assert "jwt_headers.principal" not in answer.app.environ


def assert_user(answer, name: str) -> None:
    assert answer.status == 200, answer.body
    assert answer.app.called
    assert answer.app.environ["REMOTE_USER"] == name
    principal = answer.app.environ["jwt_headers.principal"]
    assert isinstance(principal, Principal)
    assert principal.name == name


def assert_unauthenticated(answer) -> None:
    assert answer.status == 401, answer.body
    assert not answer.app.called
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert "error=" not in answer.headers["WWW-Authenticate"]
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json["error"]["code"] == "UNAUTHENTICATED"


def noncanonical(seg: str) -> str:
    """Same bytes, but the unused low bits of the last character set (RFC 7515 §2 forbids)."""
    assert len(seg) % 4 in (2, 3)
    bumped = seg[:-1] + ALPHABET[ALPHABET.index(seg[-1]) + 1]
    pad = "=" * (-len(seg) % 4)
    # sanity: lenient decoders see the very same bytes
    assert base64.urlsafe_b64decode(bumped + pad) == base64.urlsafe_b64decode(seg + pad)
    return bumped


TOKEN = make_token()


def test_helpers_mint_a_token_the_middleware_accepts():
    assert_user(send(JWT, f"Bearer {TOKEN}"), "alice")


# --------------------------------------------------------------------------- absent / empty
@pytest.mark.parametrize("fmt", FORMATS)
def test_absent_header_is_anonymous(fmt):
    answer = call(**FORMATS[fmt])
    assert_anonymous(answer)


@pytest.mark.parametrize("value", ["", " ", "   ", "\t", " \t  "])
@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_or_white_space_header_is_anonymous(fmt, value):
    answer = send(FORMATS[fmt], value)
    assert_anonymous(answer)


@pytest.mark.parametrize("fmt", FORMATS)
def test_absent_header_refused_when_anonymous_not_allowed(fmt):
    answer = call(allow_anonymous=False, **FORMATS[fmt])
    assert_unauthenticated(answer)


@pytest.mark.parametrize("value", ["", "  "])
@pytest.mark.parametrize("fmt", FORMATS)
def test_empty_header_refused_when_anonymous_not_allowed(fmt, value):
    answer = send(FORMATS[fmt], value, allow_anonymous=False)
    assert_unauthenticated(answer)


@pytest.mark.parametrize("fmt", FORMATS)
def test_valid_header_passes_when_anonymous_not_allowed(fmt):
    value = {"string": "alice", "json": json_doc(), "jwt": f"Bearer {TOKEN}"}[fmt]
    answer = send(FORMATS[fmt], value, allow_anonymous=False)
    assert_user(answer, "alice")


def test_unauthenticated_body_shape():
    answer = call(allow_anonymous=False, **STRING)
    assert set(answer.json) == {"error"}
    assert set(answer.json["error"]) >= {"code", "message"}
    assert isinstance(answer.json["error"]["message"], str)


# --------------------------------------------------------------------------- R18
@pytest.mark.parametrize("fmt", FORMATS)
def test_preexisting_remote_user_and_principal_removed_when_anonymous(fmt):
    """R18: upstream REMOTE_USER / jwt_headers.principal are never trusted."""
    fake = Principal(name="mallory", roles=("ROLE_ADMINISTRATOR",))
    answer = call(environ={"REMOTE_USER": "mallory", "jwt_headers.principal": fake}, **FORMATS[fmt])
    assert_anonymous(answer)


def test_preexisting_remote_user_replaced_by_our_result():
    """R18: REMOTE_USER is set only from the middleware's own result."""
    fake = Principal(name="mallory", roles=("ROLE_ADMINISTRATOR",))
    answer = call(
        environ={"REMOTE_USER": "mallory", "jwt_headers.principal": fake, "HTTP_X_USER": "alice"},
        **STRING,
    )
    assert_user(answer, "alice")
    assert answer.app.environ["jwt_headers.principal"] is not fake
    assert answer.app.environ["jwt_headers.principal"].roles == ()


def test_preexisting_remote_user_removed_when_header_untrusted():
    answer = call(
        peer=STRANGER,
        environ={"REMOTE_USER": "mallory", "HTTP_X_USER": "alice"},
        **STRING,
    )
    assert_anonymous(answer)


def test_refused_request_with_preexisting_remote_user():
    answer = call(
        environ={"REMOTE_USER": "mallory", "HTTP_OIDC_ID_TOKEN_PAYLOAD": "{not json"}, **JSON
    )
    assert_invalid_token(answer, "malformed")


@pytest.mark.parametrize("name", ["Remote-User", "Remote_User", "REMOTE-USER", "remote-user"])
def test_remote_user_http_header_never_becomes_remote_user(name):
    """R18: a client's `Remote-User:` header (HTTP_REMOTE_USER) is not REMOTE_USER."""
    answer = call(headers={name: "admin"}, **STRING)
    assert_anonymous(answer)
    assert answer.app.environ.get("REMOTE_USER") is None


def test_remote_user_http_header_does_not_override_our_user():
    answer = call(headers={"Remote-User": "admin", "X-User": "alice"}, **STRING)
    assert_user(answer, "alice")


# --------------------------------------------------------------------------- unusable JSON
UNUSABLE_JSON = [
    pytest.param('{"preferred_username": "alice"', "malformed", id="truncated"),
    pytest.param("{'preferred_username': 'alice'}", "malformed", id="single-quotes"),
    pytest.param("preferred_username=alice", "malformed", id="not-json"),
    pytest.param('{"preferred_username": "alice"} x', "malformed", id="trailing-garbage"),
    pytest.param(
        '{"preferred_username":"alice"},{"preferred_username":"bob"}', "malformed", id="repeated"
    ),
    pytest.param('["alice"]', "malformed", id="array"),
    pytest.param('"alice"', "malformed", id="string"),
    pytest.param("42", "malformed", id="number"),
    pytest.param("null", "malformed", id="null"),
    pytest.param("true", "malformed", id="true"),
    pytest.param('{"other": "alice"}', "no_user_name", id="path-matches-nothing"),
    pytest.param("{}", "no_user_name", id="empty-object"),
    pytest.param('{"preferred_username": 42}', "no_user_name", id="name-number"),
    pytest.param('{"preferred_username": 4.2}', "no_user_name", id="name-float"),
    pytest.param('{"preferred_username": true}', "no_user_name", id="name-bool"),
    pytest.param('{"preferred_username": null}', "no_user_name", id="name-null"),
    pytest.param('{"preferred_username": ["alice"]}', "no_user_name", id="name-list"),
    pytest.param('{"preferred_username": []}', "no_user_name", id="name-empty-list"),
    pytest.param('{"preferred_username": {"a": "alice"}}', "no_user_name", id="name-object"),
    pytest.param('{"preferred_username": ""}', "no_user_name", id="name-empty-string"),
    pytest.param(
        '{"preferred_username":"alice","preferred_username":"root"}',
        "malformed",
        id="duplicate-members",
    ),
    pytest.param(
        '{"preferred_username":"alice","x":{"a":1,"a":2}}',
        "malformed",
        id="nested-duplicate-members",
    ),
    pytest.param('{"preferred_username":"alice","x":NaN}', "malformed", id="NaN"),
    pytest.param('{"preferred_username":"alice","x":Infinity}', "malformed", id="Infinity"),
    pytest.param('{"preferred_username":"alice","x":-Infinity}', "malformed", id="-Infinity"),
    pytest.param('{"preferred_username":"al\\u0000ice"}', "bad_user_name", id="name-NUL"),
    pytest.param('{"preferred_username":"al\\u001fice"}', "bad_user_name", id="name-U+001F"),
    pytest.param('{"preferred_username":"al\\nice"}', "bad_user_name", id="name-LF"),
    pytest.param('{"preferred_username":"alice\\r"}', "bad_user_name", id="name-CR"),
    pytest.param('{"preferred_username":"al\\tice"}', "bad_user_name", id="name-TAB"),
    pytest.param('{"preferred_username":"al\\u007fice"}', "bad_user_name", id="name-DEL"),
    pytest.param('{"preferred_username":" alice"}', "bad_user_name", id="name-leading-space"),
    pytest.param('{"preferred_username":"alice "}', "bad_user_name", id="name-trailing-space"),
    pytest.param('{"preferred_username":"\\u00a0alice"}', "bad_user_name", id="name-leading-nbsp"),
    pytest.param(
        '{"preferred_username":"alice\\u3000"}',
        "bad_user_name",
        id="name-trailing-ideographic-space",
    ),
    pytest.param(json_doc("a" * 257), "bad_user_name", id="name-257-chars"),
]


@pytest.mark.parametrize(("value", "reason"), UNUSABLE_JSON)
def test_unusable_json_header_is_refused(value, reason):
    """R12/R14: 401 invalid_token for the right reason, app not called."""
    assert_invalid_token(send(JSON, value), reason)


@pytest.mark.parametrize(("value", "reason"), UNUSABLE_JSON)
def test_unusable_json_header_refused_from_plain_environ_key(value, reason):
    answer = call(peer=STRANGER, environ={"OIDC_id_token_payload": value}, **JSON)
    assert_invalid_token(answer, reason)


def test_json_path_with_several_values_is_refused():
    """R14: several matches never resolve to "the first one"."""
    answer = send(
        {**JSON, "user_name_json_path": "$.names[*]"}, json.dumps({"names": ["alice", "bob"]})
    )
    assert_invalid_token(answer, "no_user_name")


def test_json_recursive_path_with_several_values_is_refused():
    answer = send(
        {**JSON, "user_name_json_path": "$..user"},
        json.dumps({"a": {"user": "alice"}, "b": {"user": "bob"}}),
    )
    assert_invalid_token(answer, "no_user_name")


def test_json_path_with_single_match_is_accepted():
    answer = send(
        {**JSON, "user_name_json_path": "$.names[0]"}, json.dumps({"names": ["alice", "bob"]})
    )
    assert_user(answer, "alice")


def test_name_of_256_chars_is_accepted():
    assert_user(send(JSON, json_doc("a" * 256)), "a" * 256)
    assert_user(send(STRING, "b" * 256), "b" * 256)


def test_string_name_over_256_chars_is_refused():
    assert_invalid_token(send(STRING, "b" * 257), "bad_user_name")


@pytest.mark.parametrize("value", ["al\x00ice", "al\x01ice", "alice\x7f", "al\x1bice"])
def test_string_name_with_control_characters_is_refused(value):
    assert_invalid_token(send(STRING, value), "bad_user_name")


def test_string_value_is_trimmed():
    assert_user(send(STRING, "  alice  "), "alice")


def test_string_repeated_header_is_one_name():
    """A repeated header joined with `,` is, for the string format, the whole value."""
    assert_user(send(STRING, "alice, bob"), "alice, bob")


def test_name_case_and_inner_spaces_kept():
    assert_user(send(JSON, json_doc("Alice Smith")), "Alice Smith")


# --------------------------------------------------------------------------- size and depth
def _json_of_length(length: int) -> str:
    base = json_doc("alice", pad="")
    value = json_doc("alice", pad="x" * (length - len(base)))
    assert len(value) == length
    return value


def test_oversized_json_header_is_refused():
    """R13: a value over max_header_bytes (default 16384) is refused."""
    assert_invalid_token(send(JSON, _json_of_length(16385)), "oversized")


def test_json_header_at_the_default_cap_is_accepted():
    assert_user(send(JSON, _json_of_length(16384)), "alice")


def test_max_header_bytes_lowers_the_cap():
    value = _json_of_length(200)
    assert_user(send(JSON, value, max_header_bytes=200), "alice")
    assert_invalid_token(send(JSON, value, max_header_bytes=199), "oversized")


def test_max_header_bytes_raises_the_cap():
    value = _json_of_length(40000)
    assert_invalid_token(send(JSON, value), "oversized")
    assert_user(send(JSON, value, max_header_bytes=40000), "alice")


def test_oversized_string_header_is_refused():
    assert_invalid_token(send(STRING, "a" * 16385), "oversized")
    assert_invalid_token(send(STRING, "alice-smith", max_header_bytes=10), "oversized")
    assert_user(send(STRING, "alice-smith", max_header_bytes=11), "alice-smith")


def test_oversized_jwt_is_refused():
    token = make_token({"preferred_username": "alice", "pad": "x" * 20000})
    assert_invalid_token(send(JWT, f"Bearer {token}"), "oversized")
    assert_user(send(JWT, f"Bearer {token}", max_header_bytes=len(token) + 100), "alice")


def test_oversized_roles_header_is_refused():
    options = {**STRING, "roles_source": "header", "roles_header": "X-Roles"}
    answer = call(headers={"X-User": "alice", "X-Roles": "r," * 9000}, **options)
    assert_invalid_token(answer, "oversized")


def _deep_object(depth: int) -> str:
    return '{"preferred_username":"alice","x":' + '{"a":' * depth + "1" + "}" * depth + "}"


@pytest.mark.parametrize("depth", [100, 2000])
def test_deep_json_within_size_cap_is_refused(depth):
    """R13: nesting is bounded; 401, never RecursionError or 500."""
    value = _deep_object(depth)
    assert len(value) <= 16384
    assert_invalid_token(send(JSON, value), "malformed")


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(_deep_object(200_000), id="objects"),
        pytest.param(
            '{"preferred_username":"alice","x":' + "[" * 200_000 + "]" * 200_000 + "}", id="arrays"
        ),
        pytest.param("[" * 200_000, id="unclosed-arrays"),
    ],
)
def test_deep_json_beyond_recursion_limit_is_refused(value):
    assert_invalid_token(send(JSON, value, max_header_bytes=10_000_000), "malformed")


def test_deep_jwt_payload_is_refused():
    payload = '{"preferred_username":"alice","x":' + "[" * 100_000 + "]" * 100_000 + "}"
    token = make_token(payload)
    assert_invalid_token(send(JWT, f"Bearer {token}", max_header_bytes=10_000_000), "malformed")


def test_moderately_nested_json_is_accepted():
    value = json.dumps({"preferred_username": "alice", "x": {"a": {"b": {"c": [[1, [2]]]}}}})
    assert_user(send(JSON, value), "alice")


# --------------------------------------------------------------------------- denied names
DENIED = {**JSON, "denied_user_names": ("root", "admin")}


@pytest.mark.parametrize(
    "name",
    [
        "root",
        "ROOT",
        "Root",
        "admin",
        "ADMIN",
        FULLWIDTH_ROOT,  # fullwidth, NFKC -> root
        FULLWIDTH_ADMIN,
        "r\u00adoot",  # soft hyphen
        "r\u200boot",  # zero-width space
        "ad\u200dmin",  # zero-width joiner
        "ad min",
        "Admin",
    ],
)
def test_denied_user_name_json_is_refused(name):
    assert_invalid_token(send(DENIED, json_doc(name)), "denied_user_name")


@pytest.mark.parametrize(
    "name", ["root", FULLWIDTH_ROOT, "r\u00adoot", " Admin", "ADMIN  ", "Ad\u00admin"]
)
def test_denied_user_name_string_is_refused(name):
    """Plain header, sent as UTF-8 bytes the way a WSGI server presents them."""
    options = {**STRING, "denied_user_names": ("root", "admin")}
    answer = send(options, name.encode("utf-8").decode("latin-1"))
    assert_invalid_token(answer, "denied_user_name")


def test_denied_name_with_leading_space_in_json_is_refused():
    assert_invalid_token(send(DENIED, json_doc(" Admin")), "bad_user_name")


@pytest.mark.parametrize("name", ["rooted", "administrator", "groot", "adm"])
def test_names_near_denied_ones_are_accepted(name):
    assert_user(send(DENIED, json_doc(name)), name)


def test_denied_user_names_from_mapping_string():
    config = JwtHeadersConfig.from_mapping(
        {
            "user_name_header": "OIDC_id_token_payload",
            "user_name_format": "json",
            "user_name_json_path": "preferred_username",
            "denied_user_names": " root , admin ,",
        }
    )
    for name in (FULLWIDTH_ROOT, "Admin"):
        middleware = JwtHeadersMiddleware(RecordingApp(), config)
        answer = call(middleware, environ={"HTTP_OIDC_ID_TOKEN_PAYLOAD": json_doc(name)})
        assert_invalid_token(answer, "denied_user_name")
    middleware = JwtHeadersMiddleware(RecordingApp(), config)
    assert_user(call(middleware, environ={"HTTP_OIDC_ID_TOKEN_PAYLOAD": json_doc("bob")}), "bob")


def test_denied_user_name_in_jwt_is_refused():
    token = make_token({"preferred_username": FULLWIDTH_ROOT})
    assert_invalid_token(
        send({**JWT, "denied_user_names": ["root"]}, f"Bearer {token}"), "denied_user_name"
    )


# --------------------------------------------------------------------------- JWT schemes
@pytest.mark.parametrize(
    "value",
    [
        f"Bearer {TOKEN}",
        f"bearer {TOKEN}",
        f"BEARER {TOKEN}",
        f"bEaReR {TOKEN}",
        f"Bearer  {TOKEN}",
        f"Bearer     {TOKEN}",
        TOKEN,
    ],
)
def test_bearer_scheme_any_case_or_bare_token_is_accepted(value):
    assert_user(send(JWT, value), "alice")


@pytest.mark.parametrize(
    "value",
    [
        "Basic dXNlcjpwYXNzd29yZA==",
        "basic dXNlcjpwYXNzd29yZA==",
        "Negotiate YIIGfAYGKwYBBQUCoIIGcDCCBmygMDAuBgkqhkiC9xIBAgIGCSqGSIb3EgECAgYKKwYBBAGCNwICHg",
        "NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAGAbEdAAAADw==",
        'Digest username="alice", realm="r", nonce="n", uri="/", response="x"',
    ],
)
def test_other_schemes_are_not_ours_and_anonymous(value):
    assert_anonymous(send(JWT, value))


def test_other_scheme_refused_when_anonymous_not_allowed():
    assert_unauthenticated(send(JWT, "Basic dXNlcjpwYXNzd29yZA==", allow_anonymous=False))


OTHER = make_token({"preferred_username": "bob", "sub": "2"})


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        pytest.param("Bearer:", "malformed", id="bearer-colon"),
        pytest.param(f"Bearer:{TOKEN}", "malformed", id="bearer-colon-token"),
        pytest.param(f"Bearer: {TOKEN}", "malformed", id="bearer-colon-space-token"),
        pytest.param(f"BearerX{TOKEN}", "malformed", id="bearerX"),
        pytest.param(f"Bearer{TOKEN}", "malformed", id="bearer-no-space"),
        pytest.param("Bearer", "malformed", id="bearer-alone"),
        pytest.param("bearer", "malformed", id="bearer-alone-lower"),
        pytest.param("Bearer   ", "malformed", id="bearer-trailing-spaces"),
        pytest.param(f"Bearer {TOKEN[:20]} {TOKEN[20:]}", "malformed", id="inner-space"),
        pytest.param(f"{TOKEN[:20]} {TOKEN[20:]}", "malformed", id="bare-inner-space"),
        pytest.param(f"Bearer {TOKEN} x", "malformed", id="trailing-word"),
        pytest.param(f"Bearer {TOKEN}, Bearer {OTHER}", "repeated_header", id="two-bearers"),
        pytest.param(
            f"Bearer {TOKEN},Bearer {OTHER}", "repeated_header", id="two-bearers-no-space"
        ),
        pytest.param(f"{TOKEN},{OTHER}", "repeated_header", id="two-bare"),
        pytest.param(f"{TOKEN}, {OTHER}", "repeated_header", id="two-bare-space"),
        pytest.param(f"Bearer {TOKEN},{OTHER}", "repeated_header", id="bearer-two-tokens"),
        pytest.param(f"Bearer {TOKEN}, Basic dXNlcjpw", "repeated_header", id="bearer-then-basic"),
        pytest.param(f"Basic dXNlcjpw, Bearer {TOKEN}", "repeated_header", id="basic-then-bearer"),
        pytest.param(f"Bearer {TOKEN},", "repeated_header", id="trailing-comma"),
    ],
)
def test_bearer_look_alikes_and_repeated_values_are_refused(value, reason):
    """R12/R19: not a scheme, inner spaces, two tokens joined with `,` -> 401."""
    assert_invalid_token(send(JWT, value), reason)


@pytest.mark.parametrize("value", [f"Bearer {TOKEN},{OTHER}", f"{TOKEN},{OTHER}"])
def test_repeated_jwt_header_other_than_authorization_is_refused(value):
    options = {**JWT, "user_name_header": "OIDC_access_token"}
    assert_invalid_token(send(options, value), "repeated_header")


def test_authorization_and_configured_jwt_header_with_different_users_are_refused():
    """R19: both `Authorization` and the configured JWT header carrying different users never
    resolve to one of them: 401 invalid_token (or 400 invalid_request)."""
    options = {**JWT, "user_name_header": "OIDC_access_token"}
    answer = call(
        headers={"OIDC_access_token": TOKEN, "Authorization": f"Bearer {OTHER}"}, **options
    )
    assert answer.status in (400, 401), answer.body
    assert not answer.app.called
    assert answer.json["error"]["code"] in ("INVALID_TOKEN", "INVALID_REQUEST")


def test_authorization_and_configured_jwt_header_with_the_same_token_are_accepted():
    """mod_auth_openidc in bearer mode leaves Authorization beside OIDC_access_token."""
    options = {**JWT, "user_name_header": "OIDC_access_token"}
    answer = call(
        headers={"OIDC_access_token": TOKEN, "Authorization": f"Bearer {TOKEN}"}, **options
    )
    assert_user(answer, "alice")


# --------------------------------------------------------------------------- JWT shape
def _parts(token: str) -> list[str]:
    return token.split(".")


H, P, S = _parts(TOKEN)


MALFORMED_TOKENS = [
    pytest.param(f"{H}.{P}.{S}.{S}.{S}", "malformed", id="JWE-five-segments"),
    pytest.param(
        f"{segment({'alg': 'RSA-OAEP', 'enc': 'A256GCM'})}.{S}.{S}.{P}.{S}",
        "malformed",
        id="JWE-header",
    ),
    pytest.param(f"{H}.{P}", "malformed", id="two-segments"),
    pytest.param(f"{H}.{P}.{S}.{S}", "malformed", id="four-segments"),
    pytest.param(f"{H}", "malformed", id="one-segment"),
    pytest.param(f"{H}.{P}.", "malformed", id="empty-signature"),
    pytest.param(f"{H}..{S}", "malformed", id="empty-payload"),
    pytest.param(f".{P}.{S}", "malformed", id="empty-header"),
    pytest.param("..", "malformed", id="all-empty"),
    pytest.param(make_token(header={"alg": "none"}), "alg_not_allowed", id="alg-none"),
    pytest.param(
        make_token(header={"alg": "None", "typ": "JWT"}), "alg_not_allowed", id="alg-None"
    ),
    pytest.param(make_token(header={"alg": "NONE"}), "alg_not_allowed", id="alg-NONE"),
    pytest.param(
        make_token(header={"alg": "none"}, signature=""), "malformed", id="alg-none-unsigned"
    ),
    pytest.param(make_token(header={"typ": "JWT"}), "malformed", id="no-alg"),
    pytest.param(make_token(header={"alg": 256}), "malformed", id="alg-number"),
    pytest.param(make_token(header={"alg": ""}), "malformed", id="alg-empty"),
    pytest.param(make_token(header='["HS256"]'), "malformed", id="header-array"),
    pytest.param(make_token(header="not json"), "malformed", id="header-not-json"),
    pytest.param(
        make_token(header='{"alg":"HS256","alg":"none"}'), "malformed", id="header-duplicate-alg"
    ),
    pytest.param(make_token(header='{"alg":"HS256","x":NaN}'), "malformed", id="header-NaN"),
    pytest.param(
        make_token(header={"alg": "HS256", "crit": ["exp"], "exp": 1}), "malformed", id="crit"
    ),
    pytest.param(make_token(header={"alg": "HS256", "crit": []}), "malformed", id="crit-empty"),
    pytest.param(
        make_token(header={"alg": "HS256", "b64": False, "crit": ["b64"]}),
        "malformed",
        id="b64-false-crit",
    ),
    pytest.param(make_token(header={"alg": "HS256", "b64": False}), "malformed", id="b64-false"),
    pytest.param(make_token(header={"alg": "HS256", "cty": "JWT"}), "malformed", id="cty-JWT"),
    pytest.param(make_token(header={"alg": "HS256", "cty": "jwt"}), "malformed", id="cty-jwt"),
    pytest.param(make_token("[1, 2]"), "malformed", id="payload-array"),
    pytest.param(make_token('"alice"'), "malformed", id="payload-string"),
    pytest.param(make_token("not json"), "malformed", id="payload-not-json"),
    pytest.param(
        make_token('{"preferred_username":"alice","preferred_username":"root"}'),
        "malformed",
        id="payload-duplicate-members",
    ),
    pytest.param(
        make_token('{"preferred_username":"alice","exp":NaN}'), "malformed", id="payload-NaN"
    ),
    pytest.param(
        make_token('{"preferred_username":"alice","x":Infinity}'), "malformed", id="payload-Inf"
    ),
    pytest.param(
        make_token(b'{"preferred_username":"al\xffice"}'), "malformed", id="payload-invalid-utf8"
    ),
    pytest.param(
        make_token(b'{"alg":"HS256","x":"\xc3"}'.replace(b"", b"")[:0] + b"\xff\xfe"),
        "malformed",
        id="payload-binary",
    ),
    pytest.param(f"{H}.{P}.{S}=", "malformed", id="padded-signature"),
    pytest.param(f"{H}=.{P}.{S}", "malformed", id="padded-header"),
    pytest.param(f"{H}.{P}.{S[:-2]}+/", "malformed", id="standard-base64-alphabet"),
    pytest.param(
        f"{H}.{P}.{S}{'A' * ((1 - len(S)) % 4)}", "malformed", id="signature-length-mod-4-is-1"
    ),
    pytest.param(f"{H}.{P}.{S}\u00e9", "malformed", id="non-ascii"),
    pytest.param(f"{H}.{P}\t.{S}", "malformed", id="tab-inside"),
    pytest.param(make_token({"other": "alice"}), "no_user_name", id="path-matches-nothing"),
    pytest.param(make_token({"preferred_username": 7}), "no_user_name", id="name-number"),
    pytest.param(make_token({"preferred_username": ["alice"]}), "no_user_name", id="name-list"),
    pytest.param(make_token({"preferred_username": ""}), "no_user_name", id="name-empty"),
    pytest.param(make_token({"preferred_username": "al\nice"}), "bad_user_name", id="name-LF"),
    pytest.param(
        make_token({"preferred_username": "alice "}), "bad_user_name", id="name-trailing-space"
    ),
    pytest.param(make_token({"preferred_username": "x" * 257}), "bad_user_name", id="name-257"),
]


@pytest.mark.parametrize(("token", "reason"), MALFORMED_TOKENS)
@pytest.mark.parametrize("prefix", ["Bearer ", ""])
def test_malformed_token_is_refused(prefix, token, reason):
    """R12: compact JWS only, three canonical base64url segments, non-empty signature."""
    assert_invalid_token(send(JWT, prefix + token), reason)


@pytest.mark.parametrize("which", [0, 1, 2])
@pytest.mark.parametrize("rest", [2, 3])
def test_non_canonical_base64url_is_refused(which, rest):
    """R12: a last character with unused bits set decodes to the same bytes yet is refused."""
    parts = None
    for pad in range(8):
        header = {"alg": "HS256", "kid": "k" * pad}
        claims = {"preferred_username": "alice", "pad": "x" * pad}
        # 31 signature bytes give 42 characters (rest 2), 32 give 43 (rest 3)
        signature = b64url(bytes(range(29 + rest)))
        candidate = make_token(claims, header, signature=signature).split(".")
        if len(candidate[which]) % 4 == rest:
            parts = candidate
            break
    assert parts is not None
    assert_user(send(JWT, "Bearer " + ".".join(parts)), "alice")  # canonical passes
    parts[which] = noncanonical(parts[which])
    assert_invalid_token(send(JWT, "Bearer " + ".".join(parts)), "malformed")


def test_five_segment_jwe_is_refused_with_plain_environ_key():
    answer = call(
        peer=STRANGER,
        environ={"OIDC_access_token": f"{H}.{P}.{S}.{S}.{S}"},
        **{**JWT, "user_name_header": "OIDC_access_token"},
    )
    assert_invalid_token(answer, "malformed")


def test_token_with_other_typ_and_kid_is_accepted():
    """Header members we do not interpret (typ, kid, jku) do not change the parse."""
    token = make_token(header={"alg": "RS256", "kid": "abc", "typ": "at+jwt"})
    assert_user(send(JWT, f"Bearer {token}"), "alice")


def test_unsigned_hs_signature_not_checked_when_validation_off():
    token = make_token(signature=b64url(b"garbage-signature"))
    assert_user(send(JWT, f"Bearer {token}"), "alice")


# --------------------------------------------------------------------------- UTF-8
def test_utf8_name_string_format():
    """R14: UTF-8 `josé`, latin-1-decoded by the WSGI server, arrives as `josé`."""
    answer = call(environ={"HTTP_X_USER": "josé".encode().decode("latin-1")}, **STRING)
    assert_user(answer, "josé")


def test_utf8_name_json_format():
    value = json.dumps({"preferred_username": "josé"}, ensure_ascii=False)
    answer = call(environ={"HTTP_OIDC_ID_TOKEN_PAYLOAD": value.encode().decode("latin-1")}, **JSON)
    assert_user(answer, "josé")


def test_utf8_name_jwt_format():
    token = make_token(json.dumps({"preferred_username": "josé"}, ensure_ascii=False))
    assert_user(send(JWT, f"Bearer {token}"), "josé")


# --------------------------------------------------------------------------- Principal
NESTED = json.dumps(
    {
        "preferred_username": "alice",
        "realm_access": {"roles": ["b", "a", "b", "c", "a"]},
        "groups": ["g1", "g2"],
        "address": {"street": "Main St", "geo": {"lat": 1}},
    }
)
ROLES_JSON = {**JSON, "roles_source": "json", "roles_json_path": "realm_access.roles"}


def test_principal_is_immutable():
    principal = send(ROLES_JSON, NESTED).principal
    with pytest.raises(dataclasses.FrozenInstanceError):
        principal.name = "root"
    with pytest.raises(dataclasses.FrozenInstanceError):
        principal.roles = ("ROLE_ADMINISTRATOR",)
    with pytest.raises(dataclasses.FrozenInstanceError):
        principal.claims = {}
    assert principal.name == "alice"


def test_principal_claims_are_read_only():
    principal = send(ROLES_JSON, NESTED).principal
    claims = principal.claims
    assert isinstance(claims, Mapping)
    with pytest.raises(TypeError):
        claims["preferred_username"] = "root"
    with pytest.raises(TypeError):
        del claims["preferred_username"]
    assert not hasattr(claims, "update") or _raises(lambda: claims.update(x=1))
    assert claims["preferred_username"] == "alice"


def _raises(function) -> bool:
    try:
        function()
    except (TypeError, AttributeError):
        return True
    return False


def test_principal_nested_claims_are_read_only():
    middleware = JwtHeadersMiddleware(RecordingApp(), **ROLES_JSON)
    environ = {"HTTP_OIDC_ID_TOKEN_PAYLOAD": NESTED}
    claims = call(middleware, environ=environ).principal.claims
    address = claims["address"]
    with pytest.raises(TypeError):
        address["street"] = "Evil St"
    with pytest.raises(TypeError):
        address["geo"]["lat"] = 2
    groups = claims["groups"]
    assert _raises(lambda: groups.append("admins"))
    assert _raises(lambda: groups.__setitem__(0, "admins"))
    roles = claims["realm_access"]["roles"]
    assert _raises(lambda: roles.append("ROLE_ADMINISTRATOR"))
    # the next request (a cache hit) sees the original claims
    again = call(middleware, environ=environ).principal
    assert list(again.claims["groups"]) == ["g1", "g2"]
    assert again.claims["address"]["street"] == "Main St"
    assert again.claims["address"]["geo"]["lat"] == 1
    assert list(again.claims["realm_access"]["roles"]) == ["b", "a", "b", "c", "a"]
    assert again.roles == ("b", "a", "c")


def test_principal_claims_equal_the_json_document():
    principal = send(ROLES_JSON, NESTED).principal
    assert set(principal.claims) == set(json.loads(NESTED))
    assert len(principal.claims) == 4


def test_principal_claims_none_for_string_format():
    principal = send(STRING, "alice").principal
    assert principal.claims is None
    assert principal.roles == ()


def test_principal_claims_for_jwt_are_the_payload():
    token = make_token({"preferred_username": "alice", "sub": "s-1", "nested": {"a": [1]}})
    principal = send(JWT, f"Bearer {token}").principal
    assert principal.claims["sub"] == "s-1"
    with pytest.raises(TypeError):
        principal.claims["sub"] = "s-2"
    with pytest.raises(TypeError):
        principal.claims["nested"]["a"] = 1


def test_roles_deduplicated_in_first_seen_order():
    principal = send(ROLES_JSON, NESTED).principal
    assert principal.roles == ("b", "a", "c")
    assert isinstance(principal.roles, tuple)


def test_roles_deduplicated_after_conversion():
    value = json_doc(realm_access={"roles": ["a", "x", "b", "a"]})
    principal = send({**ROLES_JSON, "role_converter": "a=R;b=R;x=X"}, value).principal
    assert principal.roles == ("R", "X")


def test_non_string_role_items_are_ignored():
    """R21: numbers, booleans, null, objects and lists in a role list are not roles."""
    value = json_doc(
        realm_access={"roles": ["a", 1, 2.5, True, False, None, {"x": "y"}, ["z"], "b"]}
    )
    principal = send(ROLES_JSON, value).principal
    assert principal.roles == ("a", "b")


@pytest.mark.parametrize("roles", [1, True, None, {"a": "b"}])
def test_non_string_roles_value_gives_no_roles(roles):
    principal = send(ROLES_JSON, json_doc(realm_access={"roles": roles})).principal
    assert principal.name == "alice"
    assert principal.roles == ()


def test_roles_string_value_is_one_role():
    principal = send(ROLES_JSON, json_doc(realm_access={"roles": "a,b"})).principal
    assert principal.roles == ("a,b",)


def test_roles_path_missing_gives_no_roles():
    principal = send(ROLES_JSON, json_doc()).principal
    assert principal.name == "alice"
    assert principal.roles == ()


HEADER_ROLES = {**STRING, "roles_source": "header", "roles_header": "X-Roles"}


@pytest.mark.parametrize(
    ("delimiter", "value", "expected"),
    [
        (None, "a,b,c", ("a", "b", "c")),
        (None, " a , b ,c ", ("a", "b", "c")),
        (None, "a,b,a,c,b", ("a", "b", "c")),
        (None, "a;b", ("a;b",)),
        (",", "x", ("x",)),
        (";", "a;b; c", ("a", "b", "c")),
        (";", "a,b;c", ("a,b", "c")),
        (";", "c;a;c", ("c", "a")),
    ],
)
def test_roles_from_header_split_on_delimiter(delimiter, value, expected):
    options = dict(HEADER_ROLES)
    if delimiter is not None:
        options["roles_header_delimiter"] = delimiter
    answer = call(headers={"X-User": "alice", "X-Roles": value}, **options)
    assert_user(answer, "alice")
    assert answer.principal.roles == expected


def test_roles_header_absent_gives_no_roles():
    answer = call(headers={"X-User": "alice"}, **HEADER_ROLES)
    assert_user(answer, "alice")
    assert answer.principal.roles == ()


@pytest.mark.parametrize(
    ("only_listed", "expected"),
    [(False, ("ROLE_A", "ROLE_A2", "b", "ROLE_C")), (True, ("ROLE_A", "ROLE_A2", "ROLE_C"))],
)
def test_role_converter_applies_to_header_roles(only_listed, expected):
    options = {
        **HEADER_ROLES,
        "role_converter": "a=ROLE_A;a=ROLE_A2;c=ROLE_C",
        "only_external_listed_roles": only_listed,
    }
    answer = call(headers={"X-User": "alice", "X-Roles": "a,b,c"}, **options)
    assert_user(answer, "alice")
    assert answer.principal.roles == expected


def test_role_converter_is_case_sensitive():
    options = {**HEADER_ROLES, "role_converter": "Admin=ROLE_ADMINISTRATOR"}
    answer = call(headers={"X-User": "alice", "X-Roles": "admin,ADMIN"}, **options)
    assert answer.principal.roles == ("admin", "ADMIN")


def test_role_converter_applies_to_jwt_roles():
    token = make_token({"preferred_username": "alice", "roles": ["ext", "other"]})
    options = {
        **JWT,
        "roles_source": "jwt",
        "roles_json_path": "roles",
        "role_converter": "ext=INT",
        "only_external_listed_roles": True,
    }
    answer = send(options, f"Bearer {token}")
    assert_user(answer, "alice")
    assert answer.principal.roles == ("INT",)


# --------------------------------------------------------------------------- app exceptions
class AppBoom(Exception):
    pass


def _raising_app(error):
    def app(environ, start_response):
        raise error

    return app


@pytest.mark.parametrize(
    "environ",
    [
        pytest.param({}, id="anonymous"),
        pytest.param({"HTTP_X_USER": "alice"}, id="authenticated"),
    ],
)
def test_exceptions_from_the_wrapped_app_pass_through(environ):
    """R37: the app's exceptions are not swallowed or rewritten."""
    error = AppBoom("from the app")
    middleware = JwtHeadersMiddleware(_raising_app(error), **STRING)
    with pytest.raises(AppBoom) as caught:
        call(middleware, environ=environ)
    assert caught.value is error


@pytest.mark.parametrize("error", [KeyError("k"), RecursionError("deep"), ValueError("v")])
def test_builtin_exceptions_from_the_wrapped_app_pass_through(error):
    middleware = JwtHeadersMiddleware(_raising_app(error), **JSON)
    with pytest.raises(type(error)) as caught:
        call(middleware, environ={"HTTP_OIDC_ID_TOKEN_PAYLOAD": json_doc()})
    assert caught.value is error


def test_app_exception_on_refused_request_never_happens():
    """A refused request does not reach the app, so nothing is raised."""
    middleware = JwtHeadersMiddleware(_raising_app(AppBoom()), **JSON)
    answer = call(middleware, environ={"HTTP_OIDC_ID_TOKEN_PAYLOAD": "{bad"})
    assert answer.status == 401
    assert answer.json["error"]["code"] == "INVALID_TOKEN"


# --------------------------------------------------------------------------- R25 cache weight
@pytest.mark.parametrize("size", [1, 2])
@pytest.mark.parametrize("fmt", ["string", "json"])
def test_r25_header_larger_than_the_whole_token_cache_is_served_uncached(fmt, size):
    """R25: the token cache is bounded in bytes, so a header worth more entries than the cache
    holds (here ~12 KB against a cache of 1 or 2 entries of 4 KiB) is simply not cached: the
    request is still answered for the user it names, every time, never turned into an
    ``internal_error`` by the cache refusing the entry."""
    # a user name cannot be that long: the string header is padded with trailing blanks
    value = {"string": "alice" + " " * 12_000, "json": json_doc("alice", filler="x" * 12_000)}[fmt]
    options = {**FORMATS[fmt], "token_cache_size": size}
    middleware = JwtHeadersMiddleware(RecordingApp(), JwtHeadersConfig(**options))
    for _ in range(3):
        answer = call(middleware, environ={http_key(options["user_name_header"]): value})
        assert_user(answer, "alice")
    assert len(middleware.authenticator._cache) == 0
