"""Issue 17 item 3: the Django robot path, through Django's own test ``Client`` with the real
middleware in front (``JwtClient``), Django's sessions, auth and a real sqlite database.

- stateless mode: a Bearer robot is a Django user for its request only: no ``django_session``
  row, no ``Set-Cookie``, nothing written on a repeated request; no/invalid credentials on a
  protected view give the middleware's ``401`` JSON, never the login redirect (R-numbers: the
  refusal format is the middleware's, R35 no token text in answers);
- ``roles_required``: ``401`` anonymous, ``403 INSUFFICIENT_ROLE`` like the Flask helper, the
  view runs only otherwise (in both modes, sync and async views);
- ``JWT_HEADERS`` / ``middleware_from_settings`` and ``from_env`` leaving Django names alone.
"""

from __future__ import annotations

from typing import Any

import idp
import pytest
import test_django
from conftest import NOW, FrozenClock
from django.contrib.auth.decorators import login_required
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.test import Client, override_settings
from django.test.client import ClientHandler
from django.urls import path
from idp import IdpServer, mint

from jwt_headers import JwtHeadersConfig, JwtHeadersMiddleware
from jwt_headers.config import DJANGO_SETTING_NAMES
from jwt_headers.django import (
    config_from_settings,
    middleware_from_settings,
    roles_required,
)
from jwt_headers.errors import ConfigError, Unauthenticated
from jwt_headers.flask import _insufficient_role as flask_insufficient_role
from jwt_headers.middleware import refusal_response

STATELESS = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "jwt_headers.django.StatelessMiddleware",
]
SESSION = test_django.MIDDLEWARE
idp_server = idp.idp_server
database = test_django.database  # migrate the in-memory database (module-scoped, autouse)
django_queries = test_django.django_queries


def whoami(request: HttpRequest) -> JsonResponse:
    user = request.user
    return JsonResponse(
        {
            "authenticated": user.is_authenticated,
            "username": user.get_username() if user.is_authenticated else None,
            "groups": sorted(user.groups.values_list("name", flat=True))
            if user.is_authenticated
            else [],
            "is_staff": user.is_staff,
            "principal": request.principal.name if request.principal is not None else None,  # type: ignore[attr-defined]
        }
    )


CALLS: list[str] = []


@login_required
def private(request: HttpRequest) -> HttpResponse:
    CALLS.append("private")
    return HttpResponse("private")


@roles_required("writer", "reader")
def write(request: HttpRequest) -> HttpResponse:
    CALLS.append("write")
    return HttpResponse("written")


@roles_required()
def any_principal(request: HttpRequest) -> HttpResponse:
    CALLS.append("any")
    return HttpResponse("ok")


@roles_required("writer")
async def write_async(request: HttpRequest) -> HttpResponse:
    CALLS.append("write_async")
    return HttpResponse("written")


async def whoami_async(request: HttpRequest) -> JsonResponse:
    user = await request.auser()
    return JsonResponse({"username": user.get_username() if user.is_authenticated else None})


def public(request: HttpRequest) -> HttpResponse:
    CALLS.append("public")
    return HttpResponse("public")


def moved(request: HttpRequest) -> HttpResponse:
    return HttpResponseRedirect("/public")


urlpatterns = [
    path("moved", moved),
    path("whoami", whoami),
    path("whoami-async", whoami_async),
    path("private", private),
    path("write", write),
    path("any", any_principal),
    path("write-async", write_async),
    path("public", public),
    path("accounts/login/", public),
]


def robot_config(idp: IdpServer) -> JwtHeadersConfig:
    """Robots send ``Authorization: Bearer <JWT>``, checked against the fake IdP's key set."""
    return JwtHeadersConfig(
        user_name_header="Authorization",
        user_name_format="jwt",
        user_name_json_path="preferred_username",
        roles_source="jwt",
        roles_json_path="realm_access.roles",
        validate_token=True,
        jwks_uri=idp.jwks_uri,
        validate_issuer=True,
        issuer=idp.issuer,
    )


def token(idp: IdpServer, name: str = "robot", roles: tuple[str, ...] = ("reader",)) -> str:
    claims = {"preferred_username": name, "realm_access": {"roles": list(roles)}}
    return mint(claims, idp.key, now=NOW)


class JwtClientHandler(ClientHandler):
    """Django's test handler behind the real WSGI middleware: the middleware judges the headers
    and sets ``REMOTE_USER``/the principal as under gunicorn, Django handles the rest; a refusal
    by the middleware comes back as the response it wrote."""

    def __init__(self, middleware_config: JwtHeadersConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.middleware = JwtHeadersMiddleware(
            self._django, middleware_config, clock=FrozenClock(NOW)
        )
        self._response: Any = None

    def _django(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self._response = ClientHandler.__call__(self, environ)
        start_response(f"{self._response.status_code} OK", [])
        return []

    def __call__(self, environ: dict[str, Any]) -> Any:  # type: ignore[override]
        self._response = None
        seen: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> None:
            seen["status"], seen["headers"] = status, headers

        body = b"".join(self.middleware(environ, start_response))
        if self._response is not None:
            return self._response
        response = HttpResponse(
            body, status=int(seen["status"].split()[0]), headers=dict(seen["headers"])
        )
        response.wsgi_request = None  # type: ignore[attr-defined]
        return response


class JwtClient(Client):
    def __init__(self, middleware_config: JwtHeadersConfig) -> None:
        super().__init__()
        self.handler = JwtClientHandler(middleware_config, enforce_csrf_checks=False)
        self.handler.load_middleware()  # now, under the caller's MIDDLEWARE


@pytest.fixture(autouse=True)
def clean():
    CALLS.clear()
    with override_settings(
        ROOT_URLCONF=__name__, LOGIN_URL="/accounts/login/", ALLOWED_HOSTS=["testserver"]
    ):
        yield
    Session.objects.all().delete()
    User.objects.all().delete()
    Group.objects.all().delete()


def robot_client(idp_server: IdpServer, middleware: list[str] = STATELESS) -> JwtClient:
    with override_settings(MIDDLEWARE=middleware):
        return JwtClient(robot_config(idp_server))


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def assert_no_session(response: Any) -> None:
    """The stateless promise: no row in django_session and no cookie in the answer."""
    assert Session.objects.count() == 0
    assert "Set-Cookie" not in response
    assert not response.cookies


def assert_401_json(response: Any) -> None:
    """The middleware's own 401 (allow_anonymous=False): same status, body and challenge."""
    _, headers, body = refusal_response(_unauthenticated())
    assert response.status_code == 401
    assert response.content == body
    assert response["WWW-Authenticate"] == dict(headers)["WWW-Authenticate"] == "Bearer"
    assert response["Content-Type"] == "application/json"
    assert response["Cache-Control"] == "no-store"
    assert response.json()["error"]["code"] == "UNAUTHENTICATED"


def _unauthenticated() -> Unauthenticated:
    return Unauthenticated()


# --------------------------------------------------------------------------- stateless mode


def test_stateless_bearer_robot_is_a_user_without_session_row_or_cookie(idp_server):
    """Issue 17: a Bearer robot used to create a session row and a Set-Cookie per request."""
    client = robot_client(idp_server)
    response = client.get("/whoami", headers=bearer(token(idp_server, roles=("reader",))))
    assert response.status_code == 200
    assert response.json() == {
        "authenticated": True,
        "username": "robot",
        "groups": ["reader"],
        "is_staff": False,
        "principal": "robot",
    }
    assert_no_session(response)
    assert User.objects.get(username="robot").last_login is None  # never login()ed


def test_stateless_repeated_requests_write_nothing_and_stay_sessionless(idp_server, django_queries):
    client = robot_client(idp_server)
    value = token(idp_server, roles=("reader", "writer"))
    first = client.get("/whoami", headers=bearer(value))
    assert first.status_code == 200
    with django_queries() as queries:
        again = client.get("/whoami", headers=bearer(value))
    writes = [q for q in queries if q.split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert again.status_code == 200
    assert again.json()["groups"] == ["reader", "writer"]
    assert writes == []  # the user and its groups are as the token says: no write
    assert_no_session(again)


def test_stateless_async_view_awaits_the_same_user(idp_server):
    client = robot_client(idp_server)
    response = client.get("/whoami-async", headers=bearer(token(idp_server)))
    assert response.json() == {"username": "robot"}
    assert_no_session(response)
    assert client.get("/whoami-async").json() == {"username": None}


def test_stateless_roles_change_is_synced_on_the_next_request(idp_server):
    client = robot_client(idp_server)
    client.get("/whoami", headers=bearer(token(idp_server, roles=("reader",))))
    later = client.get("/whoami", headers=bearer(token(idp_server, roles=("writer",))))
    assert later.json()["groups"] == ["writer"]
    assert_no_session(later)


def test_stateless_no_token_on_login_required_view_is_401_not_a_redirect(idp_server):
    client = robot_client(idp_server)
    response = client.get("/private")
    assert_401_json(response)
    assert "Location" not in response
    assert CALLS == []
    assert_no_session(response)


def test_stateless_public_view_is_anonymous_without_session(idp_server):
    client = robot_client(idp_server)
    response = client.get("/whoami")
    assert response.status_code == 200
    assert response.json()["authenticated"] is False
    assert response.json()["principal"] is None
    assert_no_session(response)


def test_stateless_a_redirect_elsewhere_is_left_alone(idp_server):
    """Only the redirect to LOGIN_URL becomes a 401: an app's own redirects still work."""
    client = robot_client(idp_server)
    response = client.get("/moved")
    assert response.status_code == 302
    assert response["Location"] == "/public"


def test_stateless_invalid_token_is_the_middlewares_401_and_django_never_runs(idp_server):
    client = robot_client(idp_server)
    forged = token(idp_server)[:-4] + "AAAA"
    response = client.get("/private", headers=bearer(forged))
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert response.json()["error"]["code"] == "INVALID_TOKEN"
    assert forged not in response.content.decode()
    assert CALLS == []
    assert_no_session(response)
    assert User.objects.count() == 0


def test_stateless_login_required_view_runs_for_a_robot(idp_server):
    client = robot_client(idp_server)
    response = client.get("/private", headers=bearer(token(idp_server)))
    assert response.status_code == 200
    assert CALLS == ["private"]
    assert_no_session(response)


def test_session_mode_still_logs_in_and_sets_the_cookie(idp_server):
    """The contrast: the same robot in session mode (RemoteUserMiddleware) gets a session."""
    client = robot_client(idp_server, SESSION)
    response = client.get("/whoami", headers=bearer(token(idp_server)))
    assert response.status_code == 200
    assert Session.objects.count() == 1
    assert "sessionid" in response.cookies


def test_session_mode_login_required_still_redirects(idp_server):
    client = robot_client(idp_server, SESSION)
    response = client.get("/private")
    assert response.status_code == 302


# --------------------------------------------------------------------------- roles_required


@pytest.mark.parametrize("middleware", [STATELESS, SESSION], ids=["stateless", "session"])
def test_roles_required_anonymous_is_401(idp_server, middleware):
    response = robot_client(idp_server, middleware).get("/write")
    assert_401_json(response)
    assert CALLS == []


@pytest.mark.parametrize("middleware", [STATELESS, SESSION], ids=["stateless", "session"])
def test_roles_required_missing_role_is_403_like_flask(idp_server, middleware):
    client = robot_client(idp_server, middleware)
    response = client.get("/write", headers=bearer(token(idp_server, roles=("reader",))))
    assert response.status_code == 403
    assert response.json() == {
        "error": {
            "code": "INSUFFICIENT_ROLE",
            "message": "a required role is missing",
            "required": ["writer", "reader"],
            "granted": ["reader"],
        }
    }
    assert response["Cache-Control"] == "no-store"
    assert response["Content-Type"] == "application/json"
    assert CALLS == []


def test_roles_required_body_is_the_flask_helpers_body(idp_server):
    pytest.importorskip("flask")
    from jwt_headers import Principal

    client = robot_client(idp_server)
    response = client.get("/write", headers=bearer(token(idp_server, roles=("reader",))))
    expected = flask_insufficient_role(
        ("writer", "reader"), Principal(name="robot", roles=("reader",))
    )
    assert response.content == expected.get_data()


def test_roles_required_holding_every_role_runs_the_view(idp_server):
    client = robot_client(idp_server)
    response = client.get("/write", headers=bearer(token(idp_server, roles=("reader", "writer"))))
    assert response.status_code == 200
    assert CALLS == ["write"]
    assert_no_session(response)


def test_roles_required_without_roles_needs_only_a_principal(idp_server):
    client = robot_client(idp_server)
    assert_401_json(client.get("/any"))
    assert client.get("/any", headers=bearer(token(idp_server, roles=()))).status_code == 200
    assert CALLS == ["any"]


def test_roles_required_async_view(idp_server):
    client = robot_client(idp_server)
    assert client.get("/write-async").status_code == 401
    denied = client.get("/write-async", headers=bearer(token(idp_server, roles=("reader",))))
    assert denied.status_code == 403
    ok = client.get("/write-async", headers=bearer(token(idp_server, roles=("writer",))))
    assert ok.status_code == 200
    assert CALLS == ["write_async"]


def test_roles_required_without_parentheses_is_a_type_error():
    with pytest.raises(TypeError, match="with parentheses"):
        roles_required(public)


# --------------------------------------------------------------------------- settings


def test_middleware_from_settings_reads_the_jwt_headers_dict():
    options = {"user_name_header": "X-User", "roles_source": "header", "roles_header": "X-Roles"}
    with override_settings(JWT_HEADERS=options, MIDDLEWARE=STATELESS):
        app = middleware_from_settings(WSGIHandler())
    from werkzeug.test import Client as WerkzeugClient

    response = WerkzeugClient(app).get(
        "/whoami",
        headers={"X-User": "carol", "X-Roles": "editor"},
        environ_base={"REMOTE_ADDR": "127.0.0.1"},
    )
    assert response.status_code == 200
    assert response.json["username"] == "carol"
    assert response.json["groups"] == ["editor"]
    assert Session.objects.count() == 0


def test_config_from_settings_accepts_a_config_object():
    config = JwtHeadersConfig(user_name_header="X-User")
    with override_settings(JWT_HEADERS=config):
        assert config_from_settings() is config


def test_config_from_settings_without_the_setting_names_the_fix():
    with pytest.raises(ConfigError, match=r"settings.JWT_HEADERS is not set: write JWT_HEADERS"):
        config_from_settings()


def test_config_from_settings_not_a_dict_names_the_fix():
    with (
        override_settings(JWT_HEADERS=["user_name_header"]),
        pytest.raises(ConfigError, match="must be a dict of options or a JwtHeadersConfig"),
    ):
        config_from_settings()


def test_config_from_settings_unknown_option_is_refused():
    with (
        override_settings(JWT_HEADERS={"user_name_header": "X-User", "user_nme": "x"}),
        pytest.raises(ConfigError, match="user_nme"),
    ):
        config_from_settings()


@pytest.mark.parametrize(
    "name",
    [f"JWT_HEADERS_{name}" for name in sorted(DJANGO_SETTING_NAMES)]
    + ["JWT_HEADERS_DJANGO_STAFF_ROLES"],
)
def test_from_env_leaves_django_setting_names_alone(name):
    """Issue 17: JWT_HEADERS_STAFF_ROLES in the environment made from_env refuse to start."""
    environ = {"JWT_HEADERS_USER_NAME_HEADER": "X-User", name: "ROLE_ADMINISTRATOR"}
    config = JwtHeadersConfig.from_env(environ=environ)
    assert config.user_name_header == "X-User"


def test_from_env_still_refuses_a_misspelt_option():
    with pytest.raises(ConfigError, match="USER_NAME_HEADR"):
        JwtHeadersConfig.from_env(
            environ={"JWT_HEADERS_USER_NAME_HEADER": "X", "JWT_HEADERS_USER_NAME_HEADR": "Y"}
        )


def test_django_dict_with_an_unknown_key_is_refused(idp_server):
    client = robot_client(idp_server)
    with (
        override_settings(JWT_HEADERS_DJANGO={"STAF_ROLES": ["admin"]}),
        pytest.raises(Exception, match=r"unknown key.*STAF_ROLES"),
    ):
        client.get("/whoami", headers=bearer(token(idp_server)))
