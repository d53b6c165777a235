"""R35 (and R34, R36): refusals log a reason code and a fingerprint, never the token, a segment of
it, the JSON header value or a claim; the response body carries none of them either."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re

import pytest
from conftest import JSON, JWT, STRANGER, STRING, RecordingApp, assert_invalid_token, call

from jwt_headers import JwtHeadersMiddleware

FULLWIDTH_ROOT = "\uff52\uff4f\uff4f\uff54"  # NFKC: "root"
LOGGER = "jwt_headers"
CLAIM = "Pr1vate-Claim-Value-7f3a9c"  # a claim value that must never be logged


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def seg(part: object) -> str:
    text = part if isinstance(part, str) else json.dumps(part)
    return b64url(text.encode("utf-8"))


def token(claims: object = None, header: object = None, signature: str | None = None) -> str:
    if claims is None:
        claims = {"preferred_username": "alice", "secret": CLAIM}
    if header is None:
        header = {"alg": "RS256", "kid": "key-1-for-logging-tests"}
    if signature is None:
        signature = b64url(hashlib.sha512(b"signature").digest())
    return f"{seg(header)}.{seg(claims)}.{signature}"


def fp(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()[:8]


def json_value(name: object = "alice", **extra: object) -> str:
    return json.dumps({"preferred_username": name, "secret": CLAIM, **extra})


DENY = {"denied_user_names": ("root",)}

GOOD = token()
H, P, S = GOOD.split(".")


def _noncanonical(segment: str) -> str:
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    while len(segment) % 4 not in (2, 3):
        segment = segment[:-1]
    return segment[:-1] + alphabet[alphabet.index(segment[-1]) + 1]


# (options, header value, token whose fp must be logged or None when only the form is checked,
#  reason code)
JWT_CASES = {
    "bad-base64": (f"{H}!.{P}.{S}", "malformed"),
    "jwe": (f"{H}.{P}.{S}.{S}.{S}", "malformed"),
    "two-segments": (f"{H}.{P}", "malformed"),
    "alg-none": (
        token(header={"alg": "none", "kid": "key-1-for-logging-tests"}),
        "alg_not_allowed",
    ),
    "non-canonical": (f"{H}.{_noncanonical(P)}.{S}", "malformed"),
    "empty-signature": (f"{H}.{P}.", "malformed"),
    "crit": (token(header={"alg": "RS256", "crit": ["exp"], "kid": "key-1-x"}), "malformed"),
    "b64": (token(header={"alg": "RS256", "b64": False, "kid": "key-1-x"}), "malformed"),
    "cty-jwt": (token(header={"alg": "RS256", "cty": "JWT", "kid": "key-1-x"}), "malformed"),
    "payload-duplicates": (
        token(f'{{"preferred_username":"alice","preferred_username":"root","s":"{CLAIM}"}}'),
        "malformed",
    ),
    "payload-nan": (token(f'{{"preferred_username":"alice","x":NaN,"s":"{CLAIM}"}}'), "malformed"),
    "payload-not-object": (token(f'["{CLAIM}"]'), "malformed"),
    "no-name": (token({"sub": "x", "secret": CLAIM}), "no_user_name"),
    "name-number": (token({"preferred_username": 7, "secret": CLAIM}), "no_user_name"),
    "name-control": (token({"preferred_username": "al\nice", "secret": CLAIM}), "bad_user_name"),
    "name-long": (token({"preferred_username": "a" * 300, "secret": CLAIM}), "bad_user_name"),
    "denied": (token({"preferred_username": FULLWIDTH_ROOT, "secret": CLAIM}), "denied_user_name"),
    "deep": (
        token('{"preferred_username":"alice","x":' + "[" * 40 + "]" * 40 + f',"s":"{CLAIM}"}}'),
        "malformed",
    ),
    "oversized": (
        token({"preferred_username": "alice", "secret": CLAIM, "p": "x" * 17000}),
        "oversized",
    ),
}


def _jwt_params():
    for name, (value, reason) in JWT_CASES.items():
        yield pytest.param(JWT, value, value, reason, id=f"jwt-bare-{name}")
        yield pytest.param(JWT, f"Bearer {value}", value, reason, id=f"jwt-bearer-{name}")


JSON_CASES = {
    "malformed": (f'{{"preferred_username":"alice","s":"{CLAIM}"', "malformed"),
    "not-object": (f'["alice","{CLAIM}"]', "malformed"),
    "no-name": (json.dumps({"sub": "alice", "secret": CLAIM}), "no_user_name"),
    "name-list": (json_value(["alice"]), "no_user_name"),
    "name-empty": (json_value(""), "no_user_name"),
    "duplicates": (
        f'{{"preferred_username":"alice","preferred_username":"root","s":"{CLAIM}"}}',
        "malformed",
    ),
    "nan": (f'{{"preferred_username":"alice","s":"{CLAIM}","x":NaN}}', "malformed"),
    "control": (json_value("al\u0000ice"), "bad_user_name"),
    "white-space": (json_value(" alice"), "bad_user_name"),
    "long": (json_value("a" * 257), "bad_user_name"),
    "denied": (json_value("r\u00adoot"), "denied_user_name"),
    "deep": (
        f'{{"preferred_username":"alice","s":"{CLAIM}","x":' + "[" * 40 + "]" * 40 + "}",
        "malformed",
    ),
    "oversized": (json_value("alice", pad="x" * 17000), "oversized"),
}

STRING_CASES = {
    "control": (f"alice\x01{CLAIM}", "bad_user_name"),
    "long": ("a" * 200 + CLAIM * 3, "bad_user_name"),
    "denied": ("ROOT", "denied_user_name"),
    "oversized": (CLAIM * 1000, "oversized"),
}

OTHER_CASES = [
    *(
        pytest.param(JSON, value, value, reason, id=f"json-{name}")
        for name, (value, reason) in JSON_CASES.items()
    ),
    *(
        pytest.param(STRING, value, value, reason, id=f"string-{name}")
        for name, (value, reason) in STRING_CASES.items()
    ),
]
CASES = [*_jwt_params(), *OTHER_CASES]
FP_CASES = [*_jwt_params(), *OTHER_CASES]

# Values for which "the token" is not one well-defined string: only the fp form is checked.
LOOSE_CASES = [
    pytest.param(JWT, "Bearer", "malformed", id="bearer-alone"),
    pytest.param(JWT, f"Bearer:{GOOD}", "malformed", id="bearer-colon"),
    pytest.param(JWT, f"BearerX{GOOD}", "malformed", id="bearerX"),
    pytest.param(JWT, f"Bearer {H}.{P} .{S}", "malformed", id="inner-space"),
    pytest.param(JWT, f"{H}.{P} .{S}", "malformed", id="bare-inner-space"),
    pytest.param(
        JWT,
        f"Bearer {GOOD}, Bearer {token(signature='c2ln' * 8)}",
        "repeated_header",
        id="two-bearers",
    ),
    pytest.param(JWT, f"{GOOD},{token(signature='c2ln' * 8)}", "repeated_header", id="two-bare"),
    pytest.param(JSON, f"{json_value()},{json_value('bob')}", "malformed", id="json-repeated"),
]


def secrets_of(value: str, tok: str | None) -> list[str]:
    """Every string that must not reach a log or body (short ones could match by chance)."""
    candidates = {value, CLAIM}
    for text in (value, tok or ""):
        candidates.add(text)
        candidates.update(text.split("."))
        candidates.update(part for part in re.split(r"[ ,]+", text))
        if text.startswith("Bearer "):
            candidates.add(text[len("Bearer ") :])
    if value.lstrip().startswith(("{", "[")):
        candidates.add(value.strip())
    return [c for c in candidates if len(c) >= 8 and c not in ("Bearer", "bearer")]


def all_log_text(caplog) -> str:
    parts = [caplog.text]
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(str(record.msg))
        parts.append(repr(record.args))
        if record.exc_text:
            parts.append(record.exc_text)
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
    return "\n".join(parts)


def response_text(answer) -> str:
    return (
        answer.body.decode("utf-8", "replace")
        + "\n"
        + "\n".join(f"{k}: {v}" for k, v in answer.headers.items())
    )


def refusal_lines(caplog, reason: str) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name.startswith(LOGGER) and reason in record.getMessage()
    ]


def _send(options, value, caplog, middleware=None):
    key = "HTTP_" + options["user_name_header"].upper().replace("-", "_")
    if middleware is None:
        return call(environ={key: value}, **options, **DENY)
    return call(middleware, environ={key: value})


def _assert_nothing_leaked(caplog, answer, value, tok):
    logs = all_log_text(caplog)
    response = response_text(answer)
    for secret in secrets_of(value, tok):
        assert secret not in logs, f"log leaks {secret[:40]!r}"
        assert secret not in response, f"response leaks {secret[:40]!r}"


@pytest.mark.parametrize(("options", "value", "tok", "reason"), CASES)
def test_refusal_logs_reason_and_fingerprint_only(caplog, options, value, tok, reason):
    """R35: a reason code and fp=<8 hex digits>; no token, segment, JSON value or claim."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = _send(options, value, caplog)
    assert_invalid_token(answer, reason)
    _assert_nothing_leaked(caplog, answer, value, tok)
    lines = refusal_lines(caplog, reason)
    assert lines, [r.getMessage() for r in caplog.records]
    assert any(re.search(r"\bfp=[0-9a-f]{8}\b", line) for line in lines), lines


@pytest.mark.parametrize(("options", "value", "tok", "reason"), FP_CASES)
def test_refusal_fingerprint_is_sha256_of_the_token(caplog, options, value, tok, reason):
    """R35: fp = first 8 hex digits of SHA-256 of the token (the JSON value for json)."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = _send(options, value, caplog)
    assert_invalid_token(answer, reason)
    lines = refusal_lines(caplog, reason)
    assert any(f"fp={fp(tok)}" in line for line in lines), lines


@pytest.mark.parametrize(("options", "value", "reason"), LOOSE_CASES)
def test_refusal_of_malformed_values_logs_reason_and_a_fingerprint(caplog, options, value, reason):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = _send(options, value, caplog)
    assert_invalid_token(answer, reason)
    _assert_nothing_leaked(caplog, answer, value, None)
    lines = refusal_lines(caplog, reason)
    assert lines, [r.getMessage() for r in caplog.records]
    assert any(re.search(r"\bfp=[0-9a-f]{8}\b", line) for line in lines), lines


@pytest.mark.parametrize(
    ("options", "value", "reason"),
    [
        pytest.param(JWT, *JWT_CASES["alg-none"], id="jwt"),
        pytest.param(JSON, *JSON_CASES["denied"], id="json"),
    ],
)
def test_repeated_refusal_logs_again_without_leaking(caplog, options, value, reason):
    """The second refusal (negative cache hit) still logs reason + fp, still no token."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    middleware = JwtHeadersMiddleware(RecordingApp(), **options, **DENY)
    for _ in range(2):
        caplog.clear()
        answer = _send(options, value, caplog, middleware)
        assert_invalid_token(answer, reason)
        _assert_nothing_leaked(caplog, answer, value, value)
        assert any(f"fp={fp(value)}" in line for line in refusal_lines(caplog, "fp="))


@pytest.mark.parametrize(
    ("options", "header", "value"),
    [
        pytest.param(STRING, "X-User", f"alice-{CLAIM}", id="string"),
        pytest.param(JSON, "OIDC-Id-Token-Payload", json_value(), id="json"),
        pytest.param(JWT, "Authorization", f"Bearer {GOOD}", id="jwt"),
    ],
)
def test_untrusted_source_warning_does_not_leak_the_value(caplog, options, header, value):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = call(headers={header: value}, peer=STRANGER, **options)
    assert answer.status == 200
    assert answer.app.called
    assert "REMOTE_USER" not in answer.app.environ
    lines = refusal_lines(caplog, "untrusted_source_header")
    assert lines
    _assert_nothing_leaked(caplog, answer, value, value.removeprefix("Bearer "))


def test_successful_request_logs_no_token(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = call(environ={"HTTP_AUTHORIZATION": f"Bearer {GOOD}"}, **JWT)
    assert answer.status == 200
    assert answer.user == "alice"
    logs = all_log_text(caplog)
    for secret in secrets_of(f"Bearer {GOOD}", GOOD):
        assert secret not in logs


def test_log_injection_escaped_in_untrusted_peer(caplog):
    """R36: user-controlled strings reaching logs have control characters escaped."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    call(headers={"X-User": "alice"}, peer="203.0.113.9\nFAKE denied", **STRING)
    assert refusal_lines(caplog, "untrusted_source_header")
    for record in caplog.records:
        assert "\n" not in record.getMessage()


def test_unauthenticated_body_has_no_request_data(caplog):
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    answer = call(environ={"HTTP_X_OTHER": CLAIM}, allow_anonymous=False, **STRING)
    assert answer.status == 401
    assert answer.json["error"]["code"] == "UNAUTHENTICATED"
    assert CLAIM not in response_text(answer)
    assert CLAIM not in all_log_text(caplog)


def unauthenticated_lines(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if getattr(r, "reason", None) == "unauthenticated"]


def test_missing_credential_401_is_one_info_line_naming_the_headers_looked_for(caplog):
    """Issue 17: a 401 UNAUTHENTICATED used to leave no line, so a header a server dropped
    (``OIDC_id_token_payload`` through gunicorn) showed as nothing at all. Now one INFO line
    names the header(s) looked for, with no request data (R35); an anonymous request that is
    allowed logs nothing."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    options = {**JSON, "user_name_header": "OIDC-Id-Token-Payload"}
    answer = call(environ={"HTTP_X_OTHER": CLAIM}, allow_anonymous=False, **options)
    assert answer.status == 401 and not answer.app.called
    (record,) = unauthenticated_lines(caplog)
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "unauthenticated header=OIDC-Id-Token-Payload fp=None: authentication required"
    )
    assert CLAIM not in all_log_text(caplog)
    caplog.clear()
    answer = call(environ={"HTTP_X_OTHER": CLAIM}, **options)
    assert answer.status == 200 and answer.app.called
    assert unauthenticated_lines(caplog) == []
    assert [r for r in caplog.records if r.levelno == logging.INFO] == []


def test_missing_credential_line_names_every_source_and_the_asgi_adapter_logs_it_too(caplog):
    """With several sources the line lists each header in order; the ASGI adapter writes the
    same line (the adapters answer and log alike)."""
    import asyncio

    from asgi_helpers import RecordingASGIApp, make_scope

    from jwt_headers.asgi import JwtHeadersASGIMiddleware

    caplog.set_level(logging.DEBUG, logger=LOGGER)
    options = {
        "allow_anonymous": False,
        "sources": [{"user_name_header": "X-User"}, {**JWT, "user_name_header": "Authorization"}],
    }
    assert call(**options).status == 401
    asgi = JwtHeadersASGIMiddleware(RecordingASGIApp(), **options)
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b""}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(asgi(make_scope({}), receive, send))
    assert sent[0]["status"] == 401
    lines = [r.getMessage() for r in unauthenticated_lines(caplog)]
    assert (
        lines
        == ["unauthenticated header=X-User,Authorization fp=None: authentication required"] * 2
    )


class _Crash(Exception):
    """What a bug deep in the pipeline might raise; its text holds request data."""


def test_catch_all_refuses_with_internal_error_and_logs_only_the_type(caplog):
    """R37 (fail closed): an exception the pipeline did not expect never reaches the server as
    a 500 and never lets the request through. The client gets the contract's 401
    ``invalid_token`` with a message that says nothing about the cause; the log gets one ERROR
    line with the reason ``internal_error`` and the exception's type, never its text or a
    traceback (which could hold the token)."""
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    middleware = JwtHeadersMiddleware(RecordingApp(), **JWT)

    def crash(environ):
        raise _Crash(f"while reading {GOOD}")

    middleware.authenticator.authenticate = crash  # type: ignore[method-assign]
    answer = call(middleware, environ={"HTTP_AUTHORIZATION": f"Bearer {GOOD}"})
    assert_invalid_token(answer, "internal_error", "credentials could not be processed")
    assert answer.json == {
        "error": {"code": "INVALID_TOKEN", "message": "credentials could not be processed"}
    }
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1
    (record,) = errors
    assert record.reason == "internal_error"
    assert record.getMessage() == "internal_error exc=_Crash: request refused"
    assert record.exc_info is None
    _assert_nothing_leaked(caplog, answer, f"Bearer {GOOD}", GOOD)


def test_catch_all_does_not_swallow_the_apps_own_exceptions():
    """R37: only the middleware's own failures are caught; the wrapped app's exception
    passes through untouched (the server turns it into its own 500)."""

    def failing_app(environ, start_response):
        raise _Crash("the app's bug")

    middleware = JwtHeadersMiddleware(failing_app, **JWT)
    environ = {"REQUEST_METHOD": "GET", "REMOTE_ADDR": "127.0.0.1"}
    with pytest.raises(_Crash, match="the app's bug"):
        middleware(environ, lambda status, headers, exc_info=None: None)
