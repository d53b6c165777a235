"""Outbound calls through an internal CA (``http_ca_bundle``) and a forward proxy
(``http_proxy``), issue 14, against real servers on 127.0.0.1: the fake IdP over HTTPS with a
certificate from a test CA made here, and a small forward proxy (absolute-form GET for http
targets, CONNECT tunnels for https) that counts what it forwarded.

R31: a call that cannot be made as configured (certificate not signed by the bundle's CA, proxy
down) fails closed with 503. R35: proxy credentials never appear in ``repr`` or a config error.
Environment proxy variables are never used (the session ignores the environment).
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from conftest import (
    STRANGER,
    Answer,
    FrozenClock,
    RecordingApp,
    assert_accepted,
    assert_unavailable,
    call,
)
from idp import ISSUER, IdpServer, TestCa, dead_url, make_test_ca, mint

from jwt_headers import ConfigError, JwtHeadersConfig, JwtHeadersMiddleware

TIMEOUTS = {"http_connect_timeout": 1.0, "http_read_timeout": 1.0}


# --------------------------------------------------------------------------- a forward proxy
class _ProxyServer(ThreadingHTTPServer):
    daemon_threads = True
    forwarded: list[tuple[str, str, str | None]]
    lock: threading.Lock


class _ProxyHandler(BaseHTTPRequestHandler):
    """Forwards to 127.0.0.1 only (a test never reaches another address)."""

    protocol_version = "HTTP/1.1"
    timeout = 5
    server: _ProxyServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _record(self) -> None:
        with self.server.lock:
            self.server.forwarded.append(
                (self.command, self.path, self.headers.get("Proxy-Authorization"))
            )

    def do_GET(self) -> None:
        self._record()
        self.close_connection = True
        target = urlsplit(self.path)
        if target.scheme != "http" or target.hostname != "127.0.0.1":
            self.send_error(403, "loopback http targets only")
            return
        upstream = http.client.HTTPConnection("127.0.0.1", target.port, timeout=5)
        skipped = {"proxy-authorization", "proxy-connection", "connection", "host"}
        headers = {k: v for k, v in self.headers.items() if k.lower() not in skipped}
        try:
            upstream.request(
                "GET", target.path + (f"?{target.query}" if target.query else ""), headers=headers
            )
            answer = upstream.getresponse()
            body = answer.read()
        except OSError:
            self.send_error(502, "upstream failed")
            return
        finally:
            upstream.close()
        self.send_response(answer.status)
        for name, value in answer.getheaders():
            if name.lower() not in ("connection", "transfer-encoding", "content-length"):
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def do_CONNECT(self) -> None:
        self._record()
        self.close_connection = True
        host, _, port = self.path.rpartition(":")
        if host != "127.0.0.1" or not port.isdigit():
            self.send_error(403, "loopback targets only")
            return
        try:
            upstream = socket.create_connection((host, int(port)), timeout=5)
        except OSError:
            self.send_error(502, "upstream unreachable")
            return
        self.send_response(200, "Connection established")
        self.end_headers()
        back = threading.Thread(target=_pipe, args=(upstream, self.connection), daemon=True)
        back.start()
        _pipe(self.connection, upstream)
        back.join(5)
        upstream.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


class ForwardProxy:
    def __init__(self) -> None:
        self._server = _ProxyServer(("127.0.0.1", 0), _ProxyHandler)
        self._server.forwarded = []
        self._server.lock = threading.Lock()
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def forwarded(self) -> list[tuple[str, str, str | None]]:
        with self._server.lock:
            return list(self._server.forwarded)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


@pytest.fixture
def proxy() -> Iterator[ForwardProxy]:
    server = ForwardProxy()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> TestCa:
    return make_test_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture
def tls_idp(test_ca: TestCa) -> Iterator[IdpServer]:
    """The fake IdP over HTTPS, its certificate (for IP 127.0.0.1) signed by ``test_ca``."""
    with IdpServer(tls=test_ca.server_context()) as server:
        yield server
    assert not server.errors, server.errors


# --------------------------------------------------------------------------- helpers
def robot(server: IdpServer, **extra: Any) -> JwtHeadersMiddleware:
    options: dict[str, Any] = {
        "user_name_header": "Authorization",
        "user_name_format": "jwt",
        "user_name_json_path": "preferred_username",
        "validate_token": True,
        "jwks_uri": server.jwks_uri,
        "validate_issuer": True,
        "issuer": server.issuer,
        **TIMEOUTS,
        **extra,
    }
    return JwtHeadersMiddleware(RecordingApp(), clock=FrozenClock(), **options)


def send(middleware: JwtHeadersMiddleware, server: IdpServer) -> Answer:
    token = mint({"iss": server.issuer}, server.key, now=int(middleware.authenticator.clock()))
    middleware.app = RecordingApp()
    return call(middleware, {"Authorization": f"Bearer {token}"}, peer=STRANGER)


# --------------------------------------------------------------------------- http_ca_bundle
def test_https_key_set_is_trusted_only_through_http_ca_bundle(tls_idp, test_ca):
    """Issue 14: a key set served over HTTPS with a certificate from an internal CA. Without
    ``http_ca_bundle`` the certificate is not trusted: the fetch fails and the request gets 503
    (fail closed, R31), the app not called. With the CA's PEM file the token is accepted."""
    assert_unavailable(send(robot(tls_idp), tls_idp))
    assert tls_idp.jwks_requests == 0  # the TLS handshake failed: no request was sent
    middleware = robot(tls_idp, http_ca_bundle=str(test_ca.ca_file))
    assert_accepted(send(middleware, tls_idp))
    assert tls_idp.jwks_requests == 1


def test_http_ca_bundle_replaces_the_trusted_cas(tls_idp, tmp_path):
    """The bundle is the whole trust: another CA's bundle does not vouch for this server."""
    other = make_test_ca(tmp_path / "other")
    assert_unavailable(send(robot(tls_idp, http_ca_bundle=str(other.ca_file)), tls_idp))


@pytest.mark.parametrize("variable", ["REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"])
def test_ca_environment_variables_are_ignored(tls_idp, test_ca, tmp_path, monkeypatch, variable):
    """requests lets ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` override a session's CA when it
    reads the environment; ours does not: the environment's CA neither replaces
    ``http_ca_bundle`` nor stands in for it."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        monkeypatch.delenv(name, raising=False)
    other = make_test_ca(tmp_path / "other")
    monkeypatch.setenv(variable, str(other.ca_file))
    assert_accepted(send(robot(tls_idp, http_ca_bundle=str(test_ca.ca_file)), tls_idp))
    monkeypatch.setenv(variable, str(test_ca.ca_file))
    assert_unavailable(send(robot(tls_idp), tls_idp))


def test_http_ca_bundle_covers_discovery_and_userinfo(test_ca):
    """Every outbound call shares the one session: discovery document, key set and userinfo,
    all over HTTPS from the internal CA, all work with the bundle."""
    with IdpServer(tls=test_ca.server_context()) as server:
        server.issuer = server.url("/realms/r")
        options = {
            "discovery": True,
            "jwks_uri": None,
            "validate_userinfo": True,
            "http_ca_bundle": str(test_ca.ca_file),
        }
        middleware = robot(server, **options)
        assert_accepted(send(middleware, server))
        assert server.hits("/realms/r/.well-known/openid-configuration") == 1
        assert server.jwks_requests == 1
        assert server.userinfo_requests == 1
    assert not server.errors, server.errors


def _ca_error(path: str) -> str:
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig(user_name_header="X", http_ca_bundle=path)
    return str(caught.value)


def test_http_ca_bundle_missing_or_unreadable_is_a_config_error(tmp_path):
    """A bundle that cannot be read stops the start-up, naming the option, the value and the
    fix (rather than 503s once tokens arrive)."""
    for path in (str(tmp_path / "missing.pem"), str(tmp_path)):
        message = _ca_error(path)
        assert f"http_ca_bundle={path!r} cannot be read" in message
        assert "give the path of a PEM file of the CA certificates" in message


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"not a certificate\n",
        b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n",
        "private-key",
    ],
    ids=["empty", "text", "malformed-pem", "private-key-only"],
)
def test_http_ca_bundle_without_a_certificate_is_a_config_error(tmp_path, test_ca, content):
    path = tmp_path / "bundle.pem"
    path.write_bytes(test_ca.key_file.read_bytes() if content == "private-key" else content)
    message = _ca_error(str(path))
    assert f"http_ca_bundle={str(path)!r} holds no PEM certificate" in message
    assert "'/etc/ssl/certs/internal-ca.pem'" in message


def test_http_ca_bundle_from_env_and_toml(tmp_path, test_ca):
    config = JwtHeadersConfig.from_env(
        environ={
            "JWT_HEADERS_USER_NAME_HEADER": "X",
            "JWT_HEADERS_HTTP_CA_BUNDLE": str(test_ca.ca_file),
        }
    )
    assert config.http_ca_bundle == str(test_ca.ca_file)
    toml = tmp_path / "config.toml"
    toml.write_text(
        f'[jwt_headers]\nuser_name_header = "X"\nhttp_ca_bundle = "{test_ca.ca_file}"\n'
        'http_proxy = "http://proxy.internal:3128"\n'
    )
    config = JwtHeadersConfig.from_file(toml)
    assert config.http_ca_bundle == str(test_ca.ca_file)
    assert config.http_proxy == "http://proxy.internal:3128"


# --------------------------------------------------------------------------- http_proxy
def test_http_proxy_carries_the_key_set_and_userinfo_calls(idp_server_http, proxy):
    """Issue 14: with ``http_proxy`` the key-set and userinfo calls go through the proxy (as
    absolute-form requests), including to 127.0.0.1: requests does not bypass it for loopback
    targets when the environment is ignored (no ``NO_PROXY`` from it either)."""
    server = idp_server_http
    middleware = robot(
        server,
        validate_userinfo=True,
        userinfo_endpoint=server.userinfo_endpoint,
        http_proxy=proxy.url,
    )
    assert_accepted(send(middleware, server))
    assert [(m, p) for m, p, _ in proxy.forwarded] == [
        ("GET", server.jwks_uri),
        ("GET", server.userinfo_endpoint),
    ]
    assert server.jwks_requests == 1 and server.userinfo_requests == 1


def test_http_proxy_credentials_are_sent_and_never_printed(idp_server_http, proxy):
    """R35: proxy credentials in the URL reach the proxy (``Proxy-Authorization``) and appear
    neither in ``repr(config)`` nor in a config error."""
    server = idp_server_http
    with_credentials = proxy.url.replace("http://", "http://robot:s3cret@")
    middleware = robot(server, http_proxy=with_credentials)
    assert "s3cret" not in repr(middleware.config)
    assert_accepted(send(middleware, server))
    assert proxy.forwarded[0][2] is not None and proxy.forwarded[0][2].startswith("Basic ")
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig(user_name_header="X", http_proxy="socks5://robot:s3cret@proxy:1080")
    assert "s3cret" not in str(caught.value) and "http_proxy=" in str(caught.value)


def test_http_proxy_down_fails_closed(idp_server_http):
    """R31: the proxy is down; the call is not made around it: 503, the app not called, the
    identity provider never asked."""
    server = idp_server_http
    assert_unavailable(send(robot(server, http_proxy=dead_url("")), server))
    assert server.total_requests == 0


def test_https_through_http_proxy_connect(tls_idp, test_ca, proxy):
    """An HTTPS key set through the proxy: a CONNECT tunnel to the server, whose certificate is
    still checked against ``http_ca_bundle`` end to end."""
    middleware = robot(tls_idp, http_proxy=proxy.url, http_ca_bundle=str(test_ca.ca_file))
    assert_accepted(send(middleware, tls_idp))
    assert [(m, p) for m, p, _ in proxy.forwarded] == [("CONNECT", f"127.0.0.1:{tls_idp.port}")]


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
def test_proxy_environment_variables_are_ignored(idp_server_http, proxy, monkeypatch, variable):
    """Without ``http_proxy``, proxy variables in the environment are not used: outbound calls
    go where the config says."""
    monkeypatch.setenv(variable, proxy.url)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    assert_accepted(send(robot(idp_server_http), idp_server_http))
    assert proxy.forwarded == []


@pytest.mark.parametrize(
    "url",
    [
        "socks5://proxy.internal:1080",
        "proxy.internal:3128",
        "http://",
        "http://proxy.internal:3128/some/path",
        "http://proxy.internal:port",
        "ftp://proxy.internal",
    ],
)
def test_http_proxy_config_errors(url):
    with pytest.raises(ConfigError) as caught:
        JwtHeadersConfig(user_name_header="X", http_proxy=url)
    message = str(caught.value)
    assert "http_proxy=" in message and "is not an http(s) proxy URL" in message
    assert "'http://proxy.internal:3128'" in message


@pytest.mark.parametrize(
    "url", ["http://proxy.internal:3128", "https://proxy.internal", "http://[::1]:3128/"]
)
def test_http_proxy_accepted_forms(url):
    assert JwtHeadersConfig(user_name_header="X", http_proxy=url).http_proxy == url


@pytest.fixture
def idp_server_http() -> Iterator[IdpServer]:
    with IdpServer() as server:
        assert server.issuer == ISSUER
        yield server
    assert not server.errors, server.errors


def test_outbound_options_in_explain_masked(tmp_path: Path, test_ca: TestCa) -> None:
    """``explain`` lists changed options; the proxy without its credentials."""
    import io

    from jwt_headers.explain import explain

    config = JwtHeadersConfig(
        user_name_header="X",
        http_proxy="http://robot:s3cret@proxy.internal:3128",
        http_ca_bundle=str(test_ca.ca_file),
    )
    out = io.StringIO()
    explain(config, {"REMOTE_ADDR": "127.0.0.1", "HTTP_X": "alice"}, out)
    text = out.getvalue()
    assert "s3cret" not in text
    assert "http_proxy='http://***@proxy.internal:3128'" in text
    assert f"http_ca_bundle={str(test_ca.ca_file)!r}" in text
