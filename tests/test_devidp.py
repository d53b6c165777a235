"""``jwt-headers devidp`` / ``python -m jwt_headers.devidp``: a stable local provider (issue 17,
item 4).

The main test starts it as a real process on a free port with the sample users file, reads
what it prints, fetches discovery, mints tokens with the printed curl commands (their requests
equivalent, and curl itself when installed) and has the middleware accept them, configured
only with the printed options (discovery, issuer, audience). The others run the command in
this process (its wait for Ctrl-C replaced) or ``DevIdp`` directly: the password grant, an
issuer with a path, and each bad argument or users file refused with the option named and
no server started.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import assert_accepted, call, wait_until_listening

from jwt_headers import JwtHeadersConfig, JwtHeadersMiddleware, cli, devidp
from jwt_headers.devidp import DevIdp

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_USERS = ROOT / "samples" / "devidp-users.toml"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def session() -> requests.Session:
    s = requests.Session()
    s.trust_env = False  # no proxy between the test and 127.0.0.1
    return s


def refuses_connections(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return True
    return False


def printed_value(out: str, label: str) -> str:
    (text,) = [line[11:] for line in out.splitlines() if line[:11].rstrip() == label]
    return text


def curl_commands(out: str) -> list[str]:
    return [line.strip() for line in out.splitlines() if line.startswith("  curl ")]


def mint_as_curl_would(command: str) -> dict[str, Any]:
    """The requests equivalent of a printed ``curl -s -u ID:SECRET --data-urlencode K=V URL``."""
    words = shlex.split(command)
    assert words[:2] == ["curl", "-s"] and words[2] == "-u", command
    client, _, secret = words[3].partition(":")
    form = {}
    rest = words[4:-1]
    for flag, item in zip(rest[::2], rest[1::2], strict=True):
        assert flag == "--data-urlencode", command
        name, _, value = item.partition("=")
        form[name] = value
    answer = session().post(words[-1], data=form, auth=(client, secret), timeout=5)
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


def printed_config(out: str, tmp_path: Path) -> JwtHeadersConfig:
    """The ``[jwt_headers]`` table it prints, read as ``jwt-headers serve --config`` would."""
    lines = out.splitlines()
    start = lines.index("  [jwt_headers]")
    table = []
    for line in lines[start:]:
        if not line.startswith("  "):
            break
        table.append(line[2:])
    path = tmp_path / "auth.toml"
    path.write_text("\n".join(table) + "\n")
    return JwtHeadersConfig.from_file(path)


# ---------------------------------------------------------------------- a real process


def test_devidp_process_serves_discovery_and_its_printed_commands_mint_accepted_tokens(
    tmp_path: Path,
) -> None:
    port = free_port()
    log = tmp_path / "devidp.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "jwt_headers.devidp", "--port", str(port)),
                *("--users", str(SAMPLE_USERS), "--audience", "my-api"),
            ],
            cwd=ROOT,  # this worktree's jwt_headers first on sys.path
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_listening(process, port, 30, log.read_text)
        deadline = time.monotonic() + 10
        while "Serving until Ctrl-C." not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)  # the banner is written right after the bind
        out = log.read_text()
        issuer = f"http://127.0.0.1:{port}"
        assert printed_value(out, "issuer") == issuer
        assert printed_value(out, "audience") == "my-api"
        discovery_url = printed_value(out, "discovery")
        assert discovery_url == f"{issuer}/.well-known/openid-configuration"
        document = session().get(discovery_url, timeout=5).json()
        assert document["issuer"] == issuer
        assert document["jwks_uri"] == f"{issuer}/jwks"
        assert document["token_endpoint"] == printed_value(out, "token")
        assert set(document["grant_types_supported"]) == {"client_credentials", "password"}

        commands = curl_commands(out)
        assert len(commands) == 2, out  # the client, then the first user
        config = printed_config(out, tmp_path)
        assert config.discovery and config.issuer == (issuer,)
        middleware = JwtHeadersMiddleware(_EchoApp(), config)
        robot = mint_as_curl_would(commands[0])["access_token"]
        principal = assert_accepted(
            call(middleware, {"Authorization": f"Bearer {robot}"}), "service-account-report-robot"
        )
        assert list(principal.roles) == ["demo-reader"]
        alice = mint_as_curl_would(commands[1])["access_token"]
        principal = assert_accepted(call(middleware, {"Authorization": f"Bearer {alice}"}), "alice")
        assert sorted(principal.roles) == ["demo-admin", "demo-reader"]

        if shutil.which("curl"):  # the printed text itself, through a shell
            done = subprocess.run(
                ["bash", "-c", commands[1]],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
                env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "no_proxy": "*"},
            )
            token = json.loads(done.stdout)["access_token"]
            assert_accepted(call(middleware, {"Authorization": f"Bearer {token}"}), "alice")
    finally:
        process.send_signal(signal.SIGINT)  # what Ctrl-C does
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    assert process.returncode == 0, log.read_text()
    assert log.read_text().rstrip().endswith("Stopped.")
    assert refuses_connections(port)


class _EchoApp:
    """A WSGI app recording its calls, for ``assert_accepted``."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.calls.append(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    @property
    def called(self) -> bool:
        return bool(self.calls)

    @property
    def environ(self) -> dict[str, Any]:
        return self.calls[-1]


def test_python_m_devidp_refuses_a_bad_argument_naming_the_option() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jwt_headers.devidp", "--host", "0.0.0.0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "--host '0.0.0.0' is not a loopback address" in done.stderr
    assert "--allow-remote" in done.stderr


# ---------------------------------------------------------------------- in this process


def run_devidp(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, list[DevIdp]]:
    """``jwt-headers devidp ARGS``; Ctrl-C arrives once it is serving. Exit code, output,
    and the providers it served (checked while serving by ``while_serving``)."""
    served: list[DevIdp] = []
    start = DevIdp.start

    def recording_start(self: DevIdp) -> DevIdp:
        served.append(self)
        return start(self)

    def interrupt() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(DevIdp, "start", recording_start)
    monkeypatch.setattr(devidp, "wait_for_interrupt", interrupt)
    code = cli.main(["devidp", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err, served


def test_devidp_defaults_to_a_stable_loopback_port_and_the_issuer_on_it() -> None:
    args = cli.build_parser().parse_args(["devidp"])
    assert args.port == devidp.DEFAULT_PORT == 8700
    assert args.host == "127.0.0.1" and not args.allow_remote
    idp, client, _secret = devidp.build(args)
    assert idp.host == "127.0.0.1" and idp.port == 8700
    assert idp.audience == "dev-api" and client == "dev-client"


def test_jwt_headers_devidp_prints_and_stops_on_ctrl_c(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    code, out, served = run_devidp(
        monkeypatch, capsys, "--port", str(port), "--client", "ci", "--secret", "ci-secret"
    )
    assert code == 0, out
    assert printed_value(out, "issuer") == f"http://127.0.0.1:{port}"
    assert printed_value(out, "clients") == "ci (roles: -)"
    assert printed_value(out, "users") == "(none: add some with --users FILE)"
    assert curl_commands(out) == [
        "curl -s -u ci:ci-secret --data-urlencode grant_type=client_credentials "
        f"http://127.0.0.1:{port}/token"
    ]
    assert out.rstrip().endswith("Stopped.")
    assert [idp.port for idp in served] == [port]
    assert refuses_connections(port)


def test_a_generated_secret_is_printed_so_the_command_works(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, served = run_devidp(monkeypatch, capsys, "--port", "0")
    assert code == 0
    (idp,) = served
    secret = idp.clients["dev-client"][0]
    assert len(secret) >= 20
    assert f"-u dev-client:{secret} " in curl_commands(out)[0]


def test_a_users_file_in_json_gives_the_same_users(tmp_path: Path) -> None:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the same parser, from the tomli dependency
        import tomli as tomllib

    data = tomllib.loads(SAMPLE_USERS.read_text())
    path = tmp_path / "users.json"
    path.write_text(json.dumps(data))
    assert devidp.load_users(str(path)) == devidp.load_users(str(SAMPLE_USERS))
    users, clients = devidp.load_users(str(path))
    assert users["alice"] == (
        "alice-dev-password",
        {
            "realm_access": {"roles": ["demo-admin", "demo-reader"]},
            "email": "alice@example.test",
            "name": "Alice Example",
        },
    )
    assert clients["report-robot"][0] == "report-robot-dev-secret"


# ---------------------------------------------------------------------- DevIdp: new grants

USERS = {"alice": ("pw-alice", {"realm_access": {"roles": ["admin"]}, "email": "a@x.test"})}
CLIENTS = {"app": ("app-secret", {})}


@pytest.fixture
def provider() -> Any:
    with DevIdp(clients=CLIENTS, users=USERS, audience="api") as running:
        yield running


def password_grant(idp: DevIdp, **form: str) -> requests.Response:
    data = {"grant_type": "password", "username": "alice", "password": "pw-alice", **form}
    return session().post(idp.token_endpoint, data=data, auth=("app", "app-secret"), timeout=5)


def test_password_grant_gives_the_users_token(provider: DevIdp) -> None:
    answer = password_grant(provider)
    assert answer.status_code == 200, answer.text
    token = answer.json()["access_token"]
    middleware = JwtHeadersMiddleware(
        _EchoApp(),
        user_name_header="Authorization",
        user_name_format="jwt",
        user_name_json_path="preferred_username",
        roles_source="jwt",
        roles_json_path="realm_access.roles",
        validate_token=True,
        jwks_uri=provider.jwks_uri,
        validate_issuer=True,
        issuer=provider.issuer,
        validate_audience=True,
        audience="api",
    )
    principal = assert_accepted(call(middleware, {"Authorization": f"Bearer {token}"}), "alice")
    assert list(principal.roles) == ["admin"]


@pytest.mark.parametrize(
    ("form", "auth"),
    [
        pytest.param({"password": "wrong"}, ("app", "app-secret"), id="wrong-password"),
        pytest.param({"password": ""}, ("app", "app-secret"), id="empty-password"),
        pytest.param({"username": "mallory"}, ("app", "app-secret"), id="unknown-user"),
    ],
)
def test_password_grant_refuses_bad_user_credentials(
    provider: DevIdp, form: dict[str, str], auth: tuple[str, str]
) -> None:
    data = {"grant_type": "password", "username": "alice", "password": "pw-alice", **form}
    answer = session().post(provider.token_endpoint, data=data, auth=auth, timeout=5)
    assert answer.status_code == 400
    assert answer.json()["error"] == "invalid_grant"
    assert "access_token" not in answer.text


def test_password_grant_authenticates_the_client_first(provider: DevIdp) -> None:
    data = {"grant_type": "password", "username": "alice", "password": "pw-alice"}
    answer = session().post(provider.token_endpoint, data=data, auth=("app", "nope"), timeout=5)
    assert answer.status_code == 401
    assert answer.json()["error"] == "invalid_client"


def test_an_issuer_with_a_path_is_served_there_and_found_by_discovery() -> None:
    port = free_port()
    issuer = f"http://127.0.0.1:{port}/realms/dev"
    with DevIdp(clients=CLIENTS, users=USERS, port=port, issuer=issuer) as idp:
        assert idp.discovery_url == f"{issuer}/.well-known/openid-configuration"
        document = session().get(idp.discovery_url, timeout=5).json()
        assert document["issuer"] == issuer and document["jwks_uri"] == f"{issuer}/jwks"
        token = password_grant(idp).json()["access_token"]
        middleware = JwtHeadersMiddleware(
            _EchoApp(),
            user_name_header="Authorization",
            user_name_format="jwt",
            user_name_json_path="preferred_username",
            validate_token=True,
            discovery=True,
            issuer=issuer,
            validate_issuer=True,
            validate_userinfo=True,  # /realms/dev/userinfo, found by discovery
        )
        assert_accepted(call(middleware, {"Authorization": f"Bearer {token}"}), "alice")
        assert idp.requests_by_path["/userinfo"] == 1


# ---------------------------------------------------------------------- bad arguments


@pytest.mark.parametrize(
    ("args", "named"),
    [
        pytest.param(["--port", "x"], "--port", id="port-text"),
        pytest.param(["--port", "70000"], "--port", id="port-range"),
        pytest.param(["--token-lifetime", "0"], "--token-lifetime", id="lifetime-zero"),
        pytest.param(["--token-lifetime", "1d"], "--token-lifetime", id="lifetime-text"),
    ],
)
def test_argparse_refuses_bad_values_naming_the_option(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["devidp", *args])
    assert exit_info.value.code == 2
    assert f"argument {named}" in capsys.readouterr().err


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


BAD_ARGUMENTS = [
    pytest.param(["--host", "0.0.0.0"], "--host '0.0.0.0' is not a loopback", id="remote-host"),
    pytest.param(["--host", "192.0.2.1"], "--allow-remote", id="remote-host-fix"),
    pytest.param(["--issuer", "ftp://127.0.0.1"], "--issuer 'ftp://127.0.0.1'", id="scheme"),
    pytest.param(["--issuer", "http://127.0.0.1/?a=b"], "without query", id="issuer-query"),
    pytest.param(["--issuer", "127.0.0.1:8700"], "--issuer", id="issuer-not-url"),
    pytest.param(["--audience", ""], "--audience must not be empty", id="audience"),
    pytest.param(["--client", " "], "--client must not be empty", id="client"),
    pytest.param(["--secret", ""], "--secret must not be empty", id="secret"),
    pytest.param(["--users", "no-such-file.toml"], "--users 'no-such-file.toml'", id="missing"),
]
BAD_FILES = [
    pytest.param("u.toml", "[users.alice\n", "not valid TOML", id="toml"),
    pytest.param("u.json", "{", "not valid JSON", id="json"),
    pytest.param("u.json", "[]", "must hold a table", id="not-a-table"),
    pytest.param("u.toml", "[people.alice]\n", "unknown top-level key 'people'", id="top-key"),
    pytest.param("u.toml", "users = 3\n", "'users' must be a table", id="users-not-table"),
    pytest.param("u.toml", "[users.alice]\nroles = []\n", "users.alice: 'password'", id="no-pw"),
    pytest.param(
        "u.toml", '[users.alice]\npassword = "p1-x"\nrole = []\n', "unknown key 'role'", id="key"
    ),
    pytest.param(
        "u.toml",
        '[users.alice]\npassword = "p1-x"\nroles = "admin"\n',
        "users.alice: 'roles' must be a list",
        id="roles-string",
    ),
    pytest.param(
        "u.toml",
        '[users.alice]\npassword = "p1-x"\nclaims = { born = 1990-01-01 }\n',
        "a TOML date is not one",
        id="date-claim",
    ),
    pytest.param("u.toml", "[clients.robot]\nroles = []\n", "clients.robot: 'secret'", id="no-sec"),
]


@pytest.mark.parametrize(("args", "fragment"), BAD_ARGUMENTS)
def test_bad_arguments_are_refused_naming_the_option_and_nothing_is_served(
    args: list[str],
    fragment: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, served = run_devidp(monkeypatch, capsys, "--port", "0", *args)
    assert code == 2
    assert out.startswith("jwt-headers: ") and fragment in out, out
    assert served == []


@pytest.mark.parametrize(("name", "text", "fragment"), BAD_FILES)
def test_bad_users_files_are_refused_naming_file_and_entry_never_a_password(
    name: str,
    text: str,
    fragment: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = write(tmp_path, name, text)
    code, out, served = run_devidp(monkeypatch, capsys, "--port", "0", "--users", path)
    assert code == 2
    assert f"--users {path!r}" in out and fragment in out, out
    assert "p1-x" not in out
    assert served == []


def test_a_port_in_use_is_refused_naming_port(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, out, _served = run_devidp(monkeypatch, capsys, "--port", str(port))
    assert code == 2
    assert f"--port {port}: cannot listen on 127.0.0.1:{port}" in out
    assert "choose another port with --port" in out


def test_allow_remote_lets_another_host_through_the_check() -> None:
    """The control's other side: --allow-remote is what the refusal's fix says it is."""
    args = cli.build_parser().parse_args(["devidp", "--host", "0.0.0.0", "--allow-remote"])
    idp, _client, _secret = devidp.build(args)
    assert idp.host == "0.0.0.0"
