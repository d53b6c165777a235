"""The deployment doctor (issue 13): static findings, start-up warnings, run-time warnings, and
the ``jwt-headers doctor`` command; the run-time ones also through a real gunicorn."""

from __future__ import annotations

import argparse
import io
import logging
from pathlib import Path
from typing import Any

import pytest
from conftest import JSON, JWT, STRING, RecordingApp

from jwt_headers import JwtHeadersConfig, JwtHeadersMiddleware
from jwt_headers.cli import main
from jwt_headers.doctor import WATCHED_REQUESTS, RequestWatch, run, static_findings

SAMPLES = Path(__file__).resolve().parent.parent / "samples"
PROTECTED = {"protected_paths": ["/admin"]}


def codes(**options: Any) -> list[str]:
    return [finding.code for finding in static_findings(JwtHeadersConfig(**options))]


def messages(**options: Any) -> str:
    return "\n".join(str(f) for f in static_findings(JwtHeadersConfig(**options)))


# --------------------------------------------------------------------------- static findings
def test_a_careful_config_has_no_finding():
    assert codes(**STRING, **PROTECTED) == []


def test_underscore_header_names_its_fix():
    text = messages(**JSON, **PROTECTED)
    assert "underscore_header: user_name_header='OIDC_id_token_payload' has '_'" in text
    assert "'OIDC-id-token-payload'" in text
    assert 'RequestHeader set OIDC-id-token-payload "%{OIDC_id_token_payload}e"' in text
    assert "mod_wsgi" in text


def test_underscore_roles_header_too():
    found = codes(**STRING, roles_source="header", roles_header="OIDC_CLAIM_roles", **PROTECTED)
    assert found == ["underscore_header"]


def test_signature_without_issuer():
    options = {**JWT, "validate_token": True, "jwks_uri": "https://idp.example/certs"}
    assert "signature_without_issuer" in codes(**options, **PROTECTED)
    assert "signature_without_issuer" not in codes(
        **options, validate_issuer=True, issuer="https://idp.example", **PROTECTED
    )


@pytest.mark.parametrize(
    ("proxies", "found"),
    [
        (["127.0.0.1"], False),
        (["::1", "127.0.0.0/8"], False),
        (["10.0.0.5"], True),
        (["10.0.0.0/8"], True),
        (["*"], True),
    ],
)
def test_trusted_proxies_wider_than_loopback_with_an_unproven_header(proxies, found):
    options = {**STRING, "trusted_proxies": proxies, **PROTECTED}
    assert ("wide_trusted_proxies" in codes(**options)) is found


def test_wide_trusted_proxies_do_not_matter_for_a_signature_checked_token():
    options = {
        **JWT,
        "validate_token": True,
        "jwks_uri": "https://idp.example/certs",
        "validate_issuer": True,
        "issuer": "https://idp.example",
        "trusted_proxies": ["*"],
        **PROTECTED,
    }
    assert codes(**options) == []


def test_plain_http_identity_provider():
    options = {
        **JWT,
        "validate_token": True,
        "jwks_uri": "http://idp.example/certs",
        "validate_issuer": True,
        "issuer": "https://idp.example",
        **PROTECTED,
    }
    assert "plain_http_idp" in codes(**options)
    assert "use the https URL of the jwks uri" in messages(**options)


def test_anonymous_everywhere():
    assert codes(**STRING) == ["anonymous_everywhere"]
    assert codes(**STRING, allow_anonymous=False) == []


@pytest.mark.parametrize(
    "option",
    [
        {"issuer": "https://idp.example"},
        {"audience": "my-api"},
        {"jwks_uri": "https://idp.example/certs"},
        {"userinfo_endpoint": "https://idp.example/me"},
        {"validate_issuer": True},
        {"discovery": True},
    ],
)
def test_validation_options_while_validate_token_is_off(option):
    """The trap a new user hit: issuer and audience set, validate_token forgotten, a forged
    token with the wrong iss and aud got 200 from a trusted peer, with nothing logged."""
    text = messages(**JWT, **option, **PROTECTED)
    (name,) = option
    assert f"no_effect: {name} is set but has no effect: validate_token is off" in text
    assert "set validate_token=true" in text


@pytest.mark.parametrize("option", ["http_ca_bundle", "http_proxy"])
def test_outbound_options_while_no_token_is_validated(option, tmp_path):
    """``http_ca_bundle``/``http_proxy`` only shape calls to the identity provider: set without
    ``validate_token`` they do nothing, and the doctor says so (once, request-wide); with it,
    nothing is reported."""
    from idp import make_test_ca

    value = (
        str(make_test_ca(tmp_path).ca_file)
        if option == "http_ca_bundle"
        else "http://robot:s3cret@proxy.internal:3128"
    )
    text = messages(**STRING, **{option: value}, **PROTECTED)
    assert f"no_effect: {option} is set but has no effect: validate_token is off" in text
    assert "s3cret" not in text
    signed = {**JWT, "validate_token": True, "jwks_uri": "https://idp.example/certs"}
    assert "no_effect" not in messages(**signed, **{option: value}, **PROTECTED)


@pytest.mark.parametrize(
    ("option", "switch"),
    [
        ({"audience": "my-api"}, "validate_audience"),
        ({"userinfo_endpoint": "https://idp.example/me"}, "validate_userinfo"),
    ],
)
def test_options_without_their_switch(option, switch):
    options = {
        **JWT,
        "validate_token": True,
        "jwks_uri": "https://idp.example/certs",
        "validate_issuer": True,
        "issuer": "https://idp.example",
        **option,
        **PROTECTED,
    }
    assert f"{switch} is off" in messages(**options)


def test_json_path_with_the_string_format_and_roles_options_without_roles_source():
    text = messages(
        user_name_header="X-User",
        user_name_json_path="preferred_username",
        role_converter="a=b",
        roles_json_path="roles",
        **PROTECTED,
    )
    assert "user_name_json_path is set but has no effect: user_name_format is 'string'" in text
    assert "role_converter is set but has no effect: roles_source is not set" in text
    assert "roles_json_path is set but has no effect" in text


def test_findings_name_the_source():
    config = JwtHeadersConfig(
        sources=[{"user_name_header": "X-User"}, {**JSON, "issuer": "https://idp.example"}],
        **PROTECTED,
    )
    text = "\n".join(map(str, static_findings(config)))
    assert "sources[1] (OIDC_id_token_payload): user_name_header=" in text
    assert "sources[1] (OIDC_id_token_payload): issuer is set but has no effect" in text


# --------------------------------------------------------------------------- start-up warnings
def test_middleware_logs_each_finding_once_at_warning(caplog):
    caplog.set_level(logging.WARNING, logger="jwt_headers")
    JwtHeadersMiddleware(RecordingApp(), **JWT, issuer="https://idp.example")
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert sum("doctor no_effect: issuer is set" in line for line in lines) == 1
    assert sum("doctor anonymous_everywhere" in line for line in lines) == 1


def test_no_doctor_warning_for_a_careful_config(caplog):
    caplog.set_level(logging.WARNING, logger="jwt_headers")
    JwtHeadersMiddleware(RecordingApp(), user_name_header="X-User", **PROTECTED)
    assert not [r for r in caplog.records if "doctor" in r.getMessage()]


# --------------------------------------------------------------------------- run-time warnings
def watch_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("doctor ")]


def feed(middleware: JwtHeadersMiddleware, environ: dict[str, Any], times: int) -> None:
    for _ in range(times):
        middleware(dict(environ), lambda *args: None)


BASE = {"REQUEST_METHOD": "GET", "PATH_INFO": "/", "REMOTE_ADDR": "127.0.0.1"}


def test_dropped_underscore_header_is_reported_after_the_watch(caplog):
    middleware = JwtHeadersMiddleware(RecordingApp(), **JSON, **PROTECTED)
    caplog.set_level(logging.WARNING, logger="jwt_headers")
    feed(middleware, {**BASE, "SERVER_SOFTWARE": "gunicorn/23.0.0"}, WATCHED_REQUESTS - 1)
    assert not any("dropped" in line for line in watch_lines(caplog))
    feed(middleware, {**BASE, "SERVER_SOFTWARE": "gunicorn/23.0.0"}, 5)
    lines = [line for line in watch_lines(caplog) if "doctor dropped" in line]
    assert len(lines) == 1
    assert "'OIDC-id-token-payload'" in lines[0]
    assert middleware._watch is None  # the watch is over: no cost from now on


def test_no_dropped_warning_when_the_header_arrives(caplog):
    middleware = JwtHeadersMiddleware(RecordingApp(), **JSON, **PROTECTED)
    caplog.set_level(logging.WARNING, logger="jwt_headers")
    environ = {**BASE, "SERVER_SOFTWARE": "gunicorn/23.0.0", "HTTP_OIDC_ID_TOKEN_PAYLOAD": "{}"}
    feed(middleware, environ, WATCHED_REQUESTS)
    assert not any("dropped" in line for line in watch_lines(caplog))


def test_other_spelling_is_reported(caplog):
    middleware = JwtHeadersMiddleware(RecordingApp(), user_name_header="X-Remote-User", **PROTECTED)
    caplog.set_level(logging.WARNING, logger="jwt_headers")
    feed(middleware, {**BASE, "HTTP_XREMOTE_USER": "alice"}, 3)
    lines = [line for line in watch_lines(caplog) if "other_spelling" in line]
    assert len(lines) == 1
    assert "HTTP_XREMOTE_USER does" in lines[0]


def test_request_header_where_apache_could_pass_a_plain_key(caplog):
    middleware = JwtHeadersMiddleware(RecordingApp(), **JSON, **PROTECTED)
    caplog.set_level(logging.WARNING, logger="jwt_headers")
    environ = {
        **BASE,
        "mod_wsgi.version": (5, 0),
        "HTTP_OIDC_ID_TOKEN_PAYLOAD": '{"preferred_username": "alice"}',
    }
    feed(middleware, environ, 2)
    lines = [line for line in watch_lines(caplog) if "http_not_plain" in line]
    assert len(lines) == 1


def test_no_peer_in_trusted_proxies(caplog):
    middleware = JwtHeadersMiddleware(
        RecordingApp(), user_name_header="X-User", trusted_proxies=["10.0.0.5"], **PROTECTED
    )
    caplog.set_level(logging.WARNING, logger="jwt_headers")
    feed(middleware, BASE, WATCHED_REQUESTS)
    lines = [line for line in watch_lines(caplog) if "no_trusted_peer" in line]
    assert len(lines) == 1
    assert "10.0.0.5" in lines[0]


def test_stacked_middlewares(caplog):
    inner = JwtHeadersMiddleware(RecordingApp(), user_name_header="X-User", **PROTECTED)
    outer = JwtHeadersMiddleware(inner, user_name_header="X-Other", **PROTECTED)
    caplog.set_level(logging.WARNING, logger="jwt_headers")
    feed(outer, BASE, 2)
    lines = [line for line in watch_lines(caplog) if "stacked_middlewares" in line]
    assert len(lines) == 1
    assert "sources=[...]" in lines[0]


def test_watch_alone_stops_after_its_requests():
    watch = RequestWatch(JwtHeadersConfig(user_name_header="X-User"), "marker")
    results = [watch.observe(BASE) for _ in range(WATCHED_REQUESTS)]
    assert results[:-1] == [True] * (WATCHED_REQUESTS - 1)
    assert results[-1] is False


# --------------------------------------------------------------------------- the command
def test_doctor_command_on_the_samples(tmp_path, capsys):
    """``jwt-headers doctor --config`` exits 1 and prints each finding with its fix."""
    status = main(["doctor", "--config", str(SAMPLES / "browsers_and_robots.toml")])
    out = capsys.readouterr().out
    assert status == 1
    assert "underscore_header: sources[0] (OIDC_id_token_payload)" in out
    assert "anonymous_everywhere" in out
    assert "    fix: " in out
    clean = tmp_path / "clean.toml"
    clean.write_text('[jwt_headers]\nuser_name_header = "X-User"\nprotected_paths = ["/admin"]\n')
    assert main(["doctor", "--config", str(clean)]) == 0
    assert capsys.readouterr().out == "no trap found\n"


def test_doctor_command_from_the_environment(monkeypatch):
    monkeypatch.setenv("JWT_HEADERS_USER_NAME_HEADER", "X-User")
    monkeypatch.setenv("JWT_HEADERS_ISSUER", "https://idp.example")
    out = io.StringIO()
    assert run(argparse.Namespace(config=None, env=True), out) == 1
    assert "issuer is set but has no effect" in out.getvalue()


def test_doctor_command_bad_config_is_a_usage_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text('[jwt_headers]\nuser_name_header = "X-User"\ncolour = "red"\n')
    assert main(["doctor", "--config", str(bad)]) == 2
    assert "colour" in capsys.readouterr().err


def test_the_same_environ_again_is_not_a_stacked_middleware(caplog):
    """A server or a test that hands the same environ dict over twice is not a second
    middleware: only another instance's mark counts."""
    middleware = JwtHeadersMiddleware(RecordingApp(), user_name_header="X-User", **PROTECTED)
    caplog.set_level(logging.WARNING, logger="jwt_headers")
    environ = dict(BASE)
    for _ in range(3):
        middleware(environ, lambda *args: None)
    assert not [line for line in watch_lines(caplog) if "stacked" in line]
