"""The PasteDeploy entry point, loaded from a real ini file through the installed egg name."""

from __future__ import annotations

import json

import pytest
from paste.deploy import loadapp
from werkzeug.test import Client

from jwt_headers import ConfigError, JwtHeadersMiddleware

CALLS: list[dict] = []


def whoami(environ, start_response):
    principal = environ.get("jwt_headers.principal")
    seen = {
        "user": environ.get("REMOTE_USER"),
        "roles": list(principal.roles) if principal is not None else None,
    }
    CALLS.append(seen)
    start_response("200 OK", [("Content-Type", "application/json")])
    return [json.dumps(seen).encode()]


def make_app(global_conf, **local_conf):
    """The ``[app:app]`` factory the ini file names (``call:`` scheme)."""
    assert local_conf == {"greeting": "hello"}
    return whoami


@pytest.fixture(autouse=True)
def clear():
    CALLS.clear()


def write_ini(tmp_path, filter_options: str) -> str:
    ini = tmp_path / "app.ini"
    ini.write_text(
        f"""\
[DEFAULT]
debug = true

[pipeline:main]
pipeline = jwt_headers app

[filter:jwt_headers]
use = egg:jwt-headers
{filter_options}

[app:app]
use = call:{__name__}:make_app
greeting = hello
""",
        encoding="utf-8",
    )
    return f"config:{ini}"


OPTIONS = """\
user_name_header = X-User
roles_source = header
roles_header = X-Roles
roles_header_delimiter = ;
role_converter = admins=ROLE_ADMINISTRATOR
allow_anonymous = false
denied_user_names = root, admin
max_header_bytes = 64
"""


def test_the_pipeline_authenticates_through_the_filter(tmp_path):
    app = loadapp(write_ini(tmp_path, OPTIONS))
    assert isinstance(app, JwtHeadersMiddleware)
    assert app.app is whoami
    response = Client(app).get(
        "/",
        headers={"X-User": "alice", "X-Roles": "admins;x"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert response.status_code == 200
    assert response.json == {"user": "alice", "roles": ["ROLE_ADMINISTRATOR", "x"]}
    assert len(CALLS) == 1


def test_text_options_are_converted(tmp_path):
    config = loadapp(write_ini(tmp_path, OPTIONS)).config
    assert config.allow_anonymous is False
    assert config.denied_user_names == ("root", "admin")
    assert config.max_header_bytes == 64
    assert config.roles_header_delimiter == ";"


def test_refusals_from_the_filter_never_reach_the_app(tmp_path):
    client = Client(loadapp(write_ini(tmp_path, OPTIONS)))
    loopback = {"REMOTE_ADDR": "127.0.0.1"}
    anonymous = client.get("/", environ_base=loopback)
    denied = client.get("/", headers={"X-User": "Root"}, environ_base=loopback)
    assert anonymous.status_code == 401
    assert anonymous.json["error"]["code"] == "UNAUTHENTICATED"
    assert denied.status_code == 401
    assert denied.json["error"]["code"] == "INVALID_TOKEN"
    assert CALLS == []


def test_a_bad_option_fails_when_the_file_is_loaded(tmp_path):
    with pytest.raises(ConfigError, match="user_name_header"):
        loadapp(write_ini(tmp_path, "user_name_headr = X-User\n"))
