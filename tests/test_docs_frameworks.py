"""The README's "Flask, Django and PasteDeploy" examples and its Flask metrics snippet, run as
written (issue 17 item 5: every example is executed, so one that stops working fails CI).

Each example is taken from README.rst with ``example()``; only what the README marks as the
reader's own (``...``, ``# ...``, ``egg:myapp``, the rest of a Django project) is filled, with
``fill()``. The requests come from 127.0.0.1, inside the default ``trusted_proxies``, and go
through the examples' own objects: the Flask app's test client, the Django project's WSGI
``application`` (in a subprocess: Django settings are process-wide), the pipeline PasteDeploy
loads.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import prometheus_client
from conftest import RecordingApp, assert_accepted, assert_invalid_token, call
from docs_examples import example, fill
from flask import Flask, request
from paste.deploy import loadapp
from prometheus_client.parser import text_string_to_metric_families
from test_readme import ROOT, section

from jwt_headers import JwtHeadersMiddleware

LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
OUTSIDER = {"REMOTE_ADDR": "10.0.0.1"}  # not in the default trusted_proxies (loopback)
TIMEOUT = 60


# --------------------------------------------------------------------------- Flask
def test_flask_init_app_and_roles_required_as_written():
    """The Flask example, executed as written (app.config keys, ``init_app``, a view under
    ``@roles_required``): what the table above it promises, through Flask's test client. The
    X-User/X-Roles headers need no ``trusted_proxies``: the default (loopback) believes them
    from 127.0.0.1, and ignores them from another peer."""
    code = example(
        "README.rst", "from jwt_headers.flask import current_principal, init_app, roles_required"
    )
    namespace: dict[str, Any] = {"__name__": "readme_flask_app"}
    exec(compile(code, "README.rst", "exec"), namespace)
    app = namespace["app"]
    assert isinstance(app.wsgi_app, JwtHeadersMiddleware)  # init_app wrapped wsgi_app
    client = app.test_client()

    admin = {"X-User": "alice", "X-Roles": "ROLE_ADMINISTRATOR"}
    answer = client.get("/admin", headers=admin, environ_base=LOOPBACK)
    assert answer.status_code == 200, answer.data
    assert answer.json == {"user": "alice"}

    answer = client.get(
        "/admin", headers={"X-User": "alice", "X-Roles": "ROLE_USER"}, environ_base=LOOPBACK
    )
    assert answer.status_code == 403, answer.data
    error = answer.json["error"]
    assert error["code"] == "INSUFFICIENT_ROLE"
    assert (error["required"], error["granted"]) == (["ROLE_ADMINISTRATOR"], ["ROLE_USER"])

    for headers, environ in (({}, LOOPBACK), (admin, OUTSIDER)):
        answer = client.get("/admin", headers=headers, environ_base=environ)
        assert answer.status_code == 401, answer.data
        assert answer.headers["WWW-Authenticate"].startswith("Bearer")
        assert answer.json["error"]["code"] == "UNAUTHENTICATED"


# --------------------------------------------------------------------------- Metrics
def test_flask_metrics_snippet_serves_the_counters():
    """The Metrics section's Flask snippet, executed as written on a Flask ``app`` (with
    ``JwtHeadersMiddleware`` imported, as in the Quick start); its ``...`` is the other options,
    filled with a plain-header config that refuses anonymous requests, so ``exempt_paths`` is
    what lets the scraper in. GET /metrics without a header is 200 in Prometheus' text format,
    and counts the requests made before it. prometheus_client's default registry outlives a
    test, so the counts are compared with their values before (the exporter is one per
    registry, so a second middleware does not register the collectors again)."""
    code = fill(example("README.rst", "import prometheus_client"), "...", "**OPTIONS", count=1)
    app = Flask("readme_metrics_app")
    app.add_url_rule("/whoami", "whoami", lambda: {"user": request.environ.get("REMOTE_USER")})
    namespace: dict[str, Any] = {
        "app": app,
        "JwtHeadersMiddleware": JwtHeadersMiddleware,
        "OPTIONS": {"user_name_header": "X-User", "allow_anonymous": False},
    }

    def count(outcome: str) -> float:
        value = prometheus_client.REGISTRY.get_sample_value(
            "jwt_headers_requests_total", {"outcome": outcome}
        )
        return value or 0.0

    before = {outcome: count(outcome) for outcome in ("allowed", "refused", "exempt")}
    exec(compile(code, "README.rst", "exec"), namespace)
    client = app.test_client()
    answer = client.get("/whoami", headers={"X-User": "alice"}, environ_base=LOOPBACK)
    assert (answer.status_code, answer.json) == (200, {"user": "alice"})
    assert client.get("/whoami", environ_base=LOOPBACK).status_code == 401

    scrape = client.get("/metrics", environ_base=LOOPBACK)
    assert scrape.status_code == 200, scrape.data
    assert scrape.headers["Content-Type"] == prometheus_client.CONTENT_TYPE_LATEST
    samples = {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(scrape.get_data(as_text=True))
        for sample in family.samples
    }
    for outcome in ("allowed", "refused", "exempt"):
        key = ("jwt_headers_requests_total", (("outcome", outcome),))
        assert samples[key] == before[outcome] + 1, (outcome, samples.get(key))


# --------------------------------------------------------------------------- PasteDeploy
def make_app(global_conf: dict[str, str], **local_conf: str) -> RecordingApp:
    """The ``[app:myapp]`` factory standing for the reader's own application."""
    assert local_conf == {}
    return RecordingApp()


def test_paste_deploy_pipeline_as_written(tmp_path):
    """The PasteDeploy ini, written to a file as shown with only ``use = egg:myapp`` (the
    README's placeholder for the reader's app) pointed at a test app, loaded with
    ``paste.deploy.loadapp``: the JSON header names alice and is accepted from 127.0.0.1 (the
    underscore spelling the ini names, and the dashed one: one environ key in-process), the
    names in ``denied_user_names`` are refused before the app runs, a request without the
    header is anonymous, and another peer's header is ignored (default ``trusted_proxies``)."""
    ini = fill(
        example("README.rst", "[pipeline:main]"),
        "use = egg:myapp",
        f"use = call:{__name__}:make_app",
        count=1,
    )
    (tmp_path / "app.ini").write_text(ini, encoding="utf-8")
    pipeline = loadapp(f"config:{tmp_path / 'app.ini'}")
    assert isinstance(pipeline, JwtHeadersMiddleware)
    assert isinstance(pipeline.app, RecordingApp)  # make_app's, behind the filter

    def ask(claims: dict[str, str] | None, header: str = "OIDC_id_token_payload", **kw: Any):
        pipeline.app = RecordingApp()  # a fresh one per request: did this request reach it?
        return call(pipeline, {header: json.dumps(claims)} if claims else {}, **kw)

    for header in ("OIDC_id_token_payload", "OIDC-Id-Token-Payload"):
        assert_accepted(ask({"preferred_username": "alice"}, header), "alice")
    for name in ("root", "admin", "Admin"):
        assert_invalid_token(ask({"preferred_username": name}), "denied_user_name")
    answer = ask(None)
    assert answer.status == 200 and answer.app.called and answer.user is None
    answer = ask({"preferred_username": "alice"}, peer=OUTSIDER["REMOTE_ADDR"])
    assert answer.status == 200 and answer.app.called and answer.user is None


# --------------------------------------------------------------------------- Django
# The project around the README's two files: what every settings.py has and the examples leave
# out, one view, and a driver that sends requests through mysite.wsgi.application and prints
# what came back. Django runs in subprocesses: its settings are process-wide (test_django.py
# configures other settings in this process).
SETTINGS_PRELUDE = """\
SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["localhost"]
ROOT_URLCONF = "mysite.urls"
DATABASES = {{"default": {{"ENGINE": "django.db.backends.sqlite3", "NAME": {database!r}}}}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True

"""
MINIMUM_APPS = """\
INSTALLED_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
"""
URLS = """\
from django.http import JsonResponse
from django.urls import path


def whoami(request):
    user = request.user
    return JsonResponse(
        {
            "user": user.get_username() if user.is_authenticated else None,
            "is_staff": user.is_staff,
            "is_superuser": user.is_superuser,
            "principal": request.principal.name if request.principal is not None else None,
        }
    )


urlpatterns = [path("whoami", whoami)]
"""
DRIVER = """\
import json
import sys

from mysite.wsgi import application
from werkzeug.test import Client

answers = []
for headers, peer in json.loads(sys.argv[1]):
    response = Client(application).get(
        "/whoami", headers=headers, environ_base={"REMOTE_ADDR": peer}
    )
    answers.append(
        {
            "status": response.status_code,
            "cookies": response.headers.getlist("Set-Cookie"),
            "body": response.get_json(),
        }
    )
print(json.dumps(answers))
"""
HEADER = "OIDC-Id-Token-Payload"


def django_settings() -> str:
    """The README's settings.py (session mode), its ``# ...`` in INSTALLED_APPS filled with the
    apps auth and sessions need (the ``# ...`` lines of MIDDLEWARE stay: nothing else is
    needed)."""
    settings = example("README.rst", "INSTALLED_APPS = [")
    return fill(settings, "INSTALLED_APPS = [\n    # ...\n", MINIMUM_APPS, count=1)


def stateless_line() -> str:
    """What the sentence after the settings example says the two session-mode lines become."""
    text = " ".join(section("Flask, Django and PasteDeploy").split())
    found = re.search(
        r"For stateless mode the two ``RemoteUserMiddleware``/``PrincipalMiddleware`` lines "
        r'become ``"([\w.]+)"``',
        text,
    )
    assert found is not None, "the stateless-mode sentence after settings.py changed"
    return found.group(1)


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JWT_HEADERS", "DJANGO"))}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(cwd)])
    done = subprocess.run(
        [sys.executable, *argv],
        check=False,
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def django_project(tmp_path: Path, settings: str) -> Path:
    """``mysite`` made by ``django-admin startproject``, then its settings.py, urls.py and
    wsgi.py replaced by the README's (the wsgi.py example as written); ``check`` and
    ``migrate`` run with its manage.py. The project's directory."""
    run(["-m", "django", "startproject", "mysite", str(tmp_path)], tmp_path)
    package = tmp_path / "mysite"
    database = str(tmp_path / "db.sqlite3")
    (package / "settings.py").write_text(
        SETTINGS_PRELUDE.format(database=database) + settings, encoding="utf-8"
    )
    (package / "urls.py").write_text(URLS, encoding="utf-8")
    wsgi = example("README.rst", "application = middleware_from_settings(django_application)")
    (package / "wsgi.py").write_text(wsgi, encoding="utf-8")
    checked = run(["manage.py", "check"], tmp_path)
    output = checked.stdout + checked.stderr
    assert "System check identified no issues (0 silenced)." in output, output
    assert "jwt_headers." not in output, output
    run(["manage.py", "migrate", "--verbosity", "0"], tmp_path)
    return tmp_path


def send(project: Path, requests: list[tuple[dict[str, Any] | None, str]]) -> list[Any]:
    """Each ``(claims, peer)``: GET /whoami through ``mysite.wsgi.application``, the claims as
    the JSON header (none when ``None``), each from a fresh client (no cookie sent)."""
    wire = [
        ({HEADER: json.dumps(claims)} if claims is not None else {}, peer)
        for claims, peer in requests
    ]
    (project / "driver.py").write_text(DRIVER, encoding="utf-8")
    answers = json.loads(run(["driver.py", json.dumps(wire)], project).stdout)
    assert len(answers) == len(requests)
    return answers


def rows(project: Path, query: str) -> list[tuple[Any, ...]]:
    with contextlib.closing(sqlite3.connect(project / "db.sqlite3")) as db:
        return db.execute(query).fetchall()


def alice(*roles: str) -> dict[str, Any]:
    """The ID token payload mod_auth_openidc passes (Keycloak's realm roles)."""
    return {"preferred_username": "alice", "realm_access": {"roles": list(roles)}}


def test_django_session_mode_as_written(tmp_path):
    """The README's settings.py (session mode) and wsgi.py in a project made by
    ``startproject``: ``manage.py check`` finds no jwt_headers error, ``migrate`` runs, and
    through ``application``: alice's JSON header from 127.0.0.1 logs her in (a session cookie
    and a ``django_session`` row: session mode), a role in ``STAFF_ROLES``/``SUPERUSER_ROLES``
    makes her staff and superuser (the example reads the roles from the JSON's
    ``realm_access.roles``: without a roles source, as it once was, ``STAFF_ROLES`` could never
    match), "admin" (``denied_user_names``) is 401 and no such user is created, and the header
    from a peer outside ``trusted_proxies`` is anonymous."""
    project = django_project(tmp_path, django_settings())
    plain, admin_role, denied, outsider = send(
        project,
        [
            (alice(), "127.0.0.1"),
            (alice("ROLE_ADMINISTRATOR"), "127.0.0.1"),
            ({"preferred_username": "admin"}, "127.0.0.1"),
            (alice("ROLE_ADMINISTRATOR"), "10.0.0.1"),
        ],
    )
    assert plain["status"] == 200, plain
    assert plain["body"] == {
        "user": "alice",
        "is_staff": False,
        "is_superuser": False,
        "principal": "alice",
    }
    assert any(cookie.strip().startswith("sessionid=") for cookie in plain["cookies"]), plain
    assert admin_role["status"] == 200, admin_role
    assert admin_role["body"]["user"] == "alice"
    assert admin_role["body"]["is_staff"] is True
    assert admin_role["body"]["is_superuser"] is True
    assert denied["status"] == 401, denied
    assert denied["body"]["error"]["code"] == "INVALID_TOKEN"
    assert outsider["status"] == 200 and outsider["body"]["user"] is None, outsider
    assert outsider["cookies"] == []
    assert rows(project, "SELECT username FROM auth_user") == [("alice",)]
    assert rows(project, "SELECT count(*) FROM django_session")[0][0] == 2


def test_django_stateless_mode_as_the_readme_says(tmp_path):
    """The same settings.py with the two ``RemoteUserMiddleware``/``PrincipalMiddleware`` lines
    replaced by what the README's next sentence names (``StatelessMiddleware``): ``check`` is
    clean, alice is the request's user, staff by her role, with no ``Set-Cookie`` and no
    ``django_session`` row; "admin" is still 401."""
    replacement = stateless_line()
    assert replacement == "jwt_headers.django.StatelessMiddleware"
    session_lines = textwrap.indent(
        '"django.contrib.auth.middleware.RemoteUserMiddleware",\n'
        '"jwt_headers.django.PrincipalMiddleware",\n',
        "    ",
    )
    settings = fill(django_settings(), session_lines, f'    "{replacement}",\n', count=1)
    project = django_project(tmp_path, settings)
    plain, admin_role, denied = send(
        project,
        [
            (alice(), "127.0.0.1"),
            (alice("ROLE_ADMINISTRATOR"), "127.0.0.1"),
            ({"preferred_username": "admin"}, "127.0.0.1"),
        ],
    )
    assert plain["status"] == 200, plain
    assert plain["body"]["user"] == "alice" and plain["body"]["is_staff"] is False
    assert admin_role["status"] == 200, admin_role
    assert (admin_role["body"]["is_staff"], admin_role["body"]["is_superuser"]) == (True, True)
    assert plain["cookies"] == admin_role["cookies"] == []
    assert denied["status"] == 401, denied
    assert rows(project, "SELECT count(*) FROM django_session") == [(0,)]
    assert rows(project, "SELECT username FROM auth_user") == [("alice",)]
