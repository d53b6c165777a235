"""JwtHeadersConfig: defaults, immutability, every ConfigError, start-up warnings, and the
mapping / environment / TOML constructors.

Everything here runs at build time: no request is made except in the one test that proves the
build itself opens no connection. Requirement numbers refer to shared/security.md (C1, C2, R17,
R31, R32).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import math
import os
import socket
from typing import Any

import pytest
from conftest import LOOPBACK, RecordingApp, call

from jwt_headers import ConfigError, JwtHeadersConfig, JwtHeadersMiddleware

# --------------------------------------------------------------------------- option sets

JWT: dict[str, Any] = {
    "user_name_header": "Authorization",
    "user_name_format": "jwt",
    "user_name_json_path": "preferred_username",
}
#: Port 9 (discard) on loopback: a URL that is valid, draws no C2 warning and is never fetched
#: while the config is built.
LOCAL_JWKS = "http://127.0.0.1:9/jwks"
ISSUER = "https://idp.example/realms/r"
#: A Bearer JWT checked by signature and issuer: the user header proves itself.
VALIDATED: dict[str, Any] = {
    **JWT,
    "validate_token": True,
    "jwks_uri": LOCAL_JWKS,
    "validate_issuer": True,
    "issuer": ISSUER,
}

#: The defaults of contract.md: the code block, plus "Defaults" and "Option names" under
#: "Details that tests rely on".
CONTRACT_DEFAULTS: dict[str, Any] = {
    "user_name_format": "string",
    "user_name_json_path": None,
    "roles_source": None,
    "roles_header": None,
    "roles_header_delimiter": ",",
    "roles_json_path": None,
    "role_converter": "",
    "only_external_listed_roles": False,
    "trust_unvalidated_roles_header": False,
    "validate_token": False,
    "validate_expiry": True,
    "validate_signature": True,
    "jwks_uri": None,
    "validate_userinfo": False,
    "userinfo_endpoint": None,
    "validate_subject": True,
    "validate_audience": False,
    "audience_claim": "aud",
    "audience": None,
    "validate_issuer": False,
    "issuer": None,
    "algorithms": ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA"),
    "leeway": 30,
    "trusted_proxies": ("127.0.0.0/8", "::1"),
    "allow_anonymous": True,
    "denied_user_names": (),
    "jwks_cache_ttl": 300,
    "jwks_refresh_cooldown": 30,
    "token_cache_size": 10_000,
    "max_header_bytes": 16384,
}
#: Options the contract does not name, with the defaults the README's option table gives.
README_DEFAULTS: dict[str, Any] = {
    "negative_cache_size": 1000,
    "negative_cache_ttl": 30,
    "jwks_max_stale": 86400,
    "userinfo_cache_ttl": 300,
    "http_connect_timeout": 2.0,
    "http_read_timeout": 3.0,
    "max_response_bytes": 1_048_576,
    "http_ca_bundle": None,
    "http_proxy": None,
    "token_types": None,
    "header_encoding": "auto",
    "sources": None,
    "metrics": None,
    "discovery": False,
    "providers": None,
    "jwks_prefetch": False,
    "exempt_paths": (),
    "exempt_methods": ("OPTIONS",),
    "protected_paths": (),
    "cache_url": None,
    "cache_timeout": 0.05,
}

BOOL_OPTIONS = sorted(name for name, value in CONTRACT_DEFAULTS.items() if isinstance(value, bool))
NUMBER_OPTIONS = sorted(
    name
    for name, value in {**CONTRACT_DEFAULTS, **README_DEFAULTS}.items()
    if isinstance(value, int | float) and not isinstance(value, bool)
)
WHOLE_NUMBER_OPTIONS = [
    "max_header_bytes",
    "token_cache_size",
    "negative_cache_size",
    "max_response_bytes",
]
#: Numeric options for which 0 is a valid value (the others have a lower bound of their own).
ZERO_ALLOWED = sorted(
    set(NUMBER_OPTIONS)
    - {
        "max_header_bytes",
        "http_connect_timeout",
        "http_read_timeout",
        "max_response_bytes",
        "cache_timeout",
    }
)


def build(**options: Any) -> JwtHeadersConfig:
    return JwtHeadersConfig(**options)


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "jwt_headers" and record.levelno == logging.WARNING
    ]


@pytest.fixture
def warned(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="jwt_headers")
    return caplog


# --------------------------------------------------------------------------- 1. defaults


@pytest.mark.parametrize(("option", "expected"), sorted(CONTRACT_DEFAULTS.items()))
def test_contract_default(option, expected):
    value = getattr(build(user_name_header="X"), option)
    if expected is None or isinstance(expected, bool):
        assert value is expected
    else:
        assert value == expected
        assert type(value) is type(expected), (option, value)


@pytest.mark.parametrize(("option", "expected"), sorted(README_DEFAULTS.items()))
def test_readme_default(option, expected):
    value = getattr(build(user_name_header="X"), option)
    assert value == expected
    assert isinstance(value, bool) is isinstance(expected, bool)


def test_every_option_has_a_documented_default():
    """An option added without a documented default (or a documented one removed) fails here."""
    documented = set(CONTRACT_DEFAULTS) | set(README_DEFAULTS) | {"user_name_header"}
    assert set(JwtHeadersConfig.option_names()) == documented


def test_default_trust_is_loopback_only():
    config = build(user_name_header="X")
    assert [str(net) for net in config.trusted_networks] == ["127.0.0.0/8", "::1/128"]
    assert config.trust_every_peer is False
    assert dict(config.role_map) == {}


def test_text_constructors_give_the_same_defaults():
    by_keyword = build(user_name_header="X")
    by_mapping = JwtHeadersConfig.from_mapping({"user_name_header": "X"})
    by_env = JwtHeadersConfig.from_env(environ={"JWT_HEADERS_USER_NAME_HEADER": "X"})
    for name in JwtHeadersConfig.option_names():
        assert getattr(by_mapping, name) == getattr(by_keyword, name), name
        assert getattr(by_env, name) == getattr(by_keyword, name), name


# --------------------------------------------------------------------------- 2. immutability


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("user_name_header", "Y"),
        ("validate_token", True),
        ("trusted_proxies", ("*",)),
        ("leeway", 3600),
        ("role_converter", "A=ROLE_ADMINISTRATOR"),
        ("trust_every_peer", True),
        ("trusted_networks", ()),
    ],
)
def test_setting_an_attribute_raises(attribute, value):
    config = build(user_name_header="X")
    before = getattr(config, attribute)
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError)):
        setattr(config, attribute, value)
    assert getattr(config, attribute) == before


def test_deleting_an_attribute_raises():
    config = build(user_name_header="X")
    with pytest.raises((dataclasses.FrozenInstanceError, AttributeError)):
        del config.trusted_proxies
    assert config.trusted_proxies == ("127.0.0.0/8", "::1")


def test_list_given_in_code_is_copied():
    """Mutating the caller's list afterwards must not widen a checked config's trust."""
    proxies = ["10.0.0.5"]
    config = build(user_name_header="X", trusted_proxies=proxies)
    proxies.append("*")
    assert config.trusted_proxies == ("10.0.0.5",)
    assert config.trust_every_peer is False


def test_replace_returns_a_new_checked_config():
    original = build(user_name_header="X")
    changed = original.replace(
        user_name_format="JSON", user_name_json_path="sub", trusted_proxies="10.0.0.0/8, ::1"
    )
    assert changed is not original
    assert isinstance(changed, JwtHeadersConfig)
    assert changed.user_name_format == "json"  # normalised: the checks ran again
    assert changed.user_path is not None
    assert changed.trusted_proxies == ("10.0.0.0/8", "::1")
    assert [str(n) for n in changed.trusted_networks] == ["10.0.0.0/8", "::1/128"]
    # the original is untouched
    assert original.user_name_format == "string"
    assert original.user_path is None
    assert original.trusted_proxies == ("127.0.0.0/8", "::1")


def test_replace_keeps_unchanged_options():
    original = build(**VALIDATED, leeway=5, role_converter="a=B")
    changed = original.replace(leeway=10)
    for name in JwtHeadersConfig.option_names() - {"leeway"}:
        assert getattr(changed, name) == getattr(original, name), name
    assert changed.leeway == 10
    assert dict(changed.role_map) == {"a": ("B",)}


@pytest.mark.parametrize(
    ("changes", "fragment"),
    [
        ({"roles_source": "bogus"}, "roles_source='bogus'"),
        ({"leeway": -1}, "leeway=-1"),
        ({"user_name_header": ""}, "user_name_header is required"),
        ({"validate_token": True}, "no JWT is read"),
        ({"leway": 5}, "did you mean 'leeway'"),
        ({"role_converter": "A=B=C"}, "role_converter"),
        ({"userinfo_cache_ttl": 301}, "userinfo_cache_ttl"),
    ],
)
def test_replace_checks_again(changes, fragment):
    original = build(user_name_header="X")
    with pytest.raises(ConfigError) as caught:
        original.replace(**changes)
    assert fragment in str(caught.value)


# --------------------------------------------------------------------------- 3. ConfigError


def case(case_id: str, options: dict[str, Any], *fragments: str) -> Any:
    return pytest.param(options, fragments, id=case_id)


HEADER_HINT = ("not a valid header name", "'OIDC_id_token_payload'")
URL_HINT = ("is not an http(s) URL with a host", "'https://idp.example/realms/r/")

ERROR_CASES = [
    # unknown option (difflib suggestion when one is close)
    case(
        "unknown-close",
        {"user_name_header": "X", "user_name_headr": "Y"},
        "'user_name_headr'",
        "not an option",
        "did you mean 'user_name_header'?",
    ),
    case("unknown-leeway", {"user_name_header": "X", "leway": 5}, "'leway'", "'leeway'"),
    case(
        "unknown-far",
        {"user_name_header": "X", "frobnicate": 1},
        "'frobnicate'",
        "not an option",
        "see the README",
    ),
    # user name
    case("user-header-missing", {}, "user_name_header is required", "'OIDC_id_token_payload'"),
    case("user-header-empty", {"user_name_header": ""}, "user_name_header is required"),
    case("user-header-none", {"user_name_header": None}, "user_name_header is required"),
    case("user-header-int", {"user_name_header": 5}, "user_name_header=5", "must be a string"),
    *(
        case(f"user-header-{i}", {"user_name_header": name}, "user_name_header=", *HEADER_HINT)
        for i, name in enumerate(
            ["X User", "X:User", "X\r\nInjected", "Üser", "X/Y", " X", "X;Y", "(X)", "X@Y"]
        )
    ),
    case(
        "roles-header-bad",
        {"user_name_header": "X", "roles_header": "X Roles", "roles_source": "header"},
        "roles_header='X Roles'",
        *HEADER_HINT,
    ),
    *(
        case(
            f"format-{fmt or 'empty'}",
            {"user_name_header": "X", "user_name_format": fmt},
            f"user_name_format={fmt!r} is unknown",
            "'string', 'json', 'jwt'",
        )
        for fmt in ["xml", "", "jwe", "bearer"]
    ),
    *(
        case(
            f"json-path-missing-{fmt}",
            {"user_name_header": "X", "user_name_format": fmt},
            "user_name_json_path is required",
            f"user_name_format={fmt!r}",
            "'preferred_username'",
        )
        for fmt in ["json", "jwt"]
    ),
    case(
        "json-path-blank",
        {"user_name_header": "X", "user_name_format": "json", "user_name_json_path": "   "},
        "user_name_json_path",
        "a JSON path is required",
        "'preferred_username'",
    ),
    *(
        case(
            f"json-path-invalid-{i}",
            {"user_name_header": "X", "user_name_format": "json", "user_name_json_path": path},
            f"user_name_json_path={path!r} is not a valid JSON path",
            "'realm_access.roles'",
            "'$.groups[0]'",
        )
        for i, path in enumerate(["a.b.", "$$", "$.groups[", "a b", ".a"])
    ),
    case(
        "roles-json-path-invalid",
        {
            "user_name_header": "X",
            "user_name_format": "json",
            "user_name_json_path": "sub",
            "roles_source": "json",
            "roles_json_path": "realm_access.",
        },
        "roles_json_path='realm_access.' is not a valid JSON path",
    ),
    # roles
    *(
        case(
            f"roles-source-{source}",
            {"user_name_header": "X", "roles_source": source},
            f"roles_source={source!r} is unknown",
            "'header', 'json', 'jwt'",
            "leave it unset",
        )
        for source in ["bogus", "claims", "userinfo"]
    ),
    *(
        case(
            f"roles-json-path-required-{source}",
            {**JWT, "roles_source": source, "roles_header": "X-Roles"},
            "roles_json_path is required",
            f"roles_source={source!r}",
            "'realm_access.roles'",
        )
        for source in ["json", "jwt"]
    ),
    case(
        "roles-header-on-string-user-header",
        {"user_name_header": "X-User", "roles_source": "header"},
        "roles_source='header' reads the user-name header",
        "plain string",
        "set roles_header",
    ),
    case(
        "roles-json-on-string-user-header",
        {"user_name_header": "X-User", "roles_source": "json", "roles_json_path": "roles"},
        "roles_source='json' reads the user-name header",
        "plain string",
    ),
    case(
        "roles-header-same-name-other-spelling",
        {"user_name_header": "X-User", "roles_source": "header", "roles_header": "x_user"},
        "reads the user-name header",
        "set roles_header",
    ),
    case(
        "roles-header-on-json-user-header",
        {"user_name_header": "X", "user_name_format": "json", "user_name_json_path": "sub"}
        | {"roles_source": "header"},
        "roles_source='header' reads the user-name header 'X'",
        "whose format is 'json'",
        "roles_source='json'",
    ),
    case(
        "roles-jwt-on-json-user-header",
        {"user_name_header": "X", "user_name_format": "json", "user_name_json_path": "sub"}
        | {"roles_source": "jwt", "roles_json_path": "roles"},
        "roles_source='jwt' reads the user-name header 'X'",
        "set roles_header",
    ),
    case(
        "delimiter-empty",
        {"user_name_header": "X", "roles_header_delimiter": ""},
        "roles_header_delimiter must not be empty",
        "','",
    ),
    case(
        "delimiter-none",
        {"user_name_header": "X", "roles_header_delimiter": None},
        "roles_header_delimiter=None: must be a string",
        "the default ','",
    ),
    *(
        case(
            f"role-converter-{i}",
            {"user_name_header": "X", "role_converter": text},
            "role_converter",
            f"entry {entry!r}",
            "'External=Internal'",
            "'Ext1=Int1;Ext1=Int2;Ext2=Int3'",
        )
        for i, (text, entry) in enumerate(
            [
                ("A=B=C", "A=B=C"),
                ("A=", "A="),
                ("=B", "=B"),
                ("A", "A"),
                ("A=B;C", "C"),
                ("A=B; = ;C=D", "="),
                ("Ext1=Int1,Ext2=Int2=X", "Ext1=Int1,Ext2=Int2=X"),
            ]
        )
    ),
    case(
        "role-converter-int",
        {"user_name_header": "X", "role_converter": 5},
        "role_converter=5",
        "must be a string",
    ),
    # validation switches
    case(
        "validate-token-string-user",
        {"user_name_header": "X", "validate_token": True},
        "validate_token is on but no JWT is read",
        "user_name_format='jwt'",
        "roles_source='jwt'",
    ),
    case(
        "validate-token-json-user",
        {"user_name_header": "X", "user_name_format": "json", "user_name_json_path": "sub"}
        | {"validate_token": True, "jwks_uri": LOCAL_JWKS},
        "no JWT is read",
    ),
    case(
        "unvalidated-roles-header",
        {**VALIDATED, "roles_source": "header", "roles_header": "X-Roles"},
        "roles_source='header' is not validated while validate_token is on",
        "roles_source='jwt'",
        "trust_unvalidated_roles_header=true",
        "trusted_proxies",
    ),
    case(
        "unvalidated-roles-json",
        {**VALIDATED, "roles_source": "json", "roles_header": "X-Claims"}
        | {"roles_json_path": "roles"},
        "roles_source='json' is not validated",
        "trust_unvalidated_roles_header=true",
    ),
    case(
        "every-check-off",
        {**JWT, "validate_token": True, "validate_expiry": False, "validate_signature": False},
        "validate_token is on but every check is off",
        "validate_signature",
        "jwks_uri",
    ),
    # C1: URLs
    case(
        "C1-jwks-uri-missing",
        {**JWT, "validate_token": True},
        "jwks_uri is required",
        "https://idp/certs",
    ),
    case(
        "C1-jwks-uri-empty", {**JWT, "validate_token": True, "jwks_uri": ""}, "jwks_uri is required"
    ),
    case(
        "C1-jwks-uri-blank",
        {**JWT, "validate_token": True, "jwks_uri": "   "},
        "jwks_uri is required",
    ),
    case(
        "C1-jwks-uri-int",
        {**JWT, "validate_token": True, "jwks_uri": 443},
        "jwks_uri=443",
        "must be a string",
    ),
    *(
        case(
            f"C1-jwks-uri-{i}",
            {**JWT, "validate_token": True, "jwks_uri": url},
            "jwks_uri=",
            *URL_HINT,
        )
        for i, url in enumerate(
            [
                "ftp://idp.example/jwks",
                "idp.example/jwks",
                "https://",
                "https:///certs",
                "javascript:alert(1)",
                "//idp.example/jwks",
                "ws://idp.example/jwks",
            ]
        )
    ),
    *(
        case(
            f"C1-jwks-uri-file-{i}",
            {**JWT, "validate_token": True, "jwks_uri": url},
            f"jwks_uri={url!r} is not a local file URL",
            "'file:///etc/jwt-headers/jwks.json'",
        )
        for i, url in enumerate(
            [
                "file://idp.example/etc/jwks.json",  # another host: a share we cannot vouch for
                "file:jwks.json",  # relative: depends on the working directory
                "file://./jwks.json",
                "file:///etc/jwks.json?v=2",
                "file:///etc/jwks.json#k",
                "file:///etc/jwks%00.json",
            ]
        )
    ),
    case(
        "C1-userinfo-file",
        {
            **JWT,
            "validate_token": True,
            "validate_signature": False,
            "validate_userinfo": True,
            "userinfo_endpoint": "file:///etc/userinfo.json",
        },
        "userinfo_endpoint=",
        *URL_HINT,
    ),
    case(
        "C1-userinfo-missing",
        {**JWT, "validate_token": True, "validate_signature": False, "validate_userinfo": True},
        "userinfo_endpoint is required",
        "https://",
    ),
    case(
        "C1-userinfo-not-http",
        {**VALIDATED, "validate_userinfo": True, "userinfo_endpoint": "ldap://idp/userinfo"},
        "userinfo_endpoint='ldap://idp/userinfo'",
        *URL_HINT,
    ),
    case(
        "C1-userinfo-no-host",
        {**VALIDATED, "validate_userinfo": True, "userinfo_endpoint": "https:///userinfo"},
        "userinfo_endpoint=",
        "with a host",
    ),
    *(
        case(
            f"C1-audience-{label}",
            {**VALIDATED, "validate_audience": True} | extra,
            "audience is required with validate_audience",
            f"the {claim} claim",
            "'my-api'",
        )
        for label, extra, claim in [
            ("missing", {}, "aud"),
            ("empty-string", {"audience": ""}, "aud"),
            ("empty-list", {"audience": []}, "aud"),
            ("only-commas", {"audience": " , ,"}, "aud"),
            ("azp", {"audience_claim": "azp"}, "azp"),
        ]
    ),
    case(
        "C1-audience-claim-blank",
        {**VALIDATED, "validate_audience": True, "audience": "api", "audience_claim": "  "},
        "audience_claim must name a claim",
        "'azp'",
    ),
    *(
        case(
            f"C1-issuer-{label}",
            {**JWT, "validate_token": True, "jwks_uri": LOCAL_JWKS, "validate_issuer": True}
            | extra,
            "issuer is required with validate_issuer",
            "'https://idp.example/realms/r'",
        )
        for label, extra in [("missing", {}), ("empty", {"issuer": ""}), ("list", {"issuer": []})]
    ),
    # R1: algorithms
    *(
        case(
            f"alg-refused-{alg}",
            {**VALIDATED, "algorithms": ["RS256", alg]},
            f"algorithms: {alg!r} is refused",
            "asymmetric",
            "RS256",
        )
        for alg in ["none", "None", "NONE", "HS256", "hs384", "HS512"]
    ),
    *(
        case(
            f"alg-unknown-{alg}",
            {**VALIDATED, "algorithms": alg},
            f"algorithms: {alg!r} is unknown",
            "choose from",
            "ES256, ES256K",
        )
        for alg in ["RS1024", "rs256", "ES999", "RSA-OAEP"]
    ),
    *(
        case(
            f"alg-empty-{i}",
            {**VALIDATED, "algorithms": value},
            "algorithms must name at least one algorithm",
            "RS256",
        )
        for i, value in enumerate([(), [], "", " , ", [" "]])
    ),
    # trusted_proxies and list types
    *(
        case(
            f"trusted-proxy-{i}",
            {"user_name_header": "X", "trusted_proxies": ["127.0.0.1", entry]},
            f"trusted_proxies: {entry!r} is not an IP address or CIDR",
            "'10.0.0.0/24'",
            "'*'",
        )
        for i, entry in enumerate(
            [
                "10.0.0.300",
                "example.com",
                "localhost",
                "10.0.0.0/33",
                "10.0.0.1-10.0.0.9",
                "**",
                "::1/129",
                "0.0.0.0/-1",
            ]
        )
    ),
    case(
        "trusted-proxy-int",
        {"user_name_header": "X", "trusted_proxies": ["127.0.0.1", 10]},
        "trusted_proxies: 10 is not a string",
        "list of strings",
    ),
    case(
        "trusted-proxies-dict",
        {"user_name_header": "X", "trusted_proxies": {"10.0.0.1": True}},
        "trusted_proxies=",
        "give a list of strings or a comma-separated string",
    ),
    case(
        "audience-int",
        {"user_name_header": "X", "audience": 5},
        "audience=5",
        "comma-separated string",
    ),
    case(
        "denied-names-int",
        {"user_name_header": "X", "denied_user_names": ["root", 0]},
        "denied_user_names: 0 is not a string",
    ),
    # limits
    case(
        "max-header-bytes-0",
        {"user_name_header": "X", "max_header_bytes": 0},
        "max_header_bytes must be at least 1",
        "16384",
    ),
    *(
        case(
            f"{name}-zero",
            {"user_name_header": "X", name: 0},
            f"{name} must be greater than 0",
        )
        for name in ["http_connect_timeout", "http_read_timeout", "max_response_bytes"]
    ),
    case(
        "http-read-timeout-0.0",
        {"user_name_header": "X", "http_read_timeout": 0.0},
        "http_read_timeout must be greater than 0",
    ),
    *(
        case(
            f"negative-cache-ttl-{value}",
            {"user_name_header": "X", "negative_cache_ttl": value},
            f"negative_cache_ttl={value!r}",
            "at most 60 seconds",
        )
        for value in [61, 60.5, 3600]
    ),
    *(
        case(
            f"R32-userinfo-cache-ttl-{value}",
            {"user_name_header": "X", "userinfo_cache_ttl": value},
            f"userinfo_cache_ttl={value!r}",
            "at most 300 seconds",
            "R32",
        )
        for value in [301, 300.5, 86400]
    ),
]


@pytest.mark.parametrize(("options", "fragments"), ERROR_CASES)
def test_config_error_names_option_and_fix(options, fragments):
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig(**options)
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, (fragment, message)


BAD_NUMBERS = [-1, -0.5, math.nan, math.inf, -math.inf, True, False, "30", None, [30]]


@pytest.mark.parametrize("option", NUMBER_OPTIONS)
@pytest.mark.parametrize("value", BAD_NUMBERS, ids=repr)
def test_bad_number_is_refused(option, value):
    """Booleans are ints in Python; NaN passes every ``<`` check: both must be refused."""
    with pytest.raises(ConfigError) as caught:
        build(user_name_header="X", **{option: value})
    message = str(caught.value)
    assert f"{option}={value!r}" in message
    assert "must be a finite number >= 0" in message


@pytest.mark.parametrize("option", WHOLE_NUMBER_OPTIONS)
@pytest.mark.parametrize("value", [2.5, 100.0])
def test_fraction_for_a_count_is_refused(option, value):
    with pytest.raises(ConfigError) as caught:
        build(user_name_header="X", **{option: value})
    assert f"{option}={value!r}: must be a whole number >= 0" in str(caught.value)


@pytest.mark.parametrize("option", ZERO_ALLOWED)
def test_zero_is_accepted_where_no_lower_bound_applies(option):
    assert getattr(build(user_name_header="X", **{option: 0}), option) == 0


@pytest.mark.parametrize(
    ("option", "limit"), [("negative_cache_ttl", 60), ("userinfo_cache_ttl", 300)]
)
def test_cache_ttl_cap_is_inclusive(option, limit):
    """R25 / R32: the cap itself is allowed; only values above it are refused."""
    assert getattr(build(user_name_header="X", **{option: limit}), option) == limit


@pytest.mark.parametrize("option", BOOL_OPTIONS)
@pytest.mark.parametrize("value", [1, 0, "true", "yes", None], ids=repr)
def test_non_bool_for_a_switch_is_refused(option, value):
    """In code a switch takes a real bool: ``"false"`` would be truthy if it slipped through."""
    with pytest.raises(ConfigError) as caught:
        build(user_name_header="X", **{option: value})
    assert f"{option}={value!r}: must be true or false" in str(caught.value)


@pytest.mark.parametrize(
    "option",
    [
        "user_name_json_path",
        "roles_header",
        "roles_json_path",
        "jwks_uri",
        "userinfo_endpoint",
        "audience_claim",
    ],
)
@pytest.mark.parametrize("value", [5, b"X", ["a"]], ids=repr)
def test_non_string_for_a_text_option_is_refused(option, value):
    with pytest.raises(ConfigError) as caught:
        build(user_name_header="X", **{option: value})
    assert f"{option}={value!r}: must be a string" in str(caught.value)


@pytest.mark.parametrize("option", ["user_name_format", "role_converter"])
def test_none_for_a_text_option_with_a_text_default_is_a_config_error(option):
    with pytest.raises(ConfigError) as caught:
        build(user_name_header="X", **{option: None})
    assert option in str(caught.value)


@pytest.mark.parametrize(
    "url", ["https://[::1/jwks", "http://[not-an-ip]/jwks", "https://idp.example]/jwks"]
)
def test_c1_malformed_host_is_a_config_error_naming_the_option(url):
    with pytest.raises(ConfigError) as caught:
        build(**{**VALIDATED, "jwks_uri": url})
    assert "jwks_uri" in str(caught.value)


def test_config_error_is_a_value_error():
    assert issubclass(ConfigError, ValueError)
    with pytest.raises(ValueError, match="user_name_header is required"):
        JwtHeadersConfig()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (";;", {}),
        (" ; ; ", {}),
        ("", {}),
        (" A = B ; ; C=D ", {"A": ("B",), "C": ("D",)}),
        ("A=B;A=C;A=B", {"A": ("B", "C")}),
        ("Ext1=Int1;Ext1=Int2;Ext2=Int3", {"Ext1": ("Int1", "Int2"), "Ext2": ("Int3",)}),
        ("a=B;A=C", {"a": ("B",), "A": ("C",)}),
    ],
)
def test_role_converter_accepted_forms(text, expected):
    """Empty entries (``;;``) are skipped, names are trimmed and kept case-sensitive (R21)."""
    assert dict(build(user_name_header="X", role_converter=text).role_map) == expected


# --------------------------------------------------------------------------- 4. R31 secrets


@pytest.mark.parametrize(
    ("option", "url"),
    [
        ("jwks_uri", "ftp://user:s3cret@idp/jwks"),
        ("jwks_uri", "https://user:s3cret@/jwks"),
        ("jwks_uri", "file://admin:s3cret@idp/etc/jwks.json"),
        ("jwks_uri", "ftp://user:s3cret@idp:21/jwks?x=1"),
        ("userinfo_endpoint", "gopher://svc:s3cret@idp/userinfo"),
        ("jwks_uri", "ftp://a@b:s3cret@idp/jwks"),
    ],
)
def test_r31_config_error_never_shows_url_credentials(option, url):
    """Config errors go to logs and terminals; a password in the URL must not (R31/R35). The
    message still says which option and which host, so it stays useful."""
    options = {**VALIDATED, option: url}
    if option == "userinfo_endpoint":
        options["validate_userinfo"] = True
    with pytest.raises(ConfigError) as caught:
        build(**options)
    message = str(caught.value)
    assert "s3cret" not in message
    assert f"{option}=" in message
    assert "idp" in message


@pytest.mark.parametrize(
    "url", ["https:/user:s3cret@idp.example/jwks", "https:user:s3cret@idp.example/jwks"]
)
def test_r31_mistyped_url_with_credentials_is_redacted_too(url):
    with pytest.raises(ConfigError) as caught:
        build(**{**VALIDATED, "jwks_uri": url})
    assert "s3cret" not in str(caught.value)


def test_r31_plain_http_warning_never_shows_url_credentials(warned):
    build(**{**VALIDATED, "jwks_uri": "http://user:s3cret@idp.example/jwks"})
    messages = warnings_of(warned)
    assert any("jwks_uri" in m and "idp.example" in m for m in messages), messages
    assert not any("s3cret" in m for m in messages)


def test_r31_repr_never_shows_url_credentials():
    config = build(**{**VALIDATED, "jwks_uri": "https://user:s3cret@idp.example/jwks"})
    assert "s3cret" not in repr(config)


# --------------------------------------------------------------------------- 5. warnings


def _with_url(option: str, url: str) -> dict[str, Any]:
    if option == "jwks_uri":
        return {**VALIDATED, "jwks_uri": url}
    return {**VALIDATED, "validate_userinfo": True, "userinfo_endpoint": url}


REMOTE_HTTP = [
    ("http://idp.example/jwks", "idp.example"),
    ("http://10.0.0.5:8080/jwks", "10.0.0.5"),
    ("http://127.0.0.1.evil.example/jwks", "127.0.0.1.evil.example"),
    ("http://localhost.evil.example/jwks", "localhost.evil.example"),
    ("http://localhost@evil.example/jwks", "evil.example"),
    ("http://[2001:db8::1]/jwks", "2001:db8::1"),
    ("  http://idp.example/jwks  ", "idp.example"),
]


@pytest.mark.parametrize("option", ["jwks_uri", "userinfo_endpoint"])
@pytest.mark.parametrize(("url", "host"), REMOTE_HTTP)
def test_c2_plain_http_to_remote_host_warns(warned, option, url, host):
    """Look-alike hosts (``127.0.0.1.evil.example``, ``localhost@evil.example``) are remote."""
    build(**_with_url(option, url))
    c2 = [m for m in warnings_of(warned) if "plain http" in m]
    assert len(c2) == 1, warnings_of(warned)
    assert c2[0].startswith(f"{option} uses plain http to {host}:")
    assert "use https" in c2[0]


@pytest.mark.parametrize("option", ["jwks_uri", "userinfo_endpoint"])
@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/jwks",
        "http://127.8.9.10/jwks",
        "http://localhost:8080/jwks",
        "HTTP://LOCALHOST/jwks",
        "http://[::1]/jwks",
        "http://[::1]:8443/jwks",
        "https://idp.example/jwks",
    ],
)
def test_c2_loopback_or_https_does_not_warn(warned, option, url):
    config = build(**_with_url(option, url))
    assert getattr(config, option) == url
    assert warnings_of(warned) == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/jwt-headers/jwks.json",
        "file://localhost/etc/jwt-headers/jwks.json",
        "FILE:///etc/jwt-headers/jwks.json",
        "file:///srv/keys/with%20space.json",
    ],
)
def test_jwks_uri_may_be_a_local_file(url):
    """Issue 14: an internal signer's key set as a local file: an absolute path, no host but
    ``localhost``; kept as written (the key-set client reads it)."""
    config = build(**{**VALIDATED, "jwks_uri": url})
    assert config.jwks_uri == url


def test_url_is_stored_trimmed():
    config = build(**{**VALIDATED, "jwks_uri": "  https://idp.example/jwks\n"})
    assert config.jwks_uri == "https://idp.example/jwks"


def test_signature_without_issuer_warns_once(warned):
    options = {**JWT, "validate_token": True, "jwks_uri": LOCAL_JWKS}
    build(**options)
    messages = warnings_of(warned)
    assert len(messages) == 1, messages
    assert "validate_signature is on without validate_issuer" in messages[0]
    assert "validate_issuer=true" in messages[0]


def test_signature_without_issuer_warns_once_through_middleware(warned):
    """Contract: "logged once at WARNING" — the middleware must not log it a second time."""
    JwtHeadersMiddleware(RecordingApp(), **JWT, validate_token=True, jwks_uri=LOCAL_JWKS)
    assert len([m for m in warnings_of(warned) if "without validate_issuer" in m]) == 1
    config = build(**JWT, validate_token=True, jwks_uri=LOCAL_JWKS)
    warned.clear()
    JwtHeadersMiddleware(RecordingApp(), config)
    # only the deployment doctor's own findings, none about the issuer again
    assert [m for m in warnings_of(warned) if not m.startswith("doctor ")] == []
    assert not [m for m in warnings_of(warned) if "issuer" in m]


@pytest.mark.parametrize(
    "options",
    [
        pytest.param(VALIDATED, id="issuer-set"),
        pytest.param(
            {**JWT, "validate_token": True, "validate_signature": False, "jwks_uri": LOCAL_JWKS},
            id="signature-off",
        ),
        pytest.param({**JWT, "jwks_uri": LOCAL_JWKS}, id="validate-token-off"),
    ],
)
def test_no_issuer_warning_when_it_does_not_apply(warned, options):
    build(**options)
    assert warnings_of(warned) == []


R17_ROLES_HEADER = {
    **VALIDATED,
    "roles_source": "header",
    "roles_header": "X-Roles",
    "trust_unvalidated_roles_header": True,
}


def test_r17_star_with_unproven_roles_header_warns_naming_only_that_header(warned):
    """The user is a signature-checked Bearer JWT (proves itself); only X-Roles is unproven."""
    config = build(**R17_ROLES_HEADER, trusted_proxies="*")
    assert config.trust_every_peer is True
    r17 = [m for m in warnings_of(warned) if "trusted_proxies='*'" in m]
    assert len(r17) == 1, warnings_of(warned)
    assert "(X-Roles)" in r17[0]
    assert "Authorization" not in r17[0]
    assert "list the proxy's addresses in trusted_proxies" in r17[0]


def test_r17_star_with_roles_from_the_validated_token_does_not_warn(warned):
    build(
        **VALIDATED,
        roles_source="jwt",
        roles_json_path="realm_access.roles",
        trusted_proxies=("*",),
    )
    assert warnings_of(warned) == []


def test_r17_star_with_validated_separate_roles_token_does_not_warn(warned):
    build(
        **VALIDATED,
        roles_source="jwt",
        roles_header="X-Roles-Token",
        roles_json_path="roles",
        trusted_proxies=["*"],
    )
    assert warnings_of(warned) == []


@pytest.mark.parametrize(
    ("options", "unproven"),
    [
        pytest.param({"user_name_header": "X-User"}, ["X-User"], id="string"),
        pytest.param(
            {"user_name_header": "X-User", "roles_source": "header", "roles_header": "X-Roles"},
            ["X-User", "X-Roles"],
            id="string-and-roles",
        ),
        pytest.param(
            {"user_name_header": "OIDC_id_token_payload", "user_name_format": "json"}
            | {"user_name_json_path": "sub", "roles_source": "json", "roles_json_path": "r"},
            ["OIDC_id_token_payload"],
            id="json-roles-in-same-header",
        ),
        pytest.param(JWT, ["Authorization"], id="jwt-not-validated"),
        pytest.param(
            {**JWT, "validate_token": True, "validate_signature": False},
            ["Authorization"],
            id="jwt-expiry-only",
        ),
        pytest.param(
            {**JWT, "validate_token": True, "validate_signature": False}
            | {"validate_userinfo": True, "userinfo_endpoint": "https://idp.example/ui"},
            ["Authorization"],
            id="jwt-userinfo-only",
        ),
    ],
)
def test_r17_star_with_unproven_user_header_warns(warned, options, unproven):
    build(**options, trusted_proxies="*")
    r17 = [m for m in warnings_of(warned) if "trusted_proxies='*'" in m]
    assert len(r17) == 1, warnings_of(warned)
    assert f"({', '.join(unproven)})" in r17[0]


def test_r17_no_warning_without_star(warned):
    build(user_name_header="X-User", trusted_proxies="10.0.0.5, 10.0.1.0/24")
    build(**{**R17_ROLES_HEADER, "trusted_proxies": ["10.0.0.5"]})
    assert warnings_of(warned) == []


def _unsigned_looking_jwt() -> str:
    def part(obj: dict[str, Any]) -> str:
        raw = json.dumps(obj).encode()
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signature = base64.urlsafe_b64encode(b"\x01" * 256).rstrip(b"=").decode()
    header = part({"alg": "RS256", "typ": "JWT", "kid": "k1"})
    payload = part(
        {"preferred_username": "alice", "iss": ISSUER, "exp": 4_000_000_000, "iat": 1_700_000_000}
    )
    return f"{header}.{payload}.{signature}"


def test_building_config_and_middleware_opens_no_connection(monkeypatch):
    """config.py only parses URLs (urlsplit) and the verifier's clients fetch lazily: building
    must work on a box that cannot reach the IdP. The request at the end proves the tripwire
    does catch an outbound call."""
    attempts: list[Any] = []

    def refuse_connect(sock: socket.socket, address: Any) -> None:
        attempts.append(address)
        raise OSError("network disabled in this test")

    real_getaddrinfo = socket.getaddrinfo

    def record_getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        attempts.append(host)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", refuse_connect)
    monkeypatch.setattr(socket, "getaddrinfo", record_getaddrinfo)
    options = {
        **VALIDATED,
        "validate_userinfo": True,
        "userinfo_endpoint": "http://127.0.0.1:9/userinfo",
    }
    config = build(**options)
    middleware = JwtHeadersMiddleware(RecordingApp(), config)
    JwtHeadersMiddleware(RecordingApp(), **options)
    assert attempts == []

    answer = call(middleware, {"Authorization": f"Bearer {_unsigned_looking_jwt()}"}, peer=LOOPBACK)
    assert answer.status == 503
    assert attempts, "the tripwire saw no outbound call: the test above proves nothing"


# --------------------------------------------------------------------------- 6. from_mapping


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("true", True),
        ("TRUE", True),
        (" yes ", True),
        ("on", True),
        ("1", True),
        ("false", False),
        ("No", False),
        ("off", False),
        ("0", False),
    ],
)
@pytest.mark.parametrize("option", ["allow_anonymous", "only_external_listed_roles"])
def test_mapping_bool_text(option, text, expected):
    config = JwtHeadersConfig.from_mapping({"user_name_header": "X", option: text})
    assert getattr(config, option) is expected


@pytest.mark.parametrize("text", ["maybe", "", "2", "tru", "y", "enabled"])
def test_mapping_bad_bool_text(text):
    """An empty switch is an error, not the default: a blank env var is more likely a typo."""
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig.from_mapping({"user_name_header": "X", "validate_token": text})
    assert f"validate_token={text!r}: must be true or false" in str(caught.value)


@pytest.mark.parametrize(
    ("option", "text", "expected"),
    [
        ("leeway", "30", 30),
        ("leeway", "2.5", 2.5),
        ("leeway", " 7 ", 7),
        ("leeway", "0", 0),
        ("jwks_cache_ttl", "600", 600),
        ("http_connect_timeout", "0.5", 0.5),
        ("userinfo_cache_ttl", "300", 300),
        ("max_header_bytes", "8192", 8192),
        ("token_cache_size", "0", 0),
    ],
)
def test_mapping_number_text(option, text, expected):
    value = getattr(JwtHeadersConfig.from_mapping({"user_name_header": "X", option: text}), option)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(
    ("option", "text", "fragment"),
    [
        ("leeway", "ten", "leeway='ten': must be a number, e.g. 30"),
        ("leeway", "", "leeway='': must be a number"),
        ("leeway", "30s", "leeway='30s': must be a number"),
        ("leeway", "-5", "leeway=-5: must be a finite number >= 0"),
        ("leeway", "nan", "leeway=nan: must be a finite number >= 0"),
        ("jwks_max_stale", "inf", "jwks_max_stale=inf: must be a finite number >= 0"),
        ("max_header_bytes", "2.5", "max_header_bytes='2.5': must be a whole number, e.g. 16384"),
        ("token_cache_size", "1e3", "token_cache_size='1e3': must be a whole number"),
        ("token_cache_size", "many", "token_cache_size='many': must be a number, e.g. 10000"),
        ("negative_cache_ttl", "61", "negative_cache_ttl=61: at most 60"),
        ("userinfo_cache_ttl", "3600", "userinfo_cache_ttl=3600: at most 300 seconds (R32)"),
    ],
)
def test_mapping_bad_number_text(option, text, fragment):
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig.from_mapping({"user_name_header": "X", option: text})
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("option", "text", "expected"),
    [
        ("algorithms", "RS256, ES256", ("RS256", "ES256")),
        ("algorithms", " EdDSA ", ("EdDSA",)),
        ("trusted_proxies", "10.0.0.0/8, ::1", ("10.0.0.0/8", "::1")),
        ("trusted_proxies", "*", ("*",)),
        ("trusted_proxies", "", ()),
        ("audience", "api-1, api-2", ("api-1", "api-2")),
        ("audience", "a,,b, ", ("a", "b")),
        ("issuer", "https://a, https://b", ("https://a", "https://b")),
        ("denied_user_names", "root, admin", ("root", "admin")),
    ],
)
def test_mapping_list_text(option, text, expected):
    config = JwtHeadersConfig.from_mapping({"user_name_header": "X", option: text})
    assert getattr(config, option) == expected


@pytest.mark.parametrize(
    "option",
    ["jwks_uri", "userinfo_endpoint", "roles_source", "roles_header", "roles_json_path"],
)
@pytest.mark.parametrize("text", ["", "   "])
def test_mapping_empty_text_means_unset(option, text):
    """Options whose default is None: an empty value (``KEY=`` in an env file) is "not set"."""
    config = JwtHeadersConfig.from_mapping({"user_name_header": "X", option: text})
    assert getattr(config, option) is None


def test_mapping_empty_json_path_means_unset_and_is_then_required():
    with pytest.raises(ConfigError, match="user_name_json_path is required"):
        JwtHeadersConfig.from_mapping(
            {"user_name_header": "X", "user_name_format": "json", "user_name_json_path": ""}
        )


def test_mapping_empty_user_name_header_is_still_required():
    with pytest.raises(ConfigError, match="user_name_header is required"):
        JwtHeadersConfig.from_mapping({"user_name_header": "  "})


def test_mapping_text_is_trimmed_and_normalised():
    config = JwtHeadersConfig.from_mapping(
        {
            "user_name_header": " Authorization ",
            "user_name_format": " JWT ",
            "user_name_json_path": " preferred_username ",
            "roles_source": "JWT",
            "roles_json_path": "resource_access.live-key2.roles",
            "role_converter": "GeoserverAdministrator=ROLE_ADMINISTRATOR",
        }
    )
    assert config.user_name_header == "Authorization"
    assert config.user_name_format == "jwt"
    assert config.user_name_json_path == "preferred_username"
    assert config.roles_source == "jwt"
    assert dict(config.role_map) == {"GeoserverAdministrator": ("ROLE_ADMINISTRATOR",)}


def test_mapping_keys_are_case_insensitive_and_dash_tolerant():
    config = JwtHeadersConfig.from_mapping(
        {"User-Name-Header": "X", " ALLOW_ANONYMOUS ": "false", "max-header-bytes": "100"}
    )
    assert config.user_name_header == "X"
    assert config.allow_anonymous is False
    assert config.max_header_bytes == 100


def test_mapping_native_values_pass_through():
    config = JwtHeadersConfig.from_mapping(
        {"user_name_header": "X", "leeway": 5, "allow_anonymous": False, "audience": ["a", "b"]}
    )
    assert config.leeway == 5
    assert config.allow_anonymous is False
    assert config.audience == ("a", "b")


@pytest.mark.parametrize(
    ("key", "fragments"),
    [
        ("user_name_headr", ("'user_name_headr' is not an option", "'user_name_header'")),
        ("VALIDATE_TOKENS", ("'VALIDATE_TOKENS' is not an option", "'validate_token'")),
        ("secret", ("'secret' is not an option", "see the README")),
    ],
)
def test_mapping_unknown_key(key, fragments):
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig.from_mapping({"user_name_header": "X", key: "1"})
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_mapping_two_spellings_of_one_option_is_an_error():
    with pytest.raises(ConfigError, match="validate"):
        JwtHeadersConfig.from_mapping(
            {**VALIDATED, "validate_token": "true", "Validate-Token": "false"}
        )


# --------------------------------------------------------------------------- 7. from_env


@pytest.fixture
def clean_env(monkeypatch):
    for key in list(os.environ):
        if key.startswith(("JWT_HEADERS_", "MYAPP_AUTH_")):
            monkeypatch.delenv(key)
    return monkeypatch


def test_env_with_default_prefix(clean_env):
    clean_env.setenv("JWT_HEADERS_USER_NAME_HEADER", "OIDC_id_token_payload")
    clean_env.setenv("JWT_HEADERS_USER_NAME_FORMAT", "json")
    clean_env.setenv("JWT_HEADERS_USER_NAME_JSON_PATH", "preferred_username")
    clean_env.setenv("JWT_HEADERS_ROLES_SOURCE", "json")
    clean_env.setenv("JWT_HEADERS_ROLES_JSON_PATH", "resource_access.live-key2.roles")
    clean_env.setenv("JWT_HEADERS_ALLOW_ANONYMOUS", "false")
    clean_env.setenv("JWT_HEADERS_LEEWAY", "2.5")
    clean_env.setenv("JWT_HEADERS_MAX_HEADER_BYTES", "4096")
    clean_env.setenv("JWT_HEADERS_TRUSTED_PROXIES", "10.0.0.5, 10.1.0.0/16")
    clean_env.setenv("JWT_HEADERS_JWKS_URI", "")
    config = JwtHeadersConfig.from_env()
    assert config.user_name_header == "OIDC_id_token_payload"
    assert config.user_name_format == "json"
    assert config.roles_source == "json"
    assert config.roles_json_path == "resource_access.live-key2.roles"
    assert config.allow_anonymous is False
    assert config.leeway == 2.5
    assert config.max_header_bytes == 4096
    assert config.trusted_proxies == ("10.0.0.5", "10.1.0.0/16")
    assert config.jwks_uri is None


def test_env_with_other_prefix_ignores_the_default_one(clean_env):
    clean_env.setenv("MYAPP_AUTH_USER_NAME_HEADER", "X-User")
    clean_env.setenv("MYAPP_AUTH_LEEWAY", "10")
    clean_env.setenv("JWT_HEADERS_USER_NAME_HEADER", "X-Other")
    clean_env.setenv("JWT_HEADERS_FOO", "not ours")
    config = JwtHeadersConfig.from_env(prefix="MYAPP_AUTH_")
    assert config.user_name_header == "X-User"
    assert config.leeway == 10


def test_env_ignores_variables_without_the_prefix(clean_env):
    clean_env.setenv("JWT_HEADERS_USER_NAME_HEADER", "X-User")
    clean_env.setenv("JWT_HEADER_LEEWAY", "bogus")  # singular: another prefix
    clean_env.setenv("XJWT_HEADERS_FOO", "1")
    clean_env.setenv("LEEWAY", "bogus")
    config = JwtHeadersConfig.from_env()
    assert config.user_name_header == "X-User"
    assert config.leeway == 30


@pytest.mark.parametrize(
    ("name", "fragments"),
    [
        ("JWT_HEADERS_FOO", ("'FOO' is not an option", "see the README")),
        ("JWT_HEADERS_LEEWAI", ("'LEEWAI' is not an option", "did you mean 'leeway'?")),
    ],
)
def test_env_unknown_option_under_the_prefix_raises(clean_env, name, fragments):
    """Documented: every option is checked and an unknown one is a ConfigError (contract.md,
    README "Every option is checked"); from_env passes the suffix to from_mapping."""
    clean_env.setenv("JWT_HEADERS_USER_NAME_HEADER", "X-User")
    clean_env.setenv(name, "1")
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig.from_env()
    for fragment in fragments:
        assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("JWT_HEADERS_VALIDATE_TOKEN", "maybe", "validate_token='maybe': must be true or false"),
        ("JWT_HEADERS_LEEWAY", "ten", "leeway='ten': must be a number"),
        ("JWT_HEADERS_ROLES_SOURCE", "bogus", "roles_source='bogus' is unknown"),
        ("JWT_HEADERS_TRUSTED_PROXIES", "10.0.0.1, nope", "trusted_proxies: 'nope'"),
    ],
)
def test_env_bad_value_names_the_option(clean_env, name, value, fragment):
    clean_env.setenv("JWT_HEADERS_USER_NAME_HEADER", "X-User")
    clean_env.setenv(name, value)
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig.from_env()
    assert fragment in str(caught.value)


def test_env_without_any_variable_says_what_is_required(clean_env):
    with pytest.raises(ConfigError, match="user_name_header is required"):
        JwtHeadersConfig.from_env()


def test_env_explicit_environ_mapping_replaces_os_environ(clean_env):
    clean_env.setenv("JWT_HEADERS_FOO", "would raise if read")
    config = JwtHeadersConfig.from_env(
        environ={"JWT_HEADERS_USER_NAME_HEADER": "X-User", "PATH": "/bin"}
    )
    assert config.user_name_header == "X-User"


# --------------------------------------------------------------------------- 8. from_file


def test_file_with_native_toml_types(tmp_path):
    path = tmp_path / "auth.toml"
    path.write_text(
        "[other]\nleeway = 'ignored'\n\n"
        "[jwt_headers]\n"
        'user_name_header = "Authorization"\n'
        'user_name_format = "jwt"\n'
        'user_name_json_path = "preferred_username"\n'
        "validate_token = true\n"
        'jwks_uri = "https://idp.example/certs"\n'
        "validate_issuer = true\n"
        'issuer = ["https://a", "https://b"]\n'
        'algorithms = ["RS256", "ES256"]\n'
        'trusted_proxies = ["10.0.0.0/8"]\n'
        "leeway = 10\n"
        "http_read_timeout = 1.5\n"
        "max-header-bytes = 8192\n"
        'token_cache_size = "500"\n',
        encoding="utf-8",
    )
    config = JwtHeadersConfig.from_file(path)
    assert config.validate_token is True
    assert config.issuer == ("https://a", "https://b")
    assert config.algorithms == ("RS256", "ES256")
    assert config.trusted_proxies == ("10.0.0.0/8",)
    assert config.leeway == 10
    assert config.http_read_timeout == 1.5
    assert config.max_header_bytes == 8192
    assert config.token_cache_size == 500
    assert JwtHeadersConfig.from_file(str(path)).leeway == 10  # str path too


@pytest.mark.parametrize(
    "text",
    [
        "[other]\nuser_name_header = 'X'\n",
        "user_name_header = 'X'\n",
        "jwt_headers = 'X'\n",
        "[[jwt_headers]]\nuser_name_header = 'X'\n",
        "",
    ],
)
def test_file_without_the_table(tmp_path, text):
    path = tmp_path / "auth.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig.from_file(path)
    message = str(caught.value)
    assert repr(str(path)) in message
    assert "has no [jwt_headers] table" in message
    assert "put the options under a line '[jwt_headers]'" in message


def test_missing_file(tmp_path):
    path = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig.from_file(path)
    message = str(caught.value)
    assert repr(str(path)) in message
    assert "cannot be read" in message
    assert "No such file or directory" in message


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig.from_file(tmp_path)
    assert repr(str(tmp_path)) in str(caught.value)
    assert "cannot be read" in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        "[jwt_headers\nuser_name_header = 'X'\n",
        "[jwt_headers]\nuser_name_header = X-User\n",
        "[jwt_headers]\nuser_name_header = 'X'\nuser_name_header = 'Y'\n",
        "[jwt_headers]\nvalidate_token = True\n",
    ],
)
def test_invalid_toml(tmp_path, text):
    path = tmp_path / "auth.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig.from_file(path)
    message = str(caught.value)
    assert repr(str(path)) in message
    assert "is not valid TOML" in message
    assert "line" in message  # tomllib's position: where to fix it


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("user_name_header = 'X'\nleeway = -1\n", "leeway=-1"),
        ("user_name_header = 'X'\nvalidate_token = 'maybe'\n", "validate_token='maybe'"),
        ("user_name_header = 'X'\nallow_anonymous = 1\n", "allow_anonymous=1"),
        ("user_name_header = 'X'\nmax_header_bytes = 10.0\n", "max_header_bytes=10.0"),
        ("user_name_header = 'X'\nalgorithms = [1]\n", "algorithms: 1 is not a string"),
        ("user_name_header = 'X'\n[jwt_headers.extra]\na = 1\n", "'extra' is not an option"),
    ],
)
def test_file_bad_value_names_the_option(tmp_path, body, fragment):
    path = tmp_path / "auth.toml"
    path.write_text("[jwt_headers]\n" + body, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig.from_file(path)
    assert fragment in str(caught.value)


def test_file_not_utf8_is_a_config_error(tmp_path):
    path = tmp_path / "latin1.toml"
    path.write_bytes("# café\n[jwt_headers]\nuser_name_header = 'X'\n".encode("latin-1"))
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig.from_file(path)
    assert repr(str(path)) in str(caught.value)


def test_file_space_delimiter_is_kept(tmp_path):
    path = tmp_path / "auth.toml"
    path.write_text(
        "[jwt_headers]\nuser_name_header = 'X-User'\nroles_source = 'header'\n"
        "roles_header = 'X-Roles'\nroles_header_delimiter = ' '\n",
        encoding="utf-8",
    )
    assert JwtHeadersConfig.from_file(path).roles_header_delimiter == " "


# --------------------------------------------------------------------------- 9. middleware


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"user_name_header": "X", "roles_source": "bogus"}, id="roles-source"),
        pytest.param({"user_name_header": "X", "validate_token": True}, id="validate-no-jwt"),
        pytest.param({**JWT, "validate_token": True}, id="C1-no-jwks-uri"),
        pytest.param({"user_name_header": "X", "leway": 5}, id="unknown-option"),
        pytest.param({}, id="no-user-header"),
    ],
)
def test_config_error_at_middleware_construction(options):
    app = RecordingApp()
    with pytest.raises(ConfigError):
        JwtHeadersMiddleware(app, **options)
    assert not app.called


def test_middleware_refuses_config_and_options_together():
    config = build(user_name_header="X")
    with pytest.raises(ConfigError) as caught:
        JwtHeadersMiddleware(RecordingApp(), config, leeway=5)
    assert "either a config or options" in str(caught.value)
    assert "leeway" in str(caught.value)


def test_middleware_keywords_build_the_same_config():
    middleware = JwtHeadersMiddleware(RecordingApp(), user_name_header="X-User", leeway=5)
    assert isinstance(middleware.config, JwtHeadersConfig)
    assert middleware.config.user_name_header == "X-User"
    assert middleware.config.leeway == 5
    answer = call(middleware, {"X-User": "alice"})
    assert answer.status == 200
    assert answer.user == "alice"
