"""Several identity sources (issue 13): browsers through a proxy and robots with Bearer tokens in
one app, and what happens when two credentials disagree.

Sources are tried in order; the first present one decides; another present source must name the
same user (else 401 ``conflicting_credentials``) and must itself be usable (else its refusal).
"""

from __future__ import annotations

import io
import json
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
    call,
)
from idp import ISSUER, USER_NAME, make_key, mint

from jwt_headers import ConfigError, JwtHeadersConfig, JwtHeadersMiddleware
from jwt_headers.explain import explain

idp_server = idp.idp_server

BROWSER: dict[str, Any] = {
    "user_name_header": "OIDC_id_token_payload",
    "user_name_format": "json",
    "user_name_json_path": "preferred_username",
    "roles_source": "json",
    "roles_json_path": "roles",
    "role_converter": "staff=ROLE_STAFF",
}


def robot_source(server: idp.IdpServer, **extra: Any) -> dict[str, Any]:
    return {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "roles_source": "jwt",
        "roles_json_path": "resource_access.live-key2.roles",
        "role_converter": "GeoserverAdministrator=ROLE_ADMINISTRATOR",
        "validate_token": True,
        "jwks_uri": server.jwks_uri,
        "validate_issuer": True,
        "issuer": ISSUER,
        **extra,
    }


def both(server: idp.IdpServer, **top: Any) -> JwtHeadersMiddleware:
    return JwtHeadersMiddleware(
        RecordingApp(), clock=FrozenClock(), sources=[BROWSER, robot_source(server)], **top
    )


def document(name: str = "alice", roles: tuple[str, ...] = ("staff",)) -> str:
    return json.dumps({"preferred_username": name, "roles": list(roles)})


def send(middleware: JwtHeadersMiddleware, *, peer: str = "127.0.0.1", **headers: str) -> Any:
    middleware.app = RecordingApp()
    environ = {"HTTP_" + k.upper(): v for k, v in headers.items()}
    return call(middleware, environ=environ, peer=peer)


# --------------------------------------------------------------------------- one app, two ways in
def test_browser_through_the_proxy_is_the_first_source(idp_server):
    answer = send(both(idp_server), oidc_id_token_payload=document())
    principal = assert_accepted(answer, "alice")
    assert principal.roles == ("ROLE_STAFF",)  # the first source's role map
    assert idp_server.total_requests == 0  # the robot source was absent: no key set fetched


def test_robot_with_a_bearer_token_is_the_second_source(idp_server):
    token = mint(None, idp_server.key, NOW)
    answer = send(both(idp_server), peer=STRANGER, authorization=f"Bearer {token}")
    principal = assert_accepted(answer, USER_NAME)
    # the second source's role map (unlisted roles kept: only_external_listed_roles is off)
    assert principal.roles == ("GeonetworkAdministrator", "ROLE_ADMINISTRATOR")


def test_proxy_header_from_a_stranger_is_dropped_and_the_robot_token_decides(idp_server):
    """R16 per source: the JSON header proves nothing, so from a stranger it is removed and
    does not count as present; the signature-checked token still authenticates."""
    token = mint(None, idp_server.key, NOW)
    answer = send(
        both(idp_server),
        peer=STRANGER,
        authorization=f"Bearer {token}",
        oidc_id_token_payload=document("mallory"),
    )
    assert_accepted(answer, USER_NAME)
    assert "HTTP_OIDC_ID_TOKEN_PAYLOAD" not in answer.app.environ


def test_no_source_present_is_anonymous_or_refused(idp_server):
    answer = send(both(idp_server))
    assert answer.status == 200 and answer.user is None
    answer = send(both(idp_server, allow_anonymous=False))
    assert answer.status == 401
    assert answer.json["error"]["code"] == "UNAUTHENTICATED"
    assert not answer.app.called


def test_foreign_scheme_in_the_robot_source_does_not_count(idp_server):
    answer = send(
        both(idp_server), authorization="Basic dXNlcjpwdw==", oidc_id_token_payload=document()
    )
    assert_accepted(answer, "alice")


# --------------------------------------------------------------------------- disagreement
def test_two_sources_naming_different_users_are_refused(idp_server, caplog):
    """Never "first wins" silently: the proxy says alice, the token says someone else."""
    token = mint(None, idp_server.key, NOW)
    answer = send(
        both(idp_server), authorization=f"Bearer {token}", oidc_id_token_payload=document()
    )
    assert_invalid_token(answer, "conflicting_credentials", "name different users")
    assert token not in caplog.text


def test_two_sources_naming_the_same_user_are_accepted(idp_server):
    token = mint(None, idp_server.key, NOW)
    answer = send(
        both(idp_server),
        authorization=f"Bearer {token}",
        oidc_id_token_payload=document(USER_NAME),
    )
    principal = assert_accepted(answer, USER_NAME)
    assert principal.roles == ("ROLE_STAFF",)  # the first present source decides


def test_an_unusable_second_credential_is_refused_not_ignored(idp_server):
    """A present but bad token is a 401 even when the first source already named the user:
    a forged token must never ride along unchecked."""
    forged = mint(None, make_key("RS256", kid=idp_server.key.kid), NOW)
    answer = send(
        both(idp_server),
        authorization=f"Bearer {forged}",
        oidc_id_token_payload=document(USER_NAME),
    )
    assert_invalid_token(answer, "bad_signature")


def test_an_unusable_first_credential_is_refused(idp_server):
    token = mint(None, idp_server.key, NOW)
    answer = send(
        both(idp_server), authorization=f"Bearer {token}", oidc_id_token_payload="{not json"
    )
    assert_invalid_token(answer, "malformed")


def test_denied_user_names_apply_to_every_source(idp_server):
    token = mint({"preferred_username": "root"}, idp_server.key, NOW)
    middleware = both(idp_server, denied_user_names=["root"])
    assert_invalid_token(send(middleware, authorization=f"Bearer {token}"), "denied_user_name")
    assert_invalid_token(
        send(middleware, oidc_id_token_payload=document("root")), "denied_user_name"
    )


def test_path_rules_apply_before_any_source(idp_server):
    middleware = both(idp_server, exempt_paths=["/healthz"], allow_anonymous=False)
    app = middleware.app = RecordingApp()
    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/healthz", "REMOTE_ADDR": "127.0.0.1"}
    environ["HTTP_AUTHORIZATION"] = "Bearer x"
    statuses: list[str] = []
    middleware(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["200 OK"]
    assert "REMOTE_USER" not in app.environ
    assert idp_server.total_requests == 0


# --------------------------------------------------------------------------- configuration
@pytest.mark.parametrize(
    ("sources", "message"),
    [
        ([], "sources is empty"),
        ("Authorization", "give a list of mappings"),
        ({"user_name_header": "X"}, "give a list of mappings"),
        (["X-User"], r"sources\[0\] is 'X-User': each source is a mapping"),
        (
            [{"user_name_header": "X", "colour": "red"}],
            r"sources\[0\]: 'colour' is not an option of jwt-headers",
        ),
        (
            [{"user_name_header": "X"}, {"user_name_header": "Y", "trusted_proxies": "*"}],
            r"sources\[1\]: trusted_proxies applies to the whole request",
        ),
        (
            [{"user_name_header": "X", "user_name_format": "jwt"}],
            r"sources\[0\] \(X\): user_name_json_path is required",
        ),
        (
            [{"user_name_header": "X"}, {"user_name_header": "Authorization", "validate_token": 1}],
            r"sources\[1\] \(Authorization\): validate_token=1: must be true or false",
        ),
        ([{"user_name_format": "json"}], r"sources\[0\]: user_name_header is required"),
        (
            [{"user_name_header": "X", "user_name_header ": "Y"}],
            r"sources\[0\]: user_name_header is given twice",
        ),
    ],
)
def test_bad_sources_are_config_errors_naming_the_entry(sources, message):
    with pytest.raises(ConfigError, match=message):
        JwtHeadersConfig(sources=sources)


def test_per_source_option_beside_sources_is_a_config_error():
    with pytest.raises(ConfigError, match="user_name_format given beside sources"):
        JwtHeadersConfig(user_name_format="json", sources=[{"user_name_header": "X"}])


def test_request_wide_options_reach_every_source():
    config = JwtHeadersConfig(
        sources=[{"user_name_header": "X"}, {"user_name_header": "Y"}],
        trusted_proxies=["10.0.0.1"],
        max_header_bytes=100,
    )
    assert [c.user_name_header for c in config.source_configs] == ["X", "Y"]
    assert all(c.trusted_proxies == ("10.0.0.1",) for c in config.source_configs)
    assert all(c.max_header_bytes == 100 for c in config.source_configs)
    assert JwtHeadersConfig(user_name_header="X").source_configs[0].user_name_header == "X"


def test_sources_from_mapping_env_toml_and_paste(tmp_path, idp_server):
    entries = [BROWSER, {"user_name_header": "X-Robot-User", "header_encoding": "utf8"}]
    text = json.dumps(entries)
    expected = ["OIDC_id_token_payload", "X-Robot-User"]

    def headers(config: JwtHeadersConfig) -> list[str]:
        return [c.user_name_header for c in config.source_configs]

    assert headers(JwtHeadersConfig.from_mapping({"sources": text})) == expected
    env = {"JWT_HEADERS_SOURCES": text, "JWT_HEADERS_ALLOW_ANONYMOUS": "false"}
    from_env = JwtHeadersConfig.from_env(environ=env)
    assert headers(from_env) == expected
    assert from_env.source_configs[1].allow_anonymous is False
    path = tmp_path / "c.toml"
    path.write_text(
        "[jwt_headers]\n"
        'trusted_proxies = ["127.0.0.1"]\n'
        "[[jwt_headers.sources]]\n"
        'user_name_header = "OIDC_id_token_payload"\n'
        'user_name_format = "json"\n'
        'user_name_json_path = "preferred_username"\n'
        "[[jwt_headers.sources]]\n"
        'user_name_header = "X-Robot-User"\n'
        'header_encoding = "utf8"\n'
    )
    assert headers(JwtHeadersConfig.from_file(path)) == expected
    from jwt_headers.paste import filter_app_factory

    middleware = filter_app_factory(RecordingApp(), {}, sources=text)
    assert headers(middleware.config) == expected
    with pytest.raises(ConfigError, match="sources: not valid JSON"):
        JwtHeadersConfig.from_mapping({"sources": "[{user_name_header: X}]"})
    assert JwtHeadersConfig.from_file(path).replace(max_header_bytes=9).max_header_bytes == 9


def test_repr_hides_credentials_in_source_urls():
    config = JwtHeadersConfig(
        sources=[
            {
                "user_name_header": "Authorization",
                "user_name_format": "jwt",
                "user_name_json_path": "sub",
                "validate_token": True,
                "jwks_uri": "https://user:s3cret@idp.example/certs",
            }
        ]
    )
    assert "s3cret" not in repr(config)


def test_explain_says_which_source_decided(idp_server):
    config = JwtHeadersConfig(sources=[BROWSER, robot_source(idp_server)])
    out = io.StringIO()
    token = mint(None, idp_server.key)
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "REMOTE_ADDR": STRANGER,
        "HTTP_AUTHORIZATION": f"Bearer {token}",
    }
    assert explain(config, environ, out) == 0
    text = out.getvalue()
    assert "decided by   source 1: Authorization" in text or "source 1: Authorization" in text
    assert token not in text


def test_protected_paths_with_several_sources(idp_server):
    """The general path (several sources) keeps protected paths never anonymous."""
    middleware = both(idp_server, protected_paths=["/admin"])
    app = middleware.app = RecordingApp()
    statuses: list[str] = []
    for path in ("/admin", "//admin/x", "/elsewhere"):
        environ = {"REQUEST_METHOD": "GET", "PATH_INFO": path, "REMOTE_ADDR": "127.0.0.1"}
        middleware(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses == ["401 Unauthorized", "401 Unauthorized", "200 OK"]
    assert len(app.calls) == 1
    environ = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/admin",
        "REMOTE_ADDR": "127.0.0.1",
        "HTTP_OIDC_ID_TOKEN_PAYLOAD": document(),
    }
    middleware(environ, lambda status, headers, exc_info=None: statuses.append(status))
    assert statuses[-1] == "200 OK"
    assert app.environ["REMOTE_USER"] == "alice"
