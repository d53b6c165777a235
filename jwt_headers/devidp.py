"""A small OpenID provider for demos and tests: real HTTP, real RS256 keys, nothing to install.

Showing the middleware at work needs an identity provider that signs tokens and answers the
key set and userinfo calls over HTTP, exactly as Keycloak would, but starts in milliseconds and
needs no network, no container and no account. :class:`DevIdp` is that: the standard library's
``ThreadingHTTPServer`` in a daemon thread, an RSA key made when it is built, and PyJWT to sign.

It serves the OpenID discovery document, the key set (``/jwks``), the OAuth 2.0 client
credentials grant (``POST /token``, RFC 6749 section 4.4) for a fixed table of clients, and a
userinfo endpoint that accepts only its own unexpired tokens. :meth:`DevIdp.mint` signs any
claims, so a test or the demo can make an expired token or one for another audience.

It is for development only: the client table is in memory, secrets are compared but not
protected, and it binds the loopback interface unless told otherwise with ``allow_remote``.

Example::

    with DevIdp(clients={"robot": ("s3cret", {"realm_access": {"roles": ["reader"]}})}) as idp:
        token = idp.mint({"sub": "alice", "preferred_username": "alice"})
        print(idp.jwks_uri, idp.token_endpoint)
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import secrets
import socket
import threading
import time
from collections import Counter
from collections.abc import Mapping
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from .config import is_loopback

logger = logging.getLogger("jwt_headers.devidp")

#: What a client may ask for: ``{client_id: (secret, claims added to its tokens)}``.
Clients = Mapping[str, tuple[str, Mapping[str, Any]]]

_MAX_BODY_BYTES = 65536
_ALGORITHM = "RS256"
#: How often the serving loop checks for stop(): the default 0.5 s makes every stop that slow.
_POLL_INTERVAL = 0.05

#: An answer: status, JSON body, extra headers.
_Answer = tuple[int, dict[str, Any], dict[str, str]]


class DevIdp:
    """A development OpenID provider on ``http://host:port``.

    :param clients: ``{client_id: (secret, claims)}`` for the client credentials grant; the
        claims (e.g. ``{"realm_access": {"roles": ["reader"]}}``) go into the client's tokens.
    :param audience: the ``aud`` of every token it issues.
    :param host: the address to bind; only a loopback address unless ``allow_remote=True``,
        because anyone who can reach it can ask for tokens with the configured secrets.
    :param port: ``0`` (default) picks a free port.
    :param token_lifetime: seconds a token from ``/token`` is valid (``expires_in``).
    """

    def __init__(
        self,
        clients: Clients | None = None,
        audience: str = "demo-api",
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token_lifetime: int = 300,
        allow_remote: bool = False,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"DevIdp host {host!r} is not a loopback address; it hands out tokens to anyone "
                "who reaches it. Pass allow_remote=True if that is really wanted"
            )
        self.clients: dict[str, tuple[str, Mapping[str, Any]]] = dict(clients or {})
        self.audience = audience
        self.host = host
        self.port = port
        self.token_lifetime = token_lifetime
        self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        #: Key id in the tokens' header and in the key set.
        self.kid = secrets.token_hex(8)
        self._jwk: dict[str, Any] = {
            **RSAAlgorithm.to_jwk(self._key.public_key(), as_dict=True),
            "kid": self.kid,
            "use": "sig",
            "alg": _ALGORITHM,
        }
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> DevIdp:
        """Bind and serve in a daemon thread; returns ``self``."""
        if self._server is not None:
            return self
        server_class = _IPv6Server if ":" in self.host else ThreadingHTTPServer
        server = server_class((self.host, self.port), partial(_Handler, idp=self))
        server.daemon_threads = True
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            args=(_POLL_INTERVAL,),
            name=f"devidp:{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; calling it again does nothing."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()

    def __enter__(self) -> DevIdp:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ------------------------------------------------------------------ addresses
    @property
    def issuer(self) -> str:
        """``http://host:port``: the ``iss`` of its tokens and the base of every endpoint."""
        if self._server is None:
            raise RuntimeError("DevIdp is not started: call start() or use it in a with block")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def jwks_uri(self) -> str:
        return f"{self.issuer}/jwks"

    @property
    def token_endpoint(self) -> str:
        return f"{self.issuer}/token"

    @property
    def userinfo_endpoint(self) -> str:
        return f"{self.issuer}/userinfo"

    @property
    def requests(self) -> int:
        """How many HTTP requests it has answered (see :attr:`requests_by_path`)."""
        with self._lock:
            return sum(self._counts.values())

    @property
    def requests_by_path(self) -> Counter[str]:
        """A copy of the request count per path, e.g. ``{"/jwks": 1, "/userinfo": 3}``."""
        with self._lock:
            return Counter(self._counts)

    # ------------------------------------------------------------------ tokens
    def mint(self, claims_overrides: Mapping[str, Any] | None = None, expires_in: int = 300) -> str:
        """An RS256 token signed with its key.

        Starts from ``iss``, ``aud``, ``iat``, ``exp`` (now + ``expires_in``, which may be
        negative for an expired token) and a fresh ``jti``; ``claims_overrides`` replaces or
        adds claims, and a claim overridden with ``None`` is left out (a token without ``exp``).
        """
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "exp": now + expires_in,
            "jti": secrets.token_hex(8),
        }
        for name, value in (claims_overrides or {}).items():
            if value is None:
                claims.pop(name, None)
            else:
                claims[name] = value
        return jwt.encode(claims, self._key, algorithm=_ALGORITHM, headers={"kid": self.kid})

    # ------------------------------------------------------------------ endpoints
    def _count(self, path: str) -> None:
        with self._lock:
            self._counts[path] += 1

    def _discovery(self) -> _Answer:
        return (
            200,
            {
                "issuer": self.issuer,
                "jwks_uri": self.jwks_uri,
                "token_endpoint": self.token_endpoint,
                "userinfo_endpoint": self.userinfo_endpoint,
                "grant_types_supported": ["client_credentials"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "id_token_signing_alg_values_supported": [_ALGORITHM],
            },
            {},
        )

    def _token(self, form: Mapping[str, str], authorization: str | None) -> _Answer:
        """The client credentials grant (RFC 6749 sections 2.3.1, 4.4 and 5)."""
        if form.get("grant_type") != "client_credentials":
            return _oauth_error(400, "unsupported_grant_type", "only client_credentials is served")
        basic = _basic_credentials(authorization)
        if basic is not None and "client_secret" in form:
            return _oauth_error(400, "invalid_request", "use one client authentication method")
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        known = self.clients.get(client_id)
        if known is None or not hmac.compare_digest(known[0].encode(), secret.encode()):
            status, body, headers = _oauth_error(
                401, "invalid_client", "client authentication failed"
            )
            headers["WWW-Authenticate"] = 'Basic realm="devidp"'
            return status, body, headers
        account = f"service-account-{client_id}"
        claims: dict[str, Any] = {
            "sub": account,
            "preferred_username": account,
            "azp": client_id,
            "realm_access": {"roles": []},
            **known[1],
        }
        token = self.mint(claims, expires_in=self.token_lifetime)
        body = {"access_token": token, "token_type": "Bearer", "expires_in": self.token_lifetime}
        return 200, body, {"Cache-Control": "no-store", "Pragma": "no-cache"}

    def _userinfo(self, authorization: str | None) -> _Answer:
        """Accept only an unexpired token with a subject signed by this provider's key."""
        scheme, _, token = (authorization or "").partition(" ")
        challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        if scheme.lower() != "bearer" or not token.strip():
            return 401, {"error": "invalid_token"}, {"WWW-Authenticate": "Bearer"}
        try:
            claims = jwt.decode(
                token.strip(),
                self._key.public_key(),
                algorithms=[_ALGORITHM],
                issuer=self.issuer,
                options={"require": ["exp", "sub"], "verify_aud": False},
            )
        except jwt.PyJWTError:
            return 401, {"error": "invalid_token"}, challenge
        answer = {"sub": claims["sub"]}
        if "preferred_username" in claims:
            answer["preferred_username"] = claims["preferred_username"]
        return 200, answer, {"Cache-Control": "no-store"}

    def jwks(self) -> dict[str, Any]:
        """The public key set, as served at ``/jwks``."""
        return {"keys": [dict(self._jwk)]}


def _oauth_error(status: int, error: str, description: str) -> _Answer:
    return status, {"error": error, "error_description": description}, {"Cache-Control": "no-store"}


def _basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """``(client_id, secret)`` from ``Basic`` credentials, each form-urlencoded (RFC 6749)."""
    scheme, _, encoded = (authorization or "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return ("", "")  # present but unreadable: fails authentication
    client_id, _, secret = decoded.partition(":")
    return unquote_plus(client_id), unquote_plus(secret)


class _IPv6Server(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    """HTTP plumbing only; every decision is a :class:`DevIdp` method."""

    server_version = "jwt-headers-devidp"

    def __init__(self, request: Any, client_address: Any, server: Any, *, idp: DevIdp) -> None:
        self.idp = idp
        super().__init__(request, client_address, server)

    def do_GET(self) -> None:
        path = self._path()
        if path == "/.well-known/openid-configuration":
            self._send(*self.idp._discovery())
        elif path == "/jwks":
            self._send(200, self.idp.jwks(), {})
        elif path == "/userinfo":
            self._send(*self.idp._userinfo(self.headers.get("Authorization")))
        elif path == "/token":
            self._send(405, {"error": "method_not_allowed"}, {"Allow": "POST"})
        else:
            self._send(404, {"error": "not_found"}, {})

    def do_POST(self) -> None:
        path = self._path()
        if path != "/token":
            self._send(404, {"error": "not_found"}, {})
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= _MAX_BODY_BYTES:
            self._send(413, {"error": "invalid_request"}, {})
            return
        body = self.rfile.read(length).decode("utf-8", "replace")
        form = {name: values[0] for name, values in parse_qs(body).items()}
        self._send(*self.idp._token(form, self.headers.get("Authorization")))

    def _path(self) -> str:
        path = urlsplit(self.path).path
        self.idp._count(path)
        return path

    def _send(self, status: int, body: dict[str, Any], headers: dict[str, str]) -> None:
        data = json.dumps(body).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        # The default writes every request to stderr, which would clutter the demo's output.
        logger.debug("%s %s", self.address_string(), format % args)
