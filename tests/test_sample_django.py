"""``samples/django_site`` as deployed: gunicorn with ``samples/gunicorn.conf.py``, configured by
``samples/django.env``, real HTTP, a real sqlite file.

The in-process tests (``test_django.py``) cover the backend and ``PrincipalMiddleware`` case by
case; this module checks that the sample files themselves fit together: the env file's options
reach ``JwtHeadersConfig.from_env()`` in ``settings.py`` (the ``JWT_HEADERS`` setting that
``wsgi.py`` builds the middleware from) and the Django settings, ``migrate`` and
``createsuperuser`` work with the same environment, and what a browser behind Apache gets:

- a JSON header from Apache's address (loopback) creates the Django user and its groups;
- the same session with other roles re-syncs groups and flags;
- the local superuser's name (``JWT_HEADERS_DENIED_USER_NAMES``) is refused with 401, and the
  account is left untouched;
- no header is anonymous, also for a session that was logged in;
- the header from another address is ignored.

And, with ``DJANGO_JWT_MODE=stateless`` and ``samples/robot.env`` (the provider's URLs swapped
for a fake IdP on loopback), what a robot sending ``Authorization: Bearer <JWT>`` gets (issue
17): no ``django_session`` row and no ``Set-Cookie`` ever, ``401`` JSON instead of the login
redirect, and ``roles_required``'s ``401``/``403``.

The database is checked directly with ``sqlite3`` (not through Django: ``test_django.py``
configures Django in this process with other settings). The server runs on a free loopback
port, is polled until it accepts connections (20 s at most) and is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import secrets
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import wait_until_listening
from idp import IdpServer, mint

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
SITE = SAMPLES / "django_site"
ENV_FILE = SAMPLES / "django.env"
ROBOT_ENV_FILE = SAMPLES / "robot.env"
GUNICORN_CONF = SAMPLES / "gunicorn.conf.py"
START_TIMEOUT = 20.0
LOOPBACK = "127.0.0.1"
OTHER_PEER = "127.0.0.2"  # reaches the server, but is not Apache's address
HEADER = "OIDC-Id-Token-Payload"  # the dashed name Apache sends (see gunicorn.conf.py)


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=value`` lines as ``set -a; . file`` and systemd read them (no quotes used)."""
    values = {}
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        assert sep and key == key.strip() and '"' not in value and "'" not in value, line
        values[key] = value
    return values


ENV_VALUES = read_env_file(ENV_FILE)
LOCAL_SUPERUSER = ENV_VALUES["JWT_HEADERS_DENIED_USER_NAMES"].split(",")[0].strip()


def claims(name: str, *roles: str, **extra: Any) -> dict[str, Any]:
    """An ID token payload as mod_auth_openidc passes it (Keycloak's realm roles)."""
    return {"preferred_username": name, "realm_access": {"roles": list(roles)}, **extra}


@dataclass
class Reply:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def session(self) -> str | None:
        """The ``sessionid`` cookie set by this answer, if any."""
        for cookie in self.headers.get_all("Set-Cookie") or []:
            name, _, rest = cookie.partition("=")
            if name.strip() == "sessionid":
                return rest.split(";", 1)[0]
        return None


@dataclass
class Site:
    port: int
    log_path: Path
    db_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def get(
        self,
        payload: dict[str, Any] | None = None,
        *,
        session: str | None = None,
        source: str = LOOPBACK,
        path: str = "/whoami",
        bearer: str | None = None,
    ) -> Reply:
        """GET ``path``, with the JSON header when ``payload`` is given (or ``Authorization:
        Bearer`` when ``bearer`` is), from ``source``."""
        conn = http.client.HTTPConnection(
            LOOPBACK, self.port, timeout=10, source_address=(source, 0)
        )
        try:
            conn.putrequest("GET", path, skip_accept_encoding=True)
            if payload is not None:
                conn.putheader(HEADER, json.dumps(payload))
            if bearer is not None:
                conn.putheader("Authorization", f"Bearer {bearer}")
            if session is not None:
                conn.putheader("Cookie", f"sessionid={session}")
            conn.endheaders()
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        except OSError as exc:
            pytest.fail(f"request to gunicorn failed: {exc!r}\n--- log:\n{self.log()}")
        finally:
            conn.close()

    def whoami(self, payload: dict[str, Any] | None = None, **kwargs: Any) -> tuple[Any, Reply]:
        """The view's JSON; fails unless Django answered 200."""
        reply = self.get(payload, **kwargs)
        assert reply.status == 200, (reply.status, reply.body, self.log())
        return reply.json, reply

    def _query(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        with contextlib.closing(sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)) as db:
            return db.execute(sql, params).fetchall()

    def user(self, username: str) -> dict[str, Any] | None:
        """The ``auth_user`` row, as the database holds it, or ``None``."""
        rows = self._query(
            "SELECT id, is_staff, is_superuser, last_login, email FROM auth_user "
            "WHERE username = ?",
            username,
        )
        assert len(rows) <= 1
        if not rows:
            return None
        user_id, is_staff, is_superuser, last_login, email = rows[0]
        return {
            "id": user_id,
            "is_staff": bool(is_staff),
            "is_superuser": bool(is_superuser),
            "last_login": last_login,
            "email": email,
        }

    def sessions(self) -> int:
        """Rows in ``django_session``."""
        ((count,),) = self._query("SELECT COUNT(*) FROM django_session")
        return int(count)

    def groups(self, username: str) -> list[str]:
        rows = self._query(
            "SELECT g.name FROM auth_group g JOIN auth_user_groups ug ON ug.group_id = g.id "
            "JOIN auth_user u ON u.id = ug.user_id WHERE u.username = ? ORDER BY g.name",
            username,
        )
        return [name for (name,) in rows]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def site_environment(db_path: Path) -> dict[str, str]:
    """This process's environment without any JWT_HEADERS_*/DJANGO_* of its own, plus the
    sample's env file, a fresh secret key and the test's database file."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("JWT_HEADERS_", "DJANGO_"))
    }
    env.update(ENV_VALUES)
    env["DJANGO_SECRET_KEY"] = secrets.token_urlsafe(50)
    env["DJANGO_SQLITE_PATH"] = str(db_path)
    env["PYTHONUNBUFFERED"] = "1"
    # The jwt_headers of this tree, whatever is installed (manage.py and gunicorn run elsewhere).
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def manage(env: dict[str, str], cwd: Path, *args: str) -> None:
    """``python manage.py ARGS`` in a subprocess with the server's environment."""
    done = subprocess.run(
        [sys.executable, str(SITE / "manage.py"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"manage.py {' '.join(args)}:\n{done.stdout}\n{done.stderr}"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    tmp = tmp_path_factory.mktemp("django-site")
    db_path = tmp / "db.sqlite3"
    env = site_environment(db_path)
    yield from run_site(tmp, env)


def run_site(tmp: Path, env: dict[str, str]) -> Iterator[Site]:
    """Migrate, create the local superuser, serve under gunicorn until the generator closes."""
    db_path = Path(env["DJANGO_SQLITE_PATH"])
    manage(env, tmp, "migrate", "--noinput", "-v", "0")
    # The local account that JWT_HEADERS_DENIED_USER_NAMES protects.
    manage(
        env,
        tmp,
        "createsuperuser",
        "--noinput",
        "--username",
        LOCAL_SUPERUSER,
        "--email",
        "root@localhost",
    )
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        str(GUNICORN_CONF),
        "--bind",
        f"{LOOPBACK}:{port}",
        "--no-control-socket",
        "--chdir",
        str(SITE),
        "mysite.wsgi",
    ]
    log_path = tmp / "gunicorn.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command, env=env, stdout=log_file, stderr=subprocess.STDOUT, cwd=tmp
        )
    server = Site(port, log_path, db_path)
    try:
        wait_until_listening(process, port, START_TIMEOUT, server.log)
        yield server
    finally:
        process.terminate()  # SIGTERM to this PID: gunicorn stops its workers and exits
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@pytest.fixture(scope="module")
def robot_idp() -> Iterator[IdpServer]:
    with IdpServer() as server:
        yield server
    assert not server.errors, server.errors


@pytest.fixture(scope="module")
def robot_site(tmp_path_factory: pytest.TempPathFactory, robot_idp: IdpServer) -> Iterator[Site]:
    """The same sample in stateless mode, configured by robot.env (its provider swapped for the
    fake IdP) plus django.env's Django settings."""
    tmp = tmp_path_factory.mktemp("django-robots")
    env = site_environment(tmp / "db.sqlite3")
    env = {key: value for key, value in env.items() if not key.startswith("JWT_HEADERS_")}
    env.update(read_env_file(ROBOT_ENV_FILE))
    env.update(
        DJANGO_JWT_MODE="stateless",
        JWT_HEADERS_JWKS_URI=robot_idp.jwks_uri,
        JWT_HEADERS_ISSUER=robot_idp.issuer,
        JWT_HEADERS_USERINFO_ENDPOINT=robot_idp.userinfo_endpoint,
        JWT_HEADERS_DENIED_USER_NAMES=LOCAL_SUPERUSER,
    )
    yield from run_site(tmp, env)


def robot_token(idp: IdpServer, name: str, *roles: str) -> str:
    audience = read_env_file(ROBOT_ENV_FILE)["JWT_HEADERS_AUDIENCE"]
    claims = {"preferred_username": name, "realm_access": {"roles": list(roles)}, "aud": audience}
    return mint(claims, idp.key)


def test_env_file_holds_no_secret_and_names_the_roles_settings() -> None:
    # The secret key is set apart; the roles settings are read by settings.py (not JWT_HEADERS_*,
    # which from_env would refuse as unknown options).
    assert "DJANGO_SECRET_KEY" not in ENV_VALUES
    assert ENV_VALUES["DJANGO_JWT_STAFF_ROLES"] == "ROLE_ADMINISTRATOR"
    assert ENV_VALUES["DJANGO_JWT_SUPERUSER_ROLES"] == "ROLE_ADMINISTRATOR"
    assert LOCAL_SUPERUSER == "admin"


def test_json_header_from_loopback_creates_the_user_and_syncs_groups(site: Site) -> None:
    assert site.user("alice") is None
    payload = claims(
        "alice", "GeoserverAdministrator", "offline_access", email="alice@example.test"
    )
    seen, reply = site.whoami(payload)

    assert seen == {
        "authenticated": True,
        "username": "alice",
        "groups": ["ROLE_ADMINISTRATOR", "offline_access"],
        "is_staff": True,
        "is_superuser": True,
        "principal": "alice",
        "roles": ["ROLE_ADMINISTRATOR", "offline_access"],  # after the role map
    }
    assert reply.session is not None  # Django logged the user in
    # What the database now holds, not only what the view said.
    alice = site.user("alice")
    assert alice is not None
    assert alice["is_staff"] and alice["is_superuser"]
    assert alice["last_login"] is not None
    assert alice["email"] == "alice@example.test"
    assert site.groups("alice") == ["ROLE_ADMINISTRATOR", "offline_access"]


def test_same_session_with_other_roles_resyncs_groups_and_flags(site: Site) -> None:
    first, reply = site.whoami(claims("bob", "GeoserverAdministrator"))
    assert first["groups"] == ["ROLE_ADMINISTRATOR"]
    assert first["is_staff"] is True
    session = reply.session
    assert session is not None
    bob = site.user("bob")
    assert bob is not None

    # The role was revoked at the provider; the browser keeps its session cookie.
    second, _ = site.whoami(claims("bob", "viewer", "offline_access"), session=session)
    assert second["username"] == "bob"
    assert second["roles"] == ["viewer", "offline_access"]
    assert second["groups"] == ["offline_access", "viewer"]
    assert second["is_staff"] is False
    assert second["is_superuser"] is False
    after = site.user("bob")
    assert after is not None
    assert after["id"] == bob["id"]  # the same account, updated
    assert not after["is_staff"] and not after["is_superuser"]
    assert site.groups("bob") == ["offline_access", "viewer"]


@pytest.mark.parametrize("name", [LOCAL_SUPERUSER, LOCAL_SUPERUSER.upper()])
def test_local_superuser_name_is_refused(site: Site, name: str) -> None:
    before = site.user(LOCAL_SUPERUSER)
    assert before is not None and before["is_superuser"]
    log_before = site.log()

    payload = claims(name, "GeoserverAdministrator")
    reply = site.get(payload)

    assert reply.status == 401, reply.body
    challenge = reply.headers["WWW-Authenticate"]
    assert challenge is not None
    assert challenge.startswith('Bearer error="invalid_token"'), challenge
    assert reply.json["error"]["code"] == "INVALID_TOKEN"
    assert reply.session is None  # Django never ran
    # The local account is exactly as it was: never logged in, no groups, still superuser.
    assert site.user(LOCAL_SUPERUSER) == before
    assert before["last_login"] is None
    assert site.groups(LOCAL_SUPERUSER) == []
    assert site.user(name) is None or name == LOCAL_SUPERUSER
    new_log = site.log()[len(log_before) :]
    assert "denied_user_name" in new_log
    assert json.dumps(payload) not in new_log


def test_no_header_is_anonymous(site: Site) -> None:
    seen, reply = site.whoami()
    assert seen == {
        "authenticated": False,
        "username": None,
        "groups": [],
        "is_staff": False,
        "is_superuser": False,
        "principal": None,
        "roles": [],
    }
    assert reply.session is None

    # A logged-in session whose header disappears (Apache's session ended) is logged out.
    logged_in, reply = site.whoami(claims("carol", "GeoserverAdministrator"))
    assert logged_in["username"] == "carol"
    assert reply.session is not None
    later, _ = site.whoami(session=reply.session)
    assert later["authenticated"] is False
    assert later["username"] is None
    assert later["principal"] is None
    assert later["is_staff"] is False


def test_header_from_another_address_is_ignored(site: Site) -> None:
    log_before = site.log()
    seen, _ = site.whoami(claims("mallory", "GeoserverAdministrator"), source=OTHER_PEER)
    assert seen["authenticated"] is False
    assert seen["principal"] is None
    assert site.user("mallory") is None
    new_log = site.log()[len(log_before) :]
    assert "untrusted_source_header" in new_log
    assert OTHER_PEER in new_log


# --------------------------------------------------------------------------- stateless robots


def assert_sessionless(site: Site, reply: Reply) -> None:
    assert reply.headers.get_all("Set-Cookie") is None, reply.headers
    assert site.sessions() == 0


def test_stateless_robot_gets_a_user_but_no_session_row_or_cookie(
    robot_site: Site, robot_idp: IdpServer
) -> None:
    token = robot_token(robot_idp, "robot1", "GeoserverAdministrator")
    for _ in range(3):  # every request is authenticated anew, none logs in
        seen, reply = robot_site.whoami(bearer=token)
        assert seen["authenticated"] is True
        assert seen["username"] == "robot1"
        assert seen["groups"] == ["ROLE_ADMINISTRATOR"]
        assert seen["is_staff"] is True
        assert_sessionless(robot_site, reply)
    robot = robot_site.user("robot1")
    assert robot is not None
    assert robot["last_login"] is None  # never login()ed
    assert token not in robot_site.log()


def test_stateless_no_token_on_login_required_view_is_401_json(robot_site: Site) -> None:
    reply = robot_site.get(path="/private")
    assert reply.status == 401, (reply.status, reply.headers)
    assert reply.headers["WWW-Authenticate"] == "Bearer"
    assert reply.headers["Location"] is None
    assert reply.json == {
        "error": {"code": "UNAUTHENTICATED", "message": "authentication required"}
    }
    assert_sessionless(robot_site, reply)


def test_stateless_invalid_token_is_401_and_creates_nothing(
    robot_site: Site, robot_idp: IdpServer
) -> None:
    token = robot_token(robot_idp, "forger", "GeoserverAdministrator")[:-4] + "AAAA"
    reply = robot_site.get(path="/private", bearer=token)
    assert reply.status == 401
    assert reply.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert robot_site.user("forger") is None
    assert_sessionless(robot_site, reply)


def test_stateless_roles_required_answers_401_403_and_200(
    robot_site: Site, robot_idp: IdpServer
) -> None:
    anonymous = robot_site.get(path="/admin-report")
    assert anonymous.status == 401
    assert anonymous.json["error"]["code"] == "UNAUTHENTICATED"

    reader = robot_site.get(path="/admin-report", bearer=robot_token(robot_idp, "robot2", "viewer"))
    assert reader.status == 403
    assert reader.json == {
        "error": {
            "code": "INSUFFICIENT_ROLE",
            "message": "a required role is missing",
            "required": ["ROLE_ADMINISTRATOR"],
            "granted": ["viewer"],
        }
    }
    admin = robot_site.get(
        path="/admin-report", bearer=robot_token(robot_idp, "robot3", "GeoserverAdministrator")
    )
    assert admin.status == 200
    assert admin.json == {"report": "ok", "by": "robot3"}
    for reply in (anonymous, reader, admin):
        assert_sessionless(robot_site, reply)


def test_session_mode_login_required_still_redirects_browsers(site: Site) -> None:
    reply = site.get(path="/private")
    assert reply.status == 302
    assert reply.headers["Location"].startswith("/accounts/login/")
