"""A fake OpenID Connect identity provider for tests: signing keys, Keycloak-like tokens, and a
real HTTP server publishing a JWKS and a userinfo endpoint that can be told to misbehave.

Test modules use it with::

    import idp
    from idp import DELETE, IdpServer, make_key, mint

    idp_server = idp.idp_server  # the pytest fixture, bound here so pytest finds it

(``from idp import idp_server`` works for pytest too, but ruff then reports F811 at every test
that takes ``idp_server`` as a parameter; the assignment above is clean.)

Server modes (``server.jwks_mode`` / ``server.userinfo_mode``; unknown names raise ValueError):
  ok            the normal answer (JWKS of ``server.keys``; userinfo: ``sub`` of the Bearer token)
  "401" "500"…  any three-digit status, small JSON body (401 adds WWW-Authenticate, 3xx Location)
  garbage       200, Content-Type application/json, body not JSON
  not_object    200 ``[]``
  empty         (jwks) 200 ``{"keys": []}``
  no_sub        (userinfo) 200 ``{}``
  slow          waits ``server.delay`` seconds, then answers as ok
  trickle       headers at once, then the ok body in 20 pieces spread over ``server.delay`` s
  hold          waits until ``server.release()`` (or stop), then answers as ok
  huge          the ok body padded to 2 MiB (valid JSON, with Content-Length)
  huge_unsized  (jwks) the same without Content-Length (read until close)
  redirect      302 to ``/jwks/moved`` or ``/userinfo/moved`` (which answer as ok), carrying
                the ok body itself, so only the status can tell a client not to use it
  as_NNN        the ok body with status NNN and no ``Location`` (``as_201``, ``as_302``...):
                a good-looking answer that is not a 200
  down          reads the request, closes the connection without a byte

``IdpServer(tls=make_test_ca(directory).server_context())`` serves the same over HTTPS with a
certificate for 127.0.0.1 signed by a test CA (``TestCa.ca_file``: the CA's PEM file).

Nothing here sleeps on the test side. The server sleeps only in its "slow"/"trickle" modes (it
plays a slow IdP), and those waits end at once when the server is stopped.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import ipaddress
import json
import secrets
import socket
import ssl
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import jwt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

__all__ = [
    "AUDIENCE",
    "CLIENT_ID",
    "DELETE",
    "ISSUER",
    "JWKS_MODES",
    "SUBJECT",
    "USERINFO_MODES",
    "USER_NAME",
    "IdpServer",
    "Recorded",
    "TestCa",
    "TestKey",
    "access_claims",
    "b64url",
    "compact_jws",
    "dead_url",
    "decode_parts",
    "hmac_sign",
    "idp_server",
    "make_key",
    "make_test_ca",
    "mint",
]

# --------------------------------------------------------------------------- constants

ISSUER = "https://idp.example.test/realms/dave-test2"
CLIENT_ID = "live-key2"
AUDIENCE = "live-key2"  # the token's `aud` is ["live-key2", "account"]
SUBJECT = "98cfe060-f980-4a05-8612-6c609219ffe9"
USER_NAME = "david.blasby@geocat.net"


class _Delete:
    """Sentinel: an override with this value removes the claim."""

    _instance: _Delete | None = None

    def __new__(cls) -> _Delete:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DELETE"


DELETE: Any = _Delete()

# --------------------------------------------------------------------------- encoding helpers


def b64url(data: bytes | str) -> str:
    """Unpadded base64url of bytes (str is UTF-8 encoded first)."""
    if isinstance(data, str):
        data = data.encode()
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _json_bytes(value: Mapping[str, Any] | bytes | str) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    # allow_nan: tests may want NaN/Infinity literals in a payload.
    return json.dumps(dict(value), separators=(",", ":"), sort_keys=False).encode()


def compact_jws(
    header: Mapping[str, Any] | bytes | str,
    payload: Mapping[str, Any] | bytes | str,
    signature: bytes = b"",
) -> str:
    """Assemble ``b64(header).b64(payload).b64(signature)`` from raw parts, nothing checked.

    Dicts are JSON-encoded compactly; bytes/str are used verbatim (duplicate members, bad UTF-8...).
    """
    return ".".join((b64url(_json_bytes(header)), b64url(_json_bytes(payload)), b64url(signature)))


def decode_parts(token: str) -> tuple[Any, Any]:
    """(header, payload) of a compact token, JSON-decoded with no checks at all (PyJWT's
    ``get_unverified_header`` refuses ``crit``/``b64`` headers this fixture can produce)."""

    def part(segment: str) -> Any:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))

    header, payload = token.split(".")[:2]
    return part(header), part(payload)


def hmac_sign(
    claims: Mapping[str, Any] | bytes | str,
    secret: bytes | str,
    headers: Mapping[str, Any] | None = None,
    alg: str = "HS256",
) -> str:
    """An HS256/384/512 token made by hand (PyJWT refuses PEM-looking secrets; we don't):
    for algorithm-confusion tests, e.g. ``hmac_sign(c, key.public_pem())``."""
    digest = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}[alg]
    header: dict[str, Any] = {"alg": alg, "typ": "JWT"}
    header.update(headers or {})
    header = {k: v for k, v in header.items() if v is not None}
    signing_input = f"{b64url(_json_bytes(header))}.{b64url(_json_bytes(claims))}"
    key = secret.encode() if isinstance(secret, str) else secret
    signature = hmac.new(key, signing_input.encode("ascii"), digest).digest()
    return f"{signing_input}.{b64url(signature)}"


# --------------------------------------------------------------------------- keys

_RSA_ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")
_EC_CURVES: dict[str, ec.EllipticCurve] = {
    "ES256": ec.SECP256R1(),
    "ES384": ec.SECP384R1(),
    "ES512": ec.SECP521R1(),
}


@dataclass(eq=False)
class TestKey:
    """A freshly generated signing key with a random ``kid``, bound to one ``alg``."""

    __test__ = False  # not a pytest test class

    kid: str
    alg: str
    private_key: Any  # a cryptography private key object

    @property
    def public_key(self) -> Any:
        return self.private_key.public_key()

    def public_jwk(self) -> dict[str, Any]:
        """The public JWK as an IdP publishes it: key members + ``kid``, ``alg``, ``use: sig``."""
        public = self.public_key
        if isinstance(public, rsa.RSAPublicKey):
            jwk = RSAAlgorithm.to_jwk(public, as_dict=True)
        elif isinstance(public, ec.EllipticCurvePublicKey):
            jwk = ECAlgorithm.to_jwk(public, as_dict=True)
        else:
            jwk = OKPAlgorithm.to_jwk(public, as_dict=True)
        jwk = dict(jwk)
        jwk.pop("key_ops", None)  # Keycloak publishes `use`, not `key_ops`
        jwk.update(kid=self.kid, alg=self.alg, use="sig")
        return jwk

    def public_pem(self) -> bytes:
        """SubjectPublicKeyInfo PEM of the public key (HMAC-confusion secret)."""
        return self.public_key.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def sign(
        self,
        claims: Mapping[str, Any] | bytes | str,
        headers: Mapping[str, Any] | None = None,
        alg: str | None = None,
    ) -> str:
        """Sign ``claims`` with this key.

        The header is ``{"alg": <alg>, "typ": "JWT", "kid": self.kid}`` updated with
        ``headers``; a header value of ``None`` removes that member (``kid=None``, ``typ=None``).
        ``alg`` picks the signing algorithm (default ``self.alg``). A header ``alg`` different from
        the signing algorithm is written as given (a lying header), and so is a non-string ``kid``,
        ``b64``, ``crit``, ``jku``, ``jwk``... Claims may be raw bytes/str (used verbatim).
        """
        signing_alg = alg or self.alg
        header: dict[str, Any] = {"alg": signing_alg, "typ": "JWT", "kid": self.kid}
        header.update(headers or {})
        header = {k: v for k, v in header.items() if v is not None}

        plain = (
            isinstance(claims, Mapping)
            and isinstance(claims.get("iss", ""), str)
            and header["alg"] == signing_alg
            and isinstance(header.get("kid", ""), str)
            and "b64" not in header
        )
        if plain:
            extra = {k: v for k, v in header.items() if k not in ("alg", "typ")}
            extra["typ"] = header.get("typ")  # None makes jwt.encode drop it
            token = jwt.encode(dict(claims), self.private_key, algorithm=signing_alg, headers=extra)
            return token
        # Hand-made: same primitive jwt.encode uses, but the header/payload exactly as asked.
        algorithm = jwt.get_algorithm_by_name(signing_alg)
        header_bytes = json.dumps(header, separators=(",", ":"), sort_keys=True).encode()
        signing_input = f"{b64url(header_bytes)}.{b64url(_json_bytes(claims))}"
        signature = algorithm.sign(
            signing_input.encode("ascii"), algorithm.prepare_key(self.private_key)
        )
        return f"{signing_input}.{b64url(signature)}"


def make_key(kind: str = "RS256", kid: str | None = None) -> TestKey:
    """A new key: ``kind`` in RS256/384/512, PS256/384/512 (RSA 2048), ES256 (P-256),
    ES384 (P-384), ES512 (P-521), EdDSA (Ed25519). ``kid`` defaults to a random string."""
    private: Any
    if kind in _RSA_ALGS:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    elif kind in _EC_CURVES:
        private = ec.generate_private_key(_EC_CURVES[kind])
    elif kind == "EdDSA":
        private = ed25519.Ed25519PrivateKey.generate()
    else:
        raise ValueError(f"unknown key kind {kind!r}")
    return TestKey(kid=kid or secrets.token_urlsafe(16), alg=kind, private_key=private)


# --------------------------------------------------------------------------- TLS


@dataclass(frozen=True)
class TestCa:
    """A test CA's PEM (``ca_file``) and a server certificate it signed for 127.0.0.1."""

    __test__ = False  # not a pytest test class

    ca_file: Path
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_test_ca(directory: Path) -> TestCa:
    """A new CA (``ca.pem``) and a certificate for IP 127.0.0.1 (SAN) signed by it
    (``server.pem``, ``server.key``), written in ``directory``."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(common: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common)])

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(name("jwt-headers test CA"))
        .issuer_name(name("jwt-headers test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    server_key = ec.generate_private_key(ec.SECP256R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(name("127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    ca = TestCa(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    ca.cert_file.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    ca.key_file.write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca


# --------------------------------------------------------------------------- claims


def access_claims(
    overrides: Mapping[str, Any] | None = None, now: float | None = None
) -> dict[str, Any]:
    """A Keycloak-like access-token claim set (~1 KB of JSON): ``exp=now+300``, ``iat=now``,
    no ``nbf``; ``overrides`` replace top-level claims, a value of ``DELETE`` removes one."""
    now = int(time.time()) if now is None else now
    session = str(uuid.uuid4())
    claims: dict[str, Any] = {
        "exp": now + 300,
        "iat": now,
        "auth_time": now - 60,
        "jti": str(uuid.uuid4()),
        "iss": ISSUER,
        "aud": [AUDIENCE, "account"],
        "sub": SUBJECT,
        "typ": "Bearer",
        "azp": CLIENT_ID,
        "session_state": session,
        "acr": "1",
        "allowed-origins": ["https://geoserver.example.test"],
        "realm_access": {
            "roles": ["default-roles-dave-test2", "offline_access", "uma_authorization"]
        },
        "resource_access": {
            CLIENT_ID: {"roles": ["GeonetworkAdministrator", "GeoserverAdministrator"]},
            "account": {"roles": ["manage-account", "manage-account-links", "view-profile"]},
        },
        "scope": "openid profile email",
        "sid": session,
        "upn": USER_NAME,
        "email_verified": False,
        "name": "david blasby",
        "groups": ["default-roles-dave-test2", "offline_access", "uma_authorization"],
        "preferred_username": USER_NAME,
        "given_name": "david",
        "family_name": "blasby",
        "email": USER_NAME,
    }
    for name, value in (overrides or {}).items():
        if value is DELETE:
            claims.pop(name, None)
        else:
            claims[name] = value
    return claims


def mint(
    claims_overrides: Mapping[str, Any] | None,
    key: TestKey,
    now: float | None = None,
    *,
    headers: Mapping[str, Any] | None = None,
    alg: str | None = None,
) -> str:
    """A signed Keycloak-like access token: ``key.sign(access_claims(claims_overrides, now),
    headers, alg)``."""
    return key.sign(access_claims(claims_overrides, now), headers=headers, alg=alg)


# --------------------------------------------------------------------------- server

JWKS_MODES = frozenset(
    {
        "ok", "garbage", "not_object", "empty", "slow", "trickle", "hold",
        "huge", "huge_unsized", "redirect", "down",
    }
)  # fmt: skip
USERINFO_MODES = frozenset(
    {
        "ok", "garbage", "not_object", "no_sub", "slow", "trickle", "hold",
        "huge", "redirect", "down",
    }
)  # fmt: skip
# Besides these, any three-digit status string ("401", "403", "404", "500", "503"...) is a mode.

_HUGE_SIZE = 2 * 1024 * 1024
_GARBAGE = b"<!DOCTYPE html><html><body>Bad Gateway</body></html>{not json"
_TRICKLE_PIECES = 20


def _check_mode(mode: str, allowed: frozenset[str]) -> str:
    status = mode.removeprefix("as_")
    if mode in allowed or (len(status) == 3 and status.isdigit() and 100 <= int(status) <= 599):
        return mode
    raise ValueError(f"unknown mode {mode!r}; use one of {sorted(allowed)} or an HTTP status")


@dataclass(frozen=True)
class Recorded:
    """One request the server received."""

    method: str
    raw_path: str  # the request target exactly as sent (path + query)
    path: str
    query: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    thread: str = field(default="", compare=False)

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive), or None."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None

    @property
    def authorization(self) -> str | None:
        return self.header("Authorization")


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins handler threads
    block_on_close = True
    request_queue_size = 128  # the default 5 drops SYNs under concurrency (1 s retransmit)
    idp: IdpServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return  # the client gave up (timeout, size cap): expected
        self.idp.errors.append(exc)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeIdP/1.0"
    timeout = 5  # socket timeout for reads and writes
    server: _HttpServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    # -- dispatch

    def _dispatch(self) -> None:
        idp = self.server.idp
        self.close_connection = True
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1 << 20)) if length > 0 else b""
        split = urlsplit(self.path)
        idp._record(
            Recorded(
                method=self.command,
                raw_path=self.path,
                path=split.path,
                query=split.query,
                headers=tuple(self.headers.items()),
                body=body,
                thread=threading.current_thread().name,
            )
        )
        path = split.path
        if path == "/jwks":
            self._answer(idp.jwks_mode, self._jwks_ok, "/jwks/moved")
        elif path == "/jwks/moved":
            self._answer("ok", self._jwks_ok, "/jwks/moved")
        elif path == "/userinfo":
            self._answer(idp.userinfo_mode, self._userinfo_ok, "/userinfo/moved")
        elif path == "/userinfo/moved":
            self._answer("ok", self._userinfo_ok, "/userinfo/moved")
        elif path.endswith("/.well-known/openid-configuration"):
            self._answer(idp.discovery_mode, self._discovery, "/")
        else:
            self._send(404, {"error": "not_found"})

    # -- bodies of a good answer: (status, JSON value, extra headers)

    def _jwks_ok(self) -> tuple[int, Any, dict[str, str]]:
        keys = [k.public_jwk() if isinstance(k, TestKey) else k for k in self.server.idp.keys]
        return 200, {"keys": keys}, {}

    def _userinfo_ok(self) -> tuple[int, Any, dict[str, str]]:
        idp = self.server.idp
        if idp.userinfo_body is not None:
            return 200, idp.userinfo_body, {}
        unauthorized = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
        auth = self.headers.get("Authorization") or ""
        scheme, _, token = auth.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return 401, {"error": "invalid_request"}, {"WWW-Authenticate": "Bearer"}
        try:
            claims = jwt.decode(token.strip(), options={"verify_signature": False})
        except jwt.PyJWTError:
            return 401, {"error": "invalid_token"}, unauthorized
        body: dict[str, Any] = {}
        if idp.userinfo_sub is not None:
            body["sub"] = idp.userinfo_sub
        elif "sub" in claims:
            body["sub"] = claims["sub"]
        for name in ("preferred_username", "email", "email_verified", "name"):
            if name in claims:
                body[name] = claims[name]
        return 200, body, {}

    def _discovery(self) -> tuple[int, Any, dict[str, str]]:
        idp = self.server.idp
        if idp.discovery_body is not None:
            return 200, idp.discovery_body, {}
        return (
            200,
            {
                "issuer": idp.issuer,
                "jwks_uri": idp.jwks_uri,
                "userinfo_endpoint": idp.userinfo_endpoint,
                "id_token_signing_alg_values_supported": ["RS256", "PS256", "ES256", "EdDSA"],
            },
            {},
        )

    # -- modes

    def _answer(self, mode: str, good: Any, moved: str) -> None:
        idp = self.server.idp
        if mode == "down":
            return  # close the connection without a byte
        if mode == "slow" and idp._stopping.wait(idp.delay):
            return
        if mode == "hold":
            idp._released.wait()
            if idp._stopping.is_set():
                return
        if mode in ("ok", "slow", "hold"):
            self._send(*good())
        elif mode == "trickle":
            status, value, extra = good()
            self._send(status, value, extra, trickle=True)
        elif mode == "garbage":
            self._send(200, _GARBAGE)
        elif mode == "not_object":
            self._send(200, [])
        elif mode == "empty":
            self._send(200, {"keys": []})
        elif mode == "no_sub":
            self._send(200, {})
        elif mode == "redirect":
            _status, value, extra = good()
            self._send(302, value, {**extra, "Location": idp.url(moved)})
        elif mode.startswith("as_"):
            _status, value, extra = good()
            self._send(int(mode.removeprefix("as_")), value, extra)
        elif mode in ("huge", "huge_unsized"):
            status, value, extra = good()
            value = dict(value) if isinstance(value, dict) else {"value": value}
            size = len(json.dumps(value).encode())
            value["padding"] = "x" * max(0, _HUGE_SIZE - size + 64)
            self._send(status, value, extra, sized=(mode == "huge"))
        else:  # a status code
            status = int(mode)
            extra = {}
            if status == 401:
                extra["WWW-Authenticate"] = 'Bearer error="invalid_token"'
            if 300 <= status < 400:
                extra["Location"] = idp.url(moved)
            self._send(status, {"error": f"status {status}"}, extra)

    def _send(
        self,
        status: int,
        value: Any,
        extra: Mapping[str, str] | None = None,
        *,
        sized: bool = True,
        trickle: bool = False,
    ) -> None:
        data = value if isinstance(value, bytes) else json.dumps(value).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", self.server.idp.cache_control)
        if sized:
            self.send_header("Content-Length", str(len(data)))
        self.send_header("Connection", "close")
        for name, val in (extra or {}).items():
            self.send_header(name, val)
        self.end_headers()
        if not trickle:
            self.wfile.write(data)
            return
        idp = self.server.idp
        step = max(1, -(-len(data) // _TRICKLE_PIECES))
        for start in range(0, len(data), step):
            if start and idp._stopping.wait(idp.delay / _TRICKLE_PIECES):
                return
            self.wfile.write(data[start : start + step])
            self.wfile.flush()


class IdpServer:
    """A fake IdP on ``127.0.0.1:<ephemeral port>``; use ``with IdpServer() as idp:`` or the
    ``idp_server`` fixture. Modes: see the module docstring. Paths: ``/jwks``, ``/jwks/moved``,
    ``/userinfo`` (GET or POST), ``/userinfo/moved``, ``/.well-known/openid-configuration``;
    anything else is a 404 (still recorded)."""

    def __init__(
        self,
        keys: list[TestKey | dict[str, Any]] | None = None,
        *,
        issuer: str = ISSUER,
        delay: float = 3.0,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        #: Serve HTTPS with this context (``make_test_ca(dir).server_context()``).
        self.tls = tls
        self.keys: list[TestKey | dict[str, Any]] = (
            list(keys) if keys is not None else [make_key("RS256")]
        )
        self.issuer = issuer
        self.delay = delay
        self.userinfo_sub: Any = None
        self.userinfo_body: Any = None
        self.errors: list[BaseException] = []
        self._jwks_mode = "ok"
        self._userinfo_mode = "ok"
        self._discovery_mode = "ok"
        #: The Cache-Control header of every answer (a key set honours its max-age).
        self.cache_control = "no-cache"
        #: Replaces the discovery document when set (``/.well-known/openid-configuration`` under
        #: any path prefix, so an issuer with a path works).
        self.discovery_body: Any = None
        self._cond = threading.Condition()
        self._hits: Counter[str] = Counter()
        self._requests: list[Recorded] = []
        self._stopping = threading.Event()
        self._released = threading.Event()
        self._httpd: _HttpServer | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # -- modes

    @property
    def jwks_mode(self) -> str:
        return self._jwks_mode

    @jwks_mode.setter
    def jwks_mode(self, mode: str) -> None:
        self._jwks_mode = _check_mode(mode, JWKS_MODES)

    @property
    def discovery_mode(self) -> str:
        return self._discovery_mode

    @discovery_mode.setter
    def discovery_mode(self, mode: str) -> None:
        self._discovery_mode = _check_mode(mode, USERINFO_MODES)

    @property
    def userinfo_mode(self) -> str:
        return self._userinfo_mode

    @userinfo_mode.setter
    def userinfo_mode(self, mode: str) -> None:
        self._userinfo_mode = _check_mode(mode, USERINFO_MODES)

    @property
    def key(self) -> TestKey:
        """The first TestKey in ``keys``."""
        return next(k for k in self.keys if isinstance(k, TestKey))

    # -- lifecycle

    def start(self) -> IdpServer:
        if self._httpd is not None:
            return self
        if self._stopping.is_set():
            raise RuntimeError("an IdpServer cannot be restarted; make a new one")
        httpd = _HttpServer(("127.0.0.1", 0), _Handler)
        httpd.idp = self
        if self.tls is not None:
            httpd.socket = self.tls.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-idp-{self._port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, end pending slow/held answers (without a response), join the threads."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()
        self._released.set()
        httpd.shutdown()
        httpd.server_close()  # joins handler threads
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> IdpServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def release(self) -> None:
        """Let every request held by the "hold" mode (now and later) be answered as "ok"."""
        self._released.set()

    # -- addresses

    @property
    def port(self) -> int:
        return self._port

    def url(self, path: str = "/") -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self._port}{path}"

    @property
    def jwks_uri(self) -> str:
        return self.url("/jwks")

    @property
    def userinfo_endpoint(self) -> str:
        return self.url("/userinfo")

    # -- what was received

    def _record(self, recorded: Recorded) -> None:
        with self._cond:
            self._requests.append(recorded)
            self._hits[recorded.path] += 1
            self._cond.notify_all()

    def hits(self, path: str) -> int:
        """How many requests arrived for ``path`` (query ignored)."""
        with self._cond:
            return self._hits[path]

    @property
    def jwks_requests(self) -> int:
        return self.hits("/jwks")

    @property
    def userinfo_requests(self) -> int:
        return self.hits("/userinfo")

    @property
    def total_requests(self) -> int:
        with self._cond:
            return len(self._requests)

    @property
    def requests(self) -> list[Recorded]:
        """Every request received, in arrival order (a copy)."""
        with self._cond:
            return list(self._requests)

    @property
    def userinfo_calls(self) -> list[Recorded]:
        return [r for r in self.requests if r.path == "/userinfo"]

    def wait_for(self, path: str, count: int, timeout: float = 5.0) -> bool:
        """Block until ``hits(path) >= count`` (True) or ``timeout`` seconds pass (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._hits[path] >= count, timeout)

    def reset(self) -> None:
        """Forget recorded requests and counters (modes and keys are kept)."""
        with self._cond:
            self._requests.clear()
            self._hits.clear()


def dead_url(path: str = "/jwks") -> str:
    """An http://127.0.0.1 URL on a port nothing listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


@pytest.fixture
def idp_server() -> Iterator[IdpServer]:
    """A started IdpServer with one RS256 key; stopped after the test. Fails the test if the
    fake server itself hit an unexpected exception."""
    with IdpServer() as server:
        yield server
    assert not server.errors, f"fake IdP errors: {server.errors!r}"
