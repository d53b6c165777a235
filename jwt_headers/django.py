"""Django integration: a ``REMOTE_USER`` backend that also brings the principal's roles and
claims into Django's user, and a middleware that exposes the principal as ``request.principal``.

Django's own ``RemoteUserMiddleware`` does the session work unchanged: it logs the user in from
the ``REMOTE_USER`` the middleware sets, out when it disappears, and switches users when it
changes, which is what GeoServer does with its header. The middleware stays the only judge of
the headers; this module never reads one.

Two modes:

- **session** (browsers behind Apache): Django's ``RemoteUserMiddleware`` logs the user in, a
  session row and cookie carry it, ``PrincipalMiddleware`` re-syncs it when its roles change;
- **stateless** (robots and APIs sending a token on every request): ``StatelessMiddleware``
  sets ``request.user`` for this request only, never touches the session (no row, no
  ``Set-Cookie``) and turns the login redirect of an anonymous request into the middleware's
  ``401`` JSON.

Django settings of this module, all optional, in one dict (not ``JWT_HEADERS_*`` names, which
belong to the middleware's options)::

    JWT_HEADERS_DJANGO = {
        "CREATE_UNKNOWN_USER": True,  # create a Django user on first sight
        "SYNC_GROUPS": True,          # the user's groups become exactly its roles
        "STAFF_ROLES": [],            # roles that make is_staff (empty: left alone)
        "SUPERUSER_ROLES": [],        # roles that make is_superuser (empty: left alone)
    }

The former ``JWT_HEADERS_CREATE_UNKNOWN_USER``... settings still work, with a
``DeprecationWarning``. The middleware's own options may come from ``JWT_HEADERS = {...}``
through :func:`middleware_from_settings`.

Import this module only once Django's apps are ready (name it in ``AUTHENTICATION_BACKENDS`` and
``MIDDLEWARE`` as strings): Django's backend module loads the user model when imported.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import logging
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import auth
from django.contrib.auth.backends import RemoteUserBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import AnonymousUser, Group
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import transaction
from django.db.models import Model
from django.http import HttpRequest, HttpResponse, HttpResponseBase
from django.shortcuts import resolve_url
from django.utils.functional import SimpleLazyObject

from .config import JwtHeadersConfig
from .errors import ConfigError, Unauthenticated
from .middleware import (
    PRINCIPAL_KEY,
    JwtHeadersMiddleware,
    insufficient_role_body,
    refusal_response,
)
from .principal import Principal

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIApplication

__all__ = [
    "DJANGO_SETTINGS",
    "SETTINGS_KEY",
    "JwtHeadersBackend",
    "PrincipalMiddleware",
    "StatelessMiddleware",
    "config_from_settings",
    "django_setting",
    "middleware_from_settings",
    "principal_of",
    "roles_required",
]

logger = logging.getLogger("jwt_headers")

#: Session key holding a digest of what was last written to the user, so a session notices when
#: the roles or claims behind it change without writing to the database on every request.
SYNCED_SESSION_KEY = "jwt_headers.synced"

U = TypeVar("U", bound=AbstractBaseUser)
V = TypeVar("V", bound=Callable[..., Any])

#: The Django setting holding the middleware's options (a dict, as ``JwtHeadersConfig`` names them).
SETTINGS_KEY = "JWT_HEADERS"
#: The Django setting holding this module's own settings (a dict, keys below).
DJANGO_SETTINGS = "JWT_HEADERS_DJANGO"
#: This module's settings and their defaults; each was once a ``JWT_HEADERS_<KEY>`` setting.
DJANGO_DEFAULTS: dict[str, Any] = {
    "CREATE_UNKNOWN_USER": True,
    "SYNC_GROUPS": True,
    "STAFF_ROLES": (),
    "SUPERUSER_ROLES": (),
}
#: Request attribute marking a request handled by :class:`StatelessMiddleware`.
STATELESS_ATTR = "_jwt_headers_stateless"

#: Claims copied to user fields when present and a string that fits the field.
CLAIM_FIELDS = (("email", "email"), ("first_name", "given_name"), ("last_name", "family_name"))


def principal_of(request: HttpRequest | None) -> Principal | None:
    """The principal the middleware left in the request's environ, or ``None``."""
    if request is None:
        return None
    found = request.META.get(PRINCIPAL_KEY)
    return found if isinstance(found, Principal) else None


def _django_block() -> Mapping[str, Any]:
    block: Any = getattr(settings, DJANGO_SETTINGS, None)
    if block is None:
        return {}
    if not isinstance(block, Mapping):
        raise ImproperlyConfigured(
            f"{DJANGO_SETTINGS} must be a dict (keys {', '.join(DJANGO_DEFAULTS)}), got "
            f"{type(block).__name__}"
        )
    unknown = sorted(str(key) for key in block if key not in DJANGO_DEFAULTS)
    if unknown:
        raise ImproperlyConfigured(
            f"{DJANGO_SETTINGS} has unknown key(s) {', '.join(unknown)}; the keys are "
            f"{', '.join(DJANGO_DEFAULTS)} (middleware options go in {SETTINGS_KEY})"
        )
    return block


def django_setting(key: str) -> Any:
    """One of this module's settings: ``JWT_HEADERS_DJANGO[key]``, else the old top-level
    ``JWT_HEADERS_<KEY>`` setting (deprecated: that prefix is the middleware's), else the
    default."""
    block = _django_block()
    if key in block:
        return block[key]
    legacy = f"JWT_HEADERS_{key}"
    if hasattr(settings, legacy):
        warnings.warn(
            f"the setting {legacy} is deprecated: write {DJANGO_SETTINGS} = "
            f"{{{key!r}: ...}} instead (JWT_HEADERS_* names are the middleware's options)",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(settings, legacy)
    return DJANGO_DEFAULTS[key]


def _role_setting(key: str) -> frozenset[str]:
    name = f"{DJANGO_SETTINGS}[{key!r}]"
    value: Any = django_setting(key)
    if isinstance(value, str):  # a bare string would otherwise be iterated letter by letter
        value = value.split(",")
    try:
        items = list(value)
    except TypeError:
        raise ImproperlyConfigured(f"{name} must be a list of role names, got {value!r}") from None
    for item in items:
        if not isinstance(item, str):
            raise ImproperlyConfigured(f"{name}: {item!r} is not a role name (a string)")
    return frozenset(item.strip() for item in items if item.strip())


@dataclass(frozen=True)
class UserState:
    """What a principal makes of a Django user; ``None`` means "leave as it is"."""

    groups: tuple[str, ...] | None
    is_staff: bool | None
    is_superuser: bool | None
    fields: tuple[tuple[str, str], ...]

    def digest(self) -> str:
        return hashlib.sha256(repr(self).encode("utf-8")).hexdigest()[:32]


class JwtHeadersBackend(RemoteUserBackend):
    """``RemoteUserBackend`` that keeps the user in step with the principal.

    Each login (and, through :class:`PrincipalMiddleware`, each change of roles or claims within
    a session) replaces all the user's groups by groups named after its roles, sets
    ``is_staff``/``is_superuser`` from the configured roles and copies ``email``, ``given_name``
    and ``family_name``. Local group assignments do not survive a sync: turn
    ``JWT_HEADERS_SYNC_GROUPS`` off to manage groups in Django instead.
    """

    create_unknown_user = True

    def __init__(self) -> None:
        super().__init__()
        self.create_unknown_user = bool(django_setting("CREATE_UNKNOWN_USER"))
        self.sync_groups = bool(django_setting("SYNC_GROUPS"))
        self.staff_roles = _role_setting("STAFF_ROLES")
        self.superuser_roles = _role_setting("SUPERUSER_ROLES")

    def configure_user(self, request: HttpRequest | None, user: U, created: bool = True) -> U:
        principal = principal_of(request)
        if user is None:  # Django passes None for an unknown user it may not create
            return user
        if principal is not None and self.is_principal_of(user, principal):
            state = self.sync_user(user, principal)
            if request is not None and _has_session(request):
                request.session[SYNCED_SESSION_KEY] = state.digest()
        return user

    def is_principal_of(self, user: AbstractBaseUser, principal: Principal) -> bool:
        """Sync only from the principal the user was logged in from: a ``RemoteUserMiddleware``
        reading another header must not get this principal's roles."""
        return bool(user.get_username() == self.clean_username(principal.name))

    def state_for(self, user: AbstractBaseUser, principal: Principal) -> UserState:
        roles = set(principal.roles)
        groups = None
        if self.sync_groups:
            # An over-long name would make the database refuse the whole sync.
            groups = tuple(role for role in principal.roles if _fits(Group, "name", role))
        fields = []
        claims = principal.claims or {}
        for field_name, claim in CLAIM_FIELDS:
            value = claims.get(claim)
            if isinstance(value, str) and _fits(user, field_name, value):
                fields.append((field_name, value))
        return UserState(
            groups=groups,
            is_staff=bool(roles & self.staff_roles) if self.staff_roles else None,
            is_superuser=bool(roles & self.superuser_roles) if self.superuser_roles else None,
            fields=tuple(fields),
        )

    def sync_user(self, user: AbstractBaseUser, principal: Principal) -> UserState:
        """Write the principal's groups, flags and claims to ``user``; return what was written.

        One transaction, so a failure leaves the user as it was rather than half-synced.
        """
        state = self.state_for(user, principal)
        changed = []
        for field_name, value in state.fields:
            if getattr(user, field_name) != value:
                setattr(user, field_name, value)
                changed.append(field_name)
        for flag in ("is_staff", "is_superuser"):
            wanted = getattr(state, flag)
            if wanted is not None and hasattr(user, flag) and getattr(user, flag) != wanted:
                setattr(user, flag, wanted)
                changed.append(flag)
        user_groups = getattr(user, "groups", None)  # a custom user model may have none
        if (
            state.groups is not None
            and user_groups is not None
            and user.pk is not None
            and set(user_groups.values_list("name", flat=True)) == set(state.groups)
        ):
            user_groups = None  # a stateless request syncs every time: unchanged writes nothing
        with transaction.atomic():
            if changed:
                user.save(update_fields=changed)
            if state.groups is not None and user_groups is not None:
                if len(state.groups) < len(principal.roles):
                    logger.warning(
                        "group_sync: %d role(s) longer than a group name can be were skipped",
                        len(principal.roles) - len(state.groups),
                    )
                user_groups.set(
                    [Group.objects.get_or_create(name=name)[0] for name in state.groups]
                )
        return state


def _fits(model: type[Model] | Model, field_name: str, value: str) -> bool:
    """Whether ``value`` can be stored in the field: a custom user model may lack the field, and
    an over-long claim must not make the database refuse the login."""
    try:
        field = model._meta.get_field(field_name)
    except FieldDoesNotExist:
        return False
    limit: int | None = getattr(field, "max_length", None)
    return limit is None or len(value) <= limit


class PrincipalMiddleware:
    """Set ``request.principal`` (``None`` when anonymous), and re-sync a logged-in user whose
    roles or claims changed since the session's login.

    ``RemoteUserMiddleware`` authenticates only when the user name changes, so without the
    re-sync a role revoked at the identity provider would keep its Django group for the whole
    session. Place it after ``RemoteUserMiddleware``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        principal = principal_of(request)
        request.principal = principal  # type: ignore[attr-defined]
        if principal is not None:
            self._resync(request, principal)
        return self.get_response(request)

    @staticmethod
    def _resync(request: HttpRequest, principal: Principal) -> None:
        session = getattr(request, "session", None)
        user = getattr(request, "user", None)
        if session is None or user is None or not user.is_authenticated:
            return
        try:
            backend = auth.load_backend(session.get(auth.BACKEND_SESSION_KEY, ""))
        except ImportError:
            return
        if not isinstance(backend, JwtHeadersBackend) or not backend.is_principal_of(
            user, principal
        ):
            return
        state = backend.state_for(user, principal)
        if session.get(SYNCED_SESSION_KEY) != state.digest():
            backend.sync_user(user, principal)
            session[SYNCED_SESSION_KEY] = state.digest()


def _has_session(request: HttpRequest | None) -> bool:
    """Whether this request may write to its session: never for a stateless one, where a write
    would create the very row and cookie that mode promises not to."""
    if request is None or getattr(request, STATELESS_ATTR, False):
        return False
    return hasattr(request, "session")


def _unauthenticated() -> HttpResponse:
    """The middleware's own ``401`` (``allow_anonymous=False``), so a client sees one format
    whichever layer refused it."""
    status, headers, body = refusal_response(Unauthenticated())
    return HttpResponse(body, status=int(status.split()[0]), headers=dict(headers))


def _insufficient_role(required: tuple[str, ...], principal: Principal) -> HttpResponse:
    return HttpResponse(
        insufficient_role_body(required, principal.roles),
        status=403,
        headers={"Cache-Control": "no-store"},
        content_type="application/json",
    )


def roles_required(*roles: str) -> Callable[[V], V]:
    """Let a view run only for a principal holding every one of ``roles``.

    The same answers as ``jwt_headers.flask.roles_required``: anonymous gets the middleware's
    ``401`` (never a login redirect: a robot cannot follow one), a principal lacking a role gets
    ``403`` naming what was required and what it holds. With no roles, any principal passes.
    The principal is this request's, as the middleware judged it, whatever the session says.
    For a class-based view use ``method_decorator(roles_required(...), name="dispatch")``.
    """
    for role in roles:
        if not isinstance(role, str):  # @roles_required without parentheses gives the view here
            raise TypeError(
                f"roles_required takes role names, got {role!r}; write "
                "@roles_required('ROLE_X') with parentheses"
            )
    required = tuple(dict.fromkeys(roles))

    def refusal(request: HttpRequest) -> HttpResponse | None:
        principal = principal_of(request)
        if principal is None:
            return _unauthenticated()
        if any(role not in principal.roles for role in required):
            return _insufficient_role(required, principal)
        return None

    def decorate(view: V) -> V:
        if inspect.iscoroutinefunction(view):

            @functools.wraps(view)
            async def guarded_async(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
                refused = refusal(request)
                if refused is not None:
                    return refused
                return await view(request, *args, **kwargs)

            return guarded_async  # type: ignore[return-value]

        @functools.wraps(view)
        def guarded(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            refused = refusal(request)
            if refused is not None:
                return refused
            return view(request, *args, **kwargs)

        return guarded  # type: ignore[return-value]

    return decorate


def _stateless_user(request: HttpRequest, principal: Principal | None) -> Any:
    if principal is None:
        return AnonymousUser()
    user = auth.authenticate(request, remote_user=principal.name)
    return AnonymousUser() if user is None else user


def _login_path() -> str | None:
    try:
        return urlsplit(resolve_url(settings.LOGIN_URL)).path
    except Exception:  # a LOGIN_URL naming no URL: nothing is a login redirect then
        return None


class StatelessMiddleware:
    """Robots and APIs: the principal of this request, and nothing kept after it.

    Instead of ``RemoteUserMiddleware`` + ``PrincipalMiddleware`` (leave both out): sets
    ``request.principal`` and ``request.user`` (the Django user the backend finds, creates and
    syncs, loaded only when a view reads it; ``AnonymousUser`` without a principal), never
    calls ``login()`` and never writes the session, so no session row and no ``Set-Cookie``
    come of a request. An anonymous request that a view answers with a redirect to
    ``LOGIN_URL`` (``login_required``, ``LoginRequiredMixin``) gets the middleware's ``401``
    JSON instead: a robot cannot log in on a form. Place it after ``AuthenticationMiddleware``
    when that is present, so the user it sets is the one views see.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        principal = principal_of(request)
        setattr(request, STATELESS_ATTR, True)
        request.principal = principal  # type: ignore[attr-defined]
        user = SimpleLazyObject(functools.partial(_stateless_user, request, principal))
        request.user = user  # type: ignore[assignment]

        def loaded() -> Any:
            bool(user.is_authenticated)  # loads it here, in a thread where the ORM may run
            return user

        async def auser() -> Any:  # what async views await, else AuthenticationMiddleware's
            return await sync_to_async(loaded)()

        request.auser = auser
        response = self.get_response(request)
        if principal is None and self._is_login_redirect(response):
            return _unauthenticated()
        return response

    @staticmethod
    def _is_login_redirect(response: HttpResponseBase) -> bool:
        if response.status_code not in (301, 302, 303, 307, 308) or "Location" not in response:
            return False
        login = _login_path()
        return login is not None and urlsplit(response["Location"]).path == login


def config_from_settings() -> JwtHeadersConfig:
    """The middleware's config from ``settings.JWT_HEADERS``: a dict of options named as
    ``JwtHeadersConfig`` names them (``{"user_name_header": "Authorization", ...}``), or a
    ``JwtHeadersConfig``. One named home for them, so a ``JWT_HEADERS_*`` line in settings.py
    is never mistaken for one."""
    value: Any = getattr(settings, SETTINGS_KEY, None)
    if value is None:
        raise ConfigError(
            f"settings.{SETTINGS_KEY} is not set: write {SETTINGS_KEY} = "
            '{"user_name_header": "Authorization", ...} in settings.py, or build the '
            "middleware with JwtHeadersConfig.from_env() in wsgi.py"
        )
    if isinstance(value, JwtHeadersConfig):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"settings.{SETTINGS_KEY} must be a dict of options or a JwtHeadersConfig, got "
            f'{type(value).__name__}; write {SETTINGS_KEY} = {{"user_name_header": ...}}'
        )
    return JwtHeadersConfig.from_mapping(value)


def middleware_from_settings(application: WSGIApplication | None = None) -> JwtHeadersMiddleware:
    """``wsgi.py``'s ``application``: Django (``get_wsgi_application()``, or ``application``)
    behind the middleware configured by ``settings.JWT_HEADERS``. Import this module after
    ``get_wsgi_application()`` (it needs Django's apps ready), so in ``wsgi.py``::

        django_application = get_wsgi_application()
        from jwt_headers.django import middleware_from_settings
        application = middleware_from_settings(django_application)

    A bad option stops the server at start-up with a ``ConfigError`` naming it."""
    if application is None:
        from django.core.wsgi import get_wsgi_application

        application = get_wsgi_application()
    return JwtHeadersMiddleware(application, config_from_settings())


from . import django_checks  # noqa: E402,F401  (registers the system checks)
