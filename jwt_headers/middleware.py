"""The WSGI adapter: build nothing per request, ask the core, render its answer.

Trust reasoning lives in ``sources`` and ``config``; this module only moves values between the
environ and the core. It removes any upstream ``REMOTE_USER`` and ``jwt_headers.principal``
first (R18), so the only identity the app can see is the one established here.

Example::

    from jwt_headers import JwtHeadersMiddleware

    app.wsgi_app = JwtHeadersMiddleware(
        app.wsgi_app,
        user_name_header="OIDC_id_token_payload",
        user_name_format="json",
        user_name_json_path="preferred_username",
    )
"""

from __future__ import annotations

import functools
import json
import logging
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .config import JwtHeadersConfig
from .core import Authenticator
from .doctor import RequestWatch, log_static_findings
from .errors import ConfigError, IdpUnavailable, InvalidToken, Refusal, Unauthenticated

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

logger = logging.getLogger("jwt_headers")

PRINCIPAL_KEY = "jwt_headers.principal"
#: Set on every environ this middleware passes on, so a second one behind it can tell.
MARKER_KEY = "jwt_headers.middleware"


def refusal_response(refusal: Refusal) -> tuple[str, list[tuple[str, str]], bytes]:
    """Status line, headers and body for a refusal (RFC 6750 for 401s).

    The same refusal comes again and again (a client retrying a bad token, a flood of one):
    the answer is rendered once per distinct (kind, status, code, message, Retry-After) and
    reused; each caller gets its own list of headers."""
    retry = refusal.retry_after if isinstance(refusal, IdpUnavailable) else 5
    status, headers, body = _render(
        isinstance(refusal, InvalidToken),
        refusal.status,
        refusal.error_code,
        refusal.message,
        retry,
    )
    return status, list(headers), body


def insufficient_role_body(required: tuple[str, ...], granted: tuple[str, ...]) -> str:
    """The ``403`` body of the Flask and Django role guards, one format for both."""
    error = {
        "code": "INSUFFICIENT_ROLE",
        "message": "a required role is missing",
        "required": list(required),
        "granted": list(granted),
    }
    return json.dumps({"error": error})


@functools.lru_cache(maxsize=256)
def _render(
    invalid_token: bool, status_code: int, error_code: str, message: str, retry: int
) -> tuple[str, tuple[tuple[str, str], ...], bytes]:
    body = json.dumps({"error": {"code": error_code, "message": message}})
    headers = [
        ("Content-Type", "application/json"),
        ("Cache-Control", "no-store"),
        ("Content-Length", str(len(body))),
    ]
    if status_code == 401:
        status = "401 Unauthorized"
        if invalid_token:
            description = message.replace("\\", "").replace('"', "'")
            challenge = f'Bearer error="invalid_token", error_description="{description}"'
        else:
            challenge = "Bearer"
        headers.append(("WWW-Authenticate", challenge))
    else:
        status = "503 Service Unavailable"
        headers.append(("Retry-After", str(retry)))
    return status, tuple(headers), body.encode("utf-8")


class AdapterSetup:
    """What the WSGI and the ASGI adapter both build at start-up: the config (given, or made
    from keyword options, never both, so a stray keyword cannot be silently ignored), the
    core, the doctor's findings and its watch over the first requests."""

    def __init__(
        self,
        config: JwtHeadersConfig | None,
        clock: Callable[[], float],
        options: dict[str, Any],
    ) -> None:
        if config is None:
            config = JwtHeadersConfig(**options)
        elif options:
            raise ConfigError(
                f"give either a config or options, not both (got config and {sorted(options)})"
            )
        self.config = config
        self.authenticator = Authenticator(config, clock=clock)
        log_static_findings(config)
        self._marker = id(self)
        self._watch: RequestWatch | None = RequestWatch(config, MARKER_KEY, self._marker)


class JwtHeadersMiddleware(AdapterSetup):
    """Authenticate every request from its headers before the wrapped app sees it.

    :param app: the WSGI application to protect.
    :param config: a :class:`JwtHeadersConfig`; or give its options as keywords instead.
    :param clock: where validators read the time (tests freeze it).
    """

    def __init__(
        self,
        app: WSGIApplication,
        config: JwtHeadersConfig | None = None,
        *,
        clock: Callable[[], float] = time.time,
        **options: Any,
    ) -> None:
        super().__init__(config, clock, options)
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        watch = self._watch
        if watch is not None and not watch.observe(environ):
            self._watch = None  # the first requests are seen: no cost from now on
        environ.pop("REMOTE_USER", None)
        environ.pop(PRINCIPAL_KEY, None)
        try:
            principal, dropped = self.authenticator.authenticate(environ)
        except Refusal as refusal:
            if type(refusal) is Unauthenticated:
                self.authenticator.log_unauthenticated(refusal)
            return self._refuse(refusal, start_response)
        except Exception as exc:  # fail closed: request input never makes a 500
            logger.error(
                "internal_error exc=%s: request refused",
                type(exc).__name__,
                extra={"reason": "internal_error", "fingerprint": None},
            )
            self.authenticator.report_refusal("internal_error")
            return self._refuse(
                InvalidToken("internal_error", "credentials could not be processed"),
                start_response,
            )
        for key in dropped:
            environ.pop(key, None)
        if principal is not None:
            environ["REMOTE_USER"] = principal.name
            environ[PRINCIPAL_KEY] = principal
        if self._watch is not None:  # a second middleware behind us watches the same requests
            environ[MARKER_KEY] = self._marker
        return self.app(environ, start_response)

    @staticmethod
    def _refuse(refusal: Refusal, start_response: StartResponse) -> list[bytes]:
        status, headers, body = refusal_response(refusal)
        start_response(status, headers)
        return [body]
