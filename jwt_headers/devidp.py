"""A small OpenID provider for demos and tests: real HTTP, real RS256 keys, nothing to install.

Showing the middleware at work needs an identity provider that signs tokens and answers the
key set and userinfo calls over HTTP, exactly as Keycloak would, but starts in milliseconds and
needs no network, no container and no account. :class:`DevIdp` is that: the standard library's
``ThreadingHTTPServer`` in a daemon thread, an RSA key made when it is built, and PyJWT to sign.

It serves the OpenID discovery document, the key set (``/jwks``), the OAuth 2.0 client
credentials grant (``POST /token``, RFC 6749 section 4.4) for a fixed table of clients, the
password grant (section 4.3) for a fixed table of users, and a userinfo endpoint that accepts
only its own unexpired tokens. :meth:`DevIdp.mint` signs any claims, so a test or the demo can
make an expired token or one for another audience.

``jwt-headers devidp`` (or ``python -m jwt_headers.devidp``) runs one in the foreground on a
stable port, with clients and users from the command line and a small file, and prints its
discovery URL and the curl commands that mint tokens: a provider to develop against.

It is for development only: the tables are in memory, secrets and passwords are compared but
not protected, and it binds the loopback interface unless told otherwise with ``allow_remote``.

Example::

    with DevIdp(clients={"robot": ("s3cret", {"realm_access": {"roles": ["reader"]}})}) as idp:
        token = idp.mint({"sub": "alice", "preferred_username": "alice"})
        print(idp.jwks_uri, idp.token_endpoint)
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hmac
import json
import logging
import secrets
import shlex
import socket
import sys
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO
from urllib.parse import parse_qs, unquote_plus, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from .config import JwtHeadersConfig, is_loopback

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - the dependency pyproject names for 3.10
    import tomli as tomllib
from .errors import ConfigError

logger = logging.getLogger("jwt_headers.devidp")

#: What a client may ask for: ``{client_id: (secret, claims added to its tokens)}``.
Clients = Mapping[str, tuple[str, Mapping[str, Any]]]
#: Who may log in with the password grant: ``{user name: (password, claims of its tokens)}``.
Users = Mapping[str, tuple[str, Mapping[str, Any]]]

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
    :param users: ``{name: (password, claims)}`` for the password grant; a user's tokens carry
        ``sub`` and ``preferred_username`` set to the name, then the claims.
    :param issuer: the ``iss`` of its tokens and the base of its endpoints, when it is not
        ``http://host:port`` (a name in ``/etc/hosts``, a path as Keycloak's
        ``/realms/dev``); requests are answered with or without the issuer's path.
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
        users: Users | None = None,
        issuer: str | None = None,
    ) -> None:
        if not allow_remote and not is_loopback(host):
            raise ValueError(
                f"DevIdp host {host!r} is not a loopback address; it hands out tokens to anyone "
                "who reaches it. Pass allow_remote=True if that is really wanted"
            )
        self.clients: dict[str, tuple[str, Mapping[str, Any]]] = dict(clients or {})
        self.users: dict[str, tuple[str, Mapping[str, Any]]] = dict(users or {})
        self._issuer = issuer.rstrip("/") if issuer else None
        self._prefix = urlsplit(self._issuer).path if self._issuer else ""
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
        if self._issuer is not None:
            return self._issuer
        if self._server is None:
            raise RuntimeError("DevIdp is not started: call start() or use it in a with block")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def discovery_url(self) -> str:
        """Where the middleware's ``discovery`` option reads the provider's endpoints."""
        return f"{self.issuer}/.well-known/openid-configuration"

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
                "grant_types_supported": list(self._grants()),
                "token_endpoint_auth_methods_supported": [
                    "client_secret_basic",
                    "client_secret_post",
                ],
                "id_token_signing_alg_values_supported": [_ALGORITHM],
            },
            {},
        )

    def _grants(self) -> tuple[str, ...]:
        """The password grant only when there are users to log in."""
        return ("client_credentials", "password") if self.users else ("client_credentials",)

    def _token(self, form: Mapping[str, str], authorization: str | None) -> _Answer:
        """The client credentials grant and the password grant (RFC 6749 sections 2.3.1, 4.3,
        4.4 and 5); both authenticate the client first, as Keycloak does for a confidential
        client."""
        grant = form.get("grant_type")
        served = self._grants()
        if grant not in served:
            return _oauth_error(400, "unsupported_grant_type", f"served: {', '.join(served)}")
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
        if grant == "password":
            return self._password_grant(client_id, form)
        account = f"service-account-{client_id}"
        claims: dict[str, Any] = {
            "sub": account,
            "preferred_username": account,
            "azp": client_id,
            "realm_access": {"roles": []},
            **known[1],
        }
        return self._token_answer(claims)

    def _password_grant(self, client_id: str, form: Mapping[str, str]) -> _Answer:
        """A user's token, for the name and password of a user in the table (RFC 6749 4.3).
        An unknown user and a wrong password get the same answer, as a real provider's."""
        name, password = form.get("username", ""), form.get("password", "")
        user = self.users.get(name)
        if user is None or not hmac.compare_digest(user[0].encode(), password.encode()):
            return _oauth_error(400, "invalid_grant", "invalid user credentials")
        claims: dict[str, Any] = {
            "sub": name,
            "preferred_username": name,
            "azp": client_id,
            "realm_access": {"roles": []},
            **user[1],
        }
        return self._token_answer(claims)

    def _token_answer(self, claims: Mapping[str, Any]) -> _Answer:
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
        prefix = self.idp._prefix
        if prefix and path.startswith(prefix + "/"):
            path = path[len(prefix) :]  # /realms/dev/jwks is /jwks
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


# ---------------------------------------------------------------------- jwt-headers devidp
#: A port that stays the same from run to run, so an app's configuration can name it.
DEFAULT_PORT = 8700
DEFAULT_AUDIENCE = "dev-api"
DEFAULT_CLIENT = "dev-client"
#: Exit code for a bad command line or users file (as argparse uses).
USAGE_ERROR = 2
_MAX_LIFETIME = 86400
_ENTRY_KEYS = {"users": ("password", "roles", "claims"), "clients": ("secret", "roles", "claims")}
_USERS_EXAMPLE = "see samples/devidp-users.toml"


def port_number(text: str) -> int:
    """An argparse type: 0 (any free port) to 65535."""
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535)")
    return port


def _lifetime(text: str) -> int:
    try:
        seconds = int(text)
    except ValueError:
        seconds = 0
    if not 0 < seconds <= _MAX_LIFETIME:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (1-{_MAX_LIFETIME})")
    return seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"port to listen on (default {DEFAULT_PORT}, the same every run; 0: a free one)",
    )
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1; another needs --allow-remote)",
    )
    parser.add_argument(
        "--allow-remote",
        action="store_true",
        help="allow a --host that is not a loopback address: anyone who reaches it gets tokens",
    )
    parser.add_argument(
        "--issuer",
        metavar="URL",
        help="the iss of its tokens and base of its endpoints (default http://127.0.0.1:PORT)",
    )
    parser.add_argument(
        "--audience",
        default=DEFAULT_AUDIENCE,
        help=f"the aud of its tokens (default {DEFAULT_AUDIENCE})",
    )
    parser.add_argument(
        "--client",
        help="client id for the client credentials grant (default: the first client of "
        f"--users FILE, else {DEFAULT_CLIENT})",
    )
    parser.add_argument(
        "--secret", help="the client's secret (default: one made at start and printed)"
    )
    parser.add_argument(
        "--users",
        metavar="FILE",
        help="a TOML or JSON file of users (password, roles, claims) and clients; "
        + _USERS_EXAMPLE,
    )
    parser.add_argument(
        "--token-lifetime",
        type=_lifetime,
        default=300,
        metavar="SECONDS",
        help="how long its tokens are valid (default 300)",
    )


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "devidp",
        help="run a development OpenID provider on this machine",
        description=(
            "Run a development OpenID provider on 127.0.0.1 until Ctrl-C: discovery, key set, "
            "userinfo, and tokens by the client credentials grant (--client/--secret) and the "
            "password grant (users from --users FILE). It prints its discovery URL, the curl "
            "commands that mint tokens and the middleware options that accept them. For "
            "development only: anyone who can reach it and knows a secret gets tokens."
        ),
    )
    add_arguments(parser)
    parser.set_defaults(run=run)


def check_issuer(text: str) -> str:
    """``--issuer``: an absolute http(s) URL without query or fragment, as OpenID requires."""
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ConfigError(
            f"--issuer {text!r} is not an http(s) URL without query or fragment; write it as "
            "the tokens' iss, e.g. http://127.0.0.1:8700 or http://localhost:8700/realms/dev"
        )
    return text.strip().rstrip("/")


def load_users(path: str) -> tuple[Users, Clients]:
    """Users and clients from a TOML file, or a JSON one when the name ends in ``.json``.

    ``[users.NAME]`` has ``password`` (required), ``roles`` (a list, put in
    ``realm_access.roles`` as Keycloak does) and ``claims`` (added to the tokens, and may
    replace ``sub`` or ``preferred_username``); ``[clients.ID]`` has ``secret``, ``roles`` and
    ``claims``. Errors name the file, the entry and the key, never a password or a secret.
    """
    where = f"--users {path!r}"
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{where}: cannot read it ({exc.strerror}); give a TOML or JSON file, {_USERS_EXAMPLE}"
        ) from None
    try:
        if path.endswith(".json"):
            data: Any = json.loads(raw)
        else:
            data = tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "JSON" if path.endswith(".json") else "TOML (a .json name is read as JSON)"
        raise ConfigError(f"{where}: not valid {kind}: {exc}; {_USERS_EXAMPLE}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the file must hold a table/object; {_USERS_EXAMPLE}")
    unknown = sorted(set(data) - set(_ENTRY_KEYS))
    if unknown:
        raise ConfigError(
            f"{where}: unknown top-level key {unknown[0]!r}; only 'users' and 'clients' are "
            f"read, {_USERS_EXAMPLE}"
        )
    tables = {kind: _entries(where, kind, data.get(kind, {})) for kind in _ENTRY_KEYS}
    return tables["users"], tables["clients"]


def _entries(where: str, kind: str, table: Any) -> dict[str, tuple[str, Mapping[str, Any]]]:
    if not isinstance(table, dict):
        raise ConfigError(f"{where}: '{kind}' must be a table of entries; {_USERS_EXAMPLE}")
    credential = _ENTRY_KEYS[kind][0]
    found: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for name, entry in table.items():
        label = f"{where}: {kind}.{name}"
        if not name.strip():
            raise ConfigError(f"{where}: an entry of '{kind}' has an empty name")
        if not isinstance(entry, dict):
            raise ConfigError(f"{label} must be a table with {credential!r}; {_USERS_EXAMPLE}")
        unknown = sorted(set(entry) - set(_ENTRY_KEYS[kind]))
        if unknown:
            raise ConfigError(
                f"{label}: unknown key {unknown[0]!r}; write "
                f"{', '.join(_ENTRY_KEYS[kind])}; {_USERS_EXAMPLE}"
            )
        secret = entry.get(credential)
        if not isinstance(secret, str) or not secret:
            raise ConfigError(f"{label}: {credential!r} must be a non-empty string")
        roles = entry.get("roles", [])
        if not isinstance(roles, list) or not all(isinstance(r, str) and r for r in roles):
            raise ConfigError(f"{label}: 'roles' must be a list of names, e.g. ['reader']")
        claims = entry.get("claims", {})
        if not isinstance(claims, dict):
            raise ConfigError(f"{label}: 'claims' must be a table, e.g. {{email = 'a@b.test'}}")
        try:
            json.dumps(claims)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{label}: 'claims' must hold JSON values (strings, numbers, lists, tables; "
                "a TOML date is not one)"
            ) from None
        found[name] = (secret, {"realm_access": {"roles": list(roles)}, **claims})
    return found


def build(args: argparse.Namespace) -> tuple[DevIdp, str, str]:
    """The provider the command line describes (not started), and the client the printed
    commands use with its secret."""
    if not args.allow_remote and not is_loopback(args.host):
        raise ConfigError(
            f"--host {args.host!r} is not a loopback address: anyone who reaches it gets tokens "
            "with these secrets and passwords. Use 127.0.0.1 (the default), or add "
            "--allow-remote if that is really wanted"
        )
    for option in ("client", "audience", "secret"):
        value = getattr(args, option)
        if value is not None and not value.strip():
            raise ConfigError(f"--{option} must not be empty; leave it out for the default")
    issuer = check_issuer(args.issuer) if args.issuer is not None else None
    users, clients = load_users(args.users) if args.users else ({}, {})
    client = args.client or next(iter(clients), DEFAULT_CLIENT)
    known = clients.get(client)
    secret = args.secret or (known[0] if known else secrets.token_urlsafe(16))
    claims = known[1] if known else {}
    idp = DevIdp(
        clients={**clients, client: (secret, claims)},
        audience=args.audience,
        host=args.host,
        port=args.port,
        token_lifetime=args.token_lifetime,
        allow_remote=args.allow_remote,
        users=users,
        issuer=issuer,
    )
    return idp, client, secret


def curl_token_command(idp: DevIdp, client: str, secret: str, **form: str) -> str:
    """A shell command that asks ``idp`` for a token; ``--data-urlencode`` so any password
    survives the trip, ``-u`` for client_secret_basic."""
    parts = ["curl", "-s", "-u", shlex.quote(f"{client}:{secret}")]
    for name, value in form.items():
        parts += ["--data-urlencode", shlex.quote(f"{name}={value}")]
    parts.append(shlex.quote(idp.token_endpoint))
    return " ".join(parts)


def middleware_config(idp: DevIdp) -> JwtHeadersConfig:
    """What an API accepting this provider's tokens would configure, through discovery."""
    return JwtHeadersConfig(
        user_name_header="Authorization",
        user_name_format="jwt",
        user_name_json_path="preferred_username",
        roles_source="jwt",
        roles_json_path="realm_access.roles",
        validate_token=True,
        discovery=True,
        issuer=idp.issuer,
        validate_issuer=True,
        validate_audience=True,
        audience=idp.audience,
    )


def describe(idp: DevIdp, client: str, secret: str, out: TextIO) -> None:
    """The banner: where it is, how to mint a token, what the middleware needs."""
    from .demo import config_as_toml  # the demo imports this module: import it when used

    out.write(
        "jwt-headers devidp: a development OpenID provider.\n"
        "Not for production: anyone who reaches it and knows a secret gets tokens.\n\n"
    )
    rows = [
        ("issuer", idp.issuer),
        ("discovery", idp.discovery_url),
        ("token", idp.token_endpoint),
        ("audience", idp.audience),
        ("lifetime", f"{idp.token_lifetime} s"),
        ("clients", ", ".join(_who(name, claims) for name, (_, claims) in idp.clients.items())),
        ("users", ", ".join(_who(name, claims) for name, (_, claims) in idp.users.items())),
    ]
    for label, text in rows:
        out.write(f"{label:<11}{text or '(none: add some with --users FILE)'}\n")
    out.write(f"\nMint a token for the client {client} (client credentials grant):\n")
    out.write(f"  {curl_token_command(idp, client, secret, grant_type='client_credentials')}\n")
    for name, (password, _claims) in list(idp.users.items())[:1]:
        out.write(f"Mint a token for the user {name} (password grant):\n")
        form = {"grant_type": "password", "username": name, "password": password}
        out.write(f"  {curl_token_command(idp, client, secret, **form)}\n")
    out.write(
        "\nThe answer's access_token goes in 'Authorization: Bearer <token>'.\n"
        "An API behind the middleware accepts it with these options:\n"
    )
    for line in config_as_toml(middleware_config(idp)):
        out.write(f"  {line}\n")
    out.write("\nServing until Ctrl-C.\n")
    out.flush()


def _who(name: str, claims: Mapping[str, Any]) -> str:
    realm = claims.get("realm_access")
    roles = realm.get("roles") if isinstance(realm, dict) else None
    return f"{name} (roles: {', '.join(roles) if roles else '-'})"


def wait_for_interrupt() -> None:
    """Block until Ctrl-C, in slices so that Ctrl-C gets through (Windows)."""
    never = threading.Event()
    while not never.wait(1.0):
        pass


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    """``jwt-headers devidp``: build, start, print, serve until Ctrl-C."""
    out = out or sys.stdout
    idp, client, secret = build(args)
    try:
        idp.start()
    except OSError as exc:
        raise ConfigError(
            f"--port {args.port}: cannot listen on {args.host}:{args.port} "
            f"({exc.strerror or exc}); choose another port with --port"
        ) from None
    try:
        describe(idp, client, secret, out)
        wait_for_interrupt()
    except KeyboardInterrupt:
        out.write("\nStopped.\n")
    finally:
        idp.stop()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m jwt_headers.devidp``: the same as ``jwt-headers devidp``."""
    parser = argparse.ArgumentParser(
        prog="python -m jwt_headers.devidp",
        description="A development OpenID provider; the same as 'jwt-headers devidp'.",
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args)
    except ConfigError as exc:
        print(f"jwt-headers devidp: {exc}", file=sys.stderr)
        return USAGE_ERROR


if __name__ == "__main__":
    raise SystemExit(main())
