"""Django integration: a ``REMOTE_USER`` backend that also brings the principal's roles and
claims into Django's user, and a middleware that exposes the principal as ``request.principal``.

Django's own ``RemoteUserMiddleware`` does the session work unchanged: it logs the user in from
the ``REMOTE_USER`` the middleware sets, out when it disappears, and switches users when it
changes, which is what GeoServer does with its header. The middleware stays the only judge of
the headers; this module never reads one.

Settings (all optional)::

    JWT_HEADERS_CREATE_UNKNOWN_USER = True   # create a Django user on first sight
    JWT_HEADERS_SYNC_GROUPS = True           # the user's groups become exactly its roles
    JWT_HEADERS_STAFF_ROLES = []             # roles that make is_staff (empty: left alone)
    JWT_HEADERS_SUPERUSER_ROLES = []         # roles that make is_superuser (empty: left alone)

Import this module only once Django's apps are ready (name it in ``AUTHENTICATION_BACKENDS`` and
``MIDDLEWARE`` as strings): Django's backend module loads the user model when imported.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.conf import settings
from django.contrib import auth
from django.contrib.auth.backends import RemoteUserBackend
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.models import Group
from django.core.exceptions import FieldDoesNotExist, ImproperlyConfigured
from django.db import transaction
from django.db.models import Model
from django.http import HttpRequest, HttpResponseBase

from .middleware import PRINCIPAL_KEY
from .principal import Principal

__all__ = ["JwtHeadersBackend", "PrincipalMiddleware", "principal_of"]

logger = logging.getLogger("jwt_headers")

#: Session key holding a digest of what was last written to the user, so a session notices when
#: the roles or claims behind it change without writing to the database on every request.
SYNCED_SESSION_KEY = "jwt_headers.synced"

U = TypeVar("U", bound=AbstractBaseUser)

#: Claims copied to user fields when present and a string that fits the field.
CLAIM_FIELDS = (("email", "email"), ("first_name", "given_name"), ("last_name", "family_name"))


def principal_of(request: HttpRequest | None) -> Principal | None:
    """The principal the middleware left in the request's environ, or ``None``."""
    if request is None:
        return None
    found = request.META.get(PRINCIPAL_KEY)
    return found if isinstance(found, Principal) else None


def _role_setting(name: str) -> frozenset[str]:
    value: Any = getattr(settings, name, ())
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
        self.create_unknown_user = bool(getattr(settings, "JWT_HEADERS_CREATE_UNKNOWN_USER", True))
        self.sync_groups = bool(getattr(settings, "JWT_HEADERS_SYNC_GROUPS", True))
        self.staff_roles = _role_setting("JWT_HEADERS_STAFF_ROLES")
        self.superuser_roles = _role_setting("JWT_HEADERS_SUPERUSER_ROLES")

    def configure_user(self, request: HttpRequest | None, user: U, created: bool = True) -> U:
        principal = principal_of(request)
        if user is None:  # Django passes None for an unknown user it may not create
            return user
        if principal is not None and self.is_principal_of(user, principal):
            state = self.sync_user(user, principal)
            if request is not None and hasattr(request, "session"):
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
