"""``jwt-headers demo``: the middleware at work against a real identity provider, in seconds.

Reading about 401s and caches convinces less than watching them, and a first try should not
need Keycloak. The demo starts a :class:`~jwt_headers.devidp.DevIdp` and a sample API behind
:class:`JwtHeadersMiddleware` with full validation (signature, expiry, issuer, audience,
userinfo), both on 127.0.0.1, then plays what robots and attackers send: a good token, the same
token again, an expired, a forged and a tampered one, no token, ``Basic`` credentials. For each
it prints the request, the answer and whether it is the expected one, so the run doubles as a
self-check (exit code 0 only when every answer matched).

Tokens and credentials are never printed, only their fingerprints (the first 8 hex digits of
their SHA-256, as the middleware logs them), because terminals end up in tickets and screenshots.
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import secrets
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import jwt
import requests
from cryptography.hazmat.primitives.asymmetric import rsa
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server

from . import http
from .config import JwtHeadersConfig
from .devidp import DevIdp, curl_token_command, port_number
from .logtools import fingerprint
from .middleware import PRINCIPAL_KEY, JwtHeadersMiddleware
from .principal import Principal

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

HOST = "127.0.0.1"
AUDIENCE = "demo-api"
ROBOT = "report-robot"
ROBOT_ROLES = ["demo-reader", "offline_access"]
ROLE_CONVERTER = "demo-admin=ROLE_ADMINISTRATOR;demo-reader=ROLE_READER"
API_PATH = "/reports"
WIDTH = 79
#: Exit code after Ctrl-C before the tour finished (128 + SIGINT, as shells report it).
INTERRUPTED = 130


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "demo",
        help="watch the middleware accept and refuse tokens, all on this machine",
        description=(
            "Start a development identity provider and a sample API behind the middleware, "
            "both on 127.0.0.1, and show what a good, a cached, an expired, a forged and a "
            "tampered token, no token and Basic credentials get. Tokens are shown only as "
            "fingerprints. Everything stops at the end; the exit code is 0 when every answer "
            "was the expected one."
        ),
    )
    parser.add_argument(
        "--keep-running",
        action="store_true",
        help="after the tour, keep serving until Ctrl-C and print a curl command to try",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=0,
        help="port of the sample API on 127.0.0.1 (default: a free one)",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    return run_demo(out or sys.stdout, port=args.port, keep_running=args.keep_running)


# ---------------------------------------------------------------------- the pieces on stage
def sample_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
    """The protected API: says who the middleware says is calling, or that nobody is."""
    principal = environ.get(PRINCIPAL_KEY)
    if isinstance(principal, Principal):
        answer: dict[str, Any] = {"user": principal.name, "roles": list(principal.roles)}
    else:
        answer = {"user": None, "roles": [], "note": "anonymous request"}
    body = json.dumps(answer).encode("utf-8")
    start_response(
        "200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    )
    return [body]


def demo_config(idp: DevIdp) -> JwtHeadersConfig:
    """What a robot-facing API would configure: every check on, roles from the token."""
    return JwtHeadersConfig(
        user_name_header="Authorization",
        user_name_format="jwt",
        user_name_json_path="preferred_username",
        roles_source="jwt",
        roles_json_path="realm_access.roles",
        role_converter=ROLE_CONVERTER,
        only_external_listed_roles=True,
        validate_token=True,
        jwks_uri=idp.jwks_uri,
        validate_issuer=True,
        issuer=idp.issuer,
        validate_audience=True,
        audience=AUDIENCE,
        validate_userinfo=True,
        userinfo_endpoint=idp.userinfo_endpoint,
    )


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        """The demo prints each exchange itself; werkzeug's access log would interleave."""


@contextmanager
def serving(app: WSGIApplication, port: int) -> Iterator[BaseWSGIServer]:
    """``app`` on 127.0.0.1 in a daemon thread, stopped when the block ends."""
    server = make_server(HOST, port, app, threaded=True, request_handler=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="demo-api", daemon=True
    )
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def config_as_toml(config: JwtHeadersConfig) -> list[str]:
    """The options that differ from the defaults, as lines of a ``[jwt_headers]`` table."""
    defaults = JwtHeadersConfig.option_defaults()
    lines = ["[jwt_headers]"]
    for option in dataclasses.fields(JwtHeadersConfig):
        value = getattr(config, option.name)
        if option.init and value != defaults[option.name]:
            lines.append(f"{option.name} = {_toml_value(value)}")
    return lines


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    return json.dumps(str(value))


def shown(scheme: str, credentials: str) -> str:
    """How an Authorization header is printed: the scheme and a fingerprint, never the value."""
    return f"{scheme} <sha256 {fingerprint(credentials)}...>"


# ---------------------------------------------------------------------- the tour
@dataclass(frozen=True)
class Expect:
    """What an answer must be: a status, and for a 200 the user and roles, else the message."""

    status: int
    user: str | None = None
    roles: tuple[str, ...] = ()
    message: str = ""
    idp_asked: bool | None = None

    def problems(self, status: int, body: Any, asked: bool) -> list[str]:
        found = []
        if status != self.status:
            found.append(f"status {status}, expected {self.status}")
        elif status == 200:
            user = body.get("user") if isinstance(body, dict) else "?"
            roles = tuple(body.get("roles", ())) if isinstance(body, dict) else ("?",)
            if user != self.user:
                found.append(f"user {user!r}, expected {self.user!r}")
            if roles != self.roles:
                found.append(f"roles {list(roles)}, expected {list(self.roles)}")
        elif self.message not in json.dumps(body):
            found.append(f"no {self.message!r} in the answer")
        if self.idp_asked is not None and asked != self.idp_asked:
            found.append("the identity provider was " + ("not asked" if not asked else "asked"))
        return found

    def describe(self) -> str:
        if self.status == 200:
            who = f"user {self.user}" if self.user else "anonymous"
            text = f"200, {who}" + (f", roles {', '.join(self.roles)}" if self.roles else "")
        else:
            text = f"{self.status}, {self.message!r}"
        if self.idp_asked is False:
            text += ", IdP not asked"
        return text


class Tour:
    """Plays each request against the running API and prints it as a person would read it."""

    def __init__(self, out: TextIO, idp: DevIdp, api_url: str, secret: str) -> None:
        self.out = out
        self.idp = idp
        self.api_url = api_url
        self.secret = secret
        self.session = http.new_session()
        self.token: str | None = None
        self.results: list[bool] = []

    # -------------------------------------------------------------- printing
    def say(self, text: str = "", indent: int = 0, hang: int = 2) -> None:
        if not text:
            self.out.write("\n")
            return
        self.out.write(
            textwrap.fill(
                text,
                WIDTH,
                initial_indent=" " * indent,
                subsequent_indent=" " * (indent + hang),
                break_long_words=False,
                break_on_hyphens=False,
            )
            + "\n"
        )

    # -------------------------------------------------------------- the steps
    def steps(self) -> list[tuple[str, Callable[[], bool]]]:
        return [
            ("A robot gets a token by client credentials and calls the API", self.robot),
            ("The same token again: answered from the middleware's cache", self.again),
            ("An expired token (signed by the provider, expired 10 minutes ago)", self.expired),
            ("A forged token: the same claims and kid, signed by another key", self.forged),
            ("A tampered payload: the robot's token with demo-admin added", self.tampered),
            ("No token at all: the request passes anonymously", self.no_token),
            ("Basic credentials: not a bearer token, so not ours: anonymous", self.basic),
        ]

    def play(self) -> int:
        """Run every step; return how many answers were the expected ones."""
        for number, (title, step) in enumerate(self.steps(), 1):
            self.say()
            self.say(f"{number}. {title}", hang=3)
            try:
                ok = step()
            except requests.RequestException as exc:
                self.say(f"FAILED: the request could not be made ({type(exc).__name__})", 3)
                ok = False
            self.results.append(ok)
        return sum(self.results)

    def robot(self) -> bool:
        self.token = self.get_token()
        if self.token is None:
            return False
        return self.call(("Bearer", self.token), Expect(200, ROBOT, ("ROLE_READER",)))

    def again(self) -> bool:
        if self.token is None:
            return self.skipped()
        return self.call(
            ("Bearer", self.token), Expect(200, ROBOT, ("ROLE_READER",), idp_asked=False)
        )

    def expired(self) -> bool:
        claims = {"sub": f"service-account-{ROBOT}", **_robot_claims()}
        token = self.idp.mint(claims, expires_in=-600)
        return self.call(("Bearer", token), Expect(401, message="expired", idp_asked=False))

    def forged(self) -> bool:
        if self.token is None:
            return self.skipped()
        claims = jwt.decode(self.token, options={"verify_signature": False})
        other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        token = jwt.encode(claims, other_key, algorithm="RS256", headers={"kid": self.idp.kid})
        return self.call(("Bearer", token), Expect(401, message="signature", idp_asked=False))

    def tampered(self) -> bool:
        if self.token is None:
            return self.skipped()
        header, payload, signature = self.token.split(".")
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        claims["realm_access"]["roles"].append("demo-admin")
        changed = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
        token = f"{header}.{changed}.{signature}"
        return self.call(("Bearer", token), Expect(401, message="signature", idp_asked=False))

    def no_token(self) -> bool:
        return self.call(None, Expect(200, None))

    def basic(self) -> bool:
        credentials = base64.b64encode(b"alice:wonderland").decode()
        return self.call(("Basic", credentials), Expect(200, None))

    # -------------------------------------------------------------- requests
    def skipped(self) -> bool:
        self.say("SKIPPED: the robot got no token in step 1", 3)
        return False

    def get_token(self) -> str | None:
        basic = base64.b64encode(f"{ROBOT}:{self.secret}".encode()).decode()
        self.say(f"POST /token at the identity provider (client {ROBOT})", 3)
        self.say(f"Authorization: {shown('Basic', basic)}", 4)
        self.say("grant_type=client_credentials", 4)
        response = self.session.post(
            self.idp.token_endpoint,
            headers={"Authorization": f"Basic {basic}"},
            data={"grant_type": "client_credentials"},
            timeout=10,
        )
        body = response.json()
        token = body.get("access_token") if response.status_code == 200 else None
        if not isinstance(token, str):
            self.say(f"<- {response.status_code}: {json.dumps(body)}", 3)
            self.say("FAILED: expected 200 with an access_token", 3)
            return None
        self.say(
            f"<- {response.status_code} {response.reason}: {body.get('token_type')} access_token "
            f"<sha256 {fingerprint(token)}...>, expires_in {body.get('expires_in')}",
            3,
        )
        return token

    def call(self, authorization: tuple[str, str] | None, expect: Expect) -> bool:
        """GET the API with this Authorization (scheme, credentials); print and judge it."""
        headers = {}
        self.say(f"GET {API_PATH}", 3)
        if authorization is None:
            self.say("(no Authorization header)", 4)
        else:
            scheme, credentials = authorization
            headers["Authorization"] = f"{scheme} {credentials}"
            self.say(f"Authorization: {shown(scheme, credentials)}", 4)
        before = self.idp.requests_by_path
        started = time.perf_counter()
        response = self.session.get(self.api_url + API_PATH, headers=headers, timeout=10)
        elapsed = (time.perf_counter() - started) * 1000
        asked = sorted((self.idp.requests_by_path - before).elements())
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        idp = f"IdP asked: GET {', GET '.join(asked)}" if asked else "IdP not asked"
        self.say(f"<- {response.status_code} {response.reason} ({elapsed:.1f} ms; {idp})", 3)
        self.say(body if isinstance(body, str) else json.dumps(body, separators=(",", ":")), 4)
        problems = expect.problems(response.status_code, body, bool(asked))
        if problems:
            self.say(f"UNEXPECTED: {'; '.join(problems)}", 3)
            return False
        self.say(f"ok (expected {expect.describe()})", 3)
        return True

    def curl_lines(self, api_url: str) -> list[str]:
        """Shell lines that get a token and call the API; the token stays in a variable."""
        extract = "'import json,sys; print(json.load(sys.stdin)[\"access_token\"])'"
        mint = curl_token_command(self.idp, ROBOT, self.secret, grant_type="client_credentials")
        return [
            f"TOKEN=$({mint} \\",
            f"    | python3 -c {extract})",
            f'curl -s -H "Authorization: Bearer $TOKEN" {api_url}{API_PATH}',
        ]


def wait_for_interrupt() -> None:
    """Block until Ctrl-C; waiting in slices lets Ctrl-C through where a bare wait() would
    not (Windows)."""
    never = threading.Event()
    while not never.wait(1.0):
        pass


def run_demo(out: TextIO, *, port: int = 0, keep_running: bool = False) -> int:
    """Start, play, stop. 0 when every answer was the expected one, 1 otherwise."""
    secret = secrets.token_urlsafe(16)
    idp = DevIdp(clients={ROBOT: (secret, _robot_claims())}, audience=AUDIENCE, host=HOST)
    try:
        with ExitStack() as stack:
            stack.enter_context(idp)
            config = demo_config(idp)
            try:
                server = stack.enter_context(
                    serving(JwtHeadersMiddleware(sample_app, config), port)
                )
            except OSError as exc:
                print(f"jwt-headers demo: cannot serve on {HOST}:{port}: {exc}", file=sys.stderr)
                return 1
            except SystemExit:  # werkzeug's answer to a port in use, after saying so on stderr
                return 1
            api_url = f"http://{HOST}:{server.server_port}"
            tour = Tour(out, idp, api_url, secret)
            stack.callback(tour.session.close)  # before the servers stop: no idle keep-alives
            _introduce(tour, config, api_url)
            passed = tour.play()
            total = len(tour.results)
            tour.say()
            tour.say(f"{passed} of {total} answers as expected.")
            if keep_running:
                _keep_serving(tour, api_url)
        out.write("Servers stopped.\n")
    except KeyboardInterrupt:
        out.write("\nInterrupted: servers stopped.\n")
        return INTERRUPTED
    return 0 if passed == total else 1


def _introduce(tour: Tour, config: JwtHeadersConfig, api_url: str) -> None:
    tour.say(
        "jwt-headers demo: a development identity provider and a sample API protected by "
        "JwtHeadersMiddleware, both on 127.0.0.1. Tokens are shown only as fingerprints.",
        hang=0,
    )
    tour.say()
    tour.say(f"identity provider  {tour.idp.issuer} (IdP; RS256 key made at start)", 2, 19)
    tour.say(f"sample API         {api_url}{API_PATH}", 2, 19)
    tour.say('answers {"user": ..., "roles": [...]} for the caller', 21)
    tour.say(f"robot client       {ROBOT} (secret made at start, not shown)", 2, 19)
    tour.say(f"its realm roles    {', '.join(ROBOT_ROLES)}", 2, 19)
    tour.say()
    tour.say("Middleware config (a file for `jwt-headers serve --config`; no secrets in it):")
    for line in config_as_toml(config):
        tour.say(line, 2, 4)


def _keep_serving(tour: Tour, api_url: str) -> None:
    tour.say()
    tour.say("Serving until Ctrl-C. Try it (the token stays in a shell variable):")
    for line in tour.curl_lines(api_url):
        tour.out.write(f"  {line}\n")
    tour.out.flush()
    try:
        wait_for_interrupt()
    except KeyboardInterrupt:
        tour.out.write("\n")


def _robot_claims() -> dict[str, Any]:
    return {"preferred_username": ROBOT, "realm_access": {"roles": list(ROBOT_ROLES)}}
