"""Issue 17 item 3: Django system checks for the mistakes that used to be silent (a 302 to the
login page for everyone, options in settings.py that nothing reads). Each check is run the way
``manage.py check`` runs it (``run_checks``) on settings overridden for the case, and shows its
id, its message and the hint naming the fix."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import test_django  # noqa: F401  (configures Django for the whole test process)
from django.core.checks import Error, Warning, run_checks
from django.test import override_settings

from jwt_headers import django_checks  # noqa: F401  (registers the checks)

ROOT = Path(__file__).resolve().parent.parent
SESSIONS = "django.contrib.sessions.middleware.SessionMiddleware"
AUTH = "django.contrib.auth.middleware.AuthenticationMiddleware"
REMOTE = "django.contrib.auth.middleware.RemoteUserMiddleware"
PERSISTENT = "django.contrib.auth.middleware.PersistentRemoteUserMiddleware"
PRINCIPAL = "jwt_headers.django.PrincipalMiddleware"
STATELESS = "jwt_headers.django.StatelessMiddleware"
BACKEND = "jwt_headers.django.JwtHeadersBackend"
MODEL_BACKEND = "django.contrib.auth.backends.ModelBackend"


def ours(**settings: object) -> list:
    """The jwt_headers.* messages of a full check run under these settings."""
    with override_settings(**settings):
        return [m for m in run_checks() if m.id and m.id.startswith("jwt_headers.")]


def ids(**settings: object) -> list[str]:
    return sorted(m.id for m in ours(**settings))


def only(check_id: str, **settings: object):
    found = [m for m in ours(**settings) if m.id == check_id]
    assert len(found) == 1, found
    return found[0]


def test_a_correct_session_setup_has_no_message():
    assert ids() == []  # test_django's settings: the documented session setup


def test_a_correct_stateless_setup_has_no_message():
    assert ids(MIDDLEWARE=[SESSIONS, AUTH, STATELESS]) == []


def test_persistent_remote_user_middleware_counts_as_remote_user():
    assert ids(MIDDLEWARE=[SESSIONS, AUTH, PERSISTENT, PRINCIPAL]) == []


def test_e001_remote_user_middleware_missing_in_session_mode():
    """Issue 17: leaving RemoteUserMiddleware out gave a silent 302 to the login page."""
    message = only("jwt_headers.E001", MIDDLEWARE=[SESSIONS, AUTH, PRINCIPAL])
    assert isinstance(message, Error)
    assert "RemoteUserMiddleware is not in MIDDLEWARE" in message.msg
    assert REMOTE in message.hint
    assert STATELESS in message.hint  # the other way out, for robots


def test_e001_also_when_only_the_backend_is_configured():
    assert ids(MIDDLEWARE=[SESSIONS, AUTH]) == ["jwt_headers.E001"]


def test_e002_backend_missing():
    message = only("jwt_headers.E002", AUTHENTICATION_BACKENDS=[MODEL_BACKEND])
    assert isinstance(message, Error)
    assert "not in AUTHENTICATION_BACKENDS" in message.msg
    assert f"AUTHENTICATION_BACKENDS = [{BACKEND!r}]" in message.hint


def test_e002_in_stateless_mode_too():
    found = ids(MIDDLEWARE=[SESSIONS, AUTH, STATELESS], AUTHENTICATION_BACKENDS=[MODEL_BACKEND])
    assert found == ["jwt_headers.E002"]


@pytest.mark.parametrize(
    "name", ["JWT_HEADERS_USER_NAME_HEADER", "JWT_HEADERS_TRUSTED_PROXIES", "JWT_HEADERS_JWKS_URI"]
)
def test_e003_middleware_option_in_settings_is_reported(name):
    """Issue 17: middleware options written in settings.py were silently ignored."""
    message = only("jwt_headers.E003", **{name: "X-User"})
    assert isinstance(message, Error)
    assert f"the setting {name} is ignored" in message.msg
    option = name.removeprefix("JWT_HEADERS_").lower()
    assert f'JWT_HEADERS = {{"{option}": ...}}' in message.hint
    assert "middleware_from_settings()" in message.hint
    assert "X-User" not in message.msg + message.hint  # the value may be a secret (R35)


def test_an_unrelated_jwt_headers_setting_is_not_an_option():
    assert ids(JWT_HEADERS_SOMETHING_ELSE=1) == []


def test_e004_stateless_with_remote_user_middleware():
    message = only("jwt_headers.E004", MIDDLEWARE=[SESSIONS, AUTH, REMOTE, STATELESS])
    assert "creating a session row and a Set-Cookie" in message.msg
    assert f"remove {REMOTE!r}" in message.hint


@pytest.mark.parametrize(
    ("value", "fragment"),
    [(["STAFF_ROLES"], "must be a dict, got list"), ({"STAF_ROLES": []}, "STAF_ROLES")],
)
def test_e005_django_block(value, fragment):
    message = only("jwt_headers.E005", JWT_HEADERS_DJANGO=value)
    assert fragment in message.msg
    assert "STAFF_ROLES" in message.hint


def test_e006_invalid_jwt_headers_dict_names_the_option_and_masks_secrets():
    message = only(
        "jwt_headers.E006",
        JWT_HEADERS={
            "user_name_header": "Authorization",
            "user_name_format": "jwt",
            "user_name_json_path": "sub",
            "validate_token": True,
            "jwks_uri": "ftp://u:hunter2@idp/jwks",
        },
    )
    assert "jwks_uri" in message.msg
    assert "hunter2" not in message.msg


def test_a_valid_jwt_headers_dict_has_no_message():
    assert ids(JWT_HEADERS={"user_name_header": "X-User"}) == []


@pytest.mark.parametrize("key", ["STAFF_ROLES", "SUPERUSER_ROLES"])
def test_w002_staff_roles_without_a_roles_source_can_never_match(key):
    """The README's own settings example had STAFF_ROLES and SUPERUSER_ROLES with no roles
    source: nobody could ever become staff, and nothing said so. Now a warning names the
    setting and the options to add; with a roles source there is none."""
    no_roles = {"user_name_header": "X-User"}
    message = only("jwt_headers.W002", JWT_HEADERS=no_roles, JWT_HEADERS_DJANGO={key: ["R"]})
    assert isinstance(message, Warning)
    assert key in message.msg and "roles_source" in message.hint
    with_roles = {**no_roles, "roles_source": "header", "roles_header": "X-Roles"}
    assert ids(JWT_HEADERS=with_roles, JWT_HEADERS_DJANGO={key: ["R"]}) == []
    assert ids(JWT_HEADERS=no_roles, JWT_HEADERS_DJANGO={key: []}) == []


@pytest.mark.parametrize("key", ["STAFF_ROLES", "SUPERUSER_ROLES", "SYNC_GROUPS"])
def test_w001_legacy_names_are_deprecated(key):
    message = only("jwt_headers.W001", **{f"JWT_HEADERS_{key}": ["x"]})
    assert isinstance(message, Warning)
    assert f"JWT_HEADERS_DJANGO = {{{key!r}: ...}}" in message.hint


def test_manage_py_check_runs_them_from_installed_apps(tmp_path: Path):
    """In a fresh process (as ``manage.py check`` runs), ``"jwt_headers.django_checks"`` in
    INSTALLED_APPS registers the checks before the middleware is ever loaded, and a bad setup
    stops the command."""
    (tmp_path / "checksite.py").write_text(
        textwrap.dedent(
            f"""
            SECRET_KEY = "test-only"
            INSTALLED_APPS = [
                "django.contrib.auth",
                "django.contrib.contenttypes",
                "django.contrib.sessions",
                "jwt_headers.django_checks",
            ]
            MIDDLEWARE = [{SESSIONS!r}, {AUTH!r}, {PRINCIPAL!r}]
            AUTHENTICATION_BACKENDS = [{BACKEND!r}]
            JWT_HEADERS_USER_NAME_HEADER = "X-User"
            DATABASES = {{}}
            """
        ),
        encoding="utf-8",
    )
    code = "import django; from django.core.management import call_command; django.setup(); "
    code += "call_command('check')"
    done = subprocess.run(
        [sys.executable, "-c", code],
        env={"DJANGO_SETTINGS_MODULE": "checksite", "PYTHONPATH": f"{tmp_path}:{ROOT}"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode != 0
    assert "jwt_headers.E001" in done.stderr
    assert "jwt_headers.E003" in done.stderr
