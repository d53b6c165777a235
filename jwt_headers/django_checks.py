"""Django system checks for ``jwt_headers.django``: the mistakes that otherwise show only as a
silent login redirect or an option that does nothing.

Registered when ``jwt_headers.django`` is imported (Django imports it when it loads the
middleware or the backend), and at start-up by ``manage.py check``/``migrate``/``runserver``
when ``"jwt_headers.django_checks"`` is in ``INSTALLED_APPS`` (recommended: those commands load
neither the middleware nor the backend). Every check's hint names the fix.

- ``jwt_headers.E001``: session mode without ``RemoteUserMiddleware``: nobody is ever logged in;
- ``jwt_headers.E002``: ``JwtHeadersBackend`` not in ``AUTHENTICATION_BACKENDS``;
- ``jwt_headers.E003``: a middleware option written as a ``JWT_HEADERS_<OPTION>`` setting, where
  nothing reads it;
- ``jwt_headers.E004``: ``StatelessMiddleware`` together with ``RemoteUserMiddleware`` (the
  latter logs in, so sessions and cookies come back);
- ``jwt_headers.E005``: ``JWT_HEADERS_DJANGO`` not a dict, or a key it does not know;
- ``jwt_headers.E006``: ``JWT_HEADERS`` does not make a valid config;
- ``jwt_headers.W001``: a deprecated ``JWT_HEADERS_STAFF_ROLES``-style setting;
- ``jwt_headers.W002``: ``STAFF_ROLES`` or ``SUPERUSER_ROLES`` set while ``JWT_HEADERS`` reads
  no roles: they can never match, so nobody becomes staff or superuser.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from django.conf import settings
from django.core import checks
from django.utils.module_loading import import_string

from .config import JwtHeadersConfig
from .errors import ConfigError

__all__ = ["check_jwt_headers"]

_PRINCIPAL = "jwt_headers.django.PrincipalMiddleware"
_STATELESS = "jwt_headers.django.StatelessMiddleware"
_BACKEND = "jwt_headers.django.JwtHeadersBackend"
_REMOTE_USER = "django.contrib.auth.middleware.RemoteUserMiddleware"
_DJANGO_KEYS = ("CREATE_UNKNOWN_USER", "SYNC_GROUPS", "STAFF_ROLES", "SUPERUSER_ROLES")


def _classes(paths: Sequence[str]) -> list[tuple[str, type | None]]:
    """Each dotted path with its class, ``None`` when it cannot be imported (Django reports
    that itself)."""
    found: list[tuple[str, type | None]] = []
    for path in paths:
        try:
            value = import_string(path)
        except ImportError:
            value = None
        found.append((path, value if isinstance(value, type) else None))
    return found


def _uses(classes: list[tuple[str, type | None]], base_path: str) -> bool:
    base = import_string(base_path)
    return any(cls is not None and issubclass(cls, base) for _, cls in classes)


@checks.register(checks.Tags.security, checks.Tags.compatibility)
def check_jwt_headers(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """All the checks above, on the current settings."""
    errors: list[checks.CheckMessage] = []
    middleware = _classes(list(getattr(settings, "MIDDLEWARE", None) or []))
    backends = _classes(list(getattr(settings, "AUTHENTICATION_BACKENDS", None) or []))
    session_mode = _uses(middleware, _PRINCIPAL)
    stateless = _uses(middleware, _STATELESS)
    remote_user = _uses(middleware, _REMOTE_USER)
    our_backend = _uses(backends, _BACKEND)

    if (session_mode or our_backend) and not stateless and not remote_user:
        errors.append(
            checks.Error(
                "RemoteUserMiddleware is not in MIDDLEWARE: nobody is logged in from the "
                "REMOTE_USER jwt-headers sets, and login_required views redirect every request "
                "to the login page",
                hint=f"add {_REMOTE_USER!r} after AuthenticationMiddleware and before "
                f"{_PRINCIPAL!r}; for robots and APIs use {_STATELESS!r} instead",
                id="jwt_headers.E001",
            )
        )
    if (session_mode or stateless) and not our_backend:
        errors.append(
            checks.Error(
                f"{_BACKEND} is not in AUTHENTICATION_BACKENDS: users are not created or "
                "synced from the principal's roles",
                hint=f"AUTHENTICATION_BACKENDS = [{_BACKEND!r}]",
                id="jwt_headers.E002",
            )
        )
    if stateless and remote_user:
        errors.append(
            checks.Error(
                "StatelessMiddleware and RemoteUserMiddleware are both in MIDDLEWARE: "
                "RemoteUserMiddleware logs every request in, creating a session row and a "
                "Set-Cookie, which the stateless mode promises not to",
                hint=f"remove {_REMOTE_USER!r} (and {_PRINCIPAL!r}) from MIDDLEWARE, or remove "
                f"{_STATELESS!r} for the session mode",
                id="jwt_headers.E004",
            )
        )
    errors.extend(_misplaced_options())
    errors.extend(_django_block())
    errors.extend(_settings_config())
    return errors


def _misplaced_options() -> list[checks.CheckMessage]:
    found: list[checks.CheckMessage] = []
    options = JwtHeadersConfig.option_names()
    for name in sorted(dir(settings)):
        if not name.startswith("JWT_HEADERS_") or name == "JWT_HEADERS_DJANGO":
            continue
        key = name[len("JWT_HEADERS_") :]
        if key in _DJANGO_KEYS:
            found.append(
                checks.Warning(
                    f"the setting {name} is deprecated: JWT_HEADERS_* names are the "
                    "middleware's options",
                    hint=f"write JWT_HEADERS_DJANGO = {{{key!r}: ...}} instead",
                    id="jwt_headers.W001",
                )
            )
        elif key.lower() in options:
            found.append(
                checks.Error(
                    f"the setting {name} is ignored: the middleware does not read Django "
                    "settings by that name (it runs before Django, in wsgi.py)",
                    hint=f'put it in JWT_HEADERS = {{"{key.lower()}": ...}} and build the '
                    "middleware with jwt_headers.django.middleware_from_settings(), or set "
                    f"the environment variable {name} for JwtHeadersConfig.from_env()",
                    id="jwt_headers.E003",
                )
            )
    return found


def _django_block() -> list[checks.CheckMessage]:
    block: Any = getattr(settings, "JWT_HEADERS_DJANGO", None)
    if block is None:
        return []
    if not isinstance(block, Mapping):
        return [
            checks.Error(
                f"JWT_HEADERS_DJANGO must be a dict, got {type(block).__name__}",
                hint=f"JWT_HEADERS_DJANGO = {{...}} with keys {', '.join(_DJANGO_KEYS)}",
                id="jwt_headers.E005",
            )
        ]
    unknown = sorted(str(key) for key in block if key not in _DJANGO_KEYS)
    if not unknown:
        return []
    return [
        checks.Error(
            f"JWT_HEADERS_DJANGO has unknown key(s): {', '.join(unknown)}",
            hint=f"its keys are {', '.join(_DJANGO_KEYS)}; middleware options go in JWT_HEADERS",
            id="jwt_headers.E005",
        )
    ]


def _settings_config() -> list[checks.CheckMessage]:
    value: Any = getattr(settings, "JWT_HEADERS", None)
    if value is None:
        return []
    try:
        if isinstance(value, JwtHeadersConfig):
            config = value
        elif isinstance(value, Mapping):
            config = JwtHeadersConfig.from_mapping(value)
        else:
            raise ConfigError(f"must be a dict of options, got {type(value).__name__}")
    except ConfigError as exc:
        return [
            checks.Error(
                f"JWT_HEADERS is not a valid jwt-headers config: {exc}",  # secrets masked
                hint="fix the option named above (JwtHeadersConfig names, e.g. "
                '{"user_name_header": "Authorization"})',
                id="jwt_headers.E006",
            )
        ]
    return _roles_that_never_match(config)


def _roles_that_never_match(config: JwtHeadersConfig) -> list[checks.CheckMessage]:
    """Staff and superuser roles while no source reads roles: found when the README's own
    example had this mistake, and nothing said so (everyone silently stayed a plain user)."""
    if any(source.roles_source for source in config.source_configs):
        return []
    block: Any = getattr(settings, "JWT_HEADERS_DJANGO", None)
    block = block if isinstance(block, Mapping) else {}
    named = [
        key
        for key in ("STAFF_ROLES", "SUPERUSER_ROLES")
        if block.get(key) or getattr(settings, f"JWT_HEADERS_{key}", None)
    ]
    if not named:
        return []
    return [
        checks.Warning(
            f"{' and '.join(named)} are set but JWT_HEADERS reads no roles (no roles_source): "
            "they can never match, so nobody becomes staff or superuser",
            hint='add "roles_source" ("header", "json" or "jwt") and its "roles_json_path" or '
            '"roles_header" to JWT_HEADERS, e.g. "roles_source": "json", '
            '"roles_json_path": "realm_access.roles"',
            id="jwt_headers.W002",
        )
    ]
