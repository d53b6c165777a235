"""Header value decoding (issue 13): ``header_encoding`` and mod_auth_openidc claim headers.

A WSGI server hands header bytes over as latin-1 text. ``auto`` (the default) reads them as
UTF-8 when they are UTF-8; ``utf8`` refuses anything else; ``latin1`` keeps them as received;
``base64url`` undoes mod_auth_openidc's ``OIDCPassClaimsAs ... base64url``. JSON and JWT values
must be UTF-8 whatever the setting (RFC 8259 8.1, R14).
"""

from __future__ import annotations

import base64
import json

import pytest
from conftest import JSON, STRING, assert_invalid_token, call

from jwt_headers import ConfigError, JwtHeadersConfig


def wsgi(text: str, encoding: str = "utf-8") -> str:
    """What a WSGI server hands over for ``text`` sent as bytes in ``encoding``."""
    return text.encode(encoding).decode("latin-1")


def b64url(text: str, *, pad: bool = False) -> str:
    encoded = base64.urlsafe_b64encode(text.encode("utf-8")).decode("ascii")
    return encoded if pad else encoded.rstrip("=")


def user(options: dict, value: str, **extra) -> str | None:
    key = "HTTP_" + options["user_name_header"].upper().replace("-", "_")
    answer = call(environ={key: value}, **options, **extra)
    assert answer.status == 200, (answer.status, answer.body)
    return answer.user


def refused(options: dict, value: str, reason: str, **extra) -> None:
    key = "HTTP_" + options["user_name_header"].upper().replace("-", "_")
    assert_invalid_token(call(environ={key: value}, **options, **extra), reason)


# --------------------------------------------------------------------------- string header
def test_auto_reads_utf8_bytes_and_keeps_latin1_bytes():
    assert user(STRING, wsgi("jos\u00e9")) == "jos\u00e9"
    assert user(STRING, wsgi("jos\u00e9", "latin-1")) == "jos\u00e9"  # not UTF-8: as received
    assert user(STRING, wsgi("jos\u00e9"), header_encoding="auto") == "jos\u00e9"


def test_utf8_refuses_bytes_that_are_not_utf8():
    assert user(STRING, wsgi("jos\u00e9"), header_encoding="utf8") == "jos\u00e9"
    refused(STRING, wsgi("jos\u00e9", "latin-1"), "bad_encoding", header_encoding="utf8")
    assert user(STRING, "alice", header_encoding="utf-8") == "alice"  # alias


def test_latin1_keeps_the_bytes_as_received():
    assert user(STRING, wsgi("jos\u00e9"), header_encoding="latin1") == "jos\u00c3\u00a9"
    assert user(STRING, wsgi("jos\u00e9", "latin-1"), header_encoding="latin1") == "jos\u00e9"


@pytest.mark.parametrize("pad", [False, True])
def test_base64url_string_header(pad):
    """mod_auth_openidc ``OIDCPassClaimsAs headers base64url``: the claim's UTF-8, encoded."""
    assert user(STRING, b64url("jos\u00e9", pad=pad), header_encoding="base64url") == "jos\u00e9"


@pytest.mark.parametrize(
    "value",
    [
        pytest.param("not base64!", id="outside-the-alphabet"),
        pytest.param("YWxpY2U+", id="standard-alphabet"),
        pytest.param("A", id="one-character"),
        pytest.param("YWxp=Y2U", id="inner-padding"),
        pytest.param(base64.urlsafe_b64encode(b"\xff\xfe").decode(), id="not-utf8-inside"),
    ],
)
def test_base64url_refuses_what_is_not_base64url_utf8(value):
    refused(STRING, value, "bad_encoding", header_encoding="base64url")


# --------------------------------------------------------------------------- JSON header
def test_json_refuses_non_utf8_whatever_the_setting():
    """Today's bug: ``{"preferred_username":"\\xff"}`` (one latin-1 byte) authenticated ``ÿ``."""
    value = wsgi('{"preferred_username":"\u00ff"}', "latin-1")
    for encoding in ("auto", "utf8", "latin1"):
        refused(JSON, value, "bad_encoding", header_encoding=encoding)
    assert user(JSON, wsgi('{"preferred_username":"\u00ff"}')) == "\u00ff"  # the control


def test_json_is_read_as_utf8_under_latin1_too():
    """JSON is UTF-8 by definition: ``latin1`` does not turn ``josé`` into mojibake there."""
    value = wsgi(json.dumps({"preferred_username": "jos\u00e9"}, ensure_ascii=False))
    assert user(JSON, value, header_encoding="latin1") == "jos\u00e9"


def test_base64url_json_header_and_its_claims():
    document = json.dumps({"preferred_username": "jos\u00e9", "roles": ["a"]}, ensure_ascii=False)
    key = "HTTP_OIDC_ID_TOKEN_PAYLOAD"
    answer = call(environ={key: b64url(document)}, **JSON, header_encoding="base64url")
    assert answer.status == 200
    assert answer.user == "jos\u00e9"
    assert dict(answer.principal.claims) == {"preferred_username": "jos\u00e9", "roles": ("a",)}
    refused(JSON, document, "bad_encoding", header_encoding="base64url")  # sent unencoded


# --------------------------------------------------------------------------- roles claim header
CLAIM_ROLES = {
    **JSON,
    "roles_source": "header",
    "roles_header": "OIDC_CLAIM_roles",
    "role_converter": "admin=ROLE_ADMINISTRATOR",
}
DOCUMENT = json.dumps({"preferred_username": "alice"})


@pytest.mark.parametrize(
    ("value", "roles"),
    [
        ("admin,reader", ("ROLE_ADMINISTRATOR", "reader")),  # mod_auth_openidc's default join
        ('["admin","reader"]', ("ROLE_ADMINISTRATOR", "reader")),  # passed as JSON
        ('[ "admin", 7, null, "" ]', ("ROLE_ADMINISTRATOR",)),  # non-strings ignored (R21)
        ("[]", ()),
    ],
)
def test_oidc_claim_roles_header_as_list_or_json_array(value, roles):
    answer = call(
        environ={"HTTP_OIDC_ID_TOKEN_PAYLOAD": DOCUMENT, "HTTP_OIDC_CLAIM_ROLES": value},
        **CLAIM_ROLES,
    )
    assert answer.status == 200, answer.body
    assert answer.principal.roles == roles


@pytest.mark.parametrize("value", ['["admin"', '["admin"]x', "[{}", "[1,"])
def test_roles_header_that_starts_as_an_array_but_is_not_one_is_refused(value):
    answer = call(
        environ={"HTTP_OIDC_ID_TOKEN_PAYLOAD": DOCUMENT, "HTTP_OIDC_CLAIM_ROLES": value},
        **CLAIM_ROLES,
    )
    assert_invalid_token(answer, "malformed", "roles header is not valid JSON")


def test_base64url_roles_header():
    answer = call(
        environ={
            "HTTP_OIDC_ID_TOKEN_PAYLOAD": b64url(DOCUMENT),
            "HTTP_OIDC_CLAIM_ROLES": b64url('["admin"]'),
        },
        **CLAIM_ROLES,
        header_encoding="base64url",
    )
    assert answer.status == 200, answer.body
    assert answer.principal.roles == ("ROLE_ADMINISTRATOR",)


# --------------------------------------------------------------------------- configuration
def test_unknown_encoding_is_a_config_error():
    with pytest.raises(ConfigError, match=r"header_encoding='utf16' is unknown; use one of"):
        JwtHeadersConfig(**STRING, header_encoding="utf16")


def test_base64url_with_a_jwt_is_a_config_error():
    with pytest.raises(ConfigError, match="a JWT is base64url already"):
        JwtHeadersConfig(
            user_name_header="Authorization",
            user_name_format="jwt",
            user_name_json_path="sub",
            header_encoding="base64url",
        )


def test_encoding_from_env_and_toml(tmp_path):
    env = {"JWT_HEADERS_USER_NAME_HEADER": "X-User", "JWT_HEADERS_HEADER_ENCODING": "Latin-1"}
    assert JwtHeadersConfig.from_env(environ=env).header_encoding == "latin1"
    path = tmp_path / "c.toml"
    path.write_text('[jwt_headers]\nuser_name_header = "X-User"\nheader_encoding = "base64url"\n')
    assert JwtHeadersConfig.from_file(path).header_encoding == "base64url"
