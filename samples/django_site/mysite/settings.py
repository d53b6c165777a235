"""Settings of the sample site: Django's ``RemoteUserMiddleware`` logs in whoever jwt-headers
put in ``REMOTE_USER``, and ``jwt_headers.django`` keeps the Django user in step with the roles.

Everything deployment-specific comes from the environment, so the same files serve the test
(``tests/test_sample_django.py``) and a real host:

- ``DJANGO_SECRET_KEY`` (required): never in a file that is committed or shared;
- ``DJANGO_SQLITE_PATH``: the database file (default ``db.sqlite3`` next to ``manage.py``);
- ``DJANGO_ALLOWED_HOSTS``: comma-separated (default ``127.0.0.1,localhost``, what Apache's
  ``ProxyPass`` sends without ``ProxyPreserveHost``);
- ``DJANGO_JWT_STAFF_ROLES`` / ``DJANGO_JWT_SUPERUSER_ROLES``: comma-separated roles (after the
  role map) that make a user staff / superuser, kept in ``JWT_HEADERS_DJANGO``;
- ``DJANGO_JWT_MODE``: ``session`` (default: browsers behind Apache, logged in once per
  session) or ``stateless`` (robots and APIs sending a token on every request: no session row,
  no cookie, ``401`` JSON instead of the login redirect).

The middleware's options come from the ``JWT_HEADERS_*`` environment (``django.env``) into the
``JWT_HEADERS`` setting, which ``wsgi.py`` builds the middleware from: a bad option stops
``manage.py`` and gunicorn alike with a ``ConfigError`` naming it.
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from jwt_headers import JwtHeadersConfig

BASE_DIR = Path(__file__).resolve().parent.parent


def _list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if not SECRET_KEY:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY is not set: export a long random value, e.g. "
        "python -c 'import secrets; print(secrets.token_urlsafe(50))'"
    )
DEBUG = False
ALLOWED_HOSTS = _list("DJANGO_ALLOWED_HOSTS", "127.0.0.1,localhost")

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    # System checks (manage.py check/migrate): RemoteUserMiddleware or the backend missing,
    # JWT_HEADERS_<OPTION> settings that nothing reads...
    "jwt_headers.django_checks",
]

MODE = os.environ.get("DJANGO_JWT_MODE", "session")
if MODE == "session":
    AUTH_MIDDLEWARE = [
        # Logs the user in from REMOTE_USER (set only by jwt-headers: any REMOTE_USER arriving
        # from upstream is removed first), out when it disappears, into the other account when
        # it changes.
        "django.contrib.auth.middleware.RemoteUserMiddleware",
        # request.principal, and a re-sync of groups and flags when the roles change
        # mid-session (RemoteUserMiddleware authenticates only when the name changes).
        "jwt_headers.django.PrincipalMiddleware",
    ]
elif MODE == "stateless":
    # request.user and request.principal for this request only: never a login, a session row
    # or a cookie; a login redirect for an anonymous request becomes jwt-headers' 401 JSON.
    AUTH_MIDDLEWARE = ["jwt_headers.django.StatelessMiddleware"]
else:
    raise ImproperlyConfigured(f"DJANGO_JWT_MODE={MODE!r}: write 'session' or 'stateless'")

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    *AUTH_MIDDLEWARE,
]
# Only the header-based backend: nobody logs in here with a password.
AUTHENTICATION_BACKENDS = ["jwt_headers.django.JwtHeadersBackend"]

# The middleware's options (wsgi.py: jwt_headers.django.middleware_from_settings()). Here from
# the JWT_HEADERS_* environment; a dict of options works as well:
# JWT_HEADERS = {"user_name_header": "Authorization", ...}.
JWT_HEADERS = JwtHeadersConfig.from_env()

# jwt_headers.django's own settings (not JWT_HEADERS_* names: that prefix is the middleware's).
JWT_HEADERS_DJANGO = {
    # Groups become exactly the user's roles at each login and each role change (the default).
    "SYNC_GROUPS": True,
    "STAFF_ROLES": _list("DJANGO_JWT_STAFF_ROLES"),
    "SUPERUSER_ROLES": _list("DJANGO_JWT_SUPERUSER_ROLES"),
}

ROOT_URLCONF = "mysite.urls"
WSGI_APPLICATION = "mysite.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("DJANGO_SQLITE_PATH") or BASE_DIR / "db.sqlite3",
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
# Django sets the process time zone from this (default America/Chicago): keep the gunicorn and
# jwt-headers log times in UTC.
TIME_ZONE = "UTC"

# Browsers reach the site through Apache's TLS only: keep the session cookie off plain http.
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True

# jwt-headers logs refusals and ignored headers (reason code and fingerprint, never a token) on
# the "jwt_headers" logger; send them to stderr, where gunicorn's error log goes.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"jwt_headers": {"handlers": ["console"], "level": "INFO"}},
}
