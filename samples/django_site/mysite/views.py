"""``/whoami``: who Django thinks is calling, and what jwt-headers said about it.

Both are shown because they can differ: ``request.principal`` is what the middleware judged for
this very request, ``request.user`` is the Django account it was mapped to (created on first
sight, its groups and flags synced from the roles).
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, JsonResponse

from jwt_headers import Principal
from jwt_headers.django import roles_required


def whoami(request: HttpRequest) -> JsonResponse:
    user = request.user
    principal: Principal | None = getattr(request, "principal", None)
    return JsonResponse(
        {
            "authenticated": user.is_authenticated,
            "username": user.get_username() if user.is_authenticated else None,
            "groups": sorted(user.groups.values_list("name", flat=True)),
            "is_staff": user.is_staff,
            "is_superuser": user.is_superuser,
            "principal": principal.name if principal is not None else None,
            "roles": list(principal.roles) if principal is not None else [],
        }
    )


@login_required
def private(request: HttpRequest) -> JsonResponse:
    """Django's own guard: session mode redirects an anonymous browser to ``LOGIN_URL``;
    stateless mode answers a robot jwt-headers' ``401`` JSON instead."""
    return JsonResponse({"username": request.user.get_username()})


@roles_required("ROLE_ADMINISTRATOR")
def admin_report(request: HttpRequest) -> JsonResponse:
    """jwt-headers' guard, on this request's principal: ``401`` anonymous, ``403`` JSON naming
    the missing role, in either mode."""
    return JsonResponse({"report": "ok", "by": request.user.get_username()})
