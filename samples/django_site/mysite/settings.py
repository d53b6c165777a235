"""Settings of the sample site: Django's ``RemoteUserMiddleware`` logs in whoever jwt-headers
put in ``REMOTE_USER``, and ``jwt_headers.django`` keeps the Django user in step with the roles.

Everything deployment-specific comes from the environment, so the same files serve the test
(``tests/test_sample_django.py``) and a real host:

- ``DJANGO_SECRET_KEY`` (required): never in a file that is committed or shared;
- ``DJANGO_SQLITE_PATH``: the database file (default ``db.sqlite3`` next to ``manage.py``);
- ``DJANGO_ALLOWED_HOSTS``: comma-separated (default ``127.0.0.1,localhost``, what Apache's
  ``ProxyPass`` sends without ``ProxyPreserveHost``);
- ``DJANGO_JWT_STAFF_ROLES`` / ``DJANGO_JWT_SUPERUSER_ROLES``: comma-separated roles (after the
  role map) that make a user staff / superuser. They are not named ``JWT_HEADERS_*``: that prefix
  belongs to the middleware's options, and ``JwtHeadersConfig.from_env`` refuses names it does
  not know (a typo must not silently drop a check).

The middleware itself is configured in ``wsgi.py`` from ``JWT_HEADERS_*`` (``django.env``).
"""

from __future__ import annotations

import os
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

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
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Logs the user in from REMOTE_USER (set only by jwt-headers: any REMOTE_USER arriving from
    # upstream is removed first), out when it disappears, into the other account when it changes.
    "django.contrib.auth.middleware.RemoteUserMiddleware",
    # request.principal, and a re-sync of groups and flags when the roles change mid-session
    # (RemoteUserMiddleware authenticates only when the name changes). After RemoteUserMiddleware.
    "jwt_headers.django.PrincipalMiddleware",
]
# Only the header-based backend: nobody logs in here with a password.
AUTHENTICATION_BACKENDS = ["jwt_headers.django.JwtHeadersBackend"]

# Groups become exactly the user's roles at each login and each role change (the default).
JWT_HEADERS_SYNC_GROUPS = True
JWT_HEADERS_STAFF_ROLES = _list("DJANGO_JWT_STAFF_ROLES")
JWT_HEADERS_SUPERUSER_ROLES = _list("DJANGO_JWT_SUPERUSER_ROLES")

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
