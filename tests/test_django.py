"""The Django integration on a real Django project configured here: WSGIHandler behind the
middleware, Django's own session, authentication and RemoteUserMiddleware, sqlite in memory."""

from __future__ import annotations

import json

import django
import pytest
from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.urls import path
from werkzeug.test import Client

from jwt_headers import JwtHeadersConfig, JwtHeadersMiddleware, Principal

MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.RemoteUserMiddleware",
    "jwt_headers.django.PrincipalMiddleware",
]

if not settings.configured:
    settings.configure(
        DEBUG=False,
        SECRET_KEY="test-only-not-secret",
        ALLOWED_HOSTS=["localhost"],
        DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "django.contrib.sessions",
        ],
        MIDDLEWARE=MIDDLEWARE,
        AUTHENTICATION_BACKENDS=["jwt_headers.django.JwtHeadersBackend"],
        ROOT_URLCONF=__name__,
        DEFAULT_AUTO_FIELD="django.db.models.AutoField",
        USE_TZ=True,
    )
    django.setup()

from django.contrib.auth.models import Group, User  # noqa: E402  (needs the apps ready)
from django.contrib.sessions.models import Session  # noqa: E402
from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.test import override_settings  # noqa: E402

LOOPBACK = {"REMOTE_ADDR": "127.0.0.1"}
VIEW_CALLS: list[dict] = []


def whoami(request: HttpRequest) -> JsonResponse:
    user = request.user
    seen = {
        "authenticated": user.is_authenticated,
        "username": user.get_username() if user.is_authenticated else None,
        "groups": sorted(user.groups.values_list("name", flat=True))
        if user.is_authenticated
        else [],
        "is_staff": user.is_staff,
        "is_superuser": user.is_superuser,
        "email": getattr(user, "email", None),
        "first_name": getattr(user, "first_name", None),
        "last_name": getattr(user, "last_name", None),
        "principal": request.principal.name if request.principal is not None else None,
        "principal_is_principal": isinstance(request.principal, Principal)
        or request.principal is None,
    }
    VIEW_CALLS.append(seen)
    return JsonResponse(seen)


urlpatterns = [path("whoami", whoami)]


@pytest.fixture(scope="module", autouse=True)
def database():
    call_command("migrate", run_syncdb=True, verbosity=0)


@pytest.fixture(autouse=True)
def clean():
    VIEW_CALLS.clear()
    yield
    Session.objects.all().delete()
    User.objects.all().delete()
    Group.objects.all().delete()


def json_header(claims: dict) -> str:
    """A JSON header as mod_auth_openidc sends OIDC_id_token_payload (non-ASCII escaped)."""
    return json.dumps(claims)


def make_client(**options) -> Client:
    """A cookie-keeping client for the Django project behind the middleware (JSON user header
    with name and roles from the same document, unless options say otherwise)."""
    config = {
        "user_name_header": "X-Identity",
        "user_name_format": "json",
        "user_name_json_path": "preferred_username",
        "roles_source": "json",
        "roles_json_path": "roles",
    }
    config.update(options)
    return Client(JwtHeadersMiddleware(WSGIHandler(), JwtHeadersConfig(**config)))


def whoami_as(client: Client, claims: dict | None = None, *, peer: str = "127.0.0.1"):
    headers = {"X-Identity": json_header(claims)} if claims is not None else {}
    response = client.get("/whoami", headers=headers, environ_base={"REMOTE_ADDR": peer})
    return response.status_code, (response.json if response.status_code == 200 else None)


def alice(roles=("reader",), **claims) -> dict:
    return {"preferred_username": "alice", "roles": list(roles), **claims}


def test_first_request_creates_the_user_and_logs_it_in():
    client = make_client()
    status, seen = whoami_as(client, alice())
    assert status == 200
    assert seen["authenticated"] is True
    assert seen["username"] == "alice"
    assert seen["principal"] == "alice"
    assert User.objects.filter(username="alice").count() == 1
    assert client.get_cookie("sessionid") is not None


def test_unknown_user_is_not_created_when_the_setting_says_so():
    client = make_client()
    with override_settings(JWT_HEADERS_DJANGO={"CREATE_UNKNOWN_USER": False}):
        status, seen = whoami_as(client, alice())
    assert status == 200
    assert seen["authenticated"] is False
    assert seen["principal"] == "alice"  # the middleware authenticated; Django did not log in
    assert not User.objects.filter(username="alice").exists()


def test_request_principal_is_none_when_anonymous():
    status, seen = whoami_as(make_client())
    assert status == 200
    assert seen["authenticated"] is False
    assert seen["principal"] is None
    assert seen["principal_is_principal"] is True
    assert User.objects.count() == 0


def test_groups_are_created_and_synced_from_the_roles():
    status, seen = whoami_as(make_client(), alice(roles=["reader", "editor"]))
    assert status == 200
    assert seen["groups"] == ["editor", "reader"]
    assert set(Group.objects.values_list("name", flat=True)) == {"reader", "editor"}


def test_groups_are_replaced_at_the_next_login():
    Group.objects.create(name="local-only")
    whoami_as(make_client(), alice(roles=["reader", "editor"]))
    User.objects.get(username="alice").groups.add(Group.objects.get(name="local-only"))
    status, seen = whoami_as(make_client(), alice(roles=["editor", "admin"]))  # new session
    assert status == 200
    assert seen["groups"] == ["admin", "editor"]
    assert Group.objects.filter(name="reader").exists()  # groups themselves are kept


def test_groups_follow_a_role_change_within_the_same_session():
    client = make_client()
    _, first = whoami_as(client, alice(roles=["reader", "editor"]))
    session_before = client.get_cookie("sessionid").value
    status, second = whoami_as(client, alice(roles=["reader"]))
    assert status == 200
    assert first["groups"] == ["editor", "reader"]
    assert second["groups"] == ["reader"]
    assert client.get_cookie("sessionid").value == session_before  # no new login happened
    assert sorted(User.objects.get(username="alice").groups.values_list("name", flat=True)) == [
        "reader"
    ]


def test_unchanged_roles_in_a_session_write_nothing(django_queries):
    client = make_client()
    whoami_as(client, alice(roles=["reader"]))
    with django_queries() as queries:
        status, seen = whoami_as(client, alice(roles=["reader"]))
    assert status == 200
    assert seen["groups"] == ["reader"]
    assert queries  # the session and the user are read
    writes = [q for q in queries if q.split()[0].upper() in ("INSERT", "UPDATE", "DELETE")]
    assert writes == []


def test_group_sync_can_be_turned_off():
    Group.objects.create(name="local-only")
    client = make_client()
    with override_settings(JWT_HEADERS_DJANGO={"SYNC_GROUPS": False}):
        whoami_as(client, alice(roles=["reader"]))
        User.objects.get(username="alice").groups.add(Group.objects.get(name="local-only"))
        status, seen = whoami_as(client, alice(roles=["editor"]))
    assert status == 200
    assert seen["groups"] == ["local-only"]
    assert not Group.objects.filter(name__in=["reader", "editor"]).exists()


def test_staff_and_superuser_follow_the_configured_roles():
    client = make_client()
    with override_settings(
        JWT_HEADERS_DJANGO={"STAFF_ROLES": ["staff", "admin"], "SUPERUSER_ROLES": ["admin"]}
    ):
        _, reader = whoami_as(client, alice(roles=["reader"]))
        _, staff = whoami_as(client, alice(roles=["reader", "staff"]))
        _, admin = whoami_as(client, alice(roles=["admin"]))
        _, demoted = whoami_as(client, alice(roles=["reader"]))
    assert (reader["is_staff"], reader["is_superuser"]) == (False, False)
    assert (staff["is_staff"], staff["is_superuser"]) == (True, False)
    assert (admin["is_staff"], admin["is_superuser"]) == (True, True)
    assert (demoted["is_staff"], demoted["is_superuser"]) == (False, False)
    user = User.objects.get(username="alice")
    assert (user.is_staff, user.is_superuser) == (False, False)


def test_legacy_top_level_settings_still_work_with_a_deprecation_warning():
    # Issue 17: JWT_HEADERS_* is the middleware's prefix; the old Django names keep working.
    client = make_client()
    with (
        override_settings(JWT_HEADERS_STAFF_ROLES=["staff"], JWT_HEADERS_SYNC_GROUPS=False),
        pytest.warns(DeprecationWarning) as warned,
    ):
        _, seen = whoami_as(client, alice(roles=["staff"]))
    messages = {str(w.message) for w in warned}
    assert any("JWT_HEADERS_DJANGO = {'STAFF_ROLES'" in m for m in messages), messages
    assert any("JWT_HEADERS_DJANGO = {'SYNC_GROUPS'" in m for m in messages), messages
    assert seen["is_staff"] is True
    assert seen["groups"] == []


def test_the_new_dict_wins_over_a_legacy_setting():
    with override_settings(
        JWT_HEADERS_DJANGO={"STAFF_ROLES": ["admin"]}, JWT_HEADERS_STAFF_ROLES=["staff"]
    ):
        _, seen = whoami_as(make_client(), alice(roles=["staff"]))
    assert seen["is_staff"] is False


def test_without_staff_settings_the_flags_are_left_alone():
    User.objects.create(username="alice", is_staff=True)
    status, seen = whoami_as(make_client(), alice(roles=["admin", "staff"]))
    assert status == 200
    assert (seen["is_staff"], seen["is_superuser"]) == (True, False)


def test_a_role_setting_given_as_a_string_is_a_list_not_letters():
    with override_settings(JWT_HEADERS_DJANGO={"STAFF_ROLES": "staff, admin"}):
        _, letter = whoami_as(make_client(), alice(roles=["s"]))
        _, staff = whoami_as(make_client(), alice(roles=["admin"]))
    assert letter["is_staff"] is False
    assert staff["is_staff"] is True


def test_claims_update_email_and_names_when_present():
    client = make_client()
    _, seen = whoami_as(
        client, alice(email="alice@example.org", given_name="Alice", family_name="Liddell")
    )
    assert (seen["email"], seen["first_name"], seen["last_name"]) == (
        "alice@example.org",
        "Alice",
        "Liddell",
    )
    _, changed = whoami_as(client, alice(email="a@example.net", given_name="Al"))
    assert (changed["email"], changed["first_name"], changed["last_name"]) == (
        "a@example.net",
        "Al",
        "Liddell",  # absent claim: field left as it was
    )


def test_claims_that_do_not_fit_are_ignored():
    User.objects.create(username="alice", email="old@example.org", first_name="Old")
    status, seen = whoami_as(
        make_client(), alice(email=["not", "a", "string"], given_name="x" * 151)
    )
    assert status == 200
    assert (seen["email"], seen["first_name"]) == ("old@example.org", "Old")


def test_logout_when_the_header_disappears():
    client = make_client()
    _, first = whoami_as(client, alice())
    status, second = whoami_as(client)
    assert first["authenticated"] is True
    assert status == 200
    assert second["authenticated"] is False
    assert second["principal"] is None
    assert len(VIEW_CALLS) == 2


def test_persistent_remote_user_middleware_keeps_the_session_without_the_header():
    persistent = [
        m.replace("RemoteUserMiddleware", "PersistentRemoteUserMiddleware") for m in MIDDLEWARE
    ]
    with override_settings(MIDDLEWARE=persistent):
        client = make_client()
        whoami_as(client, alice(roles=["reader"]))
        status, seen = whoami_as(client)
    assert status == 200
    assert seen["authenticated"] is True
    assert seen["username"] == "alice"
    assert seen["principal"] is None
    assert seen["groups"] == ["reader"]


def test_switching_users_when_the_header_names_another():
    client = make_client()
    _, first = whoami_as(client, alice(roles=["admin"]))
    status, second = whoami_as(client, {"preferred_username": "bob", "roles": ["reader"]})
    assert status == 200
    assert (first["username"], first["groups"]) == ("alice", ["admin"])
    assert (second["username"], second["groups"], second["principal"]) == ("bob", ["reader"], "bob")
    assert sorted(User.objects.values_list("username", flat=True)) == ["alice", "bob"]


def test_denied_user_names_protect_a_local_superuser():
    User.objects.create_superuser("admin", "admin@example.org", "local-password")
    client = make_client(denied_user_names=["admin", "root"])
    for name in ("admin", " Admin", "\uff21\uff24\uff2d\uff29\uff2e", "root"):
        response = client.get(
            "/whoami",
            headers={"X-Identity": json_header({"preferred_username": name, "roles": []})},
            environ_base=LOOPBACK,
        )
        assert response.status_code == 401, name
        assert response.json["error"]["code"] == "INVALID_TOKEN"
        assert response.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    assert VIEW_CALLS == []
    assert client.get_cookie("sessionid") is None
    assert list(User.objects.values_list("username", "is_superuser")) == [("admin", True)]


def test_an_untrusted_peer_cannot_log_in_with_a_header():
    status, seen = whoami_as(make_client(), alice(), peer="203.0.113.9")
    assert status == 200
    assert seen["authenticated"] is False
    assert seen["principal"] is None
    assert User.objects.count() == 0


def test_another_remote_user_header_does_not_get_this_principals_roles():
    from jwt_headers.django import JwtHeadersBackend

    backend = JwtHeadersBackend()
    user = User.objects.create(username="mallory")
    request = HttpRequest()
    request.META["jwt_headers.principal"] = Principal(name="alice", roles=("admin",))
    assert backend.configure_user(request, user) is user
    assert list(user.groups.all()) == []
    assert not Group.objects.exists()


@pytest.fixture
def django_queries():
    from contextlib import contextmanager

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    @contextmanager
    def capture():
        with CaptureQueriesContext(connection) as context:
            sqls: list[str] = []
            yield sqls
        sqls.extend(q["sql"] for q in context.captured_queries)

    return capture
