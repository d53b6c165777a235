"""The Flask helpers on a real Flask app, through its test client with the middleware in front."""

from __future__ import annotations

import pytest
from flask import Flask

from jwt_headers import ConfigError, JwtHeadersConfig, JwtHeadersMiddleware, Principal
from jwt_headers.flask import current_principal, init_app, roles_required

LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}


def make_app(config: JwtHeadersConfig | None = None, **settings):
    """A Flask app with an open, a role-guarded and a login-guarded view; ``app.calls`` records
    which views ran and what they saw."""
    app = Flask(__name__)
    app.config.update(settings)
    calls: list[tuple[str, object]] = []
    app.calls = calls  # type: ignore[attr-defined]

    @app.get("/open")
    def open_view():
        calls.append(("open", current_principal._get_current_object()))
        if current_principal:
            return {"user": current_principal.name, "roles": list(current_principal.roles)}
        return {"user": None}

    @app.get("/admin")
    @roles_required("ROLE_ADMIN", "ROLE_EDITOR")
    def admin_view():
        calls.append(("admin", current_principal.name))
        return {"admin": current_principal.name}

    @app.get("/any")
    @roles_required()
    def any_view():
        calls.append(("any", current_principal.name))
        return {"any": current_principal.name}

    @app.get("/async")
    @roles_required("ROLE_ADMIN")
    async def async_view():
        calls.append(("async", current_principal.name))
        return {"async": current_principal.name}

    init_app(app, config)
    return app


@pytest.fixture
def app():
    return make_app(
        JwtHeadersConfig(
            user_name_header="X-User",
            roles_source="header",
            roles_header="X-Roles",
        )
    )


def get(app, path, headers=None):
    return app.test_client().get(path, headers=headers or {}, environ_base=LOOPBACK)


def test_init_app_puts_the_middleware_in_front_of_wsgi_app(app):
    assert isinstance(app.wsgi_app, JwtHeadersMiddleware)
    assert app.extensions["jwt_headers"] is app.wsgi_app
    answer = get(app, "/open", {"X-User": "alice", "X-Roles": "a,b"})
    assert answer.status_code == 200
    assert answer.json == {"user": "alice", "roles": ["a", "b"]}


def test_current_principal_is_none_when_anonymous(app):
    answer = get(app, "/open")
    assert answer.status_code == 200
    assert answer.json == {"user": None}
    assert app.calls == [("open", None)]


def test_current_principal_is_never_kept_beyond_its_request(app):
    client = app.test_client()
    first = client.get("/open", headers={"X-User": "alice"}, environ_base=LOOPBACK)
    second = client.get("/open", headers={"X-User": "bob"}, environ_base=LOOPBACK)
    third = client.get("/open", environ_base=LOOPBACK)
    assert [first.json["user"], second.json["user"], third.json["user"]] == ["alice", "bob", None]
    names = [seen.name if isinstance(seen, Principal) else seen for _, seen in app.calls]
    assert names == ["alice", "bob", None]


def test_current_principal_outside_a_request_is_falsy_and_unreadable():
    assert not current_principal
    with pytest.raises(RuntimeError):
        current_principal._get_current_object()


def test_roles_required_anonymous_is_401_and_the_view_does_not_run(app):
    answer = get(app, "/admin")
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == "Bearer"
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.json["error"]["code"] == "UNAUTHENTICATED"
    assert answer.json["error"]["message"]
    assert app.calls == []


def test_roles_required_missing_one_role_is_403_and_the_view_does_not_run(app):
    answer = get(app, "/admin", {"X-User": "alice", "X-Roles": "ROLE_ADMIN, other"})
    assert answer.status_code == 403
    assert "WWW-Authenticate" not in answer.headers
    assert answer.headers["Content-Type"] == "application/json"
    error = answer.json["error"]
    assert error["code"] == "INSUFFICIENT_ROLE"
    assert error["message"]
    assert error["required"] == ["ROLE_ADMIN", "ROLE_EDITOR"]
    assert error["granted"] == ["ROLE_ADMIN", "other"]
    assert app.calls == []


def test_roles_required_no_roles_at_all_is_403(app):
    answer = get(app, "/admin", {"X-User": "alice"})
    assert answer.status_code == 403
    assert answer.json["error"]["granted"] == []
    assert app.calls == []


def test_roles_required_every_role_calls_the_view(app):
    answer = get(app, "/admin", {"X-User": "alice", "X-Roles": "ROLE_EDITOR,x,ROLE_ADMIN"})
    assert answer.status_code == 200
    assert answer.json == {"admin": "alice"}
    assert app.calls == [("admin", "alice")]


def test_roles_required_without_roles_needs_only_a_principal(app):
    refused = get(app, "/any")
    assert refused.status_code == 401
    assert app.calls == []
    answer = get(app, "/any", {"X-User": "bob"})
    assert answer.status_code == 200
    assert answer.json == {"any": "bob"}
    assert app.calls == [("any", "bob")]


def test_roles_required_guards_async_views(app):
    refused = get(app, "/async", {"X-User": "bob", "X-Roles": "other"})
    assert refused.status_code == 403
    assert app.calls == []
    answer = get(app, "/async", {"X-User": "bob", "X-Roles": "ROLE_ADMIN"})
    assert answer.status_code == 200
    assert answer.json == {"async": "bob"}
    assert app.calls == [("async", "bob")]


def test_roles_required_without_parentheses_is_a_type_error():
    def view():
        return "never"

    with pytest.raises(TypeError, match="parentheses"):
        roles_required(view)  # type: ignore[arg-type]


def test_config_from_app_config_text_values():
    app = make_app(
        JWT_HEADERS_USER_NAME_HEADER="X-User",
        JWT_HEADERS_ROLES_SOURCE="header",
        JWT_HEADERS_ROLES_HEADER="X-Roles",
        JWT_HEADERS_ALLOW_ANONYMOUS="false",
        JWT_HEADERS_DENIED_USER_NAMES="root, admin",
        OTHER_SETTING="ignored",
    )
    config = app.wsgi_app.config
    assert config.user_name_header == "X-User"
    assert config.allow_anonymous is False
    assert config.denied_user_names == ("root", "admin")
    anonymous = get(app, "/open")
    assert anonymous.status_code == 401
    denied = get(app, "/open", {"X-User": "Admin"})
    assert denied.status_code == 401
    assert denied.json["error"]["code"] == "INVALID_TOKEN"
    assert app.calls == []
    answer = get(app, "/admin", {"X-User": "carol", "X-Roles": "ROLE_ADMIN;ROLE_EDITOR"})
    assert answer.status_code == 403  # delimiter is ',' by default: one role "ROLE_ADMIN;..."
    assert app.calls == []


def test_config_from_app_config_typed_values():
    app = make_app(
        JWT_HEADERS_USER_NAME_HEADER="X-User",
        JWT_HEADERS_ROLES_SOURCE="header",
        JWT_HEADERS_ROLES_HEADER="X-Roles",
        JWT_HEADERS_ROLES_HEADER_DELIMITER=";",
        JWT_HEADERS_MAX_HEADER_BYTES=64,
        JWT_HEADERS_TRUSTED_PROXIES=["127.0.0.1"],
    )
    config = app.wsgi_app.config
    assert config.max_header_bytes == 64
    assert config.trusted_proxies == ("127.0.0.1",)
    answer = get(app, "/admin", {"X-User": "carol", "X-Roles": "ROLE_ADMIN;ROLE_EDITOR"})
    assert answer.status_code == 200
    assert app.calls == [("admin", "carol")]
    too_long = get(app, "/open", {"X-User": "x" * 65})
    assert too_long.status_code == 401
    assert len(app.calls) == 1


def test_no_config_at_all_is_a_config_error():
    app = Flask(__name__)
    app.config["UNRELATED"] = 1
    with pytest.raises(ConfigError, match="JWT_HEADERS_USER_NAME_HEADER"):
        init_app(app)
    assert "jwt_headers" not in app.extensions
    assert not isinstance(app.wsgi_app, JwtHeadersMiddleware)


def test_a_misspelt_key_is_a_config_error_naming_the_fix():
    app = Flask(__name__)
    app.config["JWT_HEADERS_USER_NAME_HEADR"] = "X-User"
    with pytest.raises(ConfigError, match="user_name_header"):
        init_app(app)


def test_a_second_init_app_is_refused(app):
    wrapped = app.wsgi_app
    with pytest.raises(RuntimeError, match="already"):
        init_app(app, JwtHeadersConfig(user_name_header="X-Other"))
    assert app.wsgi_app is wrapped


def test_the_core_imports_without_flask_or_django():
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['flask'] = sys.modules['django'] = None; "
        "import jwt_headers, jwt_headers.paste; print(jwt_headers.JwtHeadersMiddleware.__name__)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "JwtHeadersMiddleware"
