"""A coverage-guided fuzz target for the whole middleware, for long runs with atheris.

CI runs the hypothesis fuzzers (``tests/test_fuzz.py``, ``tests/test_fuzz_tokens.py``) with
fixed budgets; atheris adds coverage feedback and runs for hours outside CI. ``test_one_input``
needs nothing but jwt_headers, so ``tests/test_fuzz_target.py`` runs it in CI on the corpus and
on random bytes: the target and its invariants cannot rot between long runs.

An input is read as: byte 0 picks the configuration, byte 1 the peer and extra environ keys,
byte 2 how the rest becomes the header value:

* ``0``: the rest as the value itself (latin-1, as a WSGI server decodes header bytes);
* ``1``: a token built from the rest: three ``\\x00``-separated parts, base64url-encoded as
  header, payload and signature (so the fuzzer writes the JSON, not base64);
* ``2``: a real token from the in-process identity provider with byte edits taken from the
  rest (pairs of position and new byte), optionally ``Bearer``-prefixed.

The invariants (an ``AssertionError`` is a finding): the status is 200, 401 or 503; the app
runs exactly when it is 200; a 401/503 body is the contract's JSON; nothing is logged at ERROR
(the middleware's catch-all for a bug); no log line and no body holds a token segment.
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

from jwt_headers import JwtHeadersMiddleware
from jwt_headers.devidp import DevIdp

_IDP = DevIdp(audience="fuzz-api").start()
atexit.register(_IDP.stop)
_GOOD = _IDP.mint({"sub": "u1", "preferred_username": "alice", "roles": ["r1"]}, 86400)


class _Log(logging.Handler):
    """Keeps the messages of one call, to check them for token text and errors."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_LOG = _Log()
_LOGGER = logging.getLogger("jwt_headers")
_LOGGER.addHandler(_LOG)
_LOGGER.setLevel(logging.DEBUG)
_LOGGER.propagate = False


class _App:
    """The wrapped app: records whether it ran."""

    called = False

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        self.called = True
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]


_ROLES = {"roles_json_path": "roles", "role_converter": "r1=ADMIN;r1=USER;r2=READER"}
_CONFIGS: list[dict[str, Any]] = [
    {"user_name_header": "X-User", "roles_source": "header", "roles_header": "X-Roles"},
    {
        "user_name_header": "OIDC_id_token_payload",
        "user_name_format": "json",
        "user_name_json_path": "preferred_username",
        "roles_source": "json",
        **_ROLES,
    },
    {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "$.preferred_username",
        "roles_source": "jwt",
        **_ROLES,
    },
    {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "roles_source": "jwt",
        "validate_token": True,
        "validate_signature": False,
        "validate_issuer": True,
        "issuer": _IDP.issuer,
        "validate_audience": True,
        "audience": "fuzz-api",
        **_ROLES,
    },
    {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "roles_source": "jwt",
        "validate_token": True,
        "jwks_uri": _IDP.jwks_uri,
        "validate_issuer": True,
        "issuer": _IDP.issuer,
        "validate_audience": True,
        "audience": "fuzz-api",
        "allow_anonymous": True,
        **_ROLES,
    },
]
_APP = _App()
_MIDDLEWARES = [JwtHeadersMiddleware(_APP, **options) for options in _CONFIGS]
_PEERS: list[object] = [
    "127.0.0.1",
    "203.0.113.9",
    "::1",
    None,
    ["127.0.0.1"],
    "",
    "::ffff:1.2.3.4",
]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _value(mode: int, rest: bytes) -> str:
    if mode == 1:
        header, _, tail = rest.partition(b"\x00")
        payload, _, signature = tail.partition(b"\x00")
        return f"Bearer {_b64(header)}.{_b64(payload)}.{_b64(signature)}"
    if mode == 2:
        token = bytearray(_GOOD.encode("ascii"))
        for index in range(0, len(rest) - 1, 2):
            position = rest[index] * 7 % (len(token) + 1)
            if position == len(token):
                token.append(rest[index + 1])
            else:
                token[position] = rest[index + 1]
        prefix = "Bearer " if len(rest) % 2 == 0 else ""
        return prefix + token.decode("latin-1")
    return rest.decode("latin-1")


def _secrets_in(value: str) -> list[str]:
    """The parts of ``value`` that are token text: what must never be echoed or logged."""
    token = value.strip()
    if token[:7].lower() == "bearer ":
        token = token[7:].strip()
    return [part for part in token.split(".") if len(part) >= 16]


def test_one_input(data: bytes) -> None:
    """One request through one middleware; raises ``AssertionError`` on a broken invariant."""
    if len(data) < 3:
        return
    middleware = _MIDDLEWARES[data[0] % len(_MIDDLEWARES)]
    extras, mode, rest = data[1], data[2] % 3, data[3:]
    value = _value(mode, rest)
    header = middleware.config.user_name_header
    key = "HTTP_" + header.upper().replace("-", "_")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": "/",
        "REMOTE_ADDR": _PEERS[extras % len(_PEERS)],
        key: value,
    }
    if extras & 0x08:
        environ["REMOTE_USER"] = "mallory"
    if extras & 0x10:
        environ["HTTP_X_ROLES"] = value[:64]
    if extras & 0x20 and header != "Authorization":
        environ["HTTP_AUTHORIZATION"] = "Bearer " + _GOOD
    if extras & 0x40:
        environ[header] = value  # the server-set spelling too, as mod_wsgi passes it
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        seen["status"], seen["headers"] = status, dict(headers)

    _APP.called = False
    _LOG.records.clear()
    body = b"".join(middleware(environ, start_response))
    status = int(seen["status"].split()[0])
    assert status in (200, 401, 503), (status, body)
    assert _APP.called == (status == 200), (status, _APP.called)
    if status != 200:
        error = json.loads(body)["error"]
        assert error["code"] in ("INVALID_TOKEN", "UNAUTHENTICATED", "IDP_UNAVAILABLE"), error
    messages = [record.getMessage() for record in _LOG.records]
    assert not [r for r in _LOG.records if r.levelno >= logging.ERROR], messages
    text = body.decode("latin-1") + "\n".join(messages)
    for part in _secrets_in(value):
        assert part not in text, "a token segment was echoed or logged"


def main() -> None:
    import atheris  # only for long runs: pip install atheris

    atheris.instrument_all()  # coverage feedback from every module loaded, jwt_headers included
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
