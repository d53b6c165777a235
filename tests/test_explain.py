"""``jwt-headers explain``: the report's steps, its outcome and exit code, and that it never
prints a token, a segment of one or a JSON header value (only fingerprints).

Driven through ``jwt_headers.cli.main`` (the output read with ``capsys``) and once as a real
``python -m jwt_headers.cli`` process. The headers are those of headers-examples.md; the
signature path uses the fake identity provider of ``idp.py``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import idp
import pytest
from conftest import RecordingApp, assert_invalid_token, call
from idp import make_key, mint

from jwt_headers import JwtHeadersConfig, JwtHeadersMiddleware
from jwt_headers.cli import main

idp_server = idp.idp_server  # the pytest fixture, bound here so pytest finds it

ROOT = Path(__file__).resolve().parent.parent

# Copied verbatim from headers-examples.md.
ID_TOKEN_PAYLOAD = '{"exp":1708555947,"iat":1708555647,"auth_time":1708555288,"jti":"42ee833e-89d3-4779-bd9d-06b979329c9f","iss":"http://localhost:7777/realms/dave-test2","aud":"live-key2","sub":"98cfe060-f980-4a05-8612-6c609219ffe9","typ":"ID","azp":"live-key2","nonce":"4PhqmZSJ355KBtJPbAP_PdwqiLnc7B1lA2SGpB0zXr4","session_state":"7712b364-339a-4053-ae0c-7d3adfca9005","at_hash":"2Tyw8q4ZMewuYrD38alCug","acr":"0","sid":"7712b364-339a-4053-ae0c-7d3adfca9005","upn":"david.blasby@geocat.net","resource_access":{"live-key2":{"roles":["GeonetworkAdministrator","GeoserverAdministrator"]}},"email_verified":false,"address":{},"name":"david blasby","groups":["default-roles-dave-test2","offline_access","uma_authorization"],"preferred_username":"david.blasby@geocat.net","given_name":"david","family_name":"blasby","email":"david.blasby@geocat.net"}'
ACCESS_TOKEN = "eyJhbGciOiJSUzI1NiIsInR5cCIgOiAiSldUIiwia2lkIiA6ICItb0QyZXphcjF3ZHBUUmZCS0NqMFY4cm5ZVkJGQmxJLW5ldzFEREJCNTJrIn0.eyJleHAiOjE3MDg1NTU5NDcsImlhdCI6MTcwODU1NTY0NywiYXV0aF90aW1lIjoxNzA4NTU1Mjg4LCJqdGkiOiI0M2UyYjUwZS1hYjJkLTQ2OWQtYWJjOC01Nzc1YTY0MTMwNTkiLCJpc3MiOiJodHRwOi8vbG9jYWxob3N0Ojc3NzcvcmVhbG1zL2RhdmUtdGVzdDIiLCJhdWQiOiJhY2NvdW50Iiwic3ViIjoiOThjZmUwNjAtZjk4MC00YTA1LTg2MTItNmM2MDkyMTlmZmU5IiwidHlwIjoiQmVhcmVyIiwiYXpwIjoibGl2ZS1rZXkyIiwibm9uY2UiOiI0UGhxbVpTSjM1NUtCdEpQYkFQX1Bkd3FpTG5jN0IxbEEyU0dwQjB6WHI0Iiwic2Vzc2lvbl9zdGF0ZSI6Ijc3MTJiMzY0LTMzOWEtNDA1My1hZTBjLTdkM2FkZmNhOTAwNSIsImFjciI6IjAiLCJyZWFsbV9hY2Nlc3MiOnsicm9sZXMiOlsiZGVmYXVsdC1yb2xlcy1kYXZlLXRlc3QyIiwib2ZmbGluZV9hY2Nlc3MiLCJ1bWFfYXV0aG9yaXphdGlvbiJdfSwicmVzb3VyY2VfYWNjZXNzIjp7ImxpdmUta2V5MiI6eyJyb2xlcyI6WyJHZW9uZXR3b3JrQWRtaW5pc3RyYXRvciIsIkdlb3NlcnZlckFkbWluaXN0cmF0b3IiXX0sImFjY291bnQiOnsicm9sZXMiOlsibWFuYWdlLWFjY291bnQiLCJtYW5hZ2UtYWNjb3VudC1saW5rcyIsInZpZXctcHJvZmlsZSJdfX0sInNjb3BlIjoib3BlbmlkIHBob25lIG9mZmxpbmVfYWNjZXNzIG1pY3JvcHJvZmlsZS1qd3QgcHJvZmlsZSBhZGRyZXNzIGVtYWlsIiwic2lkIjoiNzcxMmIzNjQtMzM5YS00MDUzLWFlMGMtN2QzYWRmY2E5MDA1IiwidXBuIjoiZGF2aWQuYmxhc2J5QGdlb2NhdC5uZXQiLCJlbWFpbF92ZXJpZmllZCI6ZmFsc2UsImFkZHJlc3MiOnt9LCJuYW1lIjoiZGF2aWQgYmxhc2J5IiwiZ3JvdXBzIjpbImRlZmF1bHQtcm9sZXMtZGF2ZS10ZXN0MiIsIm9mZmxpbmVfYWNjZXNzIiwidW1hX2F1dGhvcml6YXRpb24iXSwicHJlZmVycmVkX3VzZXJuYW1lIjoiZGF2aWQuYmxhc2J5QGdlb2NhdC5uZXQiLCJnaXZlbl9uYW1lIjoiZGF2aWQiLCJmYW1pbHlfbmFtZSI6ImJsYXNieSIsImVtYWlsIjoiZGF2aWQuYmxhc2J5QGdlb2NhdC5uZXQifQ.Iq8YJ99s_HBd-gU2zaDqGbJadCE--7PlS2kRHaegYTil7WoNKfjfcH-K-59mHGzJm-V_SefE-iWG63z2c6ChddzhvG8I_O5vDNFoGlGOQFunZC379SqhqhCEdwscEUDkNA3iTTXvK9vn0muStDiv9OzpJ1zcpqYqsgxGbolGgLJgeuK8yNDH7kzDtoRzHiHw2rx4seeVpxUYAjyg_cCkEjRt3wzud7H3xlfQWRx75YfpJ0pnVphuXYR7Z8x9p6hCPtrBfDeriudm-wkwXtcV2LNlXrZ2zpKS_6Zdxzza2lN30q_6DQXHGo8EAIr8SiiQrxPQulNiX9r8XmQ917Ep0g"
USER = "david.blasby@geocat.net"
# Claim values of the JSON header that are neither the user name nor a role: a dump of the
# claims would show them.
PRIVATE_CLAIMS = (
    "4PhqmZSJ355KBtJPbAP_PdwqiLnc7B1lA2SGpB0zXr4",  # nonce
    "42ee833e-89d3-4779-bd9d-06b979329c9f",  # jti
    "98cfe060-f980-4a05-8612-6c609219ffe9",  # sub
    "2Tyw8q4ZMewuYrD38alCug",  # at_hash
    "7712b364-339a-4053-ae0c-7d3adfca9005",  # session_state, sid
)

JSON_OPTIONS = {
    "user_name_header": "OIDC_id_token_payload",
    "user_name_format": "json",
    "user_name_json_path": "preferred_username",
    "roles_source": "json",
    "roles_json_path": "resource_access.live-key2.roles",
    "role_converter": "GeoserverAdministrator=ROLE_ADMINISTRATOR",
}
# Expiry checked, signature not (we do not have the Keycloak realm's key).
EXPIRY_OPTIONS = {
    "user_name_header": "OIDC_access_token",
    "user_name_format": "jwt",
    "user_name_json_path": "preferred_username",
    "validate_token": "true",
    "validate_signature": "false",
    "validate_expiry": "true",
}


def fp(value: str) -> str:
    """The fingerprint the report should show: first 8 hex digits of SHA-256."""
    return hashlib.sha256(value.encode()).hexdigest()[:8]


def secrets_of(value: str) -> list[str]:
    """The strings that must never be printed for a header value: the value itself; for a JWT
    the token, each segment and every 16 characters of one (base64url never appears in the
    report otherwise); for JSON every 12 characters holding a '"' (the report quotes with ');
    for the JSON header, its private claims."""
    found = [value]
    token = value.removeprefix("Bearer ").strip()
    if token.count(".") == 2:
        found.append(token)
        for segment in token.split("."):
            found.append(segment)
            found.extend(segment[i : i + 16] for i in range(len(segment) - 15))
    elif value.lstrip().startswith("{"):
        windows = (value[i : i + 12] for i in range(len(value) - 11))
        found.extend(window for window in windows if '"' in window)
    if value == ID_TOKEN_PAYLOAD:
        found.extend(PRIVATE_CLAIMS)
    return [secret for secret in found if secret]


def assert_no_leak(text: str, *values: str) -> None:
    for value in values:
        for secret in secrets_of(value):
            assert secret not in text, f"printed a secret ({len(secret)} chars, fp={fp(secret)})"


def options(mapping: dict[str, str]) -> list[str]:
    args = []
    for name, value in mapping.items():
        args += ["-o", f"{name}={value}"]
    return args


def explain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``jwt-headers explain ARGS`` in this process: exit code, stdout, stderr."""
    code = main(["explain", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def lines(out: str, label: str) -> list[str]:
    """The texts of the report lines labelled ``label`` (the label column is 12 wide)."""
    return [line[12:] for line in out.splitlines() if line[:12].rstrip() == label]


def step(out: str, name: str) -> str | None:
    """``pass``/``FAIL`` plus detail of the indented step ``name``, or ``None``."""
    for line in out.splitlines():
        match = re.fullmatch(rf"  {re.escape(name)}\s+(pass|FAIL)(.*)", line)
        if match:
            return (match.group(1) + match.group(2)).strip()
    return None


@pytest.fixture(autouse=True)
def no_jwt_headers_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--env`` reads JWT_HEADERS_*: none may leak in from the shell running the tests."""
    for key in list(os.environ):
        if key.startswith("JWT_HEADERS_"):
            monkeypatch.delenv(key)


# --------------------------------------------------------------------------- JSON header


def assert_json_report(code: int, out: str, err: str) -> None:
    assert code == 0, out + err
    assert lines(out, "user header") == [
        "OIDC_id_token_payload: request header HTTP_OIDC_ID_TOKEN_PAYLOAD "
        "(peer is in trusted_proxies)"
    ]
    assert f"fp={fp(ID_TOKEN_PAYLOAD)}, {len(ID_TOKEN_PAYLOAD)} bytes, format json" in out
    assert step(out, "decode") == "pass  JSON object with 24 members"
    assert lines(out, "user name") == [repr(USER)]
    assert lines(out, "roles (ext)") == ["'GeonetworkAdministrator', 'GeoserverAdministrator'"]
    assert lines(out, "roles") == ["'GeonetworkAdministrator', 'ROLE_ADMINISTRATOR'"]
    assert lines(out, "outcome") == [
        f"app called with REMOTE_USER={USER!r}, "
        "roles=['GeonetworkAdministrator', 'ROLE_ADMINISTRATOR']"
    ]
    assert_no_leak(out + err, ID_TOKEN_PAYLOAD)


def test_json_header_with_roles_and_role_converter(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = explain(
        capsys, *options(JSON_OPTIONS), "-H", f"OIDC-Id-Token-Payload: {ID_TOKEN_PAYLOAD}"
    )
    assert_json_report(code, out, err)
    assert lines(out, "peer") == ["127.0.0.1"]
    assert "role_converter='GeoserverAdministrator=ROLE_ADMINISTRATOR'" in out


def test_plain_environ_key_is_believed_from_any_peer(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = explain(
        capsys,
        *options(JSON_OPTIONS),
        "-e",
        f"OIDC_id_token_payload={ID_TOKEN_PAYLOAD}",
        "--peer",
        "10.0.0.1",
    )
    assert code == 0, out + err
    assert lines(out, "user header") == [
        "OIDC_id_token_payload: plain environ key OIDC_id_token_payload (set by the server: "
        "believed)"
    ]
    assert lines(out, "outcome")[0].startswith(f"app called with REMOTE_USER={USER!r}")
    assert_no_leak(out + err, ID_TOKEN_PAYLOAD)


def test_untrusted_peer_header_is_ignored_and_removed(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = explain(
        capsys,
        *options(JSON_OPTIONS),
        "-H",
        f"OIDC-Id-Token-Payload: {ID_TOKEN_PAYLOAD}",
        "--peer",
        "10.0.0.1",
    )
    assert code == 0, out + err
    assert lines(out, "peer") == ["10.0.0.1"]
    (user_header,) = lines(out, "user header")
    assert "HTTP_OIDC_ID_TOKEN_PAYLOAD IGNORED: peer 10.0.0.1 is not in trusted_proxies" in (
        user_header
    )
    assert lines(out, "removed") == [
        "HTTP_OIDC_ID_TOKEN_PAYLOAD (not believed; the app will not see it)"
    ]
    assert lines(out, "user name") == []
    assert lines(out, "outcome") == ["app called anonymously (no REMOTE_USER)"]
    assert_no_leak(out + err, ID_TOKEN_PAYLOAD)


# --------------------------------------------------------------------------- expired JWT


def test_expired_token_fails_expiry_and_is_401(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = explain(
        capsys, *options(EXPIRY_OPTIONS), "-H", f"OIDC-Access-Token: {ACCESS_TOKEN}"
    )
    assert code == 1, out + err
    assert (step(out, "decode") or "").startswith("pass  compact JWS, alg=RS256")
    assert f"token fp={fp(ACCESS_TOKEN)}" in out
    assert step(out, "expiry") == "FAIL  expired: token expired"
    assert step(out, "signature") is None  # validate_signature=false: not a step at all
    assert lines(out, "user name") == []  # refused before the name is read
    (outcome,) = lines(out, "outcome")
    assert outcome.startswith("401 Unauthorized, app not called: ")
    body = json.loads(outcome.split("app not called: ", 1)[1])
    assert body == {"error": {"code": "INVALID_TOKEN", "message": "token expired"}}
    assert_no_leak(out + err, ACCESS_TOKEN)


def test_expired_token_as_a_process() -> None:
    """The installed entry point's module, run as a program: same report, exit status 1."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWT_HEADERS_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "jwt_headers.cli",
            "explain",
            *options(EXPIRY_OPTIONS),
            "-H",
            f"Authorization: Bearer {ACCESS_TOKEN}",
            "-o",
            "user_name_header=Authorization",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert step(done.stdout, "expiry") == "FAIL  expired: token expired"
    assert lines(done.stdout, "outcome")[0].startswith("401 Unauthorized, app not called")
    assert_no_leak(done.stdout + done.stderr, f"Bearer {ACCESS_TOKEN}")


# --------------------------------------------------------------------------- signature


def signature_options(server: idp.IdpServer) -> list[str]:
    return options(
        {
            "user_name_header": "Authorization",
            "user_name_format": "jwt",
            "user_name_json_path": "preferred_username",
            "roles_source": "jwt",
            "roles_json_path": "resource_access.live-key2.roles",
            "role_converter": "GeoserverAdministrator=ROLE_ADMINISTRATOR",
            "validate_token": "true",
            "jwks_uri": server.jwks_uri,
            "validate_issuer": "true",
            "issuer": idp.ISSUER,
            "validate_audience": "true",
            "audience": idp.AUDIENCE,
        }
    )


def test_signature_pass_from_any_peer(
    capsys: pytest.CaptureFixture[str], idp_server: idp.IdpServer
) -> None:
    token = mint(None, idp_server.key)
    code, out, err = explain(
        capsys,
        *signature_options(idp_server),
        "-H",
        f"Authorization: Bearer {token}",
        "--peer",
        "203.0.113.9",
    )
    assert code == 0, out + err
    assert "(signature-checked JWT: any peer)" in lines(out, "user header")[0]
    assert step(out, "signature") == "pass"
    assert step(out, "expiry") == "pass"
    assert step(out, "issuer") == "pass"
    assert step(out, "audience") == "pass"
    assert f"kid={idp_server.key.kid}" in out
    assert lines(out, "user name") == [repr(idp.USER_NAME)]
    assert lines(out, "roles") == ["'GeonetworkAdministrator', 'ROLE_ADMINISTRATOR'"]
    assert lines(out, "outcome")[0].startswith(f"app called with REMOTE_USER={idp.USER_NAME!r}")
    assert idp_server.jwks_requests >= 1  # the keys really were fetched
    assert_no_leak(out + err, token)


def test_forged_signature_fails(
    capsys: pytest.CaptureFixture[str], idp_server: idp.IdpServer
) -> None:
    # Another key claiming the provider's kid: the signature cannot match the published key.
    forger = make_key("RS256", kid=idp_server.key.kid)
    forged = mint({"preferred_username": "mallory"}, forger)
    code, out, err = explain(
        capsys, *signature_options(idp_server), "-H", f"Authorization: Bearer {forged}"
    )
    assert code == 1, out + err
    assert step(out, "signature") == "FAIL  bad_signature: token signature is not valid"
    assert step(out, "expiry") is None  # the walk stops at the first failure, as the pipeline
    assert "mallory" not in out
    (outcome,) = lines(out, "outcome")
    assert outcome.startswith("401 Unauthorized, app not called")
    assert "token signature is not valid" in outcome
    assert_no_leak(out + err, forged)


def test_explain_fingerprint_is_the_log_line_fingerprint_R35(
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    idp_server: idp.IdpServer,
) -> None:
    """One fingerprint everywhere: for a Bearer JWT the log hashes the token without "Bearer "
    (R35: the token itself is never shown), so every fp= explain prints must be that one,
    else an operator holding explain's fp= finds no log line."""
    forger = make_key("RS256", kid=idp_server.key.kid)
    forged = mint({"preferred_username": "mallory"}, forger)
    header = f"Bearer {forged}"
    code, out, err = explain(
        capsys, *signature_options(idp_server), "-H", f"Authorization: {header}"
    )
    assert code == 1, out + err
    shown = set(re.findall(r"fp=([0-9a-f]{8})", out))
    assert shown == {fp(forged)}, out
    assert fp(header) not in out  # the old, header-wide fingerprint

    mapping = {
        opt.split("=", 1)[0]: opt.split("=", 1)[1] for opt in signature_options(idp_server)[1::2]
    }
    middleware = JwtHeadersMiddleware(RecordingApp(), JwtHeadersConfig.from_mapping(mapping))
    with caplog.at_level(logging.INFO, logger="jwt_headers"):
        answer = call(middleware, {"Authorization": header})
    assert_invalid_token(answer, "bad_signature")
    logged = {
        match
        for record in caplog.records
        if getattr(record, "reason", None) == "bad_signature"
        for match in re.findall(r"fp=([0-9a-f]{8})", record.getMessage())
    }
    assert logged == shown


# --------------------------------------------------------------------------- sources


def test_stdin_raw_request(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    raw = (
        "GET /whoami HTTP/1.1\r\n"
        "Host: app.example\r\n"
        f"OIDC-Id-Token-Payload: {ID_TOKEN_PAYLOAD}\r\n"
        "Accept: */*\r\n"
        "\r\n"
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(raw))
    assert_json_report(*explain(capsys, *options(JSON_OPTIONS), "--stdin"))


def test_stdin_body_is_not_headers(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A server ends the headers at the blank line: "X-User: mallory" below is request body.
    raw = (
        "POST /notes HTTP/1.1\r\n"
        "Host: app.example\r\n"
        "Content-Type: text/plain\r\n"
        "\r\n"
        "X-User: mallory\r\n"
    )
    monkeypatch.setattr(sys, "stdin", io.StringIO(raw))
    code, out, err = explain(capsys, "-o", "user_name_header=X-User", "--stdin")
    assert code == 0, out + err
    assert "mallory" not in out
    assert lines(out, "outcome") == ["app called anonymously (no REMOTE_USER)"]


def test_config_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "auth.toml"
    config.write_text(
        "[jwt_headers]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in JSON_OPTIONS.items()),
        encoding="utf-8",
    )
    assert_json_report(
        *explain(
            capsys,
            "--config",
            str(config),
            "-H",
            f"OIDC-Id-Token-Payload: {ID_TOKEN_PAYLOAD}",
        )
    )


def test_config_file_with_option_on_top(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    config = tmp_path / "auth.toml"
    config.write_text(
        "[jwt_headers]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in JSON_OPTIONS.items()),
        encoding="utf-8",
    )
    code, out, err = explain(
        capsys,
        "--config",
        str(config),
        "-o",
        "only_external_listed_roles=true",
        "-H",
        f"OIDC-Id-Token-Payload: {ID_TOKEN_PAYLOAD}",
    )
    assert code == 0, out + err
    assert lines(out, "roles") == ["'ROLE_ADMINISTRATOR'"]
    assert_no_leak(out + err, ID_TOKEN_PAYLOAD)


def test_env(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in JSON_OPTIONS.items():
        monkeypatch.setenv(f"JWT_HEADERS_{name.upper()}", value)
    assert_json_report(
        *explain(capsys, "--env", "-H", f"OIDC-Id-Token-Payload: {ID_TOKEN_PAYLOAD}")
    )


def test_env_is_read_only_with_the_flag(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in JSON_OPTIONS.items():
        monkeypatch.setenv(f"JWT_HEADERS_{name.upper()}", value)
    code, out, err = explain(capsys, "-H", f"OIDC-Id-Token-Payload: {ID_TOKEN_PAYLOAD}")
    assert code == 2
    assert out == ""
    assert "user_name_header is required" in err
    assert_no_leak(out + err, ID_TOKEN_PAYLOAD)


# --------------------------------------------------------------------------- mistakes


def test_unknown_option_is_exit_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = explain(
        capsys,
        *options(EXPIRY_OPTIONS),
        "-o",
        "validate_expiri=true",
        "-H",
        f"OIDC-Access-Token: {ACCESS_TOKEN}",
    )
    assert code == 2
    assert out == ""
    assert "'validate_expiri' is not an option" in err
    assert "did you mean 'validate_expiry'?" in err
    assert_no_leak(out + err, ACCESS_TOKEN)


@pytest.mark.parametrize("flag", ["-H", "-e"])
def test_malformed_header_argument_does_not_echo_the_token(
    capsys: pytest.CaptureFixture[str], flag: str
) -> None:
    # "Authorization:" forgotten: the whole argument is the credential.
    code, out, err = explain(capsys, *options(EXPIRY_OPTIONS), flag, f"Bearer {ACCESS_TOKEN}")
    assert code == 2
    assert out == ""
    assert f"fp={fp(f'Bearer {ACCESS_TOKEN}')}" in err
    assert_no_leak(out + err, f"Bearer {ACCESS_TOKEN}")


def test_malformed_token_is_a_failed_step(capsys: pytest.CaptureFixture[str]) -> None:
    header, payload, signature = ACCESS_TOKEN.split(".")
    broken = f"{header}.{payload}@.{signature}"
    code, out, err = explain(capsys, *options(EXPIRY_OPTIONS), "-H", f"OIDC-Access-Token: {broken}")
    assert code == 1, out + err
    assert step(out, "decode") == "FAIL  malformed: token payload is not base64url"
    assert lines(out, "outcome")[0].startswith("401 Unauthorized, app not called")
    assert_no_leak(out + err, broken, ACCESS_TOKEN)


def test_oversized_json_header_is_a_failed_step(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = explain(
        capsys,
        *options(JSON_OPTIONS),
        "-o",
        "max_header_bytes=500",
        "-H",
        f"OIDC-Id-Token-Payload: {ID_TOKEN_PAYLOAD}",
    )
    assert code == 1, out + err
    assert step(out, "size") == "FAIL  oversized: header value longer than 500 bytes"
    assert step(out, "decode") is None
    assert lines(out, "user name") == []
    assert "header value longer than 500 bytes" in lines(out, "outcome")[0]
    assert_no_leak(out + err, ID_TOKEN_PAYLOAD)


def test_oversized_plain_header_is_not_shown_as_a_user_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The pipeline refuses the value by size before reading a name; the report must agree.
    code, out, err = explain(
        capsys,
        "-o",
        "user_name_header=X-User",
        "-o",
        "max_header_bytes=8",
        "-H",
        "X-User: alice-in-wonderland",
    )
    assert code == 1, out + err
    assert lines(out, "user name") == []
    assert step(out, "size") == "FAIL  oversized: header value longer than 8 bytes"
    assert "header value longer than 8 bytes" in lines(out, "outcome")[0]


def test_oversized_roles_header_is_not_shown_as_roles(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = explain(
        capsys,
        *options(
            {
                "user_name_header": "X-User",
                "roles_source": "header",
                "roles_header": "X-Roles",
                "max_header_bytes": "16",
            }
        ),
        "-H",
        "X-User: bob",
        "-H",
        "X-Roles: reader, writer, auditor",
    )
    assert code == 1, out + err
    assert lines(out, "user name") == ["'bob'"]
    assert step(out, "size") == "FAIL  oversized: header value longer than 16 bytes"
    assert lines(out, "roles") == []
    assert "auditor" not in out
    assert "header value longer than 16 bytes" in lines(out, "outcome")[0]


# --------------------------------------------------------------------------- the README


def readme_example() -> tuple[list[str], str]:
    """The shell lines (``$ ...``) and the output of the README's explain example, the first
    literal block of its "Explain" subsection."""
    text = (ROOT / "README.rst").read_text(encoding="utf-8")
    section = text[text.index("\nExplain\n~~~~~~~\n") :]
    block = section[section.index("::\n\n") + 4 :]
    shown = []
    for line in block.splitlines():
        if line and not line.startswith("    "):
            break
        shown.append(line[4:])
    commands = [line[2:] for line in shown if line.startswith("$ ")]
    output = "\n".join(line for line in shown if not line.startswith("$ ")).strip("\n")
    return commands, output


def read_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key] = value
    return values


def test_readme_example_output_is_what_explain_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The README shows a real run: play its shell lines here (load the env file, set the
    variable, run the command) and compare the output, character for character."""
    commands, shown = readme_example()
    assert len(commands) == 3, commands
    env_file = re.fullmatch(r"set -a; \. (\S+); set \+a", commands[0])
    assert env_file is not None, commands[0]
    for name, value in read_env_file(ROOT / env_file.group(1)).items():
        monkeypatch.setenv(name, value)
    (assignment,) = shlex.split(commands[1])
    name, _, value = assignment.partition("=")
    monkeypatch.setenv(name, value)
    program, *args = (os.path.expandvars(arg) for arg in shlex.split(commands[2]))
    assert program == "jwt-headers"

    code = main(args)
    out = capsys.readouterr().out
    assert code == 0
    assert out.rstrip("\n") == shown
    assert_no_leak(out, value)
