"""Refusals that say what to fix (issue 17, item 2) without repeating what the header held (R35).

A user-name path that matches nothing names the path; a JWT reaching the ``json`` format (or a
JSON document reaching ``jwt``) names the format to set; a roles path that matches nothing is
a DEBUG line naming the path, and ``explain`` says so. Every token here carries a claim value
that must never appear in the answer, the log or the report, and every reason code is the
one it was before the hints (logs, metrics and tests key on it).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from conftest import JSON, JWT, RecordingApp, assert_accepted, assert_invalid_token, call
from idp import DELETE, make_key, mint

from jwt_headers import JwtHeadersMiddleware
from jwt_headers.cli import main

#: A claim value no refusal, log record or report may repeat (R35).
SECRET = "s3cret-claim-value-5f1c2a"
KEY = make_key()


def token(**claims: object) -> str:
    return mint({"secret_note": SECRET, **claims}, KEY)


def json_document(**claims: object) -> str:
    return json.dumps({"secret_note": SECRET, "sub": "u-1", **claims})


class Records:
    """Every record of the ``jwt_headers`` loggers, DEBUG included, of the test's call phase."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def __iter__(self) -> Iterator[logging.LogRecord]:
        return iter(self._caplog.records)


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Iterator[Records]:
    with caplog.at_level(logging.DEBUG, logger="jwt_headers"):
        yield Records(caplog)


def assert_no_secret(answer_body: bytes, records: Records) -> None:
    """R35: neither the client's answer nor any log record carries the claim value."""
    assert SECRET.encode() not in answer_body
    for record in records:
        assert SECRET not in record.getMessage()


# ------------------------------------------------------------------------ user-name path


@pytest.mark.parametrize(
    ("fmt", "value"),
    [
        pytest.param(JSON, json_document(other="alice"), id="json"),
        pytest.param(JWT, f"Bearer {token(preferred_username=DELETE)}", id="jwt"),
    ],
)
def test_user_name_path_that_matches_nothing_is_named_without_claim_values_r35(
    fmt: dict[str, str], value: str, records: Records
) -> None:
    options = {**fmt, "user_name_json_path": "preferred_username"}
    if fmt is JWT:
        options["validate_token"] = False
    answer = call(headers={options["user_name_header"]: value}, **options)
    assert_invalid_token(
        answer, "no_user_name", "user name path 'preferred_username' matches nothing"
    )
    logged = [r.getMessage() for r in records if getattr(r, "reason", None) == "no_user_name"]
    assert logged and "user name path 'preferred_username' matches nothing" in logged[-1]
    assert_no_secret(answer.body, records)


def test_user_name_path_matching_a_non_string_names_the_path_not_the_value_r35(
    records: Records,
) -> None:
    answer = call(
        headers={"OIDC-id-token-payload": json_document(uid={"n": SECRET})},
        **{**JSON, "user_name_json_path": "uid"},
    )
    assert_invalid_token(answer, "no_user_name", "user name path 'uid' does not lead to")
    assert_no_secret(answer.body, records)


# ------------------------------------------------------------------------ format hints


def test_jwt_reaching_the_json_format_names_the_jwt_format_r35(
    records: Records,
) -> None:
    answer = call(headers={"OIDC-id-token-payload": token()}, **JSON)
    assert_invalid_token(
        answer, "malformed", "is not valid JSON: the header holds a JWT; set user_name_format='jwt'"
    )
    logged = [r.getMessage() for r in records if getattr(r, "reason", None) == "malformed"]
    assert logged and "set user_name_format='jwt'" in logged[-1]
    assert_no_secret(answer.body, records)


def test_bearer_jwt_reaching_the_json_format_names_the_jwt_format() -> None:
    answer = call(headers={"OIDC-id-token-payload": f"Bearer {token()}"}, **JSON)
    assert_invalid_token(answer, "malformed", "set user_name_format='jwt'")


@pytest.mark.parametrize(
    "document",
    [
        pytest.param(json_document(preferred_username="alice"), id="spaces-and-commas"),
        pytest.param('{"preferred_username":"alice"}', id="compact"),
    ],
)
def test_json_document_reaching_the_jwt_format_names_the_json_format_r35(
    document: str, records: Records
) -> None:
    answer = call(headers={"X-Id": document}, **{**JWT, "user_name_header": "X-Id"})
    assert answer.status == 401 and not answer.app.called
    assert answer.reasons[-1] in {"malformed", "repeated_header"}  # as before the hint
    assert (
        "the header holds a JSON document; set user_name_format='json'"
        in (answer.json["error"]["message"])
    )
    assert_no_secret(answer.body, records)


def test_a_real_json_error_gets_no_format_hint() -> None:
    answer = call(headers={"OIDC-id-token-payload": '{"preferred_username": '}, **JSON)
    assert_invalid_token(answer, "malformed", "is not valid JSON")
    assert "user_name_format" not in answer.json["error"]["message"]


def test_roles_header_in_the_other_format_names_roles_source() -> None:
    options = {
        **JSON,
        "roles_source": "json",
        "roles_header": "X-Roles",
        "roles_json_path": "roles",
    }
    answer = call(
        headers={
            "OIDC-id-token-payload": json_document(preferred_username="alice"),
            "X-Roles": token(),
        },
        **options,
    )
    assert_invalid_token(answer, "malformed", "set roles_source='jwt'")


def test_the_hint_is_given_again_to_a_repeated_bad_value_and_only_once() -> None:
    """The second answer comes from the negative cache: same message, hint not doubled."""
    middleware = JwtHeadersMiddleware(RecordingApp(), **JSON)
    value = token()
    first = call(middleware, {"OIDC-id-token-payload": value})
    second = call(middleware, {"OIDC-id-token-payload": value})
    assert first.json == second.json
    assert second.json["error"]["message"].count("set user_name_format='jwt'") == 1


# ------------------------------------------------------------------------ roles path


def test_roles_path_that_matches_nothing_logs_the_path_at_debug_r35(
    records: Records,
) -> None:
    options = {**JSON, "roles_source": "json", "roles_json_path": "realm_access.roles"}
    answer = call(
        headers={"OIDC-id-token-payload": json_document(preferred_username="alice")}, **options
    )
    principal = assert_accepted(answer, "alice")
    assert list(principal.roles) == []
    debug = [r for r in records if r.levelno == logging.DEBUG and "roles path" in r.getMessage()]
    assert [r.getMessage() for r in debug] == [
        "roles path 'realm_access.roles' matches nothing: no roles from it"
    ]
    assert_no_secret(answer.body, records)


def test_roles_path_that_matches_logs_no_such_line(records: Records) -> None:
    options = {**JSON, "roles_source": "json", "roles_json_path": "roles"}
    answer = call(
        headers={"OIDC-id-token-payload": json_document(preferred_username="alice", roles=[])},
        **options,
    )
    assert_accepted(answer, "alice")
    assert not [r for r in records if "matches nothing" in r.getMessage()]


# ------------------------------------------------------------------------ explain


def explain(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["explain", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def report_lines(out: str, label: str) -> list[str]:
    return [line[12:] for line in out.splitlines() if line[:12].rstrip() == label]


def json_options(*extra: str) -> list[str]:
    args = []
    for option in (
        "user_name_header=OIDC-id-token-payload",
        "user_name_format=json",
        "user_name_json_path=preferred_username",
        *extra,
    ):
        args += ["-o", option]
    return args


def test_explain_says_the_roles_path_matches_nothing(capsys: pytest.CaptureFixture[str]) -> None:
    document = json_document(preferred_username="alice")
    code, out = explain(
        capsys,
        *json_options("roles_source=json", "roles_json_path=realm_access.roles"),
        "-H",
        f"OIDC-id-token-payload: {document}",
    )
    assert code == 0, out
    assert report_lines(out, "roles path") == [
        "'realm_access.roles' matches nothing: no roles from it"
    ]
    assert SECRET not in out


def test_explain_names_the_user_name_path_and_the_format(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out = explain(
        capsys, *json_options(), "-H", f"OIDC-id-token-payload: {json_document(x='a')}"
    )
    assert code == 1
    assert "user name path 'preferred_username' matches nothing" in out
    code, out = explain(capsys, *json_options(), "-H", f"OIDC-id-token-payload: {token()}")
    assert code == 1
    decode = [line for line in out.splitlines() if line.startswith("  decode")]
    assert decode and "set user_name_format='jwt'" in decode[0]
    assert "set user_name_format='jwt'" in report_lines(out, "outcome")[0]
    assert SECRET not in out


def test_explain_warns_about_an_underscore_header_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Issue 17 item 1: explain must not promise a user the common servers never deliver."""
    document = json_document(preferred_username="alice")
    code, out = explain(
        capsys,
        *json_options("user_name_header=OIDC_id_token_payload"),
        "-H",
        f"OIDC_id_token_payload: {document}",
    )
    assert code == 0, out
    warning = " ".join(report_lines(out, "WARNING"))
    assert "'OIDC_id_token_payload' has '_'" in warning
    assert "gunicorn >= 22, waitress, werkzeug and Django's runserver drop" in warning
    assert "'OIDC-id-token-payload'" in warning and "mod_wsgi" in warning
    code, out = explain(capsys, *json_options(), "-H", f"OIDC-id-token-payload: {document}")
    assert code == 0 and "WARNING" not in out
