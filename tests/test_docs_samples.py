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
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


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
    text = (SAMPLES / "browsers_and_robots.toml").read_text(encoding="utf-8")
    for old, new in (
        ("https://idp.example/realms/r/protocol/openid-connect/certs", devidp.jwks_uri),
        ("https://idp.example/realms/r/protocol/openid-connect/userinfo", devidp.userinfo_endpoint),
        ("https://idp.example/realms/r", devidp.issuer),
    ):
        text = fill(text, f'"{old}"', f'"{new}"', 1)
    toml = tmp_path / "browsers_and_robots.toml"
    toml.write_text(text, encoding="utf-8")

    command = example("samples/README.rst", "flask_app:from_file('browsers_and_robots.toml')")
    port = free_port()
    command = fill(command, "--bind 0.0.0.0:8000", SERVED_HERE.format(port=port), 1)
    command = fill(command, "'browsers_and_robots.toml'", repr(str(toml)), 1).strip()
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
        text = (SAMPLES / "two_providers.toml").read_text(encoding="utf-8")
        for old, new in (
            ("https://idp.example/realms/r", realm.issuer),
            ("https://login.partner.example/.well-known/jwks.json", partner.jwks_uri),
            ("https://login.partner.example", partner.issuer),
        ):
            text = fill(text, f'"{old}"', f'"{new}"', 1)
        toml = tmp_path / "two_providers.toml"
        toml.write_text(text, encoding="utf-8")

        command = example("samples/README.rst", "flask_app:from_file('two_providers.toml')")
        port = free_port()
        command = fill(command, "--bind 127.0.0.1:8001", SERVED_HERE.format(port=port), 1)
        command = fill(command, "'two_providers.toml'", repr(str(toml)), 1).strip()
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
