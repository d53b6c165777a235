"""OIDC discovery (issue 14, item 3): ``discovery=True`` with one ``issuer`` finds ``jwks_uri``
and ``userinfo_endpoint`` in ``<issuer>/.well-known/openid-configuration``, against the fake IdP
on 127.0.0.1. Explicit options win; a document naming another issuer is never used; nothing in
a token causes a discovery request (R33); a provider that is down at start-up gives 503s, not a
crash."""

from __future__ import annotations

import json
import logging
from typing import Any

import idp
import pytest
from conftest import (
    NOW,
    STRANGER,
    FrozenClock,
    RecordingApp,
    assert_accepted,
    assert_invalid_token,
    assert_unavailable,
    call,
)
from idp import IdpServer, mint

from jwt_headers import ConfigError, JwtHeadersConfig, JwtHeadersMiddleware

WELL_KNOWN = "/realms/r/.well-known/openid-configuration"


@pytest.fixture
def provider():
    """A fake IdP whose issuer is its own address, as a real provider's is."""
    with IdpServer() as server:
        server.issuer = server.url("/realms/r")
        yield server


def options(server: IdpServer, **extra: Any) -> dict[str, Any]:
    return {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "validate_token": True,
        "discovery": True,
        "validate_issuer": True,
        "issuer": server.issuer,
        **extra,
    }


def robot(server: IdpServer, **extra: Any) -> JwtHeadersMiddleware:
    return JwtHeadersMiddleware(RecordingApp(), clock=FrozenClock(), **options(server, **extra))


def token(server: IdpServer, **claims: Any) -> str:
    return mint({"iss": server.issuer, **claims}, server.key, NOW)


def send(middleware: JwtHeadersMiddleware, value: str) -> Any:
    middleware.app = RecordingApp()
    return call(middleware, headers={"Authorization": f"Bearer {value}"}, peer=STRANGER)


def test_discovery_finds_the_key_set(provider):
    middleware = robot(provider)
    assert provider.hits(WELL_KNOWN) == 1  # read at start-up
    assert_accepted(send(middleware, token(provider)))
    assert provider.jwks_requests == 1
    assert provider.hits(WELL_KNOWN) == 1  # the first key-set fetch used the document read


def test_discovery_finds_the_userinfo_endpoint(provider):
    middleware = robot(provider, validate_userinfo=True)
    assert_accepted(send(middleware, token(provider)))
    assert provider.userinfo_requests == 1


def test_explicit_options_win(provider):
    provider.discovery_body = {
        "issuer": provider.issuer,
        "jwks_uri": "http://127.0.0.1:9/nothing-here",
        "userinfo_endpoint": "http://127.0.0.1:9/nothing-here",
    }
    middleware = robot(
        provider,
        jwks_uri=provider.jwks_uri,
        validate_userinfo=True,
        userinfo_endpoint=provider.userinfo_endpoint,
    )
    assert_accepted(send(middleware, token(provider)))
    assert provider.jwks_requests == 1
    assert provider.userinfo_requests == 1


@pytest.mark.parametrize(
    "issuer_in_document",
    [
        "https://evil.example/realms/r",
        "{own}/",  # a trailing slash is another issuer
        "{own_upper}",
        None,
    ],
)
def test_a_document_for_another_issuer_is_never_used(provider, issuer_in_document):
    """OIDC Discovery 4.3: the document's issuer must be exactly the configured one; else the
    keys it points to are not used and requests get 503 (fail closed)."""
    own = provider.issuer
    value = (
        None
        if issuer_in_document is None
        else issuer_in_document.format(own=own, own_upper=own.upper())
    )
    provider.discovery_body = {"issuer": value, "jwks_uri": provider.jwks_uri}
    middleware = robot(provider)
    assert_unavailable(send(middleware, token(provider)))
    assert provider.jwks_requests == 0


@pytest.mark.parametrize("mode", ["500", "garbage", "not_object", "redirect", "down"])
def test_provider_down_at_start_up_gives_503_then_recovers(provider, mode):
    """No crash at start-up: the app is built, its requests get 503 with Retry-After while the
    document cannot be read, and once the provider answers (after the key set's cooldown, on a
    frozen clock) the same token is accepted."""
    provider.discovery_mode = mode
    clock = FrozenClock()
    middleware = JwtHeadersMiddleware(RecordingApp(), clock=clock, **options(provider))
    good = token(provider)
    assert_unavailable(send(middleware, good))
    provider.discovery_mode = "ok"
    clock.advance(30)  # jwks_refresh_cooldown
    assert_accepted(send(middleware, good))


def test_a_tokens_issuer_never_causes_a_discovery_request(provider):
    """R33: a token naming another issuer (here one whose discovery would answer) is refused
    for its issuer; the only discovery request is the configured issuer's."""
    middleware = robot(provider)
    other = provider.url("/realms/other")
    assert_invalid_token(send(middleware, token(provider, iss=other)), "wrong_issuer")
    paths = {r.path for r in provider.requests}
    assert paths <= {WELL_KNOWN, "/jwks"}
    assert provider.hits("/realms/other/.well-known/openid-configuration") == 0


def test_discovery_is_read_again_when_the_key_set_is_refetched(provider):
    """The provider moves its keys: the key set's TTL refetch reads the document again and
    follows it."""
    clock = FrozenClock()
    middleware = JwtHeadersMiddleware(
        RecordingApp(), clock=clock, **options(provider, jwks_cache_ttl=300)
    )
    assert_accepted(send(middleware, token(provider)))
    provider.discovery_body = {
        "issuer": provider.issuer,
        "jwks_uri": provider.url("/jwks/moved"),
    }
    clock.advance(301)
    assert_accepted(send(middleware, token(provider)))
    assert provider.hits(WELL_KNOWN) == 2
    assert provider.hits("/jwks/moved") == 1


def test_document_without_a_jwks_uri_gives_503(provider):
    provider.discovery_body = {"issuer": provider.issuer}
    assert_unavailable(send(robot(provider), token(provider)))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"issuer": None}, "discovery needs exactly one issuer"),
        ({"issuer": ["https://a.example", "https://b.example"]}, "exactly one issuer"),
        ({"issuer": "ftp://idp.example"}, "issuer='ftp://idp.example' is not an http"),
        ({"validate_issuer": False}, "set validate_issuer=true"),
        (
            {"validate_signature": False, "validate_expiry": True},
            "neither validate_signature nor validate_userinfo",
        ),
    ],
)
def test_discovery_config_errors(extra, message):
    base = {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "sub",
        "validate_token": True,
        "discovery": True,
        "validate_issuer": True,
        "issuer": "https://idp.example/realms/r",
    }
    base.update(extra)
    if base["issuer"] is None:
        base.pop("issuer")
        base["validate_issuer"] = False
        message = "discovery needs exactly one issuer"
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        JwtHeadersConfig(**base)


def test_discovery_from_env_and_toml(tmp_path):
    env = {
        "JWT_HEADERS_USER_NAME_HEADER": "Authorization",
        "JWT_HEADERS_USER_NAME_FORMAT": "jwt",
        "JWT_HEADERS_USER_NAME_JSON_PATH": "sub",
        "JWT_HEADERS_VALIDATE_TOKEN": "true",
        "JWT_HEADERS_DISCOVERY": "true",
        "JWT_HEADERS_VALIDATE_ISSUER": "true",
        "JWT_HEADERS_ISSUER": "https://idp.example/realms/r",
    }
    config = JwtHeadersConfig.from_env(environ=env)
    assert config.discovery is True
    assert config.jwks_uri is None
    path = tmp_path / "c.toml"
    path.write_text(
        "[jwt_headers]\n"
        + "".join(f'{k.removeprefix("JWT_HEADERS_").lower()} = "{v}"\n' for k, v in env.items())
    )
    assert JwtHeadersConfig.from_file(path).discovery is True


def test_idp_fixture_serves_discovery_under_any_prefix():
    with IdpServer() as server:
        import requests

        answer = requests.get(server.url("/a/b/.well-known/openid-configuration"), timeout=5)
        assert answer.status_code == 200
        assert answer.json()["jwks_uri"] == server.jwks_uri
        assert answer.json()["issuer"] == idp.ISSUER


@pytest.mark.parametrize("scheme", ["file", "FILE"])
def test_r33_a_document_naming_a_file_key_set_is_refused(provider, tmp_path, caplog, scheme):
    """R33: only the configured ``jwks_uri`` may be a local file. A discovery document (what the
    provider, or whoever answers in its name, says) naming ``file:///...`` is refused: the key
    set there (valid keys for the token) is never read, the request gets 503, the log says
    why."""
    caplog.set_level(logging.WARNING, logger="jwt_headers")
    key_file = tmp_path / "jwks.json"
    key_file.write_text(json.dumps({"keys": [provider.key.public_jwk()]}))
    provider.discovery_body = {
        "issuer": provider.issuer,
        "jwks_uri": f"{scheme}://{key_file}",
    }
    assert_unavailable(send(robot(provider), token(provider)))
    assert any(
        "reason=jwks_uri_not_an_http_url" in record.getMessage() for record in caplog.records
    )
    assert provider.jwks_requests == 0
