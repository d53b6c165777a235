"""Every example of samples/README.rst, run as written (issue 17 item 5, "docs that run").

Each test takes its example's text with ``example()`` and runs it; the only changes are fills
made with ``fill()`` (which fails when the placeholder is gone): a free port instead of 8000 or
8001, the fake providers' URLs instead of ``idp.example``, a secret instead of ``...``.

A shell example runs in ``bash`` (``set -euo pipefail``) from the repository root, with this
tree's ``jwt_headers`` first on ``PYTHONPATH`` and this interpreter's directory first on
``PATH`` (so ``python`` and ``gunicorn`` are the test's), no ``JWT_HEADERS_*``/``DJANGO_*`` of
the test's own environment, and no proxy for 127.0.0.1. The lines before the ``gunicorn``
command run first, as in one terminal: the variables they export are carried on to what
follows. The ``gunicorn`` command is started with ``exec`` (its PID is the server's), polled
with ``wait_until_listening`` and stopped by that PID; each ``curl`` after it runs on its own
and its output is compared with the ``# comment`` the docs show for it. Two fills on every
gunicorn command, explained once here:

- ``--bind 127.0.0.1:<free port>``: ``gunicorn.conf.py`` binds ``127.0.0.1:8000`` (a
  ``--bind`` on the command line wins over the config file), and another test or server may
  hold 8000; a sample that binds ``0.0.0.0`` is bound to loopback here, as a test must;
- ``--no-control-socket``: gunicorn >= 25.1 would open a control socket under
  ``~/.gunicorn/`` (the README's gunicorn section says so; tests/test_readme.py does the same).

One server per example, shared by its assertions; nothing contacts an address but 127.0.0.1.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import runpy
import shlex
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import idp
import pytest
from conftest import (
    RecordingApp,
    assert_accepted,
    assert_invalid_token,
    call,
    stop_process,
    wait_until_listening,
)
from docs_examples import example, fill
from idp import USER_NAME, IdpServer, make_key, mint
from test_readme import free_port
from test_sample_django import read_env_file

from jwt_headers import JwtHeadersConfig, JwtHeadersMiddleware
from jwt_headers.devidp import DevIdp

idp_server = idp.idp_server  # the pytest fixture, bound here so pytest finds it

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
LOOPBACK = "127.0.0.1"
OTHER_PEER = "127.0.0.2"  # reaches the servers, but is not Apache's address
START_TIMEOUT = 20.0
COMMAND_TIMEOUT = 120.0
# The gunicorn fills (see the module docstring).
SERVED_HERE = "--bind 127.0.0.1:{port} --no-control-socket"
BROWSER = "OIDC-Id-Token-Payload"  # the dashed name Apache sends (see gunicorn.conf.py)
ALICE_PAYLOAD = json.dumps(
    {"preferred_username": "alice", "realm_access": {"roles": ["GeoserverAdministrator"]}}
)
ALICE = {"user": "alice", "roles": ["ROLE_ADMINISTRATOR"], "anonymous": False}
ANONYMOUS = {"user": None, "roles": [], "anonymous": True}


# --------------------------------------------------------------------------- running shell


def shell_env(**extra: str) -> dict[str, str]:
    """The environment of a shell example (see the module docstring)."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JWT_HEADERS_", "DJANGO_", "ROBOT_"))
    }
    env["PATH"] = os.pathsep.join(filter(None, [str(Path(sys.executable).parent), env["PATH"]]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(NO_PROXY="127.0.0.1,localhost", no_proxy="127.0.0.1,localhost")
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def bash(script: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    """``script`` in bash from the repository root, stdin not a terminal."""
    done = subprocess.run(
        ["bash", "-c", f"set -euo pipefail\n{script}"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    if check:
        assert done.returncode == 0, (
            f"{script}\n--- stdout:\n{done.stdout}\n--- stderr:\n{done.stderr}"
        )
    return done


def bash_keeping_env(script: str, env: dict[str, str], tmp: Path) -> tuple[str, dict[str, str]]:
    """Run ``script``; its output, and the environment it leaves exported (what the next
    command typed in the same terminal would get)."""
    dump = tmp / "exported.env"
    done = bash(f"{script}\nenv -0 > {shlex.quote(str(dump))}", env)
    pairs = [entry.split("=", 1) for entry in dump.read_text(encoding="utf-8").split("\0") if entry]
    return done.stdout + done.stderr, {name: value for name, value in pairs}


def logical_lines(text: str) -> list[str]:
    """The lines of a shell example, a line ending in ``\\`` joined with the next (as typed)."""
    lines: list[str] = []
    pending = ""
    for line in text.splitlines():
        pending += line
        if line.endswith("\\"):
            pending += "\n"
            continue
        if pending.strip():
            lines.append(pending)
        pending = ""
    return lines


def split_at_server(text: str) -> tuple[str, str, list[str]]:
    """``(commands before, the gunicorn command, lines after)`` of a shell example."""
    lines = logical_lines(text)
    (index,) = [i for i, line in enumerate(lines) if line.startswith("gunicorn ")]
    return "\n".join(lines[:index]), lines[index], lines[index + 1 :]


def with_shown_output(lines: list[str]) -> list[tuple[str, str]]:
    """Each command with the output the docs show for it: the ``# `` comment on its own line
    after it, or at the end of the line itself."""
    found: list[tuple[str, str]] = []
    for line in lines:
        if line.startswith("# "):
            command, shown = found.pop()
            assert not shown, f"two outputs shown for {command!r}"
            found.append((command, line[2:]))
        else:
            command, _, shown = line.partition("  # ")
            found.append((command.strip(), shown.strip()))
    return found


@dataclass
class Server:
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get(
        self, headers: dict[str, str] | None = None, source: str = LOOPBACK, path: str = "/whoami"
    ) -> tuple[int, Any]:
        """GET ``path`` from ``source`` (header names sent exactly as given); status and JSON."""
        conn = http.client.HTTPConnection(
            LOOPBACK, self.port, timeout=10, source_address=(source, 0)
        )
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            body = response.read()
        finally:
            conn.close()
        try:
            return response.status, json.loads(body)
        except ValueError:
            pytest.fail(f"not JSON ({response.status}): {body[:300]!r}\n--- log:\n{self.log()}")

    def curl(self, command: str, env: dict[str, str]) -> str:
        """What a curl line of the docs prints, run in bash; fails with the server's log."""
        done = bash(command, env, check=False)
        assert done.returncode == 0, f"{command}: exit {done.returncode}\n--- log:\n{self.log()}"
        return done.stdout

    def bearer(self, token: str, source: str = OTHER_PEER) -> tuple[int, Any]:
        return self.get({"Authorization": f"Bearer {token}"}, source)


@contextlib.contextmanager
def serve(command: str, port: int, env: dict[str, str], log_path: Path) -> Iterator[Server]:
    """``exec command`` in bash from the repository root until the block ends; stopped by its
    PID (SIGTERM: gunicorn stops its workers and exits)."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            ["bash", "-c", f"exec {command}"],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
    server = Server(port, log_path)
    try:
        wait_until_listening(process, port, START_TIMEOUT, server.log)
        yield server
    finally:
        stop_process(process)


def sample_toml(name: str, urls: dict[str, str], tmp_path: Path) -> Path:
    """A tmp copy of ``samples/<name>`` with each quoted provider URL swapped (each must be
    there exactly once, so a changed sample fails here rather than silently)."""
    text = (SAMPLES / name).read_text(encoding="utf-8")
    for old, new in urls.items():
        text = fill(text, f'"{old}"', f'"{new}"', 1)
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def toml_command(command: str, bind: str, toml: Path) -> tuple[str, int]:
    """A ``flask_app:from_file('<name>')`` gunicorn command of the docs, with its ``bind``
    replaced by a free loopback port and the file by ``toml``; the command and the port."""
    port = free_port()
    command = fill(command, bind, SERVED_HERE.format(port=port), 1)
    return fill(command, repr(toml.name), repr(str(toml)), 1).strip(), port


def logged(server: Server, reason: str) -> int:
    """How many log lines of the server start with a refusal's reason code. The worker logs a
    refusal before it answers, so the line is there when the answer is."""
    return len(re.findall(rf"jwt_headers: {re.escape(reason)}\b", server.log()))


# --------------------------------------------------------------------------- the Flask app


def test_flask_app_under_gunicorn_as_written(tmp_path):
    """``flask_app.py``'s example: ``flask.env`` loaded by bash, gunicorn with the sample's
    config, and curl printing exactly the anonymous answer shown. Then what the ``flask.env``
    section promises of the same server: Apache's JSON header from 127.0.0.1 is alice with her
    role renamed, the same header from another peer is dropped and logged
    (``untrusted_source_header``), and ``/health`` answers anyone."""
    text = example(
        "samples/README.rst", "gunicorn -c samples/gunicorn.conf.py --chdir samples flask_app:app"
    )
    setup, server_command, after = split_at_server(text)
    assert setup == "set -a; . samples/flask.env; set +a"
    _, env = bash_keeping_env(setup, shell_env(), tmp_path)
    assert env["JWT_HEADERS_TRUSTED_PROXIES"] == "127.0.0.1"  # exported by set -a
    port = free_port()
    config = "-c samples/gunicorn.conf.py"
    command = fill(server_command, config, f"{config} {SERVED_HERE.format(port=port)}", 1)
    with serve(command, port, env, tmp_path / "gunicorn.log") as server:
        ((curl, shown),) = with_shown_output(after)
        curl = fill(curl, "http://127.0.0.1:8000/", f"http://127.0.0.1:{port}/", 1)
        printed = server.curl(curl, env)
        assert printed.strip() == shown
        assert json.loads(shown) == ANONYMOUS

        assert server.get({BROWSER: ALICE_PAYLOAD}) == (200, ALICE)
        assert server.get({BROWSER: ALICE_PAYLOAD}, source=OTHER_PEER) == (200, ANONYMOUS)
        assert "untrusted_source_header" in server.log()
        assert server.get(path="/health", source=OTHER_PEER) == (200, {"status": "ok"})


def test_access_token_env_lines_load_and_check_the_token(idp_server, tmp_path):
    """The ``flask.env`` variant reading the access token: its lines, over ``flask.env``, go
    through ``JwtHeadersConfig.from_env`` (the provider's URLs and the ``<the aud ...>``
    placeholder filled with the fake IdP's). A token from that IdP in ``OIDC-Access-Token``
    is accepted with its roles renamed by flask.env's role_converter; one for another
    audience (``wrong_audience``) or signed by another key is refused, the app not called."""
    text = example("samples/README.rst", "JWT_HEADERS_USER_NAME_HEADER=OIDC_access_token")
    text = fill(
        text,
        "https://idp.example/realms/r/protocol/openid-connect/certs",
        idp_server.jwks_uri,
        1,
    )
    text = fill(text, "https://idp.example/realms/r", idp_server.issuer, 1)
    text = fill(text, "<the aud your provider puts in access tokens for this app>", idp.AUDIENCE, 1)
    lines = tmp_path / "access-token.env"
    lines.write_text(text, encoding="utf-8")
    environ = {**read_env_file(SAMPLES / "flask.env"), **read_env_file(lines)}
    config = JwtHeadersConfig.from_env(environ=environ)
    assert (config.user_name_header, config.user_name_format) == ("OIDC_access_token", "jwt")
    assert config.validate_token and config.validate_issuer and config.validate_audience

    def send(token: str) -> Any:
        middleware = JwtHeadersMiddleware(RecordingApp(), config)
        return call(middleware, {"OIDC-Access-Token": token})

    roles = {"realm_access": {"roles": ["GeoserverAdministrator", "viewer"]}}
    principal = assert_accepted(send(mint(roles, idp_server.key)))
    assert list(principal.roles) == ["ROLE_ADMINISTRATOR", "viewer"]
    assert_invalid_token(
        send(mint({**roles, "aud": "another-api"}, idp_server.key)), "wrong_audience"
    )
    stranger = make_key("RS256", kid=idp_server.key.kid)
    assert_invalid_token(send(mint(roles, stranger)), "bad_signature")


# --------------------------------------------------------------------------- TOML samples


@pytest.fixture(scope="module")
def devidp() -> Iterator[DevIdp]:
    """A real provider on loopback for the robot's samples: the audience robot.env and
    browsers_and_robots.toml check, and the client ``my-robot`` of the robot_client example."""
    robot = ("robot-secret-for-tests", {"realm_access": {"roles": ["GeoserverAdministrator"]}})
    with DevIdp(clients={"my-robot": robot}, audience="jwt-headers-api") as provider:
        yield provider


def test_browsers_and_robots_toml_under_gunicorn_as_written(devidp, tmp_path):
    """``browsers_and_robots.toml``'s gunicorn command, run as written from the repository root;
    only the toml is a tmp copy with the provider's URLs swapped for a DevIdp on loopback
    (its audience is the file's). Apache's JSON header from 127.0.0.1 is believed, and from
    another peer dropped; a robot's token is believed from any peer; a header and a token
    naming different users are refused (``401``, ``conflicting_credentials``); a token for
    another audience is refused."""
    toml = sample_toml(
        "browsers_and_robots.toml",
        {
            "https://idp.example/realms/r/protocol/openid-connect/certs": devidp.jwks_uri,
            "https://idp.example/realms/r/protocol/openid-connect/userinfo": (
                devidp.userinfo_endpoint
            ),
            "https://idp.example/realms/r": devidp.issuer,
        },
        tmp_path,
    )
    command = example("samples/README.rst", "flask_app:from_file('browsers_and_robots.toml')")
    command, port = toml_command(command, "--bind 0.0.0.0:8000", toml)
    with serve(command, port, shell_env(), tmp_path / "gunicorn.log") as server:
        assert server.get({BROWSER: ALICE_PAYLOAD}) == (200, ALICE)
        assert server.get({BROWSER: ALICE_PAYLOAD}, source=OTHER_PEER) == (200, ANONYMOUS)
        assert "untrusted_source_header" in server.log()

        robot = {"sub": "robot-1", "preferred_username": "robot-1", "realm_access": {"roles": []}}
        token = devidp.mint(robot)
        expected = {"user": "robot-1", "roles": [], "anonymous": False}
        userinfo = devidp.requests_by_path["/userinfo"]
        assert server.bearer(token) == (200, expected)
        assert devidp.requests_by_path["/userinfo"] == userinfo + 1  # validate_userinfo

        both = {BROWSER: ALICE_PAYLOAD, "Authorization": f"Bearer {token}"}
        status, body = server.get(both)
        assert status == 401
        assert (
            body["error"]["message"]
            == "OIDC_id_token_payload and Authorization name different users"
        )
        assert logged(server, "conflicting_credentials") == 1

        status, body = server.bearer(devidp.mint({**robot, "aud": "another-api"}))
        assert status == 401 and body["error"]["code"] == "INVALID_TOKEN"
        assert logged(server, "wrong_audience") == 1


def test_two_providers_toml_under_gunicorn_as_written(tmp_path):
    """``two_providers.toml``'s gunicorn command, run as written; the toml a tmp copy with the
    providers swapped for two fake IdPs on loopback, as tests/test_providers.py does (your
    realm found by discovery, the partner's ES256 key set given). Each provider's token is
    accepted; the partner's token for the realm's audience, and a token from an issuer neither
    has (``unknown_issuer``, no request to either provider) are refused."""
    with IdpServer() as realm, IdpServer(keys=[make_key("ES256")]) as partner:
        realm.issuer = realm.url("/realms/r")
        partner.issuer = partner.url("/partner")
        toml = sample_toml(
            "two_providers.toml",
            {
                "https://idp.example/realms/r": realm.issuer,
                "https://login.partner.example/.well-known/jwks.json": partner.jwks_uri,
                "https://login.partner.example": partner.issuer,
            },
            tmp_path,
        )
        command = example("samples/README.rst", "flask_app:from_file('two_providers.toml')")
        command, port = toml_command(command, "--bind 127.0.0.1:8001", toml)
        with serve(command, port, shell_env(), tmp_path / "gunicorn.log") as server:
            # jwks_prefetch: each worker fetches both key sets as it starts. Wait for them all,
            # so that no request counted below is a late worker's prefetch.
            workers = runpy.run_path(str(SAMPLES / "gunicorn.conf.py"))["workers"]
            assert realm.wait_for("/jwks", workers, START_TIMEOUT), server.log()
            assert partner.wait_for("/jwks", workers, START_TIMEOUT), server.log()
            own = mint({"iss": realm.issuer, "aud": "jwt-headers-api"}, realm.key)
            status, body = server.bearer(own)
            assert (status, body["user"]) == (200, USER_NAME)
            ours = {"iss": partner.issuer, "aud": "partner-api", "preferred_username": "p"}
            status, body = server.bearer(mint(ours, partner.key))
            assert (status, body["user"]) == (200, "p")
            wrong = {"iss": partner.issuer, "aud": "jwt-headers-api"}
            assert server.bearer(mint(wrong, partner.key))[0] == 401
            assert logged(server, "wrong_audience") == 1

            before = (len(realm.requests), len(partner.requests))
            stranger = {"iss": "https://elsewhere.example", "aud": "jwt-headers-api"}
            status, body = server.bearer(mint(stranger, realm.key))
            assert status == 401 and body["error"]["code"] == "INVALID_TOKEN"
            assert logged(server, "unknown_issuer") == 1
            assert (len(realm.requests), len(partner.requests)) == before


# --------------------------------------------------------------------------- Apache


def test_apache_install_names_what_the_e2e_test_runs():
    """The Apache install on Debian: it needs root, apt-get and systemctl on the system, so it
    is checked, not run. The packages are the ones ``.ci/e2e-setup.sh`` installs for the
    end-to-end test; each ``a2enmod`` module is a Debian ``mods-available`` entry (Apache is
    there: the end-to-end test needs it) loading exactly the module file that
    tests/test_e2e_apache.py loads, and together with the modules Debian enables by default they
    are all it loads; the file copied is the sample that test runs, and the site enabled and
    the file chmod'ed are the copy."""
    from test_e2e_apache import APACHE_MODULE_FILES, APACHE_MODULES

    lines = example("samples/README.rst", "apt-get install apache2 libapache2-mod-auth-openidc")
    install, enable, copy, chmod, site = (
        line.split("#")[0].split() for line in logical_lines(lines)
    )

    assert install[:2] == ["apt-get", "install"]
    setup = (ROOT / ".ci" / "e2e-setup.sh").read_text(encoding="utf-8")
    assert set(install[2:]) == set(re.findall(r"packages\+=\(([\w.-]+)\)", setup))

    assert enable[0] == "a2enmod"
    available = Path("/etc/apache2/mods-available")
    assert available.is_dir(), "Debian's apache2 is not installed: bash .ci/e2e-setup.sh"
    loaded = {}
    for module in enable[1:]:
        load = available / f"{module}.load"
        assert load.is_file(), f"a2enmod {module}: no {load}"
        ((name, path),) = re.findall(r"^LoadModule (\w+) (\S+)$", load.read_text(), re.M)
        loaded[name] = path
    # Enabled by the apache2 package itself (a2query -m lists them after a plain install).
    default = {"mpm_event_module", "authn_core_module", "authz_core_module", "authz_user_module"}
    enabled = Path("/etc/apache2/mods-enabled")
    for name in default:
        assert (enabled / f"{name.removesuffix('_module')}.load").exists(), name
    assert set(loaded) | default == set(APACHE_MODULE_FILES)
    for name, path in loaded.items():
        assert path == str(APACHE_MODULES / APACHE_MODULE_FILES[name])

    assert copy == ["cp", "samples/apache/jwt-headers.conf", "/etc/apache2/sites-available/"]
    assert (ROOT / copy[1]).is_file()
    assert '(SAMPLES / "apache" / "jwt-headers.conf")' in (
        ROOT / "tests" / "test_e2e_apache.py"
    ).read_text(encoding="utf-8")
    assert chmod == ["chmod", "600", copy[2] + Path(copy[1]).name]
    assert site == ["a2ensite", Path(copy[1]).stem, "&&", "systemctl", "reload", "apache2"]


# --------------------------------------------------------------------------- the robot


def test_robot_client_as_written_against_the_robot_api(devidp, tmp_path):
    """``robot_client.py``'s example, run as written in bash with the secret, the token URL
    (a DevIdp on loopback, client ``my-robot``) and the API's port filled; the API is the
    Flask sample with ``robot.env`` (its provider's URLs swapped for the DevIdp's) under
    gunicorn. It prints ``status: 200`` and the JSON line shown (roles elided there as ``...``),
    never the token; exit status 1 for an answer that is not 2xx, 2 when no token was had."""
    env = read_env_file(SAMPLES / "robot.env")
    for name, value in (
        ("JWT_HEADERS_JWKS_URI", devidp.jwks_uri),
        ("JWT_HEADERS_ISSUER", devidp.issuer),
        ("JWT_HEADERS_USERINFO_ENDPOINT", devidp.userinfo_endpoint),
    ):
        assert env[name].startswith("https://idp.example/"), name
        env[name] = value
    assert env["JWT_HEADERS_AUDIENCE"] == devidp.audience
    port = free_port()
    api = f"gunicorn -c samples/gunicorn.conf.py {SERVED_HERE.format(port=port)} --chdir samples flask_app:app"
    with serve(api, port, shell_env(**env), tmp_path / "gunicorn.log"):
        text = example("samples/README.rst", "python samples/robot_client.py")
        secret, _ = devidp.clients["my-robot"]
        text = fill(
            text, "export ROBOT_CLIENT_SECRET=...", f"export ROBOT_CLIENT_SECRET={secret}", 1
        )
        text = fill(
            text,
            "https://idp.example/realms/r/protocol/openid-connect/token",
            devidp.token_endpoint,
            1,
        )
        text = fill(text, "http://127.0.0.1:8001/whoami", f"http://127.0.0.1:{port}/whoami", 1)
        lines = logical_lines(text)
        shown = [line[2:] for line in lines if line.startswith("# ")]
        script = "\n".join(line for line in lines if not line.startswith("# "))
        userinfo = devidp.requests_by_path["/userinfo"]
        done = bash(script, shell_env())
        # Only the roles are elided in the docs.
        expected = fill("\n".join(shown), "[...]", '["ROLE_ADMINISTRATOR"]', 1)
        assert done.stdout == expected + "\n"
        assert devidp.requests_by_path["/userinfo"] == userinfo + 1  # robot.env asked it
        assert secret not in done.stdout + done.stderr and "eyJ" not in done.stdout + done.stderr

        refused = bash(fill(script, "/whoami", "/no-such-page", 1), shell_env(), check=False)
        assert (refused.returncode, refused.stdout.splitlines()[0]) == (1, "status: 404")
        wrong = bash(fill(script, secret, "not-the-secret", 1), shell_env(), check=False)
        assert wrong.returncode == 2 and wrong.stderr.startswith("no token:"), wrong.stderr


# --------------------------------------------------------------------------- Django


def test_django_site_as_written(tmp_path):
    """The Django site's commands, run as written in bash from the repository root with
    ``DJANGO_SQLITE_PATH`` in tmp (the README names the variable). ``createsuperuser`` is
    interactive: without a terminal Django skips it (checked), so it is then run once more
    with ``--noinput`` and ``DJANGO_SUPERUSER_EMAIL``/``PASSWORD``, what a terminal would have
    typed. gunicorn serves the site; each curl prints what its comment shows (JSON-equal):
    alice created staff and superuser from her role, the local superuser's name refused."""
    text = example("samples/README.rst", "python samples/django_site/manage.py migrate")
    setup, server_command, after = split_at_server(text)
    db_path = tmp_path / "db.sqlite3"
    output, env = bash_keeping_env(setup, shell_env(DJANGO_SQLITE_PATH=str(db_path)), tmp_path)
    assert len(env["DJANGO_SECRET_KEY"]) >= 50
    assert "Superuser creation skipped due to not running in a TTY" in output

    (superuser,) = [line for line in logical_lines(setup) if " createsuperuser " in line]
    superuser = fill(superuser, "createsuperuser", "createsuperuser --noinput", 1)
    bash(
        superuser,
        {
            **env,
            "DJANGO_SUPERUSER_EMAIL": "root@localhost",
            "DJANGO_SUPERUSER_PASSWORD": "local-only",
        },
    )
    with contextlib.closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as db:
        rows = db.execute("SELECT username, is_superuser FROM auth_user").fetchall()
    assert rows == [("admin", 1)]

    port = free_port()
    config = "-c samples/gunicorn.conf.py"
    command = fill(server_command, config, f"{config} {SERVED_HERE.format(port=port)}", 1)
    with serve(command, port, env, tmp_path / "gunicorn.log") as server:
        curls = with_shown_output(after)
        assert len(curls) == 2
        for written, shown in curls:
            curl = fill(written, "http://127.0.0.1:8000/", f"http://127.0.0.1:{port}/", 1)
            printed = server.curl(curl, env)
            assert json.loads(printed) == json.loads(shown), server.log()
