"""End to end: the samples behind the real pieces, all on 127.0.0.1.

- an OpenID provider (``tests/e2e/oidc_provider.js``, npm ``oidc-provider`` on Node);
- Apache 2.4 with mod_auth_openidc, running ``samples/apache/jwt-headers.conf`` itself (only the
  lines with addresses, names, paths and secrets are swapped), over TLS;
- gunicorn with ``samples/gunicorn.conf.py`` serving ``samples/flask_app.py``, configured from
  ``samples/flask.env`` / ``samples/robot.env`` (only the provider's URLs are swapped).

Unit tests fake what these send; this module checks what they really send and that the samples
put together authenticate a browser (through Apache, reading the ID token payload or the access
token), authenticate a robot's client-credentials token straight at gunicorn and refuse its
forgeries, and ignore an identity header from a peer that is not the proxy.

Nothing is installed here: a missing piece FAILS the module with a message naming it (install
with ``bash .ci/e2e-setup.sh``). Every process is started on a free loopback port and stopped by
its PID at the end; nothing waits a fixed time, every start is polled with a deadline.
"""

from __future__ import annotations

import datetime
import http.client
import http.server
import importlib.metadata
import importlib.util
import ipaddress
import json
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
E2E = ROOT / "tests" / "e2e"
APACHE_MODULES = Path("/usr/lib/apache2/modules")
SETUP_HINT = "install the e2e prerequisites with: bash .ci/e2e-setup.sh"

HOST = "127.0.0.1"
API_AUDIENCE = "urn:jwt-headers:e2e-api"
APACHE_CLIENT = "jwt-headers-apache"
ROBOT_CLIENT = "jwt-headers-robot"
ROBOT_USER = f"service-account-{ROBOT_CLIENT}"
START_DEADLINE = 30.0  # seconds a service gets to answer after it was started

# Apache modules the generated config loads. mod_unixd and mod_log_config are built into
# Debian's apache2: loading them again is an error.
APACHE_MODULE_FILES = {
    "mpm_event_module": "mod_mpm_event.so",
    "authn_core_module": "mod_authn_core.so",
    "authz_core_module": "mod_authz_core.so",
    "authz_user_module": "mod_authz_user.so",
    "headers_module": "mod_headers.so",
    "proxy_module": "mod_proxy.so",
    "proxy_http_module": "mod_proxy_http.so",
    "ssl_module": "mod_ssl.so",
    "auth_openidc_module": "mod_auth_openidc.so",
}

ALICE: dict[str, Any] = {
    "user": "alice",
    "roles": ["ROLE_ADMINISTRATOR", "viewer"],
    "anonymous": False,
}
ANONYMOUS: dict[str, Any] = {"user": None, "roles": [], "anonymous": True}
FORGED_PAYLOAD = json.dumps(
    {"preferred_username": "mallory", "realm_access": {"roles": ["GeoserverAdministrator"]}}
)


# ---------------------------------------------------------------------------- prerequisites
@dataclass(frozen=True)
class Tools:
    apache2: str
    node: str


def _prerequisites() -> Tools:
    """What the module needs, or a failure naming the missing piece (never a skip: CI must not
    go green without having run this)."""
    missing: list[str] = []
    apache2 = shutil.which(
        "apache2", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])
    )
    if apache2 is None:
        missing.append(
            "apache2 (Debian package apache2): no apache2 binary on PATH or in /usr/sbin"
        )
    for module_file in APACHE_MODULE_FILES.values():
        if not (APACHE_MODULES / module_file).is_file():
            package = "libapache2-mod-auth-openidc" if "openidc" in module_file else "apache2"
            missing.append(f"{APACHE_MODULES / module_file} (Debian package {package})")
    node = shutil.which("node")
    if node is None:
        missing.append("node (Node.js >= 20) on PATH")
    else:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)
        major = re.match(r"v(\d+)", version.stdout.strip())
        if not major or int(major.group(1)) < 20:
            missing.append(f"Node.js >= 20 (found {version.stdout.strip() or 'no version'})")
    pinned = json.loads((E2E / "package.json").read_text())["dependencies"]["oidc-provider"]
    installed = E2E / "node_modules" / "oidc-provider" / "package.json"
    if not installed.is_file():
        missing.append("npm module oidc-provider in tests/e2e/node_modules (npm ci in tests/e2e)")
    elif json.loads(installed.read_text())["version"] != pinned:
        missing.append(f"npm module oidc-provider {pinned} in tests/e2e (npm ci in tests/e2e)")
    if missing:
        pytest.fail(
            "end-to-end prerequisites missing:\n  - " + "\n  - ".join(missing) + f"\n{SETUP_HINT}",
            pytrace=False,
        )
    assert apache2 is not None and node is not None
    return Tools(apache2=apache2, node=node)


# ---------------------------------------------------------------------------- processes
@dataclass
class Service:
    """A process this module started: its log, and a stop by PID."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


def _start(name: str, command: list[str], log: Path, env: dict[str, str], cwd: Path) -> Service:
    with log.open("wb") as out:
        proc = subprocess.Popen(
            command,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,  # a Ctrl-C on pytest reaches pytest, which stops them
        )
    return Service(name, proc, log)


def _wait_until(what: str, ready: Callable[[], bool], service: Service | None = None) -> None:
    """Poll ``ready`` until it is true, or fail with the service's log once the deadline passes
    or the service has exited."""
    deadline = time.monotonic() + START_DEADLINE
    while True:
        if service is not None and service.proc.poll() is not None:
            pytest.fail(
                f"{service.name} exited with {service.proc.returncode} before {what}; its log:\n"
                f"{service.tail()}",
                pytrace=False,
            )
        try:
            if ready():
                return
        except (OSError, requests.RequestException):
            pass
        if time.monotonic() > deadline:
            log = f"; its log:\n{service.tail()}" if service is not None else ""
            pytest.fail(f"timed out after {START_DEADLINE:.0f} s waiting for {what}{log}")
        time.sleep(0.05)


def _answers(url: str, verify: str | bool = False) -> Callable[[], bool]:
    def ready() -> bool:
        with requests.Session() as http:
            http.trust_env = False
            http.get(url, timeout=2, allow_redirects=False, verify=verify)
        return True

    return ready


def _free_ports(count: int) -> list[int]:
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((HOST, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _child_env(**extra: str) -> dict[str, str]:
    """The environment for a child: ours without JWT_HEADERS_* leftovers, no proxy detours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("JWT_HEADERS_")}
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env.update(PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


# ---------------------------------------------------------------------------- keys and certs
def _signing_key(directory: Path) -> tuple[rsa.RSAPrivateKey, str, Path]:
    """The provider's signing key, made here so the test can sign an expired token with it."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = f"e2e-{secrets.token_hex(4)}"
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key))
    jwk.pop("key_ops", None)  # PyJWT writes ["sign"]; published as is, no verifier would use it
    jwk.update(kid=kid, alg="RS256", use="sig")
    path = directory / "provider-jwks.json"
    path.touch(mode=0o600)
    path.write_text(json.dumps({"keys": [jwk]}))
    return key, kid, path


def _tls_certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (Apache serves it; the client trusts only it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, HOST)])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=2))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "tls.pem", directory / "tls.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.touch(mode=0o600)
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


# ---------------------------------------------------------------------------- sample files
def _sample_env(name: str, **overrides: str) -> dict[str, str]:
    """``samples/<name>`` as a dict, with ``overrides`` (each must replace a key the file sets,
    so the test runs the sample's settings, not its own)."""
    values: dict[str, str] = {}
    for raw in (SAMPLES / name).read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            values[key.strip()] = value.strip()
    unknown = sorted(set(overrides) - set(values))
    assert not unknown, f"samples/{name} no longer sets {unknown}"
    values.update(overrides)
    return values


def _apache_site(substitutions: dict[str, str]) -> str:
    """``samples/apache/jwt-headers.conf`` with the arguments of the given directives replaced
    (each must occur exactly once, outside comments); every other line stays as it is."""
    seen = dict.fromkeys(substitutions, 0)
    lines = []
    for line in (SAMPLES / "apache" / "jwt-headers.conf").read_text().splitlines():
        stripped = line.lstrip()
        directive = stripped.split(maxsplit=1)[0] if stripped else ""
        if directive in substitutions and not stripped.startswith("#"):
            seen[directive] += 1
            indent = line[: len(line) - len(stripped)]
            lines.append(f"{indent}{directive} {substitutions[directive]}")
        else:
            lines.append(line)
    wrong = {name: count for name, count in seen.items() if count != 1}
    assert not wrong, f"samples/apache/jwt-headers.conf: directives not found exactly once: {wrong}"
    return "\n".join(lines) + "\n"


def _apache_main_config(directory: Path, port: int, site: Path) -> str:
    loads = "\n".join(
        f"LoadModule {name} {APACHE_MODULES / module_file}"
        for name, module_file in APACHE_MODULE_FILES.items()
    )
    # As root, Apache must hand its children to an unprivileged user (it refuses to serve as
    # root); as anyone else it simply keeps the current user.
    user = ""
    if os.geteuid() == 0:
        account = "www-data" if _user_exists("www-data") else "nobody"
        user = f"User {account}\nGroup {'www-data' if account == 'www-data' else 'nogroup'}"
    return f"""\
ServerRoot "{directory}"
DefaultRuntimeDir "{directory}"
PidFile "{directory}/httpd.pid"
ErrorLog /dev/stderr
LogLevel warn
ServerName {HOST}
Listen {HOST}:{port} https
{user}
{loads}
Include "{site}"
"""


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


# ---------------------------------------------------------------------------- capture backend
class _CaptureHandler(http.server.BaseHTTPRequestHandler):
    """Records each request's headers (as received, names unchanged) and answers 200."""

    captured: list[list[tuple[str, str]]]

    def do_GET(self) -> None:
        self.captured.append(list(self.headers.items()))
        body = b'{"captured": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


# ---------------------------------------------------------------------------- the stack
@dataclass
class Stack:
    issuer: str
    apache: dict[str, str]  # "json" / "jwt" / "capture" -> https://127.0.0.1:<port>
    gunicorn_ports: dict[str, int]  # "json" / "jwt" / "robot"
    ca_file: str
    signing_key: rsa.RSAPrivateKey
    kid: str
    apache_secret: str
    robot_secret: str
    services: dict[str, Service] = field(default_factory=dict)
    captured: list[list[tuple[str, str]]] = field(default_factory=list)

    def gunicorn_url(self, name: str, path: str = "/whoami") -> str:
        return f"http://{HOST}:{self.gunicorn_ports[name]}{path}"


def _start_provider(node: str, stack: Stack, directory: Path, port: int, jwks_file: Path) -> None:
    stack.services["provider"] = _start(
        "oidc-provider",
        [node, str(E2E / "oidc_provider.js")],
        directory / "provider.log",
        _child_env(
            E2E_OIDC_PORT=str(port),
            E2E_APACHE_CLIENT_SECRET=stack.apache_secret,
            E2E_ROBOT_CLIENT_SECRET=stack.robot_secret,
            E2E_APACHE_REDIRECT_URIS=",".join(
                f"{url}/redirect_uri" for url in stack.apache.values()
            ),
            E2E_API_AUDIENCE=API_AUDIENCE,
            E2E_OIDC_JWKS_FILE=str(jwks_file),
        ),
        E2E,
    )


def _gunicorn_envs(issuer: str) -> dict[str, dict[str, str]]:
    """The app's configuration per gunicorn: the samples' env files, only the provider's URLs
    swapped; plus the access-token variant behind Apache that samples/README.rst describes."""
    validation = {
        "JWT_HEADERS_JWKS_URI": f"{issuer}/jwks",
        "JWT_HEADERS_ISSUER": issuer,
        "JWT_HEADERS_AUDIENCE": API_AUDIENCE,
    }
    # oidc-provider types its access tokens (RFC 9068): the option robot.env suggests for it.
    typed = {"JWT_HEADERS_TOKEN_TYPES": "at+jwt"}
    flask_env = _sample_env("flask.env")
    access_token_env = {
        **flask_env,
        "JWT_HEADERS_USER_NAME_HEADER": "OIDC_access_token",
        "JWT_HEADERS_USER_NAME_FORMAT": "jwt",
        "JWT_HEADERS_ROLES_SOURCE": "jwt",
        "JWT_HEADERS_VALIDATE_TOKEN": "true",
        "JWT_HEADERS_VALIDATE_ISSUER": "true",
        "JWT_HEADERS_VALIDATE_AUDIENCE": "true",
        **validation,
        **typed,
    }
    robot_env = {
        **_sample_env("robot.env", **validation, JWT_HEADERS_USERINFO_ENDPOINT=f"{issuer}/me"),
        **typed,
    }
    return {"json": flask_env, "jwt": access_token_env, "robot": robot_env}


def _mixed_config(issuer: str, directory: Path) -> Path:
    """``samples/browsers_and_robots.toml`` with only the provider's URLs and the audience
    swapped (each placeholder must still be in the sample), plus the access-token type."""
    text = (SAMPLES / "browsers_and_robots.toml").read_text()
    swaps = {
        "https://idp.example/realms/r/protocol/openid-connect/certs": f"{issuer}/jwks",
        "https://idp.example/realms/r/protocol/openid-connect/userinfo": f"{issuer}/me",
        "https://idp.example/realms/r": issuer,
        '"jwt-headers-api"': f'"{API_AUDIENCE}"',
        '# token_types = ["at+jwt"]': 'token_types = ["at+jwt"]',
    }
    for old, new in swaps.items():
        assert old in text, f"samples/browsers_and_robots.toml no longer has {old!r}"
        text = text.replace(old, new)
    path = directory / "browsers_and_robots.toml"
    path.write_text(text)
    return path


def _start_gunicorns(stack: Stack, directory: Path) -> None:
    version = tuple(int(part) for part in importlib.metadata.version("gunicorn").split(".")[:2])
    extra = ["--no-control-socket"] if version >= (25, 1) else []  # else it opens ~/.gunicorn/
    mixed = _mixed_config(stack.issuer, directory)
    for name, env in _gunicorn_envs(stack.issuer).items():
        # Behind the "json" Apache runs the sample that serves browsers and robots in one app.
        app_spec = f"flask_app:from_file({str(mixed)!r})" if name == "json" else "flask_app:app"
        stack.services[f"gunicorn-{name}"] = _start(
            f"gunicorn ({name})",
            [
                sys.executable,
                "-m",
                "gunicorn",
                "-c",
                str(SAMPLES / "gunicorn.conf.py"),
                "--bind",
                f"{HOST}:{stack.gunicorn_ports[name]}",
                *extra,
                "--chdir",
                str(SAMPLES),
                app_spec,
            ],
            directory / f"gunicorn-{name}.log",
            _child_env(**({} if name == "json" else env)),
            SAMPLES,
        )


def _start_apache(
    apache2: str,
    stack: Stack,
    directory: Path,
    name: str,
    backend_port: int,
    tls: tuple[Path, Path],
) -> None:
    """One Apache running the sample site, in the foreground, with its own ServerRoot."""
    port = urlsplit(stack.apache[name]).port
    assert port is not None
    directory.mkdir()
    directory.chmod(0o711)  # the children (www-data when run as root) may need to reach it
    site = directory / "site.conf"
    site.touch(mode=0o600)  # it holds the client secret and the crypto passphrase
    site.write_text(
        _apache_site(
            {
                "<VirtualHost": f"*:{port}>",
                "ServerName": f"{HOST}:{port}",
                "SSLCertificateFile": str(tls[0]),
                "SSLCertificateKeyFile": str(tls[1]),
                "OIDCProviderMetadataURL": f"{stack.issuer}/.well-known/openid-configuration",
                "OIDCClientID": APACHE_CLIENT,
                "OIDCClientSecret": stack.apache_secret,
                "OIDCRedirectURI": f"{stack.apache[name]}/redirect_uri",
                "OIDCCryptoPassphrase": secrets.token_urlsafe(32),
                "ProxyPass": f"/ http://{HOST}:{backend_port}/",
                "ProxyPassReverse": f"/ http://{HOST}:{backend_port}/",
            }
        )
    )
    main = directory / "httpd.conf"
    main.write_text(_apache_main_config(directory, port, site))
    stack.services[f"apache-{name}"] = _start(
        f"apache ({name})",
        [apache2, "-f", str(main), "-DFOREGROUND"],
        directory / "apache.log",
        _child_env(),
        directory,
    )


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Everything started at once, then each polled until it answers; stopped by PID."""
    tools = _prerequisites()
    base = tmp_path_factory.mktemp("e2e")
    ports = dict(
        zip(
            ["provider", "json", "jwt", "robot", "a-json", "a-jwt", "a-capture", "capture"],
            _free_ports(8),
            strict=True,
        )
    )
    signing_key, kid, jwks_file = _signing_key(base)
    tls = _tls_certificate(base)
    stack = Stack(
        issuer=f"http://{HOST}:{ports['provider']}",
        apache={
            name: f"https://{HOST}:{ports['a-' + name]}" for name in ("json", "jwt", "capture")
        },
        gunicorn_ports={name: ports[name] for name in ("json", "jwt", "robot")},
        ca_file=str(tls[0]),
        signing_key=signing_key,
        kid=kid,
        apache_secret=secrets.token_urlsafe(24),
        robot_secret=secrets.token_urlsafe(24),
    )
    handler = type("Capture", (_CaptureHandler,), {"captured": stack.captured})
    capture = http.server.ThreadingHTTPServer((HOST, ports["capture"]), handler)
    capture_thread = threading.Thread(target=capture.serve_forever, daemon=True)
    capture_thread.start()
    try:
        _start_provider(tools.node, stack, base, ports["provider"], jwks_file)
        _start_gunicorns(stack, base)
        for name in ("json", "jwt", "capture"):
            _start_apache(tools.apache2, stack, base / f"apache-{name}", name, ports[name], tls)

        _wait_until(
            "the provider's discovery document",
            _answers(f"{stack.issuer}/.well-known/openid-configuration"),
            stack.services["provider"],
        )
        for name in ("json", "jwt", "robot"):
            _wait_until(
                f"gunicorn ({name})",
                _answers(stack.gunicorn_url(name, "/health")),
                stack.services[f"gunicorn-{name}"],
            )
        for name, url in stack.apache.items():
            _wait_until(
                f"apache ({name})",
                _answers(f"{url}/health", verify=stack.ca_file),
                stack.services[f"apache-{name}"],
            )
        yield stack
    finally:
        for service in reversed(list(stack.services.values())):
            service.stop()
        capture.shutdown()
        capture.server_close()
        capture_thread.join(timeout=10)


# ---------------------------------------------------------------------------- helpers
class _Forms(HTMLParser):
    """The forms of a page: action, and the name/value of each input."""

    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "form":
            self.forms.append({"action": attributes.get("action") or "", "fields": {}})
        elif tag == "input" and self.forms and attributes.get("name"):
            self.forms[-1]["fields"][attributes["name"]] = attributes.get("value") or ""


def _submit_form(
    session: requests.Session, page: requests.Response, **fields: str
) -> requests.Response:
    parser = _Forms()
    parser.feed(page.text)
    assert len(parser.forms) == 1, f"expected one form at {page.url}, got:\n{page.text[:2000]}"
    form = parser.forms[0]
    data = {**form["fields"], **fields}
    return session.post(urljoin(page.url, form["action"]), data=data, timeout=10)


def _browser(stack: Stack) -> requests.Session:
    session = requests.Session()
    session.trust_env = False  # no proxy, and REQUESTS_CA_BUNDLE must not replace our CA
    session.verify = stack.ca_file
    return session


def _browser_login(stack: Stack, url: str, user: str) -> tuple[requests.Session, requests.Response]:
    """Log in as a browser would: Apache sends us to the provider, we fill in the login form
    and the consent form, the provider sends us back to Apache's redirect URI with a code,
    Apache sets its session cookie and sends us to the page first asked for."""
    session = _browser(stack)
    login_page = session.get(url, timeout=10)
    assert login_page.history and login_page.history[0].status_code == 302
    assert login_page.history[0].headers["Location"].startswith(f"{stack.issuer}/auth?")
    assert login_page.url.startswith(f"{stack.issuer}/interaction/"), login_page.url
    consent_page = _submit_form(session, login_page, login=user, password="any password")
    assert consent_page.status_code == 200, consent_page.text[:2000]
    assert 'value="consent"' in consent_page.text, consent_page.text[:2000]
    final = _submit_form(session, consent_page)
    apache = urlsplit(url).netloc
    back_at_apache = [urlsplit(r.url) for r in final.history if urlsplit(r.url).netloc == apache]
    assert any(hop.path == "/redirect_uri" for hop in back_at_apache), [
        r.url for r in final.history
    ]
    assert final.url == url
    assert "mod_auth_openidc_session" in session.cookies
    return session, final


def _raw_get(port: int, path: str, headers: dict[str, str], source: str) -> tuple[int, Any]:
    """A GET straight to gunicorn from a chosen loopback address (http.client keeps header
    names exactly as given)."""
    connection = http.client.HTTPConnection(HOST, port, timeout=10, source_address=(source, 0))
    try:
        connection.request("GET", path, headers=headers)
        response = connection.getresponse()
        return response.status, json.loads(response.read())
    finally:
        connection.close()


def _robot_client() -> ModuleType:
    spec = importlib.util.spec_from_file_location("robot_client", SAMPLES / "robot_client.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _log_count(service: Service, text: str) -> int:
    return service.log_text().count(text)


def _log_contains(service: Service, text: str, times: int = 1) -> bool:
    """Whether ``text`` shows up ``times`` times in the service's log within a few seconds."""
    deadline = time.monotonic() + 5
    while _log_count(service, text) < times:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _decode_segment(segment: str) -> Any:
    return json.loads(jwt.utils.base64url_decode(segment))


def _assert_invalid_token(response: requests.Response, reason: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    body = response.json()
    assert body["error"]["code"] == "INVALID_TOKEN"
    assert reason in body["error"]["message"]


# ---------------------------------------------------------------------------- (a) browsers
def test_browser_without_session_is_sent_to_the_provider(stack: Stack) -> None:
    response = _browser(stack).get(
        f"{stack.apache['json']}/whoami", allow_redirects=False, timeout=10
    )
    assert response.status_code == 302
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == f"{stack.issuer}/auth"
    query = parse_qs(location.query)
    assert query["client_id"] == [APACHE_CLIENT]
    assert query["redirect_uri"] == [f"{stack.apache['json']}/redirect_uri"]
    assert query["response_type"] == ["code"]


def test_browser_login_through_apache_app_reads_id_token_payload(stack: Stack) -> None:
    url = f"{stack.apache['json']}/whoami"
    session, response = _browser_login(stack, url, "alice")
    assert response.status_code == 200
    assert response.json() == ALICE

    # The logged-in browser forges the identity headers: mod_auth_openidc scrubs every OIDC_*
    # spelling and RequestHeader set overwrites the dashed one, so the app still sees alice.
    forged = session.get(
        url,
        headers={"OIDC-Id-Token-Payload": FORGED_PAYLOAD, "OIDC_id_token_payload": FORGED_PAYLOAD},
        timeout=10,
    )
    assert forged.json() == ALICE
    assert _log_contains(
        stack.services["apache-json"], "scrubbed suspicious request header (OIDC-Id-Token-Payload"
    )


def test_browser_login_through_apache_app_reads_access_token(stack: Stack) -> None:
    _, response = _browser_login(stack, f"{stack.apache['jwt']}/whoami", "alice")
    assert response.status_code == 200
    assert response.json() == ALICE


def test_what_apache_sends_to_the_app(stack: Stack) -> None:
    """Pins the shapes recorded in tests/e2e/OBSERVED.md (mod_auth_openidc 2.4.12 with
    OIDCPassIDTokenAs payload, OIDCPassClaimsAs both and the sample's RequestHeader lines)."""
    stack.captured.clear()
    _browser_login(stack, f"{stack.apache['capture']}/whoami", "alice")
    headers = stack.captured[-1]
    names = [name for name, _ in headers]
    value = dict(headers)

    # The dashed copies the sample makes, which survive gunicorn.
    payload = json.loads(value["OIDC-Id-Token-Payload"])
    assert payload["preferred_username"] == "alice"
    assert payload["realm_access"] == {"roles": ["GeoserverAdministrator", "viewer"]}
    assert payload["iss"] == stack.issuer and payload["aud"] == APACHE_CLIENT
    assert {"exp", "iat", "sub", "nonce"} <= set(payload)
    access_token = value["OIDC-Access-Token"]
    header, claims, signature = access_token.split(".")
    assert _decode_segment(header) == {"alg": "RS256", "typ": "at+jwt", "kid": stack.kid}
    assert _decode_segment(claims)["aud"] == API_AUDIENCE and signature

    # mod_auth_openidc's own underscore names (which gunicorn >= 22 drops), the same values.
    assert value["OIDC_id_token_payload"] == value["OIDC-Id-Token-Payload"]
    assert value["OIDC_access_token"] == access_token
    assert value["OIDC_access_token_expires"].isdigit()
    # Userinfo claims, one header each; nested objects re-serialised with spaces.
    assert value["OIDC_CLAIM_preferred_username"] == "alice"
    assert value["OIDC_CLAIM_realm_access"] == '{"roles": ["GeoserverAdministrator", "viewer"]}'
    oidc_names = sorted(n for n in names if n.upper().startswith("OIDC"))
    assert oidc_names == sorted(
        [
            "OIDC-Access-Token",
            "OIDC-Id-Token-Payload",
            "OIDC_CLAIM_name",
            "OIDC_CLAIM_preferred_username",
            "OIDC_CLAIM_realm_access",
            "OIDC_CLAIM_sub",
            "OIDC_access_token",
            "OIDC_access_token_expires",
            "OIDC_id_token_payload",
        ]
    )
    # OIDCStripCookies: Apache's session cookie never reaches the app.
    assert "mod_auth_openidc_session" not in value.get("Cookie", "")
    assert value["X-Forwarded-For"] == HOST


# ---------------------------------------------------------------------------- (b) robots
@pytest.fixture(scope="module")
def robot_token(stack: Stack) -> str:
    with requests.Session() as http:
        http.trust_env = False
        return str(
            _robot_client().fetch_token(
                f"{stack.issuer}/token",
                ROBOT_CLIENT,
                stack.robot_secret,
                resource=API_AUDIENCE,
                session=http,
            )
        )


def _resigned(stack: Stack, token: str, **changes: Any) -> str:
    """The token's own claims with ``changes``, signed with the provider's key and kid: a
    token the provider could have issued, differing only in what the test changed."""
    claims = jwt.decode(token, options={"verify_signature": False})
    claims.update(changes)
    return jwt.encode(
        claims, stack.signing_key, algorithm="RS256", headers={"kid": stack.kid, "typ": "at+jwt"}
    )


def _bearer(stack: Stack, token: str) -> requests.Response:
    with requests.Session() as http:
        http.trust_env = False
        return http.get(
            stack.gunicorn_url("robot"), headers={"Authorization": f"Bearer {token}"}, timeout=10
        )


def test_robot_sample_client_is_accepted(stack: Stack) -> None:
    userinfo_calls = _log_count(stack.services["provider"], "GET /me 200")
    result = subprocess.run(
        [
            sys.executable,
            str(SAMPLES / "robot_client.py"),
            "--token-url",
            f"{stack.issuer}/token",
            "--client-id",
            ROBOT_CLIENT,
            "--resource",
            API_AUDIENCE,
            "--api-url",
            stack.gunicorn_url("robot"),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=_child_env(ROBOT_CLIENT_SECRET=stack.robot_secret),
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    status, _, body = result.stdout.partition("\n")
    assert status == "status: 200"
    assert json.loads(body) == {"user": ROBOT_USER, "roles": ["api-reader"], "anonymous": False}
    assert "eyJ" not in result.stdout + result.stderr  # the token is never printed
    # The middleware asked the provider's userinfo about the new token (validate_userinfo).
    assert _log_contains(stack.services["provider"], "GET /me 200", times=userinfo_calls + 1)


def test_robot_token_accepted_from_any_peer(stack: Stack, robot_token: str) -> None:
    """A signature-checked token proves itself: trusted_proxies does not apply (R16)."""
    status, body = _raw_get(
        stack.gunicorn_ports["robot"],
        "/whoami",
        {"Authorization": f"Bearer {robot_token}"},
        source="127.0.0.2",
    )
    assert (status, body) == (
        200,
        {"user": ROBOT_USER, "roles": ["api-reader"], "anonymous": False},
    )


def test_robot_tampered_token_refused(stack: Stack, robot_token: str) -> None:
    header, claims, signature = robot_token.split(".")
    changed = _decode_segment(claims) | {"preferred_username": "admin"}
    forged_claims = jwt.utils.base64url_encode(json.dumps(changed).encode()).decode()
    _assert_invalid_token(
        _bearer(stack, f"{header}.{forged_claims}.{signature}"), "signature is not valid"
    )


def test_robot_expired_token_refused(stack: Stack, robot_token: str) -> None:
    now = int(time.time())
    expired = _resigned(stack, robot_token, iat=now - 900, exp=now - 600)
    _assert_invalid_token(_bearer(stack, expired), "expired")


def test_robot_token_for_another_audience_refused(stack: Stack, robot_token: str) -> None:
    """Signed by the provider, valid, but issued for another API: what mod_auth_openidc's
    oauth20 mode would let through, and robot.env's audience check refuses."""
    other = _resigned(stack, robot_token, aud="urn:jwt-headers:another-api")
    _assert_invalid_token(_bearer(stack, other), "aud")


# ---------------------------------------------------------------------------- (b2) one app
def test_one_app_serves_robots_beside_browsers(stack: Stack, robot_token: str) -> None:
    """browsers_and_robots.toml behind Apache: the app that logs browsers in through Apache
    (test_browser_login_through_apache_app_reads_id_token_payload) also accepts a robot's
    Bearer token sent straight to it, from a peer that is not Apache."""
    port = stack.gunicorn_ports["json"]
    robot = {"user": ROBOT_USER, "roles": ["api-reader"], "anonymous": False}
    bearer = {"Authorization": f"Bearer {robot_token}"}
    assert _raw_get(port, "/whoami", bearer, source="127.0.0.2") == (200, robot)
    # A stranger's proxy header beside the token is dropped (not believed from 127.0.0.2): the
    # token decides, and the forged name never reaches the app.
    forged = {**bearer, "OIDC-Id-Token-Payload": FORGED_PAYLOAD}
    assert _raw_get(port, "/whoami", forged, source="127.0.0.2") == (200, robot)


def test_one_app_refuses_a_browser_header_and_a_token_naming_different_users(
    stack: Stack, robot_token: str
) -> None:
    """From Apache's address the JSON header is believed; with a robot's token naming someone
    else beside it, the request is refused, never "first wins"."""
    headers = {"OIDC-Id-Token-Payload": FORGED_PAYLOAD, "Authorization": f"Bearer {robot_token}"}
    status, body = _raw_get(stack.gunicorn_ports["json"], "/whoami", headers, source=HOST)
    assert status == 401
    assert body == {
        "error": {"code": "INVALID_TOKEN", "message": "OIDC_id_token_payload and Authorization "
                  "name different users"}
    }  # fmt: skip
    assert _log_contains(stack.services["gunicorn-json"], "conflicting_credentials")


def test_one_app_refuses_a_bad_robot_token(stack: Stack, robot_token: str) -> None:
    expired = _resigned(stack, robot_token, iat=int(time.time()) - 900, exp=int(time.time()) - 600)
    status, body = _raw_get(
        stack.gunicorn_ports["json"], "/whoami", {"Authorization": f"Bearer {expired}"}, "127.0.0.2"
    )
    assert status == 401
    assert body["error"]["message"] == "token expired"


# ---------------------------------------------------------------------------- (c) peers
def test_identity_header_from_untrusted_peer_is_ignored(stack: Stack) -> None:
    port = stack.gunicorn_ports["json"]
    headers = {"OIDC-Id-Token-Payload": FORGED_PAYLOAD}
    assert _raw_get(port, "/whoami", headers, source="127.0.0.2") == (200, ANONYMOUS)
    assert _log_contains(stack.services["gunicorn-json"], "untrusted_source_header")

    # From Apache's address the same header is believed: the peer made the difference, which is
    # why gunicorn must be reachable by Apache alone.
    mallory = {"user": "mallory", "roles": ["ROLE_ADMINISTRATOR"], "anonymous": False}
    assert _raw_get(port, "/whoami", headers, source=HOST) == (200, mallory)


def test_gunicorn_drops_underscore_header_names(stack: Stack) -> None:
    """Why the sample renames: mod_auth_openidc's own spelling never reaches the app."""
    headers = {"OIDC_id_token_payload": FORGED_PAYLOAD}
    assert _raw_get(stack.gunicorn_ports["json"], "/whoami", headers, source=HOST) == (
        200,
        ANONYMOUS,
    )
