"""Several identity providers (issue 14, item 4): ``providers`` routes a token by its exact
``iss`` to one provider, whose key set alone can verify it; an unknown issuer is 401 and causes
no request anywhere (R33). Two fake IdPs on 127.0.0.1, one configured by ``jwks_uri`` and one by
discovery; TOML, env and ``sources`` forms; every bad config names the entry and the fix."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import (
    JWT,
    NOW,
    STRANGER,
    FrozenClock,
    RecordingApp,
    assert_accepted,
    assert_invalid_token,
    call,
)
from idp import USER_NAME, IdpServer, make_key, mint

from jwt_headers import ConfigError, JwtHeadersConfig, JwtHeadersMiddleware
from jwt_headers.explain import explain


@pytest.fixture
def alpha():
    with IdpServer() as server:
        server.issuer = server.url("/realms/alpha")
        yield server


@pytest.fixture
def beta():
    with IdpServer(keys=[make_key("ES256")]) as server:
        server.issuer = server.url("/realms/beta")
        yield server


def providers(alpha: IdpServer, beta: IdpServer) -> list[dict[str, Any]]:
    return [
        {"issuer": alpha.issuer, "jwks_uri": alpha.jwks_uri, "audience": "api-alpha"},
        {"issuer": beta.issuer, "discovery": True, "algorithms": ["ES256"]},
    ]


def robot(alpha: IdpServer, beta: IdpServer, clock: Any = None, **extra: Any) -> Any:
    return JwtHeadersMiddleware(
        RecordingApp(),
        clock=clock or FrozenClock(),
        **JWT,
        validate_token=True,
        providers=providers(alpha, beta),
        **extra,
    )


def token(server: IdpServer, **claims: Any) -> str:
    defaults: dict[str, Any] = {"iss": server.issuer, "aud": "api-alpha"}
    return mint({**defaults, **claims}, server.key, NOW)


def send(middleware: JwtHeadersMiddleware, value: str) -> Any:
    middleware.app = RecordingApp()
    return call(middleware, headers={"Authorization": f"Bearer {value}"}, peer=STRANGER)


def test_each_token_goes_to_its_own_provider(alpha, beta):
    middleware = robot(alpha, beta)
    assert_accepted(send(middleware, token(alpha, preferred_username="ann")), "ann")
    assert alpha.jwks_requests == 1
    assert beta.jwks_requests == 0  # beta's keys are never fetched for alpha's token
    assert_accepted(send(middleware, token(beta, preferred_username="bob")), "bob")
    assert (alpha.jwks_requests, beta.jwks_requests) == (1, 1)


def test_unknown_issuer_is_refused_without_any_request(alpha, beta):
    """R33: an issuer no provider has is refused at once; no key set, no discovery."""
    middleware = robot(alpha, beta)
    before = (len(alpha.requests), len(beta.requests))
    for iss in (alpha.url("/realms/other"), alpha.issuer + "/", alpha.issuer.upper()):
        answer = send(middleware, token(alpha, iss=iss))
        assert_invalid_token(answer, "unknown_issuer")
    assert (len(alpha.requests), len(beta.requests)) == before


@pytest.mark.parametrize("iss", [None, 7, ["x"], ""])
def test_a_token_without_a_usable_issuer_is_refused(alpha, beta, iss):
    from idp import DELETE

    middleware = robot(alpha, beta)
    answer = send(middleware, token(alpha, iss=DELETE if iss is None else iss))
    assert_invalid_token(answer, "unknown_issuer")


def test_a_token_naming_one_provider_but_signed_by_the_other_is_refused(alpha, beta):
    """Routing picks whose keys may verify: beta's key (even with alpha's kid) never verifies a
    token that names alpha, and alpha's token never reaches beta's keys."""
    impostor = make_key("RS256", kid=alpha.key.kid)  # same kid, another provider's key
    beta.keys.append(impostor)
    middleware = robot(alpha, beta)
    forged = impostor.sign({**json.loads(json.dumps(_claims(alpha)))})
    assert_invalid_token(send(middleware, forged), "bad_signature")
    assert beta.jwks_requests == 0
    # and beta's own key with a token naming alpha: alpha's key set has no such kid
    crossed = mint({"iss": alpha.issuer, "aud": "api-alpha"}, beta.key, NOW)
    assert_invalid_token(send(middleware, crossed), "unknown_key")


def _claims(server: IdpServer) -> dict[str, Any]:
    from idp import access_claims

    return access_claims({"iss": server.issuer, "aud": "api-alpha"}, NOW)


def test_each_provider_has_its_own_audience_and_algorithms(alpha, beta):
    middleware = robot(alpha, beta)
    assert_invalid_token(send(middleware, token(alpha, aud="api-beta")), "wrong_audience")
    # beta accepts ES256 only: an RS256 key it publishes is never used
    rsa = make_key("RS256")
    beta.keys.append(rsa)
    rs_token = mint({"iss": beta.issuer}, rsa, NOW)
    assert_invalid_token(send(middleware, rs_token), "alg_not_allowed")
    # beta has no audience: its tokens are not checked for one
    assert_accepted(send(middleware, token(beta, aud="anything")))


def test_options_beside_providers_are_every_providers_defaults(alpha, beta):
    """``audience`` beside providers applies to each provider that does not set its own."""
    entries = [
        {"issuer": alpha.issuer, "jwks_uri": alpha.jwks_uri},
        {"issuer": beta.issuer, "jwks_uri": beta.jwks_uri, "audience": "api-beta"},
    ]
    middleware = JwtHeadersMiddleware(
        RecordingApp(),
        clock=FrozenClock(),
        **JWT,
        validate_token=True,
        validate_audience=True,
        audience="api-alpha",
        providers=entries,
    )
    assert_accepted(send(middleware, token(alpha)))
    assert_invalid_token(send(middleware, token(beta)), "wrong_audience")
    assert_accepted(send(middleware, token(beta, aud="api-beta")))


def test_r41_a_key_withdrawn_by_one_provider_ends_its_cached_tokens(alpha, beta):
    clock = FrozenClock()
    middleware = robot(alpha, beta, clock=clock)
    old_key = beta.key
    beta_token = token(beta)
    assert_accepted(send(middleware, beta_token))
    beta.keys[:] = [make_key("ES256")]  # beta rotates and drops the old key
    clock.advance(301)  # past jwks_cache_ttl: the next miss refetches
    assert_accepted(send(middleware, beta_token))  # still a cache hit: no refetch yet
    fresh = token(beta, preferred_username="someone-else")  # a miss: refetch, old kid gone
    assert_accepted(send(middleware, fresh), "someone-else")
    assert beta.jwks_requests == 2
    assert_invalid_token(send(middleware, beta_token), "unknown_key")  # R41: forgotten
    other = mint({"iss": beta.issuer, "preferred_username": "x"}, old_key, NOW)
    assert_invalid_token(send(middleware, other), "unknown_key")


def test_explain_shows_the_provider_and_its_checks(alpha, beta):
    config = JwtHeadersConfig(**JWT, validate_token=True, providers=providers(alpha, beta))
    out = io.StringIO()
    environ = {"REMOTE_ADDR": STRANGER, "HTTP_AUTHORIZATION": f"Bearer {token(alpha)}"}
    explain(config, environ, out)
    text = out.getvalue()
    assert f"iss routes to the provider {alpha.issuer}" in text
    assert "issuer" in text and "audience" in text and "signature" in text


def test_each_provider_checks_its_issuer(alpha, beta):
    """The router chooses by ``iss``; the provider checks it again (``validate_issuer`` is
    always on in a provider), so a router that chose wrongly could still not accept."""
    config = JwtHeadersConfig(**JWT, validate_token=True, providers=providers(alpha, beta))
    assert [p.validate_issuer for p in config.provider_configs] == [True, True]
    assert [p.issuer for p in config.provider_configs] == [(alpha.issuer,), (beta.issuer,)]


# --------------------------------------------------------------------------- config forms


def test_toml_form(tmp_path: Path, alpha, beta):
    path = tmp_path / "jwt.toml"
    path.write_text(
        f"""
[jwt_headers]
user_name_header = "Authorization"
user_name_format = "jwt"
user_name_json_path = "preferred_username"
validate_token = true

[[jwt_headers.providers]]
issuer = "{alpha.issuer}"
jwks_uri = "{alpha.jwks_uri}"
audience = "api-alpha"

[[jwt_headers.providers]]
issuer = "{beta.issuer}"
discovery = true
algorithms = ["ES256"]
""",
        encoding="utf-8",
    )
    config = JwtHeadersConfig.from_file(path)
    middleware = JwtHeadersMiddleware(RecordingApp(), config=config, clock=FrozenClock())
    assert_accepted(send(middleware, token(alpha)))
    assert_accepted(send(middleware, token(beta)))


def test_env_form(alpha, beta):
    environ = {
        "JWT_HEADERS_USER_NAME_HEADER": "Authorization",
        "JWT_HEADERS_USER_NAME_FORMAT": "jwt",
        "JWT_HEADERS_USER_NAME_JSON_PATH": "preferred_username",
        "JWT_HEADERS_VALIDATE_TOKEN": "true",
        "JWT_HEADERS_PROVIDERS": json.dumps(providers(alpha, beta)),
    }
    config = JwtHeadersConfig.from_env(environ=environ)
    middleware = JwtHeadersMiddleware(RecordingApp(), config=config, clock=FrozenClock())
    assert_accepted(send(middleware, token(alpha)))
    assert_accepted(send(middleware, token(beta)))


def test_providers_inside_sources(alpha, beta):
    """A robot source with two providers beside a proxy's JSON source."""
    sources = [
        {
            "user_name_header": "OIDC_id_token_payload",
            "user_name_format": "json",
            "user_name_json_path": "preferred_username",
        },
        {**JWT, "validate_token": True, "providers": providers(alpha, beta)},
    ]
    middleware = JwtHeadersMiddleware(RecordingApp(), clock=FrozenClock(), sources=sources)
    assert_accepted(send(middleware, token(beta, preferred_username="bob")), "bob")
    assert_invalid_token(send(middleware, token(alpha, iss="https://x.example")), "unknown_issuer")


def test_repr_hides_credentials_in_provider_urls(alpha, beta):
    entries = providers(alpha, beta)
    entries[0]["jwks_uri"] = alpha.jwks_uri.replace("http://", "http://user:s3cret@")
    config = JwtHeadersConfig(**JWT, validate_token=True, providers=entries)
    assert "s3cret" not in repr(config)


BASE: dict[str, Any] = {**JWT, "validate_token": True}
ONE = {"issuer": "https://idp.example/a", "jwks_uri": "https://idp.example/a/keys"}


@pytest.mark.parametrize(
    ("options", "fragments"),
    [
        ({"providers": "https://idp"}, ["providers=", "list of mappings"]),
        ({"providers": {"issuer": "x"}}, ["providers=", "list of mappings"]),
        ({"providers": []}, ["providers is empty"]),
        ({"providers": ["x"]}, ["providers[0] is 'x'"]),
        ({"providers": [{"jwks_uri": "https://idp/keys"}]}, ["providers[0]", "issuer is required"]),
        (
            {"providers": [{**ONE, "issuer": ["https://a", "https://b"]}]},
            ["providers[0]", "exactly one"],
        ),
        ({"providers": [ONE, ONE]}, ["providers[1]", "also providers[0]'s"]),
        ({"providers": [{**ONE, "jwks_url": "x"}]}, ["providers[0]", "did you mean 'jwks_uri'"]),
        ({"providers": [{**ONE, "leeway": 5}]}, ["providers[0]", "leeway applies to every"]),
        (
            {"providers": [{**ONE, "jwks_uri": "ftp://idp/keys"}]},
            ["providers[0] (https://idp.example/a)", "jwks_uri"],
        ),
        (
            {"providers": [{"issuer": "https://idp.example/a"}]},
            ["providers[0] (https://idp.example/a)", "jwks_uri is required"],
        ),
        ({"providers": [ONE], "issuer": "https://x"}, ["issuer given beside providers"]),
        ({"providers": [ONE], "jwks_uri": "https://x/k"}, ["jwks_uri given beside providers"]),
        ({"providers": [ONE], "validate_token": False}, ["validate_token is off"]),
    ],
)
def test_bad_providers_config_names_the_entry_and_the_fix(options, fragments):
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig(**{**BASE, **options})
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_bad_providers_json_in_env():
    with pytest.raises(ConfigError, match="providers: not valid JSON"):
        JwtHeadersConfig.from_env(
            environ={
                "JWT_HEADERS_USER_NAME_HEADER": "Authorization",
                "JWT_HEADERS_USER_NAME_FORMAT": "jwt",
                "JWT_HEADERS_USER_NAME_JSON_PATH": "sub",
                "JWT_HEADERS_VALIDATE_TOKEN": "true",
                "JWT_HEADERS_PROVIDERS": "[{issuer: x}]",
            }
        )


def test_providers_beside_sources_is_refused():
    with pytest.raises(ConfigError, match="providers given beside sources"):
        JwtHeadersConfig(sources=[dict(JWT)], providers=[ONE])


def test_toml_form_inside_sources(tmp_path: Path, alpha, beta):
    path = tmp_path / "jwt.toml"
    path.write_text(
        f"""
[jwt_headers]
[[jwt_headers.sources]]
user_name_header = "OIDC_id_token_payload"
user_name_format = "json"
user_name_json_path = "preferred_username"

[[jwt_headers.sources]]
user_name_header = "Authorization"
user_name_format = "jwt"
user_name_json_path = "preferred_username"
validate_token = true

[[jwt_headers.sources.providers]]
issuer = "{alpha.issuer}"
jwks_uri = "{alpha.jwks_uri}"

[[jwt_headers.sources.providers]]
issuer = "{beta.issuer}"
discovery = true
""",
        encoding="utf-8",
    )
    config = JwtHeadersConfig.from_file(path)
    middleware = JwtHeadersMiddleware(RecordingApp(), config=config, clock=FrozenClock())
    assert_accepted(send(middleware, token(alpha, preferred_username="ann")), "ann")
    assert_accepted(send(middleware, token(beta, preferred_username="bob")), "bob")


def test_the_readme_example_builds():
    """The README's TOML for several providers is a valid config (built, not run)."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the same parser, from the tomli dependency
        import tomli as tomllib

    text = (Path(__file__).parent.parent / "README.rst").read_text(encoding="utf-8")
    section = text[text.index("\nSeveral identity providers\n") :]
    lines = section[section.index(".. code-block:: toml") :].splitlines()[2:]
    block = []
    for line in lines:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    table = tomllib.loads("\n".join(block))["jwt_headers"]
    config = JwtHeadersConfig.from_mapping(table)
    assert [p.issuer for p in config.provider_configs] == [
        ("https://idp.example/realms/staff",),
        ("https://login.partner.example",),
    ]
    assert [p.audience for p in config.provider_configs] == [("my-api",), ("partner-api",)]
    assert [p.validate_audience for p in config.provider_configs] == [True, True]


def test_doctor_judges_each_provider_not_the_source(alpha, beta):
    """The source itself has no issuer (its providers do): no false 'signature without
    issuer'; a provider whose jwks_uri is plain http to another host is named."""
    from jwt_headers.doctor import static_findings

    entries = providers(alpha, beta)
    config = JwtHeadersConfig(**JWT, validate_token=True, providers=entries)
    codes = [f.code for f in static_findings(config)]
    assert "signature_without_issuer" not in codes
    entries[0] = {**entries[0], "jwks_uri": "http://keys.example/certs"}
    config = JwtHeadersConfig(**JWT, validate_token=True, providers=entries)
    plain = [f for f in static_findings(config) if f.code == "plain_http_idp"]
    assert len(plain) == 1 and f"providers ({alpha.issuer})" in plain[0].message


def test_the_two_providers_sample_runs(tmp_path: Path, alpha, beta):
    """``samples/two_providers.toml`` with only its providers' URLs swapped for two on
    127.0.0.1, served by the sample Flask app: each realm's robot is accepted, a third
    issuer is refused, and the partner's RS256 token is refused (ES256 only)."""
    import importlib.util

    samples = Path(__file__).parent.parent / "samples"
    text = (samples / "two_providers.toml").read_text(encoding="utf-8")
    swaps = {
        "https://idp.example/realms/r": alpha.issuer,
        "https://login.partner.example/.well-known/jwks.json": beta.jwks_uri,
        "https://login.partner.example": beta.issuer,
    }
    for old, new in swaps.items():
        assert old in text, f"samples/two_providers.toml no longer has {old!r}"
        text = text.replace(f'"{old}"', f'"{new}"')
    path = tmp_path / "two_providers.toml"
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location("sample_flask_app", samples / "flask_app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    client = module.from_file(str(path)).test_client()
    assert alpha.jwks_requests == 1 and beta.jwks_requests == 1  # jwks_prefetch

    def whoami(value: str) -> Any:
        return client.get(
            "/whoami",
            headers={"Authorization": f"Bearer {value}"},
            environ_base={"REMOTE_ADDR": STRANGER},
        )

    own = mint({"iss": alpha.issuer, "aud": "jwt-headers-api"}, alpha.key)
    assert whoami(own).get_json()["user"] == USER_NAME
    partner = mint({"iss": beta.issuer, "aud": "partner-api", "preferred_username": "p"}, beta.key)
    answer = whoami(partner)
    assert answer.status_code == 200 and answer.get_json()["user"] == "p"
    assert whoami(mint({"iss": beta.issuer, "aud": "jwt-headers-api"}, beta.key)).status_code == 401
    stranger = mint({"iss": "https://elsewhere.example", "aud": "jwt-headers-api"}, alpha.key)
    assert whoami(stranger).status_code == 401
    rsa = make_key("RS256")
    beta.keys.append(rsa)
    assert whoami(mint({"iss": beta.issuer, "aud": "partner-api"}, rsa)).status_code == 401
    assert (alpha.jwks_requests, beta.jwks_requests) == (1, 1)
